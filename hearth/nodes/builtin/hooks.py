"""Hook nodes (ComfyUI's comfy_extras.nodes_hooks): LoRAs and model differences that act only on the
conditioning they are attached to, with strength schedules over the sampling run.

HOOKS values are ``hearth.sampling.hooks.HookGroup``; HOOK_KEYFRAMES are ``HookKeyframeGroup``;
TIMESTEPS_RANGE is a ``(start_percent, end_percent)`` tuple. Importing this module does not import torch.
"""
from __future__ import annotations

import logging

from hearth.nodes.builtin.sd import _embedding_dirs, _files, _manager, _path, _reuse_last

log = logging.getLogger(__name__)

PYTHON_MODULE = "comfy_extras.nodes_hooks"

_STRENGTH = {"default": 1.0, "min": -20.0, "max": 20.0, "step": 0.01}
_PERCENT_START = {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}
_PERCENT_END = {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}
_PROPS_OPTIONAL = {"mask": ("MASK",), "hooks": ("HOOKS",), "timesteps": ("TIMESTEPS_RANGE",)}


def _H():
    from hearth.sampling import hooks

    return hooks


def _props_required():
    return {"strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            "set_cond_area": (["default", "mask bounds"],)}


# --- attaching hooks and properties to conditioning ------------------------------------------------------

class PairConditioningSetProperties:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "set_properties"
    DESCRIPTION = "Sets strength, mask, hooks and a timestep range on a positive/negative pair."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive_NEW": ("CONDITIONING",), "negative_NEW": ("CONDITIONING",),
                             **_props_required()},
                "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, positive_NEW, negative_NEW, strength, set_cond_area, mask=None, hooks=None,
                       timesteps=None):
        pos, neg = _H().set_conds_props([positive_NEW, negative_NEW], strength, set_cond_area, mask=mask,
                                        hooks=hooks, timesteps_range=timesteps)
        return (pos, neg)


class PairConditioningSetPropertiesAndCombine:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "set_properties"
    DESCRIPTION = "Sets properties on a new positive/negative pair and appends it to an existing pair."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "positive_NEW": ("CONDITIONING",), "negative_NEW": ("CONDITIONING",),
                             **_props_required()},
                "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, positive, negative, positive_NEW, negative_NEW, strength, set_cond_area, mask=None,
                       hooks=None, timesteps=None):
        pos, neg = _H().set_conds_props_and_combine([positive, negative], [positive_NEW, negative_NEW], strength,
                                                    set_cond_area, mask=mask, hooks=hooks, timesteps_range=timesteps)
        return (pos, neg)


class ConditioningSetProperties:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/cond single"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_properties"
    DESCRIPTION = "Sets strength, mask, hooks and a timestep range on a conditioning."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cond_NEW": ("CONDITIONING",), **_props_required()},
                "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, cond_NEW, strength, set_cond_area, mask=None, hooks=None, timesteps=None):
        (out,) = _H().set_conds_props([cond_NEW], strength, set_cond_area, mask=mask, hooks=hooks,
                                      timesteps_range=timesteps)
        return (out,)


class ConditioningSetPropertiesAndCombine:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/cond single"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_properties"
    DESCRIPTION = "Sets properties on a new conditioning and appends it to an existing one."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cond": ("CONDITIONING",), "cond_NEW": ("CONDITIONING",), **_props_required()},
                "optional": dict(_PROPS_OPTIONAL)}

    def set_properties(self, cond, cond_NEW, strength, set_cond_area, mask=None, hooks=None, timesteps=None):
        (out,) = _H().set_conds_props_and_combine([cond], [cond_NEW], strength, set_cond_area, mask=mask,
                                                  hooks=hooks, timesteps_range=timesteps)
        return (out,)


class PairConditioningCombine:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "combine"
    DESCRIPTION = "Concatenates two positive/negative pairs."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive_A": ("CONDITIONING",), "negative_A": ("CONDITIONING",),
                             "positive_B": ("CONDITIONING",), "negative_B": ("CONDITIONING",)}}

    def combine(self, positive_A, negative_A, positive_B, negative_B):
        pos, neg = _H().set_conds_props_and_combine([positive_A, negative_A], [positive_B, negative_B])
        return (pos, neg)


class PairConditioningSetDefaultAndCombine:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/cond pair"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "set_default_and_combine"
    DESCRIPTION = "Appends a pair used only where the other conds leave the latent uncovered."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "positive_DEFAULT": ("CONDITIONING",), "negative_DEFAULT": ("CONDITIONING",)},
                "optional": {"hooks": ("HOOKS",)}}

    def set_default_and_combine(self, positive, negative, positive_DEFAULT, negative_DEFAULT, hooks=None):
        pos, neg = _H().set_default_conds_and_combine([positive, negative], [positive_DEFAULT, negative_DEFAULT],
                                                      hooks=hooks)
        return (pos, neg)


