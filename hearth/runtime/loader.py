"""Loading checkpoints, diffusion models, VAEs, text encoders and diffusers folders into runtime values.

Family detection looks at which text encoders a checkpoint carries (CLIP-L in Hugging Face layout →
SD1.x, OpenCLIP → SD2.x, both → SDXL, OpenCLIP-G alone next to a UNet with a conditioning vector → SDXL
refiner) and, for a bare UNet, at its structure (a conditioning vector whose width minus 5×256 equals
the context width → refiner, other vector → SDXL, linear transformer projections → SD2.x, else SD1.x).
v-prediction: a ``v_pred`` marker key, or for SD2.x ComfyUI's test on the last transformer's norm bias.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.runtime import arch as archmod
from hearth.runtime import families as fam
from hearth.runtime.files import LazyStateDict, deferred, load_state_dict, read_tensors, tensor_shape

log = logging.getLogger(__name__)

UNET_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
VAE_PREFIX = "first_stage_model."
TEXT_PREFIXES = {
    "sd1_l": "cond_stage_model.transformer.",
    "sd2_h": "cond_stage_model.model.",
    "xl_l": "conditioner.embedders.0.transformer.",
    "xl_g": "conditioner.embedders.1.model.",
    "ref_g": "conditioner.embedders.0.model.",
}


class DetectionError(ValueError):
    """The weights do not look like any supported model."""


@dataclass
class Detected:
    family: fam.Family
    unet_prefix: str
    unet: archmod.UNetArch
    prediction: str


def _has_prefix(sd: Mapping, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in sd)


def _unet_prefix(sd: Mapping) -> str | None:
    for p in UNET_PREFIXES:
        if p + "input_blocks.0.0.weight" in sd:
            return p
    return None


def family_from_unet(unet: archmod.UNetArch) -> fam.Family:
    if unet.adm_in_channels in (1536, 2048) and unet.context_dim == 1024 and unet.use_linear:
        return fam.SD2_UNCLIP
    if unet.adm_in_channels is not None:
        if unet.context_dim is not None and unet.adm_in_channels - 5 * 256 == unet.context_dim:
            return fam.SDXL_REFINER
        return fam.SDXL
    return fam.SD2 if unet.use_linear else fam.SD15


def detect(sd: Mapping) -> Detected:
    prefix = _unet_prefix(sd)
    if prefix is None:
        raise DetectionError("no diffusion model (UNet) weights found")
    unet = archmod.infer_unet(sd, prefix)
    if _has_prefix(sd, TEXT_PREFIXES["xl_l"]) and _has_prefix(sd, TEXT_PREFIXES["xl_g"]):
        family = fam.SDXL
    elif _has_prefix(sd, TEXT_PREFIXES["ref_g"]):
        family = fam.SDXL_REFINER if unet.adm_in_channels is not None else fam.SD2
    elif _has_prefix(sd, TEXT_PREFIXES["sd2_h"]):
        family = fam.SD2
    elif _has_prefix(sd, TEXT_PREFIXES["sd1_l"]):
        family = fam.SD15
    else:
        family = family_from_unet(unet)
    if family is fam.SD2 and unet.adm_in_channels is not None:
        family = fam.SD2_UNCLIP
    unet.num_head_channels = family.num_head_channels
    unet.num_heads = family.num_heads
    return Detected(family, prefix, unet, _prediction(sd, prefix, unet, family))


def _prediction(sd: Mapping, prefix: str, unet: archmod.UNetArch, family: fam.Family) -> str:
    if "v_pred" in sd:
        return "v"
    if family in (fam.SD2, fam.SD2_UNCLIP) and unet.in_channels == 4:
        key = f"{prefix}output_blocks.11.1.transformer_blocks.0.norm1.bias"
        if key not in sd:  # pruned layouts: the last output block with a transformer
            candidates = sorted((k for k in sd if k.startswith(prefix + "output_blocks.")
                                 and k.endswith(".1.transformer_blocks.0.norm1.bias")),
                                key=lambda k: int(k[len(prefix) + len("output_blocks."):].split(".")[0]))
            key = candidates[-1] if candidates else None
        if key is not None:
            import torch

            if torch.std(sd[key].float(), unbiased=False) > 0.09:
                return "v"
    return "eps"


# --- building networks ---------------------------------------------------------------------------

def _import_diffusers():
    import diffusers  # noqa: F401  (first import is slow; done once)
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return UNet2DConditionModel, AutoencoderKL


def _empty_module(factory):
    """Build a module without initialising weights (they are loaded right after)."""
    import torch

    with torch.device("meta"):
        return factory()


def _load_into(module, state: dict, dtype, what: str, via=None):
    """Load ``state`` (tensors or unread ``TensorRef``s) into a meta-device module, converting to ``dtype``
    (rounded through ``via`` first when given)."""
    import torch

    expected = dict(module.state_dict())
    archmod.check_weights(expected, state, what)
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        log.warning("%s: %d unexpected weights ignored, e.g. %s", what, len(unexpected), unexpected[:3])
    module.load_state_dict(read_tensors({k: state[k] for k in expected}, dtype, via), strict=True, assign=True)
    for name, buf in list(module.named_buffers()):
        if buf.is_meta:
            raise archmod.ArchitectureError(f"{what}: buffer {name} not initialised")
    module.eval().requires_grad_(False)
    return module.to(torch.device("cpu"))


def build_unet(sd: Mapping, det: Detected, manager, name: str):
    from hearth.runtime.model import DiffusionModel
    from hearth.runtime.patcher import ModuleHolder, Patcher
    from hearth.sampling.model_sampling import DiscreteSampling

    UNet2DConditionModel, _ = _import_diffusers()
    unet = det.unet
    config = unet.diffusers_config()
    config["upcast_attention"] = det.family.upcast_attention
    module = _empty_module(lambda: UNet2DConditionModel(**config))
    key_map = archmod.unet_key_map(unet)
    prefix = det.unet_prefix
    state, ldm_to_diffusers = {}, {}
    for full in sd:
        if not full.startswith(prefix):
            continue
        k = full[len(prefix):]
        if k.startswith(("first_stage_model.", "cond_stage_model.", "conditioner.", "model_ema.")) or k == "v_pred":
            continue
        new = archmod.convert_unet_key(k, key_map)
        if new is None:
            continue
        ldm_to_diffusers[k] = new
        state[new] = deferred(sd, full)
    dtype = manager.dtype_for("unet")
    pads = tuple(p + "." for p in unet.padding())
    if pads:
        import torch

        for key, ref in module.state_dict().items():
            if key.startswith(pads):
                state[key] = torch.zeros(ref.shape, dtype=dtype)
    module = _load_into(module, state, dtype, f"{name} (diffusion model)")
    holder = ModuleHolder(module, name, "unet")
    holder.padding = pads
    ms = DiscreteSampling(det.prediction, zsnr="ztsnr" in sd)
    return DiffusionModel(det.family, Patcher(holder), ms, manager, ldm_to_diffusers, unet.in_channels)


def build_vae(sd: Mapping, prefix: str, manager, name: str):
    from hearth.runtime.patcher import ModuleHolder, Patcher
    from hearth.runtime.vae import VAE

    _, AutoencoderKL = _import_diffusers()
    arch, state = archmod.convert_vae_state_dict(sd, prefix)
    module = _empty_module(lambda: AutoencoderKL(**arch.diffusers_config()))
    module = _load_into(module, state, manager.dtype_for("vae"), f"{name} (VAE)")
    return VAE(Patcher(ModuleHolder(module, name, "vae")), manager, arch.embed_dim,
               2 ** (len(arch.level_channels) - 1))


def _text_encoder(hf_sd: dict, spec: fam.EncoderSpec, manager, name: str, embedding_dirs):
    from hearth.runtime.clip_model import ClipTextModel
    from hearth.runtime.patcher import ModuleHolder, Patcher
    from hearth.runtime.text import TextEncoder, make_embedding_loader
    from hearth.runtime.tokenizer import Tokenizer

    arch = archmod.infer_clip(hf_sd, spec.activation)
    module = _empty_module(lambda: ClipTextModel(arch))
    rounding = manager.storage_dtype("text")
    module = _load_into(module, hf_sd, manager.dtype_for("text"), f"{name} ({spec.name})", via=rounding)
    loader = make_embedding_loader(embedding_dirs or [], arch.hidden, spec.name) if embedding_dirs else None
    tok = Tokenizer(pad_token=spec.pad_token, max_length=min(77, arch.positions), embedding_size=arch.hidden,
                    load_embedding=loader)
    holder = ModuleHolder(module, f"{name}:{spec.name}", "text")
    holder.storage_dtype = rounding
    return TextEncoder(spec, Patcher(holder), tok)


def build_clip_from_checkpoint(sd: Mapping, family: fam.Family, manager, name: str, embedding_dirs):
    from hearth.runtime.text import CLIP

    encoders = []
    if family is fam.SD15:
        encoders.append(_text_encoder(archmod.hf_clip_from(sd, TEXT_PREFIXES["sd1_l"]), fam.CLIP_L_SD1,
                                      manager, name, embedding_dirs))
    elif family in (fam.SD2, fam.SD2_UNCLIP):
        prefix = TEXT_PREFIXES["sd2_h"] if _has_prefix(sd, TEXT_PREFIXES["sd2_h"]) else TEXT_PREFIXES["ref_g"]
        encoders.append(_text_encoder(archmod.openclip_to_hf(sd, prefix), fam.CLIP_H_SD2, manager, name,
                                      embedding_dirs))
    elif family is fam.SDXL:
        encoders.append(_text_encoder(archmod.hf_clip_from(sd, TEXT_PREFIXES["xl_l"]), fam.CLIP_L_SDXL,
                                      manager, name, embedding_dirs))
        encoders.append(_text_encoder(archmod.openclip_to_hf(sd, TEXT_PREFIXES["xl_g"]), fam.CLIP_G_SDXL,
                                      manager, name, embedding_dirs))
    elif family is fam.SDXL_REFINER:
        encoders.append(_text_encoder(archmod.openclip_to_hf(sd, TEXT_PREFIXES["ref_g"]), fam.CLIP_G_SDXL,
                                      manager, name, embedding_dirs))
    return CLIP(encoders, manager, "sdxl" if family is fam.SDXL else "single")


def _file_key(path: Path, kind: str) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, kind)


def _cached(manager, path: Path, kind: str, build):
    key = _file_key(path, kind)
    hit = manager.cached(key)
    if hit is not None:
        return hit
    value = build()
    holder = _Bundle(value)
    manager.remember(key, holder)
    return holder


class _Bundle:
    """Weak-referenceable box for what one file produced (so the manager can share it)."""

    def __init__(self, value):
        self.value = value


def load_checkpoint(path: str | os.PathLike, manager, embedding_dirs=None, output_clip=True, output_vae=True):
    """(MODEL, CLIP or None, VAE or None) from a single-file checkpoint. Repeated loads share networks."""
    path = Path(path)
    bundle = _cached(manager, path, "checkpoint", lambda: _load_checkpoint(path, manager, None))
    model, clip, vae = bundle.value
    model = model.clone()
    model._bundle = bundle  # keep the shared networks alive while this value is
    if clip is not None:
        clip = clip.clone()
        clip.set_embedding_dirs(embedding_dirs)
        clip._bundle = bundle
    if vae is not None:
        vae._bundle = bundle
    return model, (clip if output_clip else None), (vae if output_vae else None)


def _load_checkpoint(path: Path, manager, embedding_dirs):
    sd = load_state_dict(path)
    name = path.name
    try:
        det = detect(sd)
    except (DetectionError, archmod.ArchitectureError) as exc:
        raise DetectionError(f"{name}: {exc}") from None
    log.info("%s: detected %s (%s prediction)", name, det.family.name, det.prediction)
    model = build_unet(sd, det, manager, name)
    clip = None
    if any(_has_prefix(sd, p) for p in TEXT_PREFIXES.values()):
        clip = build_clip_from_checkpoint(sd, det.family, manager, name, embedding_dirs)
    else:
        log.warning("%s has no text encoder", name)
    vae = None
    if _has_prefix(sd, VAE_PREFIX):
        vae = build_vae(sd, VAE_PREFIX, manager, name)
    else:
        log.warning("%s has no VAE", name)
    return model, clip, vae


def load_unet(path: str | os.PathLike, manager):
    path = Path(path)

    def build():
        sd = load_state_dict(path)
        try:
            det = detect(sd)
        except (DetectionError, archmod.ArchitectureError) as exc:
            raise DetectionError(f"{path.name}: {exc}") from None
        return build_unet(sd, det, manager, path.name)

    bundle = _cached(manager, path, "unet", build)
    model = bundle.value.clone()
    model._bundle = bundle
    return model


def load_vae(path: str | os.PathLike, manager):
    path = Path(path)

    def build():
        sd = load_state_dict(path)
        prefix = VAE_PREFIX if _has_prefix(sd, VAE_PREFIX) else ""
        if "decoder.up_blocks.0.resnets.0.norm1.weight" in sd:
            return _vae_from_diffusers_sd(sd, manager, path.name)
        try:
            return build_vae(sd, prefix, manager, path.name)
        except archmod.ArchitectureError as exc:
            raise DetectionError(f"{path.name}: {exc}") from None

    bundle = _cached(manager, path, "vae", build)
    vae = bundle.value
    vae._bundle = bundle
    return vae


def _vae_from_diffusers_sd(sd: Mapping, manager, name: str, config: dict | None = None):
    from hearth.runtime.patcher import ModuleHolder, Patcher
    from hearth.runtime.vae import VAE

    _, AutoencoderKL = _import_diffusers()
    keys = set(sd.keys())
    if config is None:
        levels = sorted({int(k.split(".")[2]) for k in keys if k.startswith("encoder.down_blocks.")})
        chans = [tensor_shape(sd, f"encoder.down_blocks.{i}.resnets.0.conv2.weight")[0] for i in levels]
        layers = len({k.split(".")[4] for k in keys if k.startswith("encoder.down_blocks.0.resnets.")})
        config = {"in_channels": tensor_shape(sd, "encoder.conv_in.weight")[1],
                  "out_channels": tensor_shape(sd, "decoder.conv_out.weight")[0],
                  "down_block_types": ("DownEncoderBlock2D",) * len(chans),
                  "up_block_types": ("UpDecoderBlock2D",) * len(chans), "block_out_channels": tuple(chans),
                  "layers_per_block": layers, "latent_channels": tensor_shape(sd, "decoder.conv_in.weight")[1],
                  "use_quant_conv": "quant_conv.weight" in keys, "use_post_quant_conv": "post_quant_conv.weight" in keys}
    module = _empty_module(lambda: AutoencoderKL(**config))
    state = {}
    for k in sd:
        t = deferred(sd, k)
        if ".attentions." in k and t.ndim == 4:
            t = sd[k][:, :, 0, 0]
        k = k.replace(".query.", ".to_q.").replace(".key.", ".to_k.").replace(".value.", ".to_v.").replace(
            ".proj_attn.", ".to_out.0.")
        state[k] = t
    module = _load_into(module, state, manager.dtype_for("vae"), f"{name} (VAE)")
    return VAE(Patcher(ModuleHolder(module, name, "vae")), manager, config["latent_channels"],
               2 ** (len(config["block_out_channels"]) - 1))


# --- standalone text encoders --------------------------------------------------------------------

def _text_sd(path: Path) -> tuple[dict, str]:
    """A standalone text encoder file in HF layout (returned as such) with its guessed kind (l/h/g)."""
    sd = load_state_dict(path)
    for p in ("", "transformer.", "model.", "cond_stage_model.transformer.", "text_encoder.", "clip_l.transformer.",
              "clip_g.transformer.", "clip_h.transformer."):
        if p + "text_model.embeddings.token_embedding.weight" in sd or p + "embeddings.token_embedding.weight" in sd:
            hf = archmod.hf_clip_from(sd, p)
            hf = {k: v for k, v in hf.items() if k.startswith(("text_model.", "text_projection"))}
            break
        if p + "token_embedding.weight" in sd and p + "transformer.resblocks.0.ln_1.weight" in sd:
            hf = archmod.openclip_to_hf(sd, p)
            break
    else:
        raise DetectionError(f"{path.name} is not a CLIP text encoder")
    layers = len(archmod._indices(hf.keys(), r"text_model\.encoder\.layers\.(\d+)\."))
    hidden = hf["text_model.embeddings.token_embedding.weight"].shape[1]
    if layers >= 31 or hidden >= 1280:
        kind = "g"
    elif layers >= 23 or hidden == 1024:
        kind = "h"
    else:
        kind = "l"
    return hf, kind


def load_clip(paths: list, clip_type: str, manager, embedding_dirs=None):
    """CLIPLoader / DualCLIPLoader for the Stable Diffusion families."""
    clip = _load_clip(paths, clip_type, manager)
    clip.set_embedding_dirs(embedding_dirs)
    return clip


def _load_clip(paths: list, clip_type: str, manager):
    from hearth.runtime.text import CLIP

    loaded = [(Path(p),) + _text_sd(Path(p)) for p in paths]
    if clip_type == "sdxl" or (len(loaded) == 2 and clip_type in ("stable_diffusion",)):
        if len(loaded) != 2:
            raise DetectionError("SDXL needs two text encoders (CLIP-L and CLIP-G)")
        # the wider one is CLIP-G
        loaded.sort(key=lambda item: item[1]["text_model.embeddings.token_embedding.weight"].shape[1])
        (pl, sl, _), (pg, sg, _) = loaded
        encoders = [_text_encoder(sl, fam.CLIP_L_SDXL, manager, pl.name, None),
                    _text_encoder(sg, fam.CLIP_G_SDXL, manager, pg.name, None)]
        return CLIP(encoders, manager, "sdxl")
    if clip_type not in ("stable_diffusion", "stable_cascade"):
        raise DetectionError(f"text encoder type {clip_type!r} is not supported yet")
    if len(loaded) != 1:
        raise DetectionError("expected one text encoder")
    path, sd, kind = loaded[0]
    spec = {"l": fam.CLIP_L_SD1, "h": fam.CLIP_H_SD2, "g": fam.CLIP_G_SDXL}[kind]
    if clip_type == "stable_cascade":
        spec = fam.CLIP_G_SDXL
    return CLIP([_text_encoder(sd, spec, manager, path.name, None)], manager, "single")


# --- diffusers folders ---------------------------------------------------------------------------

def load_diffusers(folder: str | os.PathLike, manager, embedding_dirs=None):
    """(MODEL, CLIP, VAE) from a diffusers pipeline folder (its own config files; nothing downloaded)."""
    import json

    from hearth.runtime.model import DiffusionModel
    from hearth.runtime.patcher import ModuleHolder, Patcher
    from hearth.runtime.text import CLIP
    from hearth.sampling.model_sampling import DiscreteSampling

    folder = Path(folder)
    UNet2DConditionModel, _ = _import_diffusers()

    def weights(sub: str) -> dict:
        d = folder / sub
        for name in ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                     "pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors"):
            if (d / name).is_file():
                return dict(load_state_dict(d / name))
        raise DetectionError(f"{folder.name}/{sub} has no weights file")

    def config(sub: str) -> dict:
        return json.loads((folder / sub / "config.json").read_text(encoding="utf-8"))

    ucfg = {k: v for k, v in config("unet").items() if not k.startswith("_")}
    usd = weights("unet")
    if ucfg.get("addition_embed_type") == "text_time":
        ucfg["addition_embed_type"] = None
        ucfg["class_embed_type"] = "projection"
        ucfg["projection_class_embeddings_input_dim"] = usd["add_embedding.linear_1.weight"].shape[1]
        usd = {("class_embedding." + k[len("add_embedding."):] if k.startswith("add_embedding.") else k): v
               for k, v in usd.items()}
        ucfg.pop("addition_time_embed_dim", None)
    two = (folder / "text_encoder_2").is_dir()
    one = (folder / "text_encoder").is_dir()
    if ucfg.get("class_embed_type") == "projection":
        family = fam.SDXL if one and two else fam.SDXL_REFINER
    else:
        family = fam.SD2 if ucfg.get("use_linear_projection") else fam.SD15
    module = _empty_module(lambda: UNet2DConditionModel(**ucfg))
    module = _load_into(module, usd, manager.dtype_for("unet"), f"{folder.name} (unet)")
    prediction = "eps"
    sched = folder / "scheduler" / "scheduler_config.json"
    if sched.is_file() and json.loads(sched.read_text()).get("prediction_type") == "v_prediction":
        prediction = "v"
    model = DiffusionModel(family, Patcher(ModuleHolder(module, folder.name, "unet")), DiscreteSampling(prediction),
                           manager, {}, ucfg.get("in_channels", 4))
    encoders = []
    specs = {"sd15": [("text_encoder", fam.CLIP_L_SD1)], "sd2": [("text_encoder", fam.CLIP_H_SD2)],
             "sdxl": [("text_encoder", fam.CLIP_L_SDXL), ("text_encoder_2", fam.CLIP_G_SDXL)],
             "sdxl_refiner": [("text_encoder_2" if two else "text_encoder", fam.CLIP_G_SDXL)]}[family.name]
    for sub, spec in specs:
        sd = {k: v for k, v in weights(sub).items() if not k.endswith("position_ids")}
        encoders.append(_text_encoder(sd, spec, manager, f"{folder.name}/{sub}", None))
    clip = CLIP(encoders, manager, "sdxl" if family is fam.SDXL else "single")
    clip.set_embedding_dirs(embedding_dirs)
    vcfg = {k: v for k, v in config("vae").items() if not k.startswith("_")}
    vae = _vae_from_diffusers_sd(weights("vae"), manager, f"{folder.name}/vae", vcfg)
    return model, clip, vae


def load_lora_file(path: str | os.PathLike) -> Mapping[str, Any]:
    sd = load_state_dict(path)
    return dict(sd) if isinstance(sd, LazyStateDict) else sd
