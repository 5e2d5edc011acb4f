"""ComfyUI's ``comfy.latent_formats`` for the families Hearth loads.

``SD15()``, ``SDXL()`` and ``SDXL_Playground_2_5()`` give Hearth's latent formats under ComfyUI's
attribute names (scale_factor, latent_channels, latent_rgb_factors, latent_rgb_factors_bias,
taesd_decoder_name, process_in / process_out); ``model.model.latent_format`` and
``model.get_model_object("latent_format")`` are such views, so ``isinstance(fmt,
comfy.latent_formats.SDXL)`` works, and ``model.add_object_patch("latent_format", fmt)`` takes them.
Other families' formats (SD3, Flux, video models …) are not provided.
"""
from __future__ import annotations

from hearth.compat.model_api import LatentFormatView
from hearth.compat.shims_support import module_getattr


def _families():
    from hearth.runtime import families

    return families


class _FormatClass(type):
    def __instancecheck__(cls, obj) -> bool:
        if type.__instancecheck__(cls, obj):  # an instance of a pack's own subclass
            return True
        return isinstance(obj, LatentFormatView) and cls.matches(obj.hearth_format)


class LatentFormat(metaclass=_FormatClass):
    """Every Hearth latent format (construct a family's own class instead)."""

    @staticmethod
    def matches(fmt) -> bool:
        return True


class SD15(LatentFormat):
    def __new__(cls, scale_factor=0.18215):
        import dataclasses

        fmt = _families().SD15_LATENT
        if scale_factor != fmt.scale_factor:
            fmt = dataclasses.replace(fmt, scale_factor=scale_factor)
        return LatentFormatView(fmt)

    @staticmethod
    def matches(fmt) -> bool:
        base = _families().SD15_LATENT
        return type(fmt) is type(base) and fmt.rgb_factors == base.rgb_factors and fmt.channels == base.channels


class SDXL(LatentFormat):
    def __new__(cls):
        return LatentFormatView(_families().SDXL_LATENT)

    @staticmethod
    def matches(fmt) -> bool:
        return fmt == _families().SDXL_LATENT


class SDXL_Playground_2_5(LatentFormat):
    def __new__(cls):
        from hearth.sampling.latent_formats import PLAYGROUND_2_5_LATENT

        return LatentFormatView(PLAYGROUND_2_5_LATENT)

    @staticmethod
    def matches(fmt) -> bool:
        return type(fmt).__name__ == "MeanStdLatentFormat" and fmt.taesd_decoder == "taesdxl_decoder"


__getattr__ = module_getattr("comfy.latent_formats")