class ConditioningSetDefaultAndCombine:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/cond single"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_default_and_combine"
    DESCRIPTION = "Appends a conditioning used only where the other conds leave the latent uncovered."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"cond": ("CONDITIONING",), "cond_DEFAULT": ("CONDITIONING",)},
                "optional": {"hooks": ("HOOKS",)}}

    def set_default_and_combine(self, cond, cond_DEFAULT, hooks=None):
        (out,) = _H().set_default_conds_and_combine([cond], [cond_DEFAULT], hooks=hooks)
        return (out,)


class SetClipHooks:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/clip"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "apply_hooks"
    DESCRIPTION = ("Encodes text with the hooks' weights applied to the text encoder; optionally attaches the "
                   "hooks to the conds it encodes and follows their strength schedules.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "apply_to_conds": ("BOOLEAN", {"default": True}),
                             "schedule_clip": ("BOOLEAN", {"default": False})},
                "optional": {"hooks": ("HOOKS",)}}

    def apply_hooks(self, clip, schedule_clip, apply_to_conds, hooks=None):
        from hearth.runtime.hooks import clip_hook_schedule

        if hooks is None:
            return (clip,)
        if clip is None:
            raise RuntimeError("ERROR: clip input is invalid: None")
        clip = clip.clone()
        if apply_to_conds:
            clip.apply_hooks_to_conds = hooks
        forced = hooks.clone()
        if not schedule_clip:
            forced.set_keyframes_on_hooks(None)
        clip.hook_schedule = clip_hook_schedule(clip, forced, bool(schedule_clip))
        return (clip,)


class ConditioningTimestepsRange:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks"
    RETURN_TYPES = ("TIMESTEPS_RANGE", "TIMESTEPS_RANGE", "TIMESTEPS_RANGE")
    RETURN_NAMES = ("TIMESTEPS_RANGE", "BEFORE_RANGE", "AFTER_RANGE")
    FUNCTION = "create_range"
    DESCRIPTION = "A range of the sampling run in percent, with the ranges before and after it."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"start_percent": ("FLOAT", dict(_PERCENT_START)),
                             "end_percent": ("FLOAT", dict(_PERCENT_END))}}

    def create_range(self, start_percent, end_percent):
        return ((start_percent, end_percent), (0.0, start_percent), (end_percent, 1.0))


# --- creating hooks ------------------------------------------------------------------------------------

class CreateHookLora:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/create"
    RETURN_TYPES = ("HOOKS",)
    FUNCTION = "create_hook"
    DESCRIPTION = "A hook applying a LoRA only to the conditioning it is attached to."

    def __init__(self):
        self.loaded_lora = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_name": (_files("loras"),), "strength_model": ("FLOAT", dict(_STRENGTH)),
                             "strength_clip": ("FLOAT", dict(_STRENGTH))},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def create_hook(self, lora_name, strength_model, strength_clip, prev_hooks=None):
        from hearth.runtime import loader

        H = _H()
        if prev_hooks is None:
            prev_hooks = H.HookGroup()
        if strength_model == 0 and strength_clip == 0:
            return (prev_hooks,)
        lora = _reuse_last(self, "loaded_lora", _path("loras", lora_name), loader.load_lora_file)
        hooks = H.create_hook_lora(lora, strength_model, strength_clip)
        return (prev_hooks.clone_and_combine(hooks),)


class CreateHookLoraModelOnly(CreateHookLora):
    FUNCTION = "create_hook_model_only"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"lora_name": (_files("loras"),), "strength_model": ("FLOAT", dict(_STRENGTH))},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def create_hook_model_only(self, lora_name, strength_model, prev_hooks=None):
        return self.create_hook(lora_name, strength_model, 0, prev_hooks)


class CreateHookModelAsLora:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/create"
    RETURN_TYPES = ("HOOKS",)
    FUNCTION = "create_hook"
    DESCRIPTION = ("A hook adding another checkpoint's difference from the sampled model (at strength 1 its "
                   "weights replace the model's) to the conditioning it is attached to.")

    def __init__(self):
        self.loaded_weights = None  # (path, (model weights, clip weights)) of the last run

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (_files("checkpoints"),), "strength_model": ("FLOAT", dict(_STRENGTH)),
                             "strength_clip": ("FLOAT", dict(_STRENGTH))},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def create_hook(self, ckpt_name, strength_model, strength_clip, prev_hooks=None):
        from hearth.runtime import loader
        from hearth.runtime.hooks import original_weights

        H = _H()
        if prev_hooks is None:
            prev_hooks = H.HookGroup()
        def load(path):
            model, clip, _vae = loader.load_checkpoint(path, _manager(), _embedding_dirs(), output_vae=False)
            weights_clip = None
            if clip is not None:
                weights_clip = {e.spec.name: original_weights(e.patcher.holder) for e in clip.encoders}
            return original_weights(model.patcher.holder), weights_clip

        weights_model, weights_clip = _reuse_last(self, "loaded_weights", _path("checkpoints", ckpt_name), load)
        hooks = H.create_hook_model_as_lora(weights_model, weights_clip, strength_model, strength_clip)
        return (prev_hooks.clone_and_combine(hooks),)


