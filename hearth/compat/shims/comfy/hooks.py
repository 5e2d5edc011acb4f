"""ComfyUI's ``comfy.hooks`` over ``hearth.sampling.hooks`` (the HOOKS values Hearth's hook nodes make
and its samplers apply per conditioning group).

Provided: the enums, ``Hook`` / ``WeightHook`` / ``HookGroup`` / ``HookKeyframe`` /
``HookKeyframeGroup`` / ``InterpolationMethod``, ``create_hook_lora``, ``create_hook_model_as_lora``
(with weights from ``get_patch_weights_from_model``), and the conditioning helpers
(``set_hooks_for_conditioning``, ``set_timesteps_for_conditioning``, ``set_mask_for_conditioning``,
``combine_conditioning``, ``combine_with_new_conds``, ``conditioning_set_values_with_hooks``,
``set_conds_props``, ``set_conds_props_and_combine``, ``set_default_conds_and_combine``). The other
hook kinds (object-patch, additional-models, transformer-options, wrapper, injections) and registering hook
patches on a model by hand are not provided.
"""
from __future__ import annotations

import enum

from hearth.compat.shims_support import lazy_attrs, module_getattr, not_provided_class, not_provided


class EnumHookMode(str, enum.Enum):
    """How ComfyUI keeps hooked weights (Hearth decides this itself; the value is accepted and unused)."""
    MinVram = "minvram"
    MaxSpeed = "maxspeed"


def get_patch_weights_from_model(model, discard_model_sampling=True):
    """The model's own (unpatched) weights, as ``create_hook_model_as_lora`` takes them."""
    from hearth.runtime.hooks import original_weights

    return original_weights(model.patcher.holder)


def combine_with_new_conds(conds: list, new_conds: list) -> list:
    from hearth.sampling.hooks import combine_conditioning

    return [combine_conditioning([c, new]) for c, new in zip(conds, new_conds)]


def conditioning_set_values_with_hooks(conditioning, values=None, append_hooks=True, cache=None):
    """Set option ``values`` on every entry; ``hooks`` among them are combined with the entry's own."""
    from hearth.sampling.hooks import set_hooks_for_conditioning

    values = dict(values or {})
    hooks = values.pop("hooks", None) if append_hooks else None
    out = [[t[0], {**t[1], **values}] for t in conditioning]
    return set_hooks_for_conditioning(out, hooks, True, cache) if hooks is not None else out


_WHY = "Hearth's hooks are weight hooks (LoRA / model-as-LoRA) with keyframes"
ObjectPatchHook = not_provided_class("comfy.hooks.ObjectPatchHook", _WHY)
AdditionalModelsHook = not_provided_class("comfy.hooks.AdditionalModelsHook", _WHY)
TransformerOptionsHook = not_provided_class("comfy.hooks.TransformerOptionsHook", _WHY)
InjectionsHook = not_provided_class("comfy.hooks.InjectionsHook", _WHY)
WrapperHook = not_provided_class("comfy.hooks.WrapperHook", _WHY)
load_hook_lora_for_models = not_provided("comfy.hooks.load_hook_lora_for_models",
                                         "use create_hook_lora and set_hooks_for_conditioning")
create_transformer_options_from_hooks = not_provided("comfy.hooks.create_transformer_options_from_hooks", _WHY)

__getattr__ = module_getattr("comfy.hooks", lazy_attrs({name: f"hearth.sampling.hooks:{target}" for name, target in {
    "EnumHookType": "EnumHookType",
    "EnumWeightTarget": "EnumWeightTarget",
    "EnumHookScope": "EnumHookScope",
    "_HookRef": "HookRef",
    "Hook": "Hook",
    "WeightHook": "WeightHook",
    "HookGroup": "HookGroup",
    "HookKeyframe": "HookKeyframe",
    "HookKeyframeGroup": "HookKeyframeGroup",
    "InterpolationMethod": "InterpolationMethod",
    "create_hook_lora": "create_hook_lora",
    "create_hook_model_as_lora": "create_hook_model_as_lora",
    "set_hooks_for_conditioning": "set_hooks_for_conditioning",
    "set_timesteps_for_conditioning": "set_timesteps_for_conditioning",
    "set_mask_for_conditioning": "set_mask_for_conditioning",
    "combine_conditioning": "combine_conditioning",
    "set_conds_props": "set_conds_props",
    "set_conds_props_and_combine": "set_conds_props_and_combine",
    "set_default_conds_and_combine": "set_default_conds_and_combine",
}.items()}))
