"""ComfyUI's ``comfy_api.input`` (kept by ComfyUI for older packs): the names of ``comfy_api.latest._input``."""
from comfy_api.latest import _input as _latest
from comfy_api.latest._input import AudioInput, LatentInput, VideoInput  # noqa: F401


def __getattr__(name):
    return getattr(_latest, name)


__all__ = ["ImageInput", "AudioInput", "MaskInput", "LatentInput", "VideoInput"]