class CreateHookModelAsLoraModelOnly(CreateHookModelAsLora):
    FUNCTION = "create_hook_model_only"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (_files("checkpoints"),), "strength_model": ("FLOAT", dict(_STRENGTH))},
                "optional": {"prev_hooks": ("HOOKS",)}}

    def create_hook_model_only(self, ckpt_name, strength_model, prev_hooks=None):
        return self.create_hook(ckpt_name, strength_model, 0.0, prev_hooks)


# --- scheduling ------------------------------------------------------------------------------------------

class SetHookKeyframes:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOKS",)
    FUNCTION = "set_hook_keyframes"
    DESCRIPTION = "Gives the hooks a strength schedule."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"hooks": ("HOOKS",)}, "optional": {"hook_kf": ("HOOK_KEYFRAMES",)}}

    def set_hook_keyframes(self, hooks, hook_kf=None):
        if hook_kf is not None:
            hooks = hooks.clone()
            hooks.set_keyframes_on_hooks(hook_kf)
        return (hooks,)


class CreateHookKeyframe:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    FUNCTION = "create_hook_keyframe"
    DESCRIPTION = "Adds a keyframe: from start_percent on, hooks act at strength_mult times their strength."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"strength_mult": ("FLOAT", dict(_STRENGTH)),
                             "start_percent": ("FLOAT", dict(_PERCENT_START))},
                "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    def create_hook_keyframe(self, strength_mult, start_percent, prev_hook_kf=None):
        H = _H()
        kf = H.HookKeyframeGroup() if prev_hook_kf is None else prev_hook_kf.clone()
        kf.add(H.HookKeyframe(strength=strength_mult, start_percent=start_percent))
        return (kf,)


def _add_keyframes(H, prev, percents, strengths, print_keyframes: bool):
    kf = H.HookKeyframeGroup() if prev is None else prev.clone()
    for n, (percent, strength) in enumerate(zip(percents, strengths)):
        kf.add(H.HookKeyframe(strength=float(strength), start_percent=float(percent),
                              guarantee_steps=1 if n == 0 else 0))
        if print_keyframes:
            log.info("hook keyframe at start_percent %s: strength %s", float(percent), float(strength))
    return kf


class CreateHookKeyframesInterpolated:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    FUNCTION = "create_hook_keyframes"
    DESCRIPTION = "Keyframes easing the strength from strength_start to strength_end over a percent range."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "strength_start": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
            "strength_end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001}),
            "interpolation": (["linear", "ease_in", "ease_out", "ease_in_out"],),
            "start_percent": ("FLOAT", dict(_PERCENT_START)),
            "end_percent": ("FLOAT", dict(_PERCENT_END)),
            "keyframes_count": ("INT", {"default": 5, "min": 2, "max": 100, "step": 1}),
            "print_keyframes": ("BOOLEAN", {"default": False}),
        }, "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    def create_hook_keyframes(self, strength_start, strength_end, interpolation, start_percent, end_percent,
                              keyframes_count, print_keyframes=False, prev_hook_kf=None):
        H = _H()
        im = H.InterpolationMethod
        percents = im.get_weights(start_percent, end_percent, keyframes_count, im.LINEAR)
        strengths = im.get_weights(strength_start, strength_end, keyframes_count, interpolation)
        return (_add_keyframes(H, prev_hook_kf, percents, strengths, print_keyframes),)


