"""LoraLoader's work: map a LoRA file's keys onto a MODEL and a CLIP and return patched clones."""
from __future__ import annotations

import logging
from collections.abc import Mapping

from hearth.runtime import lora as L

log = logging.getLogger(__name__)


def apply_lora(model, clip, lora_sd: Mapping, strength_model: float, strength_clip: float):
    """(model clone, clip clone) with the LoRA's patches at the given strengths (originals untouched)."""
    key_maps: dict[str, dict[str, str]] = {}
    if model is not None:
        params = list(model.patcher.holder.module.state_dict().keys())
        key_maps["unet"] = L.unet_lora_names(params, model.ldm_to_diffusers)
    if clip is not None:
        slots = L.clip_slots([e.spec.name for e in clip.encoders])
        for e in clip.encoders:
            params = list(e.patcher.holder.module.state_dict().keys())
            key_maps[e.spec.name] = L.clip_lora_names(e.spec.name, params, slots.get(e.spec.name, []))
    patches, unused = L.build_patches(lora_sd, key_maps)
    for k in unused:
        log.warning("lora key not loaded: %s", k)
    new_model, new_clip = model, clip
    if model is not None:
        new_model = model.clone()
        if strength_model != 0:
            new_model.add_patches(patches.get("unet", {}), strength_model)
    if clip is not None:
        new_clip = clip.clone()
        if strength_clip != 0:
            new_clip.add_patches({k: v for k, v in patches.items() if k != "unet"}, strength_clip)
    return new_model, new_clip
