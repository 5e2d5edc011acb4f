"""Writing MODEL / CLIP / VAE values back to files in the original single-file layouts.

Hearth runs diffusers/Hugging Face modules, so every name is translated back with the loader's own maps
read in reverse: the UNet through the ``ldm_to_diffusers`` map the MODEL carries (or, for a network
loaded from a diffusers folder, the map ``arch.unet_key_map`` gives for its configuration), the VAE
through ``arch.vae_key_map``, OpenCLIP text towers through ``arch``'s OpenCLIP name tables. Weights are
written with the value's patches applied (merges and LoRAs baked in), in the precision the network
keeps them in, without touching the shared modules. Layouts follow what ComfyUI writes:

* checkpoint: ``model.diffusion_model.*``, ``first_stage_model.*`` and, per family,
  ``cond_stage_model.transformer.*`` (SD1), ``cond_stage_model.model.*`` (SD2, OpenCLIP),
  ``conditioner.embedders.0.transformer.*`` + ``conditioner.embedders.1.model.*`` (SDXL),
  ``conditioner.embedders.0.model.*`` (SDXL refiner); ``v_pred`` / ``ztsnr`` marker keys.
* text encoder files (CLIPSave): one per encoder, Hugging Face names (``text_model.*``).
* VAE files: the original autoencoder names without a prefix.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from hearth.runtime import arch as archmod
from hearth.runtime import loader

UNET_PREFIX = "model.diffusion_model."
LOGIT_SCALE = 4.6055  # what ComfyUI writes for text encoders whose files carried none


class SaveError(ValueError):
    """A value that cannot be written in the requested layout."""


# --- weights as the patcher makes them ------------------------------------------------------------

def _weights(patcher) -> dict[str, torch.Tensor]:
    """Every parameter of a patcher's module with its patches applied, on the CPU, in storage precision."""
    holder = patcher.holder
    out = {}
    with holder.lock, torch.no_grad():
        for key in holder.keys():
            target = holder.storage_dtype or holder.param(key).dtype
            if patcher.patches.get(key):
                t = patcher.patched_weight(key, torch.device("cpu")).to(target)
            else:
                t = holder.original(key).detach().to("cpu", target)
            out[key] = t
    return out


# --- UNet -----------------------------------------------------------------------------------------

def _arch_from_diffusers_config(cfg) -> archmod.UNetArch:
    """The original-layout architecture of a diffusers UNet (enough for ``unet_key_map``)."""
    levels = list(cfg.block_out_channels)
    n = len(levels)
    layers = cfg.layers_per_block
    num_res = list(layers) if isinstance(layers, (list, tuple)) else [layers] * n
    tlpb = cfg.transformer_layers_per_block
    depth = list(tlpb) if isinstance(tlpb, (list, tuple)) else [tlpb] * n
    down = [depth[i] if "CrossAttn" in t else 0 for i, t in enumerate(cfg.down_block_types)]
    reverse = getattr(cfg, "reverse_transformer_layers_per_block", None)
    up = []
    for u, t in enumerate(cfg.up_block_types):
        level = n - 1 - u
        d = depth[level] if "CrossAttn" in t else 0
        blocks = num_res[level] + 1
        if reverse is not None and "CrossAttn" in t:
            up.append(list(reverse[u])[:blocks])
        else:
            up.append([d] * blocks)
    middle = depth[-1] if cfg.mid_block_type else None
    adm = cfg.projection_class_embeddings_input_dim if cfg.class_embed_type == "projection" else None
    return archmod.UNetArch(in_channels=cfg.in_channels, out_channels=cfg.out_channels, model_channels=levels[0],
                            level_channels=levels, num_res_blocks=num_res, down_depth=down, up_depth=up,
                            middle_depth=middle, context_dim=cfg.cross_attention_dim,
                            use_linear=cfg.use_linear_projection, adm_in_channels=adm,
                            time_embed_dim=cfg.time_embedding_dim or levels[0] * 4)


