"""Image-prompt nodes of ComfyUI's core module: CLIP vision, style models, unCLIP and GLIGEN.

CLIP_VISION is ``hearth.runtime.clip_vision.ClipVision``; CLIP_VISION_OUTPUT its ``Output`` (attributes
``image_embeds``, ``last_hidden_state``, ``penultimate_hidden_states``, ``mm_projected``, readable as
``output["name"]`` too); STYLE_MODEL is ``hearth.runtime.style_model.StyleModel``; GLIGEN is
``hearth.runtime.gligen.GligenNet``. Conditioning entries gain ``unclip_conditioning`` (a list of
{clip_vision_output, strength, noise_augmentation}) and ``gligen`` (("position", GLIGEN, boxes)), read
by the model when sampling.

Importing this module imports neither torch nor diffusers.
"""
from __future__ import annotations

from hearth.nodes.builtin.sd import MAX_RESOLUTION, _embedding_dirs, _files, _manager, _path, conditioning_set_values

PYTHON_MODULE = "nodes"


def _given(value, what: str):
    if value is None:
        raise RuntimeError(f"ERROR: {what} input is invalid: None\n\nIf the {what} is from a checkpoint loader "
                           f"node your checkpoint does not contain a valid {what} model.")
    return value


class CLIPVisionLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (_files("clip_vision"),)}}

    def load_clip(self, clip_name):
        from hearth.runtime import clip_vision

        return (clip_vision.load(_path("clip_vision", clip_name), _manager()),)


class CLIPVisionEncode:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP_VISION_OUTPUT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_vision": ("CLIP_VISION",), "image": ("IMAGE",), "crop": (["center", "none"],)}}

    def encode(self, clip_vision, image, crop):
        _given(clip_vision, "clip vision")
        return (clip_vision.encode_image(image, crop=crop == "center"),)


class StyleModelLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("STYLE_MODEL",)
    FUNCTION = "load_style_model"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"style_model_name": (_files("style_models"),)}}

    def load_style_model(self, style_model_name):
        from hearth.runtime import style_model

        return (style_model.load(_path("style_models", style_model_name)),)


class StyleModelApply:
    CATEGORY = "conditioning/style_model"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_stylemodel"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "style_model": ("STYLE_MODEL",),
                             "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
                             "strength_type": (["multiply", "attn_bias"],)}}

    def apply_stylemodel(self, conditioning, style_model, clip_vision_output, strength, strength_type):
        from hearth.runtime import style_model as sm

        return (sm.apply(conditioning, style_model, clip_vision_output, strength, strength_type),)


class unCLIPCheckpointLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "CLIP_VISION")
    FUNCTION = "load_checkpoint"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (_files("checkpoints"),)}}

    def load_checkpoint(self, ckpt_name, output_vae=True, output_clip=True):
        from hearth.runtime import unclip

        return unclip.load_checkpoint(_path("checkpoints", ckpt_name), _manager(), _embedding_dirs())


class unCLIPConditioning:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_adm"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "clip_vision_output": ("CLIP_VISION_OUTPUT",),
                             "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01}),
                             "noise_augmentation": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def apply_adm(self, conditioning, clip_vision_output, strength, noise_augmentation):
        if strength == 0:
            return (conditioning,)
        entry = {"clip_vision_output": clip_vision_output, "strength": strength,
                 "noise_augmentation": noise_augmentation}
        return (conditioning_set_values(conditioning, {"unclip_conditioning": [entry]}, append=True),)


class GLIGENLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("GLIGEN",)
    FUNCTION = "load_gligen"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"gligen_name": (_files("gligen"),)}}

    def load_gligen(self, gligen_name):
        from hearth.runtime import gligen

        return (gligen.load(_path("gligen", gligen_name), _manager()),)


class GLIGENTextBoxApply:
    CATEGORY = "conditioning/gligen"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_to": ("CONDITIONING",), "clip": ("CLIP",),
                             "gligen_textbox_model": ("GLIGEN",),
                             "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                             "width": ("INT", {"default": 64, "min": 8, "max": MAX_RESOLUTION, "step": 8}),
                             "height": ("INT", {"default": 64, "min": 8, "max": MAX_RESOLUTION, "step": 8}),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8})}}

    def append(self, conditioning_to, clip, gligen_textbox_model, text, width, height, x, y):
        from hearth.runtime import gligen

        _given(clip, "clip")
        pooled = gligen.unprojected_pooled(clip, text)
        out = []
        for tensor, options in conditioning_to:
            options = options.copy()
            previous = list(options["gligen"][2]) if "gligen" in options else []
            options["gligen"] = ("position", gligen_textbox_model,
                                 previous + [gligen.box_entry(pooled, width, height, x, y)])
            out.append([tensor, options])
        return (out,)


NODE_CLASS_MAPPINGS = {
    "CLIPVisionLoader": CLIPVisionLoader,
    "CLIPVisionEncode": CLIPVisionEncode,
    "StyleModelLoader": StyleModelLoader,
    "StyleModelApply": StyleModelApply,
    "unCLIPCheckpointLoader": unCLIPCheckpointLoader,
    "unCLIPConditioning": unCLIPConditioning,
    "GLIGENLoader": GLIGENLoader,
    "GLIGENTextBoxApply": GLIGENTextBoxApply,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CLIPVisionLoader": "Load CLIP Vision",
    "CLIPVisionEncode": "CLIP Vision Encode",
    "StyleModelLoader": "Load Style Model",
    "StyleModelApply": "Apply Style Model",
    "unCLIPCheckpointLoader": "unCLIPCheckpointLoader",
    "unCLIPConditioning": "unCLIPConditioning",
    "GLIGENLoader": "GLIGENLoader",
    "GLIGENTextBoxApply": "GLIGENTextBoxApply",
}
