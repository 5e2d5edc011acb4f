"""The VIDEO input type (Hearth's hearth.media.video.Video)."""
from comfy_api.latest._input import VideoInput  # noqa: F401
