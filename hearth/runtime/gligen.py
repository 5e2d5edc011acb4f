"""GLIGEN: grounded generation with text boxes (GLIGENLoader, GLIGENTextBoxApply).

A GLIGEN file holds a position net (``position_net.*``: Fourier features of each box, concatenated with
the box's pooled text embedding, through a three-layer SiLU MLP) and one gated self-attention "fuser" per
UNet transformer (``….fuser.*``, in the order input blocks, middle block, output blocks). During sampling
a conditioning entry with ``gligen = ("position", model, [(pooled, h, w, y, x), ...])`` makes every
transformer block of the N-th transformer run the N-th fuser right after its self-attention, on the
visual tokens concatenated with the (up to 30) grounding tokens; the negative prompt gets the positive's
boxes (as ComfyUI does). The fusers are attached for that call only: the shared UNet is left as it was.
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping

from hearth.runtime.arch import ArchitectureError, check_weights

log = logging.getLogger(__name__)

MAX_OBJS = 30
FOURIER_FREQS = 8


class GligenError(ValueError):
    """A file that is not a GLIGEN model, or one that does not fit the UNet."""


def _position_net(in_dim: int, hidden: int, out_dim: int):
    import torch
    from torch import nn

    position_dim = FOURIER_FREQS * 2 * 4

    class PositionNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.linears = nn.Sequential(nn.Linear(in_dim + position_dim, hidden), nn.SiLU(),
                                         nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))
            self.null_positive_feature = nn.Parameter(torch.zeros([in_dim]))
            self.null_position_feature = nn.Parameter(torch.zeros([position_dim]))

        def forward(self, boxes, masks, embeddings):
            # sin/cos of each coordinate at 8 frequencies 100^(k/8), per frequency [sin xyxy | cos xyxy]
            bands = 100 ** (torch.arange(FOURIER_FREQS) / FOURIER_FREQS)
            feats = []
            for f in bands:
                feats.append(torch.sin(f * boxes))
                feats.append(torch.cos(f * boxes))
            xyxy = torch.cat(feats, -1)
            masks = masks.unsqueeze(-1)
            null_text = self.null_positive_feature.to(device=boxes.device, dtype=boxes.dtype).view(1, 1, -1)
            null_box = self.null_position_feature.to(device=boxes.device, dtype=boxes.dtype).view(1, 1, -1)
            embeddings = embeddings * masks + (1 - masks) * null_text
            xyxy = xyxy * masks + (1 - masks) * null_box
            return self.linears(torch.cat([embeddings, xyxy], dim=-1))

    return PositionNet()


class GligenNet:
    """The fusers and the position net of one file (the torch modules live in ``holder``)."""

    def __init__(self, holder, key_dim: int, widths: list[int], manager) -> None:
        self.holder = holder
        self.key_dim = key_dim
        self.widths = widths
        self.manager = manager

    @property
    def module(self):
        return self.holder.module

    def objects(self, latent_shape, position_params, device, dtype):
        """Grounding tokens [B, 30, width] for boxes given in latent units (pooled, h, w, y, x)."""
        import torch

        batch, _, h, w = latent_shape
        if len(position_params) > MAX_OBJS:
            raise GligenError(f"GLIGEN takes at most {MAX_OBJS} boxes, got {len(position_params)}")
        masks = torch.zeros([MAX_OBJS])
        boxes, embeddings = [], []
        for pooled, bh, bw, by, bx in position_params:
            masks[len(boxes)] = 1.0
            boxes.append(torch.tensor((bx / w, by / h, (bx + bw) / w, (by + bh) / h)).unsqueeze(0))
            pooled = pooled.reshape(-1, pooled.shape[-1])[:1].float().cpu()
            if pooled.shape[-1] != self.key_dim:
                raise GligenError(f"the box text embedding is {pooled.shape[-1]} wide but this GLIGEN model takes "
                                  f"{self.key_dim} (use the CLIP of the model it was made for)")
            embeddings.append(pooled)
        pad = MAX_OBJS - len(boxes)
        if pad:
            boxes.append(torch.zeros([pad, 4]))
            embeddings.append(torch.zeros([pad, self.key_dim]))
        boxes = torch.cat(boxes).unsqueeze(0).repeat(batch, 1, 1)
        masks = masks.unsqueeze(0).repeat(batch, 1)
        embeddings = torch.cat(embeddings).unsqueeze(0).repeat(batch, 1, 1)
        net = self.module.position_net
        with torch.inference_mode():
            objs = net(boxes.to(device), masks.to(device), embeddings.to(device))
        return objs.to(dtype)


def _fuser_groups(sd: Mapping) -> list[tuple[str, dict]]:
    """[(block name, {fuser param: tensor})] in UNet order (input blocks, middle block, output blocks)."""
    groups: dict[tuple, dict] = {}
    for key in sd:
        if ".fuser." not in key:
            continue
        head, _, rest = key.partition(".fuser.")
        m = re.search(r"(input_blocks|middle_block|output_blocks)\.(\d+)\.", head + ".")
        if not m:
            raise GligenError(f"GLIGEN fuser weight {key!r} is not under a UNet block")
        order = ("input_blocks", "middle_block", "output_blocks").index(m.group(1))
        groups.setdefault((order, int(m.group(2)), m.group(0)), {})[rest] = sd[key]
    return [(name, params) for (_, _, name), params in sorted(groups.items())]


def from_state_dict(sd: Mapping, manager, name: str = "gligen") -> GligenNet:
    import torch
    from diffusers.models.attention import GatedSelfAttentionDense

    from hearth.runtime.patcher import ModuleHolder

    if "position_net.null_positive_feature" not in sd or "position_net.linears.4.weight" not in sd:
        raise GligenError(f"{name} is not a GLIGEN model (no position_net)")
    groups = _fuser_groups(sd)
    if not groups:
        raise GligenError(f"{name} is not a GLIGEN model (no gated self-attention fusers)")
    fusers, widths = [], []
    key_dim = None
    for block, params in groups:
        if "linear.weight" not in params:
            raise GligenError(f"{name}: fuser of {block} has no linear projection")
        query_dim, key_dim = tuple(params["linear.weight"].shape)
        if key_dim == 768:  # SD1.x: 8 heads
            heads, head_dim = 8, query_dim // 8
        elif query_dim % 64 == 0:  # others: 64 channels per head
            heads, head_dim = query_dim // 64, 64
        else:
            heads, head_dim = 1, query_dim
        with torch.device("meta"):
            fuser = GatedSelfAttentionDense(query_dim, key_dim, heads, head_dim)
        expected = fuser.state_dict()
        try:
            check_weights(expected, params, f"{name}: fuser of {block}")
        except ArchitectureError as exc:
            raise GligenError(str(exc)) from None
        fuser.load_state_dict({k: params[k].float() for k in expected}, strict=True, assign=True)
        fusers.append(fuser)
        widths.append(query_dim)
    in_dim = sd["position_net.null_positive_feature"].shape[0]
    hidden = sd["position_net.linears.0.weight"].shape[0]
    out_dim = sd["position_net.linears.4.weight"].shape[0]
    net = _position_net(in_dim, hidden, out_dim)
    state = {}
    for k, ref in net.state_dict().items():
        full = "position_net." + k
        if full not in sd or tuple(sd[full].shape) != tuple(ref.shape):
            raise GligenError(f"{name}: position net weight {full} missing or of the wrong shape")
        state[k] = sd[full].float()
    net.load_state_dict(state, strict=True)
    if out_dim != key_dim:
        raise GligenError(f"{name}: position net output ({out_dim}) does not match the fusers' input ({key_dim})")
    root = torch.nn.Module()
    root.module_list = torch.nn.ModuleList(fusers)
    root.position_net = net
    root.eval().requires_grad_(False)
    root.module_list.to(manager.dtype_for("unet"))  # the position net stays in float32, as ComfyUI runs it
    return GligenNet(ModuleHolder(root, name, "unet"), in_dim, widths, manager)


def load(path, manager) -> GligenNet:
    from pathlib import Path

    from hearth.runtime.files import load_state_dict
    from hearth.runtime.loader import _cached

    path = Path(path)
    bundle = _cached(manager, path, "gligen", lambda: from_state_dict(load_state_dict(path), manager, path.name))
    value = bundle.value
    value._bundle = bundle
    return value


def box_entry(pooled, width: int, height: int, x: int, y: int) -> tuple:
    """One box of GLIGENTextBoxApply, in latent units as ComfyUI stores it."""
    return (pooled, height // 8, width // 8, y // 8, x // 8)


# --- sampling ---------------------------------------------------------------------------------------

class GligenCond:
    """The ``gligen`` model input of one cond; conds carrying one are never batched with others."""

    def __init__(self, value) -> None:
        self.value = value

    def process_cond(self, batch_size: int, area=None, **_kw):
        return GligenCond(self.value)

    def can_concat(self, other) -> bool:
        return other is self

    def concat(self, others):
        return self.value


def prepare_conds(conds: dict) -> None:
    """Give the negative conds the positive's boxes, then expose ``gligen`` to the model (in place)."""
    positive = conds.get("positive") or []
    for name, other in conds.items():
        if name == "positive" or other is None:
            continue
        from_positive = [c["gligen"] for c in positive if "area" not in c and c.get("gligen") is not None]
        if any("area" not in c and c.get("gligen") is not None for c in other):
            continue
        free = [(c, i) for i, c in enumerate(other) if "area" not in c and c.get("gligen") is None]
        if not free:
            continue
        for k, value in enumerate(from_positive):
            entry, index = free[k % len(free)]
            entry = dict(entry)
            entry["gligen"] = value
            other[index] = entry
    for entries in conds.values():
        for i, c in enumerate(entries or []):
            value = c.get("gligen")
            if value is not None:
                c = dict(c)
                c["model_conds"] = {**c["model_conds"], "gligen": GligenCond(value)}
                entries[i] = c


