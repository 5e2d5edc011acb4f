"""Upscale-model nodes: UpscaleModelLoader and ImageUpscaleWithModel (ComfyUI's nodes_upscale_model).

UPSCALE_MODEL values are hearth.runtime.upscale.UpscaleModel (spandrel-loaded when the optional
``hearth[upscale]`` extra is installed; ESRGAN-family files load without it). torch is imported inside
the node functions only.
"""
from __future__ import annotations

from hearth.nodes.context import current

PYTHON_MODULE = "comfy_extras.nodes_upscale_model"


def _manager():
    from hearth.runtime.memory import get_manager

    ctx = current()
    return get_manager(ctx.services, ctx.config)


class UpscaleModelLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"
    DESCRIPTION = "Loads an image upscale model (ESRGAN, Real-ESRGAN, ...) from models/upscale_models."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": ("COMBO", {"multiselect": False,
                                                      "options": current().folders.filenames("upscale_models")})}}

    def load_model(self, model_name):
        from hearth.runtime.upscale import load_upscale_model

        path = current().folders.full_path("upscale_models", model_name)
        if path is None:
            raise FileNotFoundError(f"Model in folder 'upscale_models' with filename '{model_name}' not found.")
        return (load_upscale_model(path),)


class ImageUpscaleWithModel:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    DESCRIPTION = ("Upscales images with an upscale model, in overlapping 512-pixel tiles (smaller ones when "
                   "the device runs out of memory).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"upscale_model": ("UPSCALE_MODEL", {}), "image": ("IMAGE", {})}}

    def upscale(self, upscale_model, image):
        from hearth.engine.progress import report_progress
        from hearth.runtime.upscale import upscale_image

        return (upscale_image(upscale_model, image, _manager(), progress=report_progress),)


NODE_CLASS_MAPPINGS = {
    "UpscaleModelLoader": UpscaleModelLoader,
    "ImageUpscaleWithModel": ImageUpscaleWithModel,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "UpscaleModelLoader": "Load Upscale Model",
    "ImageUpscaleWithModel": "Upscale Image (using Model)",
}