class CreateHookKeyframesFromFloats:
    EXPERIMENTAL = True
    CATEGORY = "advanced/hooks/scheduling"
    RETURN_TYPES = ("HOOK_KEYFRAMES",)
    RETURN_NAMES = ("HOOK_KF",)
    FUNCTION = "create_hook_keyframes"
    DESCRIPTION = "One keyframe per float, spread evenly from start_percent to end_percent."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "floats_strength": ("FLOATS", {"default": -1, "min": -1, "step": 0.001, "forceInput": True}),
            "start_percent": ("FLOAT", dict(_PERCENT_START)),
            "end_percent": ("FLOAT", dict(_PERCENT_END)),
            "print_keyframes": ("BOOLEAN", {"default": False}),
        }, "optional": {"prev_hook_kf": ("HOOK_KEYFRAMES",)}}

    def create_hook_keyframes(self, floats_strength, start_percent, end_percent, prev_hook_kf=None,
                              print_keyframes=False):
        H = _H()
        if isinstance(floats_strength, (float, int)) and not isinstance(floats_strength, bool):
            floats_strength = [float(floats_strength)]
        elif hasattr(floats_strength, "__iter__") and not isinstance(floats_strength, (str, bytes, dict)):
            floats_strength = [float(x) for x in floats_strength]
        else:
            raise TypeError("floats_strength must be a float or a list of floats, "
                            f"not {type(floats_strength).__name__}")
        if not floats_strength:
            raise ValueError("floats_strength is empty")
        im = H.InterpolationMethod
        percents = im.get_weights(start_percent, end_percent, len(floats_strength), im.LINEAR)
        return (_add_keyframes(H, prev_hook_kf, percents, floats_strength, print_keyframes),)


# --- combining -------------------------------------------------------------------------------------------

def _combine_node(count: int):
    letters = "ABCDEFGH"[:count]

    class CombineHooks:
        EXPERIMENTAL = True
        CATEGORY = "advanced/hooks/combine"
        RETURN_TYPES = ("HOOKS",)
        FUNCTION = "combine_hooks"
        DESCRIPTION = f"Combines up to {count} hook groups into one."

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}, "optional": {f"hooks_{c}": ("HOOKS",) for c in letters}}

        def combine_hooks(self, **kwargs):
            return (_H().HookGroup.combine_all_hooks([kwargs.get(f"hooks_{c}") for c in letters]),)

    CombineHooks.__name__ = CombineHooks.__qualname__ = f"CombineHooks{count}"
    return CombineHooks


CombineHooks = _combine_node(2)
CombineHooksFour = _combine_node(4)
CombineHooksEight = _combine_node(8)


NODE_CLASS_MAPPINGS = {
    "CreateHookLora": CreateHookLora,
    "CreateHookLoraModelOnly": CreateHookLoraModelOnly,
    "CreateHookModelAsLora": CreateHookModelAsLora,
    "CreateHookModelAsLoraModelOnly": CreateHookModelAsLoraModelOnly,
    "SetHookKeyframes": SetHookKeyframes,
    "CreateHookKeyframe": CreateHookKeyframe,
    "CreateHookKeyframesInterpolated": CreateHookKeyframesInterpolated,
    "CreateHookKeyframesFromFloats": CreateHookKeyframesFromFloats,
    "CombineHooks2": CombineHooks,
    "CombineHooks4": CombineHooksFour,
    "CombineHooks8": CombineHooksEight,
    "ConditioningSetProperties": ConditioningSetProperties,
    "ConditioningSetPropertiesAndCombine": ConditioningSetPropertiesAndCombine,
    "PairConditioningSetProperties": PairConditioningSetProperties,
    "PairConditioningSetPropertiesAndCombine": PairConditioningSetPropertiesAndCombine,
    "ConditioningSetDefaultCombine": ConditioningSetDefaultAndCombine,
    "PairConditioningSetDefaultCombine": PairConditioningSetDefaultAndCombine,
    "PairConditioningCombine": PairConditioningCombine,
    "SetClipHooks": SetClipHooks,
    "ConditioningTimestepsRange": ConditioningTimestepsRange,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CreateHookLora": "Create Hook LoRA",
    "CreateHookLoraModelOnly": "Create Hook LoRA (MO)",
    "CreateHookModelAsLora": "Create Hook Model as LoRA",
    "CreateHookModelAsLoraModelOnly": "Create Hook Model as LoRA (MO)",
    "SetHookKeyframes": "Set Hook Keyframes",
    "CreateHookKeyframe": "Create Hook Keyframe",
    "CreateHookKeyframesInterpolated": "Create Hook Keyframes Interp.",
    "CreateHookKeyframesFromFloats": "Create Hook Keyframes From Floats",
    "CombineHooks2": "Combine Hooks [2]",
    "CombineHooks4": "Combine Hooks [4]",
    "CombineHooks8": "Combine Hooks [8]",
    "ConditioningSetProperties": "Cond Set Props",
    "ConditioningSetPropertiesAndCombine": "Cond Set Props Combine",
    "PairConditioningSetProperties": "Cond Pair Set Props",
    "PairConditioningSetPropertiesAndCombine": "Cond Pair Set Props Combine",
    "ConditioningSetDefaultCombine": "Cond Set Default Combine",
    "PairConditioningSetDefaultCombine": "Cond Pair Set Default Combine",
    "PairConditioningCombine": "Cond Pair Combine",
    "SetClipHooks": "Set CLIP Hooks",
    "ConditioningTimestepsRange": "Timesteps Range",
}
