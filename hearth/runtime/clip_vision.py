"""CLIP vision encoders (CLIP_VISION) and what they produce (CLIP_VISION_OUTPUT).

Files come in two layouts: Hugging Face names (``vision_model.*``, optional ``visual_projection.weight``)
and OpenCLIP names (``visual.conv1``, ``visual.transformer.resblocks.N`` with fused q/k/v,
``visual.proj``), which are renamed to the former. The architecture is read from the shapes: width,
depth, MLP width, patch size, number of positions, projection width; a tower without a class token is
SigLIP. Known sizes: ViT-L/14 (1024 wide, 24 layers, quick-GELU), ViT-H/14 (1280, 32), ViT-bigG/14
(1664, 48), SigLIP so400m (1152, 27; 384 px with patch 14 or 512 px with patch 16). The network is a
``transformers`` vision model built from that configuration; nothing is fetched from a hub.

Encoding follows ComfyUI: the image is resized (bicubic, antialiased) so its short side fits, or
squashed with ``crop="none"``, center-cropped, quantised to 8 bits and normalised with CLIP's (or
SigLIP's) mean and std. Outputs: ``last_hidden_state`` (the encoder output; for SigLIP after its final
norm), ``penultimate_hidden_states``, ``image_embeds`` (the projected class token; SigLIP: the whole
normed sequence), ``all_hidden_states`` for SigLIP and ``mm_projected`` for LLaVA-style files.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

# SigLIP towers whose input size is not a whole number of patches: (patch, positions) -> image size
_SIGLIP_SIZES = {(14, 729): 384, (16, 1024): 512}


class ClipVisionError(ValueError):
    """A file that does not hold a supported vision encoder."""


class Output:
    """CLIP_VISION_OUTPUT: attributes that can also be read and written like dict entries."""

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key, value):
        setattr(self, key, value)

    def __contains__(self, key):
        return hasattr(self, key)


@dataclass
class VisionArch:
    kind: str               # clip | siglip
    hidden: int
    layers: int
    heads: int
    intermediate: int
    patch: int
    image_size: int
    projection_dim: int | None
    activation: str
    mean: tuple
    std: tuple
    mm_projector: int | None = None   # LLaVA projector output width

    @property
    def name(self) -> str:
        if self.kind == "siglip":
            return f"SigLIP-{self.image_size}"
        return {1024: "ViT-L", 1280: "ViT-H", 1664: "ViT-bigG"}.get(self.hidden, f"ViT-{self.hidden}")


def _shape(sd: Mapping, key: str) -> tuple:
    from hearth.runtime.files import tensor_shape

    return tuple(tensor_shape(sd, key))


def openclip_visual_to_hf(sd: Mapping, prefix: str) -> dict:
    """OpenCLIP visual tower weights under ``prefix`` → Hugging Face ``vision_model.*`` names."""
    direct = {"class_embedding": "vision_model.embeddings.class_embedding",
              "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
              "positional_embedding": "vision_model.embeddings.position_embedding.weight",
              "ln_pre.weight": "vision_model.pre_layrnorm.weight", "ln_pre.bias": "vision_model.pre_layrnorm.bias",
              "ln_post.weight": "vision_model.post_layernorm.weight",
              "ln_post.bias": "vision_model.post_layernorm.bias"}
    inner = (("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."),
             ("mlp.c_proj.", "mlp.fc2."), ("attn.out_proj.", "self_attn.out_proj."))
    out = {}
    for full in sd:
        if not full.startswith(prefix):
            continue
        k = full[len(prefix):]
        if k in direct:
            out[direct[k]] = sd[full]
        elif k == "proj":
            out["visual_projection.weight"] = sd[full].transpose(0, 1).contiguous()
        elif k.startswith("transformer.resblocks."):
            idx, _, sub = k[len("transformer.resblocks."):].partition(".")
            base = f"vision_model.encoder.layers.{idx}."
            if sub in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = sub.rsplit("_", 1)[-1]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), sd[full].chunk(3, dim=0)):
                    out[f"{base}self_attn.{name}.{kind}"] = part
            else:
                for a, b in inner:
                    if sub.startswith(a):
                        out[base + b + sub[len(a):]] = sd[full]
                        break
    return out


def to_hf_layout(sd: Mapping, prefix: str = "") -> dict:
    """The vision tower of ``sd`` (under ``prefix``) in Hugging Face names; other entries are dropped."""
    if prefix + "transformer.resblocks.0.attn.in_proj_weight" in sd:
        return openclip_visual_to_hf(sd, prefix)
    out = {}
    for full in sd:
        if full.startswith(prefix):
            k = full[len(prefix):]
            if k.startswith(("vision_model.", "visual_projection.", "multi_modal_projector.")) \
                    and not k.endswith("position_ids"):
                out[k] = sd[full]
    return out


def infer_arch(sd: Mapping) -> VisionArch:
    """Architecture of a Hugging Face-layout vision tower, from its shapes."""
    from hearth.runtime.arch import _indices

    if "vision_model.embeddings.patch_embedding.weight" not in sd:
        raise ClipVisionError("no vision transformer (vision_model.embeddings.patch_embedding) found")
    hidden, channels, patch, patch_w = _shape(sd, "vision_model.embeddings.patch_embedding.weight")
    if channels != 3 or patch != patch_w:
        raise ClipVisionError(f"unsupported patch embedding of shape {(hidden, channels, patch, patch_w)}")
    layers = len(_indices(sd.keys(), r"vision_model\.encoder\.layers\.(\d+)\."))
    if layers == 0:
        raise ClipVisionError("vision transformer has no layers")
    for i in range(layers):
        if f"vision_model.encoder.layers.{i}.layer_norm1.weight" not in sd:
            raise ClipVisionError(f"vision transformer layer {i} is missing")
    intermediate = _shape(sd, "vision_model.encoder.layers.0.mlp.fc1.weight")[0]
    positions = _shape(sd, "vision_model.embeddings.position_embedding.weight")[0]
    heads = 16 if hidden % 16 == 0 else 1   # every released CLIP / SigLIP vision tower uses 16 heads
    if "vision_model.embeddings.class_embedding" in sd:
        side = math.isqrt(positions - 1)
        if side * side != positions - 1:
            raise ClipVisionError(f"{positions} positions is not a square grid plus a class token")
        proj = _shape(sd, "visual_projection.weight")[0] if "visual_projection.weight" in sd else None
        # ViT-L (and smaller) use quick-GELU, the LAION ViT-H and ViT-bigG plain GELU
        activation = "gelu" if (layers >= 31 or hidden >= 1280) else "quick_gelu"
        mm = None
        if "multi_modal_projector.linear_1.weight" in sd:
            mm = _shape(sd, "multi_modal_projector.linear_1.weight")[0]
        return VisionArch("clip", hidden, layers, heads, intermediate, patch, side * patch, proj, activation,
                          CLIP_MEAN, CLIP_STD, mm)
    side = math.isqrt(positions)
    if side * side != positions:
        raise ClipVisionError(f"{positions} positions is not a square grid")
    size = _SIGLIP_SIZES.get((patch, positions), side * patch)
    return VisionArch("siglip", hidden, layers, heads, intermediate, patch, size, None, "gelu_pytorch_tanh",
                      SIGLIP_MEAN, SIGLIP_STD)


def _build_module(arch: VisionArch):
    import torch

    from transformers import CLIPVisionConfig, SiglipVisionConfig

    if arch.kind == "siglip":
        from transformers import SiglipVisionModel

        config = SiglipVisionConfig(hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                                    num_hidden_layers=arch.layers, num_attention_heads=arch.heads, num_channels=3,
                                    image_size=arch.image_size, patch_size=arch.patch, hidden_act=arch.activation,
                                    layer_norm_eps=1e-5, vision_use_head=False)
        config._attn_implementation = "sdpa"
        return SiglipVisionModel(config)
    config = CLIPVisionConfig(hidden_size=arch.hidden, intermediate_size=arch.intermediate,
                              num_hidden_layers=arch.layers, num_attention_heads=arch.heads, num_channels=3,
                              image_size=arch.image_size, patch_size=arch.patch, hidden_act=arch.activation,
                              layer_norm_eps=1e-5, projection_dim=arch.projection_dim or arch.hidden)
    config._attn_implementation = "sdpa"
    if arch.projection_dim is not None:
        from transformers import CLIPVisionModelWithProjection

        tower = CLIPVisionModelWithProjection(config)
    else:
        from transformers import CLIPVisionModel

        tower = CLIPVisionModel(config)
    if arch.mm_projector is not None:
        # LLaVA projector (two linear layers with a GELU), kept beside the tower under its file names
        proj = torch.nn.Module()
        proj.linear_1 = torch.nn.Linear(arch.hidden, arch.mm_projector)
        proj.linear_2 = torch.nn.Linear(arch.mm_projector, arch.mm_projector)
        tower.multi_modal_projector = proj
    return tower


class ClipVision:
    """CLIP_VISION: a vision tower, its preprocessing numbers, and a patcher for placement."""

    def __init__(self, arch: VisionArch, patcher, manager) -> None:
        self.arch = arch
        self.patcher = patcher
        self.manager = manager
        self.image_size = arch.image_size
        self.image_mean = list(arch.mean)
        self.image_std = list(arch.std)

    @property
    def model(self):
        return self.patcher.holder.module

    def encode_image(self, image, crop: bool = True) -> Output:
        import torch

        if image.ndim != 4 or image.shape[-1] < 3:
            raise ValueError(f"CLIP vision needs an IMAGE [B,H,W,3], got shape {tuple(image.shape)}")
        device = self.manager.load(self.patcher.holder)
        self.patcher.activate()
        dtype = self.patcher.holder.dtype
        pixels = clip_preprocess(image.to(device), self.image_size, self.image_mean, self.image_std, crop).float()
        with torch.inference_mode():
            result = self.model(pixel_values=pixels.to(dtype), output_hidden_states=True)
            hidden = result.hidden_states
            out = Output()
            cpu = torch.device("cpu")
            out["last_hidden_state"] = result.last_hidden_state.float().to(cpu)
            if self.arch.kind == "siglip":
                layers = torch.stack(hidden[1:], dim=1).float()
                out["image_embeds"] = out["last_hidden_state"]
                out["penultimate_hidden_states"] = layers[:, -2].to(cpu)
                out["all_hidden_states"] = layers.to(cpu)
            else:
                embeds = getattr(result, "image_embeds", None)
                if embeds is None:
                    embeds = result.pooler_output
                out["image_embeds"] = embeds.float().to(cpu)
                out["penultimate_hidden_states"] = hidden[-2].float().to(cpu)
            mm = None
            if hasattr(self.model, "multi_modal_projector"):
                p = self.model.multi_modal_projector
                mm = p.linear_2(torch.nn.functional.gelu(p.linear_1(hidden[-2][:, 1:]))).float()
            out["mm_projected"] = mm
        return out

    def get_sd(self):
        return self.model.state_dict()


def clip_preprocess(image, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD, crop: bool = True):
    """IMAGE [B,H,W,C] in 0..1 → normalised pixels [B,3,size,size] (ComfyUI's resize, crop and rounding)."""
    import torch

    image = image[..., :3].movedim(-1, 1)
    height, width = image.shape[2], image.shape[3]
    if (height, width) != (size, size):
        if crop:
            factor = size / min(height, width)
            target = (round(factor * height), round(factor * width))
        else:
            target = (size, size)
        image = torch.nn.functional.interpolate(image, size=target, mode="bicubic", antialias=True)
        top = (image.shape[2] - size) // 2
        left = (image.shape[3] - size) // 2
        image = image[:, :, top:top + size, left:left + size]
    image = torch.clip(image * 255.0, 0, 255).round() / 255.0
    m = torch.tensor(mean, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return (image - m) / s


def build(hf_sd: Mapping, manager, name: str) -> ClipVision:
    """A CLIP_VISION value from Hugging Face-layout weights."""
    import torch

    from hearth.runtime.patcher import ModuleHolder, Patcher

    arch = infer_arch(hf_sd)
    with torch.device("meta"):
        module = _build_module(arch)
    expected = module.state_dict()
    state = {}
    missing = []
    for key, ref in expected.items():
        source = key if key in hf_sd else "vision_model." + key  # some towers have no vision_model level
        if source not in hf_sd:
            missing.append(source)
            continue
        t = hf_sd[source]
        if tuple(t.shape) != tuple(ref.shape):
            raise ClipVisionError(f"{name}: {key} has shape {tuple(t.shape)}, expected {tuple(ref.shape)}")
        state[key] = t
    if missing:
        raise ClipVisionError(f"{name}: {len(missing)} vision weights missing, e.g. {missing[:3]}")
    # ComfyUI stores vision towers in the text encoders' precision (float16 unless told otherwise), except
    # the outer norms and the projection, and computes in float32; rounding the same way keeps the
    # embeddings identical.
    rounding = manager.storage_dtype("text") or manager.dtype_for("text")
    converted = {}
    for k, t in state.items():
        if t.is_floating_point():
            exact = any(part in k for part in ("pre_layrnorm.", "post_layernorm.", "visual_projection."))
            if rounding != torch.float32 and not exact:
                t = t.to(rounding)
            t = t.to(torch.float32)
        converted[k] = t
    module.load_state_dict(converted, strict=True, assign=True)
    for mod_name, mod in module.named_modules():
        for buf_name, buf in list(mod.named_buffers(recurse=False)):
            if buf.is_meta:
                if buf_name == "position_ids":
                    mod.register_buffer(buf_name, torch.arange(buf.shape[-1]).expand(buf.shape).clone(),
                                        persistent=False)
                else:
                    raise ClipVisionError(f"{name}: buffer {mod_name}.{buf_name} not initialised")
    module = module.eval().requires_grad_(False).to(torch.device("cpu"))
    log.info("%s: %s vision encoder (%d layers, %d px)", name, arch.name, arch.layers, arch.image_size)
    return ClipVision(arch, Patcher(ModuleHolder(module, name, "text")), manager)


def load(path, manager) -> ClipVision:
    """CLIPVisionLoader: a vision tower file in Hugging Face or OpenCLIP layout (shared between loads)."""
    from pathlib import Path

    from hearth.runtime.files import load_state_dict
    from hearth.runtime.loader import _cached

    path = Path(path)

    def make():
        sd = load_state_dict(path)
        prefix = "visual." if "visual.transformer.resblocks.0.attn.in_proj_weight" in sd else ""
        hf = to_hf_layout(sd, prefix)
        if not hf:
            raise ClipVisionError(f"{path.name}: clip vision file is invalid and does not contain a valid vision "
                                  "model")
        try:
            return build(hf, manager, path.name)
        except ClipVisionError as exc:
            msg = str(exc)
            raise ClipVisionError(msg if msg.startswith(path.name) else f"{path.name}: {msg}") from None

    bundle = _cached(manager, path, "clip_vision", make)
    value = bundle.value
    value._bundle = bundle
    return value