def _transformers(unet) -> list:
    found = []
    for block in unet.down_blocks:
        found.extend(getattr(block, "attentions", None) or [])
    if unet.mid_block is not None:
        found.extend(getattr(unet.mid_block, "attentions", None) or [])
    for block in unet.up_blocks:
        found.extend(getattr(block, "attentions", None) or [])
    return found


@contextlib.contextmanager
def patched(unet, value, latent_shape, device, dtype):
    """Run ``unet`` with the GLIGEN fusers of ``value`` (("position", GligenNet, boxes)) attached."""
    kind, net, params = value
    if kind != "position":
        raise GligenError(f"unsupported GLIGEN conditioning {kind!r}")
    net.manager.load(net.holder)
    fusers = net.module.module_list
    transformers = _transformers(unet)
    if len(fusers) < len(transformers):
        raise GligenError(f"this GLIGEN model has {len(fusers)} fusers but the model has {len(transformers)} "
                          "transformers (it was made for another model)")
    objs = net.objects(latent_shape, params, device, dtype)
    handles, blocks = [], []
    try:
        for index, transformer in enumerate(transformers):
            fuser = fusers[index]
            width = transformer.transformer_blocks[0].norm1.normalized_shape[0]
            if fuser.linear.out_features != width:
                raise GligenError(f"GLIGEN fuser {index} is {fuser.linear.out_features} wide, the model's "
                                  f"transformer {index} is {width} (it was made for another model)")
            fuser = fuser.to(device=device, dtype=dtype)
            tokens = objs.to(device=device, dtype=dtype)

            def hook(module, args, kwargs, tokens=tokens):
                extra = dict(kwargs.get("cross_attention_kwargs") or {})
                extra["gligen"] = {"objs": tokens}
                kwargs["cross_attention_kwargs"] = extra
                return args, kwargs

            for block in transformer.transformer_blocks:
                # a plain attribute, not a registered submodule: the diffusers block reads self.fuser
                block.__dict__["fuser"] = fuser
                blocks.append(block)
                handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()
        for block in blocks:
            block.__dict__.pop("fuser", None)


def unprojected_pooled(clip, text: str):
    """The pooled text embedding of ``text`` without the text projection ([1, width]): what GLIGEN's
    position net takes (for SDXL's pair, CLIP-G's)."""
    import dataclasses

    from hearth.runtime.text import TextEncoder

    tokens = clip.tokenize(text)
    encoder = clip.encoder("clip_g") if clip.combine == "sdxl" else clip.encoders[0]
    plain = TextEncoder(dataclasses.replace(encoder.spec, projected_pooled=False), encoder.patcher, encoder.tokenizer)
    device = clip.manager.load(plain.patcher.holder)
    _, pooled = plain.encode_token_weights(tokens[encoder.spec.name.split("_")[-1]], clip.layer_idx, device,
                                           plain.patcher.holder.dtype)
    return pooled
