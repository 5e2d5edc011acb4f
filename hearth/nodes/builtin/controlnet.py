"""ControlNet nodes: loaders, the apply nodes, the union type switch, and ConditioningSetAreaStrength.

A CONTROL_NET value is a ``hearth.runtime.controlnet.ControlBase``. Apply nodes never change the value
they receive: they copy it, attach the hint image, strength and range, and chain it after a control
the conditioning already carries (the residuals of a chain are summed while sampling).

Importing this module imports neither torch nor diffusers.
"""
from __future__ import annotations

from hearth.nodes.builtin.sd import _files, _manager, _path, conditioning_set_values

UNION_CONTROLNET_TYPES = {"openpose": 0, "depth": 1, "hed/pidi/scribble/ted": 2,
                          "canny/lineart/anime_lineart/mlsd": 3, "normal": 4, "segment": 5, "tile": 6, "repaint": 7}

_STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})
_PERCENT0 = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001})
_PERCENT1 = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})


def _load(control_net_name: str, model=None):
    from hearth.runtime import controlnet

    return controlnet.load_controlnet(_path("controlnet", control_net_name), _manager(), model)


class ControlNetLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    DESCRIPTION = "Loads a ControlNet or T2I-Adapter from models/controlnet."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"control_net_name": (_files("controlnet"),)}}

    def load_controlnet(self, control_net_name):
        return (_load(control_net_name),)


class DiffControlNetLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    DESCRIPTION = "Loads a ControlNet stored as differences from a base model, adding the given model's weights."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "control_net_name": (_files("controlnet"),)}}

    def load_controlnet(self, model, control_net_name):
        return (_load(control_net_name, model),)


class ControlNetApply:
    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",), "strength": _STRENGTH}}

    def apply_controlnet(self, conditioning, control_net, image, strength):
        if strength == 0:
            return (conditioning,)
        hint = image.movedim(-1, 1)
        out = []
        for tensor, options in conditioning:
            options = dict(options)
            c_net = control_net.copy().set_cond_hint(hint, strength)
            if "control" in options:
                c_net.set_previous_controlnet(options["control"])
            options["control"] = c_net
            options["control_apply_to_uncond"] = True  # the negative side gets it too when it has none
            out.append([tensor, options])
        return (out,)


class ControlNetApplyAdvanced:
    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",), "image": ("IMAGE",), "strength": _STRENGTH,
                             "start_percent": _PERCENT0, "end_percent": _PERCENT1},
                "optional": {"vae": ("VAE",)}}

    def apply_controlnet(self, positive, negative, control_net, image, strength, start_percent, end_percent,
                         vae=None, extra_concat=()):
        if strength == 0:
            return (positive, negative)
        hint = image.movedim(-1, 1)
        made: dict[int, object] = {}  # one copy per previous control, shared by both sides
        out = []
        for conditioning in (positive, negative):
            c = []
            for tensor, options in conditioning:
                options = dict(options)
                prev = options.get("control")
                key = id(prev)
                if key not in made:
                    c_net = control_net.copy().set_cond_hint(hint, strength, (start_percent, end_percent), vae=vae,
                                                             extra_concat=list(extra_concat))
                    c_net.set_previous_controlnet(prev)
                    made[key] = c_net
                options["control"] = made[key]
                options["control_apply_to_uncond"] = False
                c.append([tensor, options])
            out.append(c)
        return (out[0], out[1])


class SetUnionControlNetType:
    CATEGORY = "conditioning/controlnet"
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "set_controlnet_type"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"control_net": ("CONTROL_NET",),
                             "type": (["auto"] + list(UNION_CONTROLNET_TYPES),)}}

    def set_controlnet_type(self, control_net, type):
        control_net = control_net.copy()
        number = UNION_CONTROLNET_TYPES.get(type, -1)
        control_net.set_extra_arg("control_type", [number] if number >= 0 else [])
        return (control_net,)


class ControlNetInpaintingAliMamaApply(ControlNetApplyAdvanced):
    CATEGORY = "conditioning/controlnet"
    FUNCTION = "apply_inpaint_controlnet"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "control_net": ("CONTROL_NET",), "vae": ("VAE",), "image": ("IMAGE",),
                             "mask": ("MASK",), "strength": _STRENGTH, "start_percent": _PERCENT0,
                             "end_percent": _PERCENT1}}

    def apply_inpaint_controlnet(self, positive, negative, control_net, vae, image, mask, strength, start_percent,
                                 end_percent):
        extra_concat = []
        if control_net.concat_mask:  # inpainting ControlNets take the masked image plus the mask
            from hearth.sampling.guidance import common_upscale

            mask = 1.0 - mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
            keep = common_upscale(mask, image.shape[2], image.shape[1], "bilinear", "center").round()
            image = image * keep.movedim(1, -1).repeat(1, 1, 1, image.shape[3])
            extra_concat = [mask]
        return self.apply_controlnet(positive, negative, control_net, image, strength, start_percent, end_percent,
                                     vae=vae, extra_concat=extra_concat)


class ConditioningSetAreaStrength:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "strength": _STRENGTH}}

    def append(self, conditioning, strength):
        return (conditioning_set_values(conditioning, {"strength": strength}),)


NODE_CLASS_MAPPINGS = {
    "ControlNetLoader": ControlNetLoader,
    "DiffControlNetLoader": DiffControlNetLoader,
    "ControlNetApply": ControlNetApply,
    "ControlNetApplyAdvanced": ControlNetApplyAdvanced,
    "SetUnionControlNetType": SetUnionControlNetType,
    "ControlNetInpaintingAliMamaApply": ControlNetInpaintingAliMamaApply,
    "ConditioningSetAreaStrength": ConditioningSetAreaStrength,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ControlNetLoader": "Load ControlNet Model",
    "DiffControlNetLoader": "Load ControlNet Model (diff)",
    "ControlNetApply": "Apply ControlNet (OLD)",
    "ControlNetApplyAdvanced": "Apply ControlNet",
}

PYTHON_MODULE = "nodes"
NODE_PYTHON_MODULES = {"SetUnionControlNetType": "comfy_extras.nodes_controlnet",
                       "ControlNetInpaintingAliMamaApply": "comfy_extras.nodes_controlnet"}
