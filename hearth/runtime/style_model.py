"""Style models (STYLE_MODEL): image tokens appended to a text conditioning.

* T2I-Adapter style (``style_embedding``, ``transformer_layes.N``, ``ln_pre``/``ln_post``, ``proj``): a few
  learned query tokens are appended to a CLIP vision encoder's last hidden state, run through a small
  transformer (8 heads, quick-GELU MLPs), normed and projected to the text width. The released file is
  1024 wide with 3 layers, 8 tokens and a 768-wide output (SD1.x); other sizes are read off the shapes.
* Flux Redux (``redux_up``/``redux_down``): a two-layer MLP (SiLU) from SigLIP features to the T5 width.

``apply`` is StyleModelApply: the tokens of every image in the batch are laid end to end, scaled by
``strength`` ("multiply") or given an attention bias of log(strength) ("attn_bias", recorded in the
conditioning's ``attention_mask`` as ComfyUI does), and appended to each conditioning tensor.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping

log = logging.getLogger(__name__)

ADAPTER_HEADS = 8


class StyleModelError(ValueError):
    """A file that is not a style model."""


def _adapter_module(width: int, context: int, layers: int, tokens: int):
    import torch
    from torch import nn

    class FloatLayerNorm(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x.float()).to(x.dtype)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(width, ADAPTER_HEADS, batch_first=True)
            self.ln_1 = FloatLayerNorm(width)
            self.mlp = nn.Module()
            self.mlp.c_fc = nn.Linear(width, width * 4)
            self.mlp.c_proj = nn.Linear(width * 4, width)
            self.ln_2 = FloatLayerNorm(width)

        def forward(self, x):
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, need_weights=False)[0]
            h = self.mlp.c_fc(self.ln_2(x))
            return x + self.mlp.c_proj(h * torch.sigmoid(1.702 * h))

    class StyleAdapter(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer_layes = nn.Sequential(*[Block() for _ in range(layers)])
            self.style_embedding = nn.Parameter(torch.zeros(1, tokens, width))
            self.ln_pre = FloatLayerNorm(width)
            self.ln_post = FloatLayerNorm(width)
            self.proj = nn.Parameter(torch.zeros(width, context))

        def forward(self, x):
            queries = self.style_embedding.expand(x.shape[0], -1, -1).to(x.dtype)
            x = self.transformer_layes(self.ln_pre(torch.cat([x, queries], dim=1)))
            return self.ln_post(x[:, -tokens:, :]) @ self.proj

    return StyleAdapter()


def _redux_module(sig: int, hidden: int, out: int):
    import torch
    from torch import nn

    class Redux(nn.Module):
        def __init__(self):
            super().__init__()
            self.redux_up = nn.Linear(sig, hidden)
            self.redux_down = nn.Linear(hidden, out)

        def forward(self, x):
            return self.redux_down(torch.nn.functional.silu(self.redux_up(x)))

    return Redux()


class StyleModel:
    """STYLE_MODEL: ``get_cond(clip_vision_output)`` → tokens [B, N, width]."""

    def __init__(self, module, kind: str, input_width: int) -> None:
        self.model = module
        self.kind = kind
        self.input_width = input_width

    def get_cond(self, clip_vision_output):
        import torch

        hidden = clip_vision_output.last_hidden_state
        if hidden.shape[-1] != self.input_width:
            raise ValueError(f"this {self.kind} takes {self.input_width}-wide vision features; the "
                             f"CLIP vision output is {hidden.shape[-1]} wide (use the vision encoder it was made for)")
        with torch.inference_mode():
            return self.model(hidden.float().cpu())


def from_state_dict(sd: Mapping, name: str = "style model") -> StyleModel:
    import torch

    keys = set(sd.keys())
    if "style_embedding" in keys:
        needed = ("proj", "ln_pre.weight", "ln_post.weight")
        if any(k not in keys for k in needed):
            raise StyleModelError(f"invalid style model {name}: incomplete T2I style adapter")
        _, tokens, width = tuple(sd["style_embedding"].shape)
        context = sd["proj"].shape[1]
        layers = len({int(m.group(1)) for k in keys if (m := re.match(r"transformer_layes\.(\d+)\.", k))})
        if width % ADAPTER_HEADS:
            raise StyleModelError(f"invalid style model {name}: width {width} is not a multiple of 8 heads")
        module = _adapter_module(width, context, layers, tokens)
        kind, input_width = "T2I style adapter", width
    elif "redux_down.weight" in keys and "redux_up.weight" in keys:
        hidden, sig = tuple(sd["redux_up.weight"].shape)
        out = sd["redux_down.weight"].shape[0]
        module = _redux_module(sig, hidden, out)
        kind, input_width = "Redux", sig
    else:
        raise StyleModelError(f"invalid style model {name}")
    expected = module.state_dict()
    state = {}
    for k, ref in expected.items():
        if k not in sd:
            raise StyleModelError(f"invalid style model {name}: {k} missing")
        t = sd[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise StyleModelError(f"invalid style model {name}: {k} has shape {tuple(t.shape)}, "
                                  f"expected {tuple(ref.shape)}")
        state[k] = t.to(torch.float32)
    extra = keys - set(expected)
    if extra:
        raise StyleModelError(f"invalid style model {name}: unexpected weights, e.g. {sorted(extra)[:3]}")
    module.load_state_dict(state, strict=True)
    module.eval().requires_grad_(False)
    return StyleModel(module, kind, input_width)


def load(path) -> StyleModel:
    from pathlib import Path

    from hearth.runtime.files import load_state_dict

    path = Path(path)
    return from_state_dict(load_state_dict(path), path.name)


def apply(conditioning, style_model: StyleModel, clip_vision_output, strength: float, strength_type: str):
    """StyleModelApply: the style tokens appended to every entry of ``conditioning``."""
    import torch

    if strength_type not in ("multiply", "attn_bias"):
        raise ValueError(f"unknown strength_type {strength_type!r}")
    cond = style_model.get_cond(clip_vision_output).flatten(start_dim=0, end_dim=1).unsqueeze(dim=0)
    if strength_type == "multiply":
        cond = cond * strength
    n = cond.shape[1]
    out = []
    for txt, options in conditioning:
        options = options.copy()
        if "attention_mask" in options or (strength_type == "attn_bias" and strength != 1.0):
            # log(0) is -inf: a zero strength hides the tokens from the text (for models that read the mask)
            bias = torch.log(torch.tensor([strength if strength_type == "attn_bias" else 1.0]))
            ref_h, ref_w = options.get("attention_mask_img_shape", (1, 1))
            n_ref = ref_h * ref_w
            n_txt = txt.shape[1]
            mask = options.get("attention_mask")
            if mask is None:
                mask = torch.zeros((txt.shape[0], n_txt + n_ref, n_txt + n_ref), dtype=torch.float16)
            if mask.dtype == torch.bool:
                mask = torch.log(mask.to(dtype=torch.float16))
            size = n_txt + n + n_ref
            grown = torch.zeros((txt.shape[0], size, size), dtype=torch.float16)
            # the old mask's four quadrants around the new token rows/columns
            grown[:, :n_txt, :n_txt] = mask[:, :n_txt, :n_txt]
            grown[:, :n_txt, n_txt + n:] = mask[:, :n_txt, n_txt:]
            grown[:, n_txt + n:, :n_txt] = mask[:, n_txt:, :n_txt]
            grown[:, n_txt + n:, n_txt + n:] = mask[:, n_txt:, n_txt:]
            grown[:, :n_txt, n_txt:n_txt + n] = bias
            grown[:, n_txt + n:, n_txt:n_txt + n] = bias
            options["attention_mask"] = grown.to(txt.device)
            options["attention_mask_img_shape"] = (ref_h, ref_w)
        tokens = cond.to(device=txt.device, dtype=txt.dtype)
        if txt.shape[0] != tokens.shape[0]:
            tokens = tokens.expand(txt.shape[0], -1, -1)
        out.append([torch.cat((txt, tokens), dim=1), options])
    return out