def unet_diffusers_to_ldm(model) -> dict[str, str]:
    """diffusers parameter name → original UNet name (without ``model.diffusion_model.``)."""
    holder = model.patcher.holder
    params = [p for p in holder.keys() if not p.startswith(holder.padding)] if holder.padding else holder.keys()
    if model.ldm_to_diffusers:
        inverse = {v: k for k, v in model.ldm_to_diffusers.items()}
    else:  # loaded from a diffusers folder: read the loader's map for this configuration backwards
        key_map = archmod.unet_key_map(_arch_from_diffusers_config(model.unet.config))
        prefixes = {v: k for k, v in key_map.items()}
        inner = {v: k for k, v in archmod._RES_MAP.items()}
        inverse = {}
        for p in params:
            name = archmod._translate(p, prefixes, inner)
            if name is not None and archmod.convert_unet_key(name, key_map) == p:
                inverse[p] = name
    missing = [p for p in params if p not in inverse]
    if missing:
        raise SaveError(f"no original name for {len(missing)} UNet weights, e.g. {missing[:3]}")
    return inverse


def unet_ldm_map(model) -> dict[str, str]:
    """Original UNet name → diffusers parameter name, for checkpoint- and diffusers-loaded networks."""
    if model.ldm_to_diffusers:
        return model.ldm_to_diffusers
    return {v: k for k, v in unet_diffusers_to_ldm(model).items()}


def unet_state_dict(model) -> dict[str, torch.Tensor]:
    """The patched UNet weights under their original names (no prefix)."""
    names = unet_diffusers_to_ldm(model)
    return {names[k]: v for k, v in _weights(model.patcher).items() if k in names}


# --- VAE ------------------------------------------------------------------------------------------

def _vae_inverse(module) -> tuple[dict[str, str], dict[str, str]]:
    cfg = module.config
    levels = list(cfg.block_out_channels)
    arch = archmod.VAEArch(cfg.in_channels, cfg.out_channels, levels[0], levels, cfg.layers_per_block,
                           cfg.latent_channels, cfg.latent_channels, bool(cfg.use_quant_conv),
                           bool(cfg.use_post_quant_conv))
    prefixes = {v: k for k, v in archmod.vae_key_map(arch).items()}
    inner = {v: k for k, v in archmod._VAE_INNER.items()}
    return prefixes, inner


def vae_state_dict(vae) -> dict[str, torch.Tensor]:
    """The VAE's weights under the original autoencoder names (no prefix), attention as 1x1 convolutions."""
    prefixes, inner = _vae_inverse(vae.module)
    out = {}
    for key, t in _weights(vae.patcher).items():
        name = archmod._translate(key, prefixes, inner)
        if name is None:
            raise SaveError(f"VAE weight {key} has no original name")
        if ".attn_1." in name and t.ndim == 2:
            t = t[:, :, None, None]
        out[name] = t
    return out


# --- text encoders --------------------------------------------------------------------------------

def text_state_dict(encoder) -> dict[str, torch.Tensor]:
    """One text encoder's patched weights under Hugging Face names."""
    return _weights(encoder.patcher)


