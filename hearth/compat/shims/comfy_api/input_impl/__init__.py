"""ComfyUI's ``comfy_api.input_impl`` (kept by ComfyUI for older packs): Hearth's VIDEO implementations."""
from comfy_api.latest._input_impl import VideoFromComponents, VideoFromFile  # noqa: F401

__all__ = ["VideoFromFile", "VideoFromComponents"]
