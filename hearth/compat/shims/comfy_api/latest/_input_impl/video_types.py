"""Video implementations (Hearth's hearth.media.video)."""
from comfy_api.latest._input_impl import VideoFromComponents, VideoFromFile  # noqa: F401
