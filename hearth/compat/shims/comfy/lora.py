"""ComfyUI's ``comfy.lora``: LoRA key maps and loading for a MODEL, over ``hearth.runtime.lora``.

``model_lora_keys_unet(model.model, key_map)`` maps every LoRA naming of the UNet's layers (kohya
``lora_unet_*``, diffusers/PEFT ``unet.*``, LyCORIS, original names …) to ComfyUI's model key
(``diffusion_model.<ldm name>.weight``); ``load_lora(lora_sd, key_map)`` builds Hearth's weight
adapters (LoRA, LoCon, LoHa, LoKr, full differences) under those keys, ready for
``model.add_patches(patches, strength)``. Text-encoder key maps (``model_lora_keys_clip``) are not
provided: load LoRAs onto a CLIP with ``comfy.sd.load_lora_for_models``.
"""
from __future__ import annotations

import logging

from hearth.compat.shims_support import NotProvidedError, module_getattr, not_provided

log = logging.getLogger("comfy.lora")


def _hearth_model(model):
    owner = getattr(model, "_owner", model)  # model.model (the BaseModel view) or the MODEL itself
    if not hasattr(owner, "ldm_to_diffusers") or not hasattr(owner, "patcher"):
        raise NotProvidedError(f"comfy.lora: {type(model).__name__} is not a Hearth MODEL (or its .model)")
    return owner


def model_lora_keys_unet(model, key_map=None):
    from hearth.runtime import lora as L

    owner = _hearth_model(model)
    key_map = {} if key_map is None else key_map
    to_comfy = {}
    for ldm, dif in owner.ldm_to_diffusers.items():
        if ldm.endswith(".weight") and dif.endswith(".weight"):
            to_comfy[dif[:-len(".weight")]] = "diffusion_model." + ldm[:-len(".weight")]
    params = owner.patcher.holder.keys()
    for prefix, module in L.unet_lora_names(params, owner.ldm_to_diffusers).items():
        key_map[prefix] = to_comfy.get(module, module) + ".weight"
    return key_map


def load_lora(lora, to_load, log_missing=True):
    """{model key: adapter} for the LoRA's layers that ``to_load`` ({lora prefix: model key}) names."""
    from hearth.runtime import lora as L

    modules = {}
    for prefix, target in to_load.items():
        if not isinstance(target, str):
            raise NotProvidedError("comfy.lora.load_lora: (key, offset) targets are not provided by Hearth's "
                                   "compatibility layer")
        modules[prefix] = target[:-len(".weight")] if target.endswith(".weight") else target
    patches, unused = L.build_patches(lora, {"model": modules})
    if log_missing:
        for key in unused:
            log.warning("lora key not loaded: %s", key)
    return patches["model"]


model_lora_keys_clip = not_provided("comfy.lora.model_lora_keys_clip",
                                    "load LoRAs onto a CLIP with comfy.sd.load_lora_for_models")

__getattr__ = module_getattr("comfy.lora")
