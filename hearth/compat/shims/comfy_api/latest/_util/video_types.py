"""Video utility types (see comfy_api.latest._util)."""
from comfy_api.latest._util import VideoCodec, VideoComponents, VideoContainer  # noqa: F401
