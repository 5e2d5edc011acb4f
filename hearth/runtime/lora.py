"""LoRA-style weight adapters and the key names they come under.

Supported files: kohya/A1111 (``lora_unet_*``, ``lora_te_*``, ``lora_te1_*``/``lora_te2_*``, with the UNet
in either original or diffusers module names), diffusers/PEFT (``unet.*``/``text_encoder.*`` with
``lora_A``/``lora_B`` or ``lora.up``/``lora.down``), LyCORIS (``lycoris_*``), LoCon convolution LoRAs
(with optional ``lora_mid``), LoHa (``hada_*``), LoKr (``lokr_*``) and full differences (``diff``,
``diff_b``, ``w_norm``/``b_norm``). ``alpha`` scales by ``alpha / rank``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

log = logging.getLogger(__name__)


class LoRA:
    def __init__(self, up, down, mid=None, alpha=None, dora_scale=None):
        self.up, self.down, self.mid, self.alpha = up, down, mid, alpha
        self.dora_scale = dora_scale

    def apply(self, w: torch.Tensor, strength: float) -> torch.Tensor:
        up = self.up.to(w.device, torch.float32)
        down = self.down.to(w.device, torch.float32)
        scale = self.alpha / down.shape[0] if self.alpha is not None else 1.0
        if self.mid is not None:  # LoCon with a Tucker-style middle conv
            mid = self.mid.to(w.device, torch.float32)
            shape = [down.shape[1], down.shape[0], mid.shape[2], mid.shape[3]]
            down = torch.mm(down.transpose(0, 1).flatten(start_dim=1),
                            mid.transpose(0, 1).flatten(start_dim=1)).reshape(shape).transpose(0, 1)
        diff = torch.mm(up.flatten(start_dim=1), down.flatten(start_dim=1)).reshape(w.shape)
        if self.dora_scale is not None:
            return _dora(self.dora_scale.to(w.device, torch.float32), w, scale * diff, strength)
        return w + (strength * scale) * diff


def _dora(magnitude: torch.Tensor, w: torch.Tensor, diff: torch.Tensor, strength: float) -> torch.Tensor:
    """DoRA: the LoRA'd weight rescaled to the learned magnitude per output (or input) channel, blended in
    by ``strength``. As ComfyUI computes it: with the magnitude per output channel the norm is taken of the
    weight before this LoRA, per input channel of the weight after it."""
    calc = w + diff
    ones = [1] * (w.dim() - 1)
    if magnitude.shape[0] == calc.shape[0]:
        norm = w.reshape(w.shape[0], -1).norm(dim=1, keepdim=True).reshape(w.shape[0], *ones)
    else:
        norm = calc.transpose(0, 1).reshape(calc.shape[1], -1).norm(dim=1, keepdim=True)
        norm = norm.reshape(calc.shape[1], *ones).transpose(0, 1)
    calc = calc * (magnitude / (norm + torch.finfo(w.dtype).eps))
    return calc if strength == 1.0 else w + strength * (calc - w)


class LoHa:
    def __init__(self, w1a, w1b, w2a, w2b, t1=None, t2=None, alpha=None):
        self.w1a, self.w1b, self.w2a, self.w2b, self.t1, self.t2, self.alpha = w1a, w1b, w2a, w2b, t1, t2, alpha

    def apply(self, w, strength):
        f = lambda t: t.to(w.device, torch.float32)  # noqa: E731
        scale = self.alpha / self.w1b.shape[0] if self.alpha is not None else 1.0
        if self.t1 is not None:
            m1 = torch.einsum("i j k l, j r, i p -> p r k l", f(self.t1), f(self.w1b), f(self.w1a))
            m2 = torch.einsum("i j k l, j r, i p -> p r k l", f(self.t2), f(self.w2b), f(self.w2a))
        else:
            m1 = torch.mm(f(self.w1a), f(self.w1b))
            m2 = torch.mm(f(self.w2a), f(self.w2b))
        return w + (strength * scale) * (m1 * m2).reshape(w.shape)


class LoKr:
    def __init__(self, w1, w2, w1a=None, w1b=None, w2a=None, w2b=None, t2=None, alpha=None):
        self.w1, self.w2, self.w1a, self.w1b, self.w2a, self.w2b, self.t2, self.alpha = w1, w2, w1a, w1b, w2a, w2b, t2, alpha

    def apply(self, w, strength):
        f = lambda t: t.to(w.device, torch.float32)  # noqa: E731
        dim = None
        if self.w1 is not None:
            w1 = f(self.w1)
        else:
            dim = self.w1b.shape[0]
            w1 = torch.mm(f(self.w1a), f(self.w1b))
        if self.w2 is not None:
            w2 = f(self.w2)
        elif self.t2 is not None:
            dim = self.w2b.shape[0]
            w2 = torch.einsum("i j k l, j r, i p -> p r k l", f(self.t2), f(self.w2b), f(self.w2a))
        else:
            dim = self.w2b.shape[0]
            w2 = torch.mm(f(self.w2a), f(self.w2b))
        if w2.ndim == 4:
            w1 = w1.unsqueeze(2).unsqueeze(2)
        scale = self.alpha / dim if (self.alpha is not None and dim is not None) else 1.0
        return w + (strength * scale) * torch.kron(w1, w2).reshape(w.shape)


class Diff:
    def __init__(self, diff):
        self.diff = diff

    def apply(self, w, strength):
        d = self.diff.to(w.device, torch.float32)
        if d.shape != w.shape:
            log.warning("LoRA difference of shape %s does not fit weight %s; skipped", tuple(d.shape), tuple(w.shape))
            return w
        return w + strength * d


_LORA_FORMATS = (  # (up, down, mid)
    ("{}.lora_up.weight", "{}.lora_down.weight", "{}.lora_mid.weight"),
    ("{}_lora.up.weight", "{}_lora.down.weight", None),
    ("{}.lora_B.weight", "{}.lora_A.weight", None),
    ("{}.lora.up.weight", "{}.lora.down.weight", None),
    ("{}.lora_B", "{}.lora_A", None),
    ("{}.lora_linear_layer.up.weight", "{}.lora_linear_layer.down.weight", None),
    ("{}.lora_B.default.weight", "{}.lora_A.default.weight", None),
)


def _adapter_for(prefix: str, sd: Mapping, used: set[str]):
    """The adapters stored under one module prefix: {"weight": adapter, "bias": adapter}."""
    out: dict[str, Any] = {}
    alpha = None
    if f"{prefix}.alpha" in sd:
        alpha = float(sd[f"{prefix}.alpha"].item())
        used.add(f"{prefix}.alpha")
    dora_scale = sd.get(f"{prefix}.dora_scale")
    if dora_scale is not None:
        used.add(f"{prefix}.dora_scale")
    for up_fmt, down_fmt, mid_fmt in _LORA_FORMATS:
        up_k, down_k = up_fmt.format(prefix), down_fmt.format(prefix)
        if up_k in sd and down_k in sd:
            mid = None
            if mid_fmt and mid_fmt.format(prefix) in sd:
                mid = sd[mid_fmt.format(prefix)]
                used.add(mid_fmt.format(prefix))
            out["weight"] = LoRA(sd[up_k], sd[down_k], mid, alpha, dora_scale)
            used.update((up_k, down_k))
            break
    if dora_scale is not None and "weight" not in out:
        log.warning("DoRA magnitude of %s is only supported with plain LoRA matrices; applied without it", prefix)
    if "weight" not in out and f"{prefix}.hada_w1_a" in sd:
        names = ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"]
        t = [sd.get(f"{prefix}.hada_t1"), sd.get(f"{prefix}.hada_t2")]
        out["weight"] = LoHa(*(sd[f"{prefix}.{n}"] for n in names), *t, alpha=alpha)
        used.update(f"{prefix}.{n}" for n in names + ["hada_t1", "hada_t2"])
    if "weight" not in out and any(f"{prefix}.lokr_{n}" in sd for n in ("w1", "w1_a", "w2", "w2_a")):
        g = lambda n: sd.get(f"{prefix}.lokr_{n}")  # noqa: E731
        out["weight"] = LoKr(g("w1"), g("w2"), g("w1_a"), g("w1_b"), g("w2_a"), g("w2_b"), g("t2"), alpha)
        used.update(f"{prefix}.lokr_{n}" for n in ("w1", "w2", "w1_a", "w1_b", "w2_a", "w2_b", "t2"))
    for name, part in (("diff", "weight"), ("w_norm", "weight"), ("diff_b", "bias"), ("b_norm", "bias")):
        k = f"{prefix}.{name}"
        if k in sd and part not in out:
            out[part] = Diff(sd[k])
            used.add(k)
    return out


_CLIP_MODULES = {"mlp.fc1": "mlp_fc1", "mlp.fc2": "mlp_fc2", "self_attn.k_proj": "self_attn_k_proj",
                 "self_attn.q_proj": "self_attn_q_proj", "self_attn.v_proj": "self_attn_v_proj",
                 "self_attn.out_proj": "self_attn_out_proj"}


def unet_lora_names(diffusers_params, ldm_to_diffusers: Mapping[str, str]) -> dict[str, str]:
    """LoRA module prefix → diffusers module prefix, for every naming convention of the UNet."""
    key_map: dict[str, str] = {}
    for ldm, dif in ldm_to_diffusers.items():
        if not ldm.endswith(".weight"):
            continue
        mod, dmod = ldm[:-len(".weight")], dif[:-len(".weight")]
        key_map["lora_unet_" + mod.replace(".", "_")] = dmod
        key_map["diffusion_model." + mod] = dmod
        key_map[mod] = dmod
    for dif in diffusers_params:
        if not dif.endswith(".weight"):
            continue
        dmod = dif[:-len(".weight")]
        flat = dmod.replace(".", "_")
        key_map.setdefault("lora_unet_" + flat, dmod)
        key_map["lycoris_" + flat] = dmod
        for p in ("", "unet."):
            key_map.setdefault(p + dmod, dmod)
            processor = p + dmod.replace(".to_", ".processor.to_")
            if processor.endswith(".to_out.0"):
                processor = processor[:-2]
            key_map.setdefault(processor, dmod)
    return key_map


def clip_lora_names(encoder: str, hf_params, slots: list[str]) -> dict[str, str]:
    """LoRA module prefix → HF module prefix for one text encoder; ``slots`` are its LoRA name prefixes
    (e.g. ``["lora_te1", "text_encoder"]``)."""
    key_map: dict[str, str] = {}
    for param in hf_params:
        if not param.endswith(".weight"):
            continue
        mod = param[:-len(".weight")]
        key_map[f"text_encoders.{encoder}.transformer.{mod}"] = mod
        key_map[f"text_encoders.{encoder}.{mod}"] = mod
        if mod.startswith("text_model.encoder.layers."):
            rest = mod[len("text_model.encoder.layers."):]
            idx, _, sub = rest.partition(".")
            if sub in _CLIP_MODULES:
                for slot in slots:
                    if slot.startswith("lora_"):
                        key_map[f"{slot}_text_model_encoder_layers_{idx}_{_CLIP_MODULES[sub]}"] = mod
                    else:
                        key_map[f"{slot}.text_model.encoder.layers.{idx}.{sub}"] = mod
    return key_map


def clip_slots(encoders: list[str]) -> dict[str, list[str]]:
    """Which LoRA prefixes address which encoder, given the encoders a CLIP holds (ComfyUI's rules)."""
    names = set(encoders)
    slots: dict[str, list[str]] = {}
    if "clip_l" in names:
        slots["clip_l"] = ["lora_te", "lora_te1", "text_encoder"]
    if "clip_h" in names:
        slots["clip_h"] = ["lora_te", "lora_te1", "text_encoder"]
    if "clip_g" in names:
        slots["clip_g"] = ["lora_te2", "text_encoder_2"] if "clip_l" in names else ["lora_te", "text_encoder"]
    return slots


def build_patches(lora_sd: Mapping, key_maps: dict[str, dict[str, str]]):
    """{target: {param name: adapter}} from a LoRA state dict and per-target prefix maps; also the unused keys."""
    used: set[str] = set()
    patches: dict[str, dict[str, Any]] = {t: {} for t in key_maps}
    for target, key_map in key_maps.items():
        for prefix, module in key_map.items():
            found = _adapter_for(prefix, lora_sd, used)
            for part, adapter in found.items():
                patches[target][f"{module}.{part}"] = adapter
    unused = [k for k in lora_sd if k not in used]
    return patches, unused
