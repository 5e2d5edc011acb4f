"""ComfyUI's ``comfy`` package, as far as Hearth provides it: utils, model_management, samplers,
sample, sd, cli_args, comfy_types, model_patcher, controlnet, clip_vision, hooks, lora, model_sampling,
model_base, latent_formats, k_diffusion.utils, ldm.modules.attention. ``comfy.<name>`` imports the
submodule on first access (``import comfy`` then ``comfy.utils.…`` works); anything else is a ComfyUI
internal that Hearth does not offer, and the error (NotProvidedError) says so."""
import importlib as _importlib
import os as _os

_HERE = _os.path.dirname(__file__)


def __getattr__(name):
    if not name.startswith("__") and (
            _os.path.isfile(_os.path.join(_HERE, name + ".py")) or
            _os.path.isfile(_os.path.join(_HERE, name, "__init__.py"))):
        return _importlib.import_module(f"comfy.{name}")
    if name.startswith("__"):
        raise AttributeError(name)
    from hearth.compat.shims_support import NotProvidedAttributeError

    raise NotProvidedAttributeError(f"comfy.{name} is not provided by Hearth's ComfyUI compatibility layer "
                                    f"(module 'comfy' has no attribute {name!r}: a ComfyUI internal)")
