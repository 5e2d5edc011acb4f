"""ComfyUI's ``comfy_api.util`` (kept by ComfyUI for older packs): the video utility types."""
from comfy_api.latest._util import VideoCodec, VideoComponents, VideoContainer  # noqa: F401

__all__ = ["VideoContainer", "VideoCodec", "VideoComponents"]
