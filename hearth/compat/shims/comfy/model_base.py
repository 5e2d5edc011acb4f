"""ComfyUI's ``comfy.model_base``: ``ModelType`` and the model classes as isinstance targets.

``model.model`` of a Hearth MODEL is a view (hearth/compat/model_api.py); ``isinstance(model.model,
comfy.model_base.SDXL)`` answers from the model's family: ``BaseModel`` matches every Hearth model,
``SDXL`` the SDXL base family, ``SDXLRefiner`` the refiner, ``SD21UNCLIP`` SD2.x unCLIP,
``SD15_instructpix2pix`` / ``SDXL_instructpix2pix`` the InstructPix2Pix variants (8 input channels).
The classes cannot be constructed (Hearth builds its networks with diffusers); the other model
families' classes are not provided (Hearth loads no such models).
"""
from __future__ import annotations

from hearth.compat.model_api import BaseModelView, ModelType  # noqa: F401
from hearth.compat.shims_support import NotProvidedError, module_getattr


class _ModelClass(type):
    """isinstance against a view of a Hearth model, decided by ``matches(view)``; never constructed."""

    def __instancecheck__(cls, obj) -> bool:
        if type.__instancecheck__(cls, obj):
            return True
        return isinstance(obj, BaseModelView) and cls.matches(obj)

    def __call__(cls, *args, **kwargs):
        raise NotProvidedError(f"comfy.model_base.{cls.__name__}(...) is not provided by Hearth's ComfyUI "
                               "compatibility layer: Hearth builds its models with its loaders (use "
                               "comfy.sd.load_checkpoint_guess_config)")


class BaseModel(metaclass=_ModelClass):
    @staticmethod
    def matches(view) -> bool:
        return True


class SDXL(BaseModel):
    @staticmethod
    def matches(view) -> bool:
        return view.hearth_family == "sdxl"


class SDXLRefiner(BaseModel):
    @staticmethod
    def matches(view) -> bool:
        return view.hearth_family == "sdxl_refiner"


class SD21UNCLIP(BaseModel):
    @staticmethod
    def matches(view) -> bool:
        return view.hearth_family == "sd2_unclip"


class IP2P(metaclass=_ModelClass):
    @staticmethod
    def matches(view) -> bool:
        return view.hearth_ip2p


class SD15_instructpix2pix(IP2P, BaseModel):
    @staticmethod
    def matches(view) -> bool:
        return view.hearth_ip2p and view.hearth_family in ("sd15", "sd2")


class SDXL_instructpix2pix(IP2P, SDXL):
    @staticmethod
    def matches(view) -> bool:
        return view.hearth_ip2p and view.hearth_family == "sdxl"


__getattr__ = module_getattr("comfy.model_base")
