"""ComfyUI's ``comfy.model_patcher``: its MODEL values are Hearth's runtime diffusion models.

``ModelPatcher`` names ``hearth.runtime.model.DiffusionModel`` (isinstance checks and type hints
work); ComfyUI's patching API on it (set_model_*_patch, model_options …) is not provided, and
using it fails naming the missing attribute.
"""
from hearth.compat.shims_support import module_getattr


def _model_patcher():
    from hearth.runtime.model import DiffusionModel

    return DiffusionModel


__getattr__ = module_getattr("comfy.model_patcher", {"ModelPatcher": _model_patcher})
