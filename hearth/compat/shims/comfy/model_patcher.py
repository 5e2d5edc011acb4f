"""ComfyUI's ``comfy.model_patcher``: its MODEL values are Hearth's runtime diffusion models.

``ModelPatcher`` names ``hearth.runtime.model.DiffusionModel`` (isinstance checks and type hints work),
and the MODEL values packs receive carry ComfyUI's patching API: ``clone()``, ``model_options``, the
``set_model_*`` patch methods (attention patches and replacements, input/output block patches, the UNet
function wrapper, sampler cfg / post-cfg functions, denoise mask function; they run in Hearth's patched
UNet walk, hearth/runtime/unet_patches.py), ``add_patches`` / ``get_key_patches`` / ``model_state_dict``
keyed by ComfyUI's state-dict names, ``load_device`` / ``offload_device`` / ``model_dtype()``,
``model_patches_to``, ``get_model_object`` / ``add_object_patch`` for model_sampling and latent_format,
and ``model.model`` with BaseModel's model_sampling / latent_format / get_dtype() (see
hearth/compat/model_api.py). ModelPatcher methods Hearth has no counterpart for (wrappers, callbacks,
injections, hook-patch internals …) raise NotProvidedError naming them.

Constructing a ModelPatcher around an arbitrary torch module (``ModelPatcher(model, load_device, …)``)
is not ComfyUI's constructor here: Hearth makes MODEL values with its loaders.
"""
from hearth.compat.shims_support import lazy_attrs, module_getattr, not_provided


def set_model_options_patch_replace(model_options, patch, name, block_name, number, transformer_index=None):
    from hearth.runtime.unet_patches import set_model_options_patch_replace as hearth_replace

    return hearth_replace(model_options, patch, name, block_name, number, transformer_index)


def set_model_options_post_cfg_function(model_options, post_cfg_function, disable_cfg1_optimization=False):
    from hearth.runtime.unet_patches import set_model_options_post_cfg_function as hearth_post_cfg

    return hearth_post_cfg(model_options, post_cfg_function, disable_cfg1_optimization)


def create_model_options_clone(orig_model_options: dict) -> dict:
    from hearth.compat.model_api import copy_model_options

    return copy_model_options(orig_model_options)


set_model_options_pre_cfg_function = not_provided(
    "comfy.model_patcher.set_model_options_pre_cfg_function", "Hearth's guidance has no pre-cfg hook")

__getattr__ = module_getattr("comfy.model_patcher", lazy_attrs({
    "ModelPatcher": "hearth.runtime.model:DiffusionModel",
}))
