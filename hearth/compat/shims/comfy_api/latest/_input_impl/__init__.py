"""ComfyUI's ``comfy_api.latest._input_impl``: the VIDEO implementations are Hearth's
(``hearth.media.video``): ``VideoFromFile(path or file object)``, ``VideoFromComponents(VideoComponents)``."""
from hearth.media.video import VideoFromComponents, VideoFromFile

__all__ = ["VideoFromFile", "VideoFromComponents"]