def hf_to_openclip(hf: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face CLIP text names → OpenCLIP names (q/k/v fused, projection transposed): the inverse
    of ``arch.openclip_to_hf``."""
    top = {v: k for k, v in archmod.OPENCLIP_TOP_NAMES.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    base = "text_model.encoder.layers."
    for k, v in hf.items():
        if k in top:
            out[top[k]] = v
        elif k == "text_projection.weight":
            out["text_projection"] = v.transpose(0, 1).contiguous()
        elif k.startswith(base):
            idx, _, sub = k[len(base):].partition(".")
            stem = f"transformer.resblocks.{idx}."
            head, _, kind = sub.rpartition(".")
            if head in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((stem, kind), {})[head[len("self_attn."):][0]] = v
                continue
            for a, b in archmod.OPENCLIP_LAYER_NAMES:
                if sub.startswith(b + "."):
                    out[stem + a + sub[len(b):]] = v
                    break
            else:
                raise SaveError(f"text encoder weight {k} has no OpenCLIP name")
        else:
            raise SaveError(f"text encoder weight {k} has no OpenCLIP name")
    for (stem, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise SaveError(f"{stem}: incomplete q/k/v projections")
        name = "attn.in_proj_weight" if kind == "weight" else "attn.in_proj_bias"
        out[stem + name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _position_ids(n: int) -> torch.Tensor:
    return torch.arange(n).unsqueeze(0)


# family → encoder name → (checkpoint prefix, layout)
_CHECKPOINT_TEXT = {
    "sd15": {"clip_l": (loader.TEXT_PREFIXES["sd1_l"], "hf")},
    "sd2": {"clip_h": (loader.TEXT_PREFIXES["sd2_h"], "openclip")},
    "sdxl": {"clip_l": (loader.TEXT_PREFIXES["xl_l"], "hf"), "clip_g": (loader.TEXT_PREFIXES["xl_g"], "openclip")},
    "sdxl_refiner": {"clip_g": (loader.TEXT_PREFIXES["ref_g"], "openclip")},
}


def clip_checkpoint_state_dict(clip, family_name: str) -> dict[str, torch.Tensor]:
    """A CLIP's encoders in the text-encoder part of a ``family_name`` checkpoint."""
    layout = _CHECKPOINT_TEXT.get(family_name)
    if layout is None:
        raise SaveError(f"saving text encoders of a {family_name} checkpoint is not supported")
    out: dict[str, torch.Tensor] = {}
    for enc in clip.encoders:
        name = enc.spec.name
        if name not in layout:
            raise SaveError(f"a {family_name} checkpoint has no place for a {name} text encoder "
                            f"(expected {', '.join(layout)})")
        prefix, style = layout[name]
        hf = text_state_dict(enc)
        if style == "hf":
            hf.pop("text_projection.weight", None)  # not part of CLIP-L in these checkpoints
            positions = hf["text_model.embeddings.position_embedding.weight"].shape[0]
            hf["text_model.embeddings.position_ids"] = _position_ids(positions)
            part = hf
        else:
            part = hf_to_openclip(hf)
            part["logit_scale"] = torch.tensor(LOGIT_SCALE)
        out.update({prefix + k: v for k, v in part.items()})
    return out


def clip_file_state_dicts(clip) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """CLIPSave's files: (encoder name, Hugging Face layout state dict) per encoder, in ComfyUI's order."""
    order = ["clip_l", "clip_g", "clip_h"]
    encoders = sorted(clip.encoders, key=lambda e: order.index(e.spec.name) if e.spec.name in order else len(order))
    out = []
    for enc in encoders:
        sd = text_state_dict(enc)
        sd["logit_scale"] = torch.tensor(LOGIT_SCALE)
        out.append((enc.spec.name, sd))
    return out


# --- checkpoints ----------------------------------------------------------------------------------

def model_marker_keys(model) -> dict[str, torch.Tensor]:
    """Keys that tell loaders the prediction type (v-prediction, zero terminal SNR)."""
    ms = model.model_sampling
    extra = {}
    if getattr(ms, "prediction", "eps") == "v":
        extra["v_pred"] = torch.tensor([])
        zsnr = getattr(ms, "zsnr", None)
        if zsnr is None:  # a zero-terminal-SNR schedule ends far above the usual ~14.6
            zsnr = float(ms.sigma_max) > 1000.0
        if zsnr:
            extra["ztsnr"] = torch.tensor([])
    return extra


def modelspec_metadata(model, title: str) -> dict[str, str]:
    """ComfyUI's ``modelspec.*`` entries: the architecture for SDXL models, the prediction type always."""
    meta = {}
    family = model.family.name
    arch = None
    if family == "sdxl":
        arch = "stable-diffusion-xl-v1-edit" if model.in_channels == 8 else "stable-diffusion-xl-v1-base"
    elif family == "sdxl_refiner":
        arch = "stable-diffusion-xl-v1-refiner"
    if arch is not None:
        meta["modelspec.architecture"] = arch
        meta["modelspec.sai_model_spec"] = "1.0.0"
        meta["modelspec.implementation"] = "sgm"
        meta["modelspec.title"] = title
    prediction = getattr(model.model_sampling, "prediction", "eps")
    meta["modelspec.predict_key"] = "v" if prediction == "v" else "epsilon"
    return meta


def checkpoint_state_dict(model, clip=None, vae=None) -> dict[str, torch.Tensor]:
    """A whole single-file checkpoint (UNet, and the CLIP and VAE when given) in the original layout."""
    sd = {UNET_PREFIX + k: v for k, v in unet_state_dict(model).items()}
    sd.update(model_marker_keys(model))
    if clip is not None:
        sd.update(clip_checkpoint_state_dict(clip, model.family.name))
    if vae is not None:
        sd.update({loader.VAE_PREFIX + k: v for k, v in vae_state_dict(vae).items()})
    return sd


def write_safetensors(sd: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write ``sd`` to ``path`` through a hidden temporary file in the same folder (no half-written files)."""
    from safetensors.torch import save_file

    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.partial")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
