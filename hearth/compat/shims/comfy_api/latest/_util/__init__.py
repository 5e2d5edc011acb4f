"""ComfyUI's ``comfy_api.latest._util``: the video utility types, over ``hearth.media.video``.

``VideoContainer`` / ``VideoCodec`` are the choices Hearth's video writer takes (its CONTAINERS and
CODECS lists; ``save_to`` accepts the members or their string values); ``VideoComponents`` is Hearth's.
"""
from __future__ import annotations

import enum

from hearth.media.video import CODECS, CONTAINERS, VideoComponents, container_extension

VideoCodec = enum.Enum("VideoCodec", {value.upper(): value for value in CODECS}, type=str,
                       module="comfy_api.latest._util")
VideoContainer = enum.Enum("VideoContainer", {value.upper(): value for value in CONTAINERS}, type=str,
                           module="comfy_api.latest._util")


def _as_input(cls) -> list[str]:
    return [member.value for member in cls]


def _get_extension(cls, value) -> str:
    return container_extension(cls(value) if isinstance(value, str) else value)


VideoCodec.as_input = classmethod(_as_input)
VideoContainer.as_input = classmethod(_as_input)
VideoContainer.get_extension = classmethod(_get_extension)

__all__ = ["VideoContainer", "VideoCodec", "VideoComponents"]
