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

``ModelPatcher`` itself stands for that class: isinstance / issubclass checks and reading its methods
go to DiffusionModel, but wrapping a pack's own torch module (``ModelPatcher(model, load_device,
offload_device)``) and replacing ModelPatcher's methods (monkeypatching) are not provided and fail
loudly: Hearth makes MODEL values with its loaders.
"""
from hearth.compat.shims_support import NotProvidedError, module_getattr


def _diffusion_model():
    from hearth.runtime.model import DiffusionModel

    return DiffusionModel


class _ModelPatcherType(type):
    def __instancecheck__(cls, obj) -> bool:
        return type.__instancecheck__(cls, obj) or isinstance(obj, _diffusion_model())

    def __subclasscheck__(cls, sub) -> bool:
        return type.__subclasscheck__(cls, sub) or issubclass(sub, _diffusion_model())

    def __call__(cls, *args, **kwargs):
        raise NotProvidedError(
            "comfy.model_patcher.ModelPatcher(model, load_device, offload_device) is not provided by Hearth's "
            "ComfyUI compatibility layer: Hearth's MODEL values come from its loaders (comfy.sd.*); wrapping "
            "another torch module as a ModelPatcher is not supported")

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_diffusion_model(), name)

    def __setattr__(cls, name, value):
        raise NotProvidedError(f"replacing comfy.model_patcher.ModelPatcher.{name} (monkeypatching ModelPatcher) "
                               "is not provided by Hearth's ComfyUI compatibility layer")


class ModelPatcher(metaclass=_ModelPatcherType):
    """Hearth's MODEL class (hearth.runtime.model.DiffusionModel) for isinstance checks and type hints."""


# ComfyUI's model_options helpers change the dict they are given (and return it); the nested patch
# containers are replaced, not edited, so clones that share them are untouched.
def set_model_options_patch_replace(model_options, patch, name, block_name, number, transformer_index=None):
    from hearth.runtime.unet_patches import set_model_options_patch_replace as hearth_replace

    model_options.update(hearth_replace(model_options, patch, name, block_name, number, transformer_index))
    return model_options


def set_model_options_post_cfg_function(model_options, post_cfg_function, disable_cfg1_optimization=False):
    from hearth.runtime.unet_patches import set_model_options_post_cfg_function as hearth_post_cfg

    model_options.update(hearth_post_cfg(model_options, post_cfg_function, disable_cfg1_optimization))
    return model_options


def set_model_options_pre_cfg_function(model_options, pre_cfg_function, disable_cfg1_optimization=False):
    model_options["sampler_pre_cfg_function"] = list(model_options.get("sampler_pre_cfg_function", [])) + \
        [pre_cfg_function]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


def create_model_options_clone(orig_model_options: dict) -> dict:
    from hearth.compat.model_api import copy_model_options

    return copy_model_options(orig_model_options)


__getattr__ = module_getattr("comfy.model_patcher")
