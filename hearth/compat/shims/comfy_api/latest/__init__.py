"""ComfyUI's ``comfy_api.latest``: the V3 node API.

    io              the node schema (ComfyNode, Schema, Int, Image, …; see _io.py)
    ui              node UI outputs (PreviewImage, SavedImages, PreviewText, …)
    ComfyExtension  what a pack's ``comfy_entrypoint()`` returns: ``get_node_list()`` of V3 nodes
    ComfyAPI / ComfyAPISync   ``execution.set_progress`` through Hearth's engine progress
    Input / InputImpl / Types the value types; the VIDEO ones are Hearth's (hearth.media.video):
                    Input.Video = VideoInput, InputImpl.VideoFromFile / VideoFromComponents,
                    Types.VideoComponents / VideoContainer / VideoCodec
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from comfy_api.latest import _io as io
from comfy_api.latest import _ui as ui
from comfy_api.latest._input import AudioInput, LatentInput, VideoInput
from comfy_api.latest._input_impl import VideoFromComponents, VideoFromFile
from comfy_api.latest._util import VideoCodec, VideoComponents, VideoContainer

comfy_io = io


def _report_progress(value: float, max_value: float, node_id: str | None, preview_image: Any,
                     ignore_size_limit: bool) -> None:
    from hearth.compat import binding
    from hearth.engine.progress import current_execution, report_progress

    if node_id is None and current_execution() is None:
        raise ValueError("node_id must be provided if not in executing context")
    preview = None
    if preview_image is not None:
        image = preview_image
        if hasattr(image, "shape") and not hasattr(image, "save"):  # an IMAGE tensor [B, H, W, C] or [H, W, C]
            import numpy as np
            from PIL import Image

            frame = image[0] if len(image.shape) == 4 else image
            image = Image.fromarray(np.clip(255.0 * frame.detach().cpu().float().numpy(), 0, 255).astype(np.uint8))
        size = None if ignore_size_limit else getattr(binding.app().config, "preview_size", 512)
        preview = (getattr(image, "format", None) or "JPEG", image, size)
    report_progress(value, max_value, preview, node_id)


class _Execution:
    async def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                           preview_image: Any = None, ignore_size_limit: bool = False) -> None:
        """Update the progress bar of the running node (or ``node_id``) in the UI."""
        _report_progress(value, max_value, node_id, preview_image, ignore_size_limit)


class _ExecutionSync:
    def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                     preview_image: Any = None, ignore_size_limit: bool = False) -> None:
        _report_progress(value, max_value, node_id, preview_image, ignore_size_limit)


class ComfyAPI_latest:
    VERSION = "latest"
    STABLE = False

    def __init__(self) -> None:
        self.execution = _Execution()


class ComfyAPISyncLatest:
    VERSION = "latest"
    STABLE = False

    def __init__(self) -> None:
        self.execution = _ExecutionSync()


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Called once when the extension is loaded."""

    @abstractmethod
    async def get_node_list(self) -> list:
        """The V3 node classes this extension provides."""


class _TensorAlias:
    """``Input.Image`` … name torch.Tensor (imported on first use)."""

    def __get__(self, obj, owner):
        import torch

        return torch.Tensor


class Input:
    Image = _TensorAlias()
    Mask = _TensorAlias()
    Audio = AudioInput
    Latent = LatentInput
    Video = VideoInput


class InputImpl:
    VideoFromFile = VideoFromFile
    VideoFromComponents = VideoFromComponents


class Types:
    VideoCodec = VideoCodec
    VideoContainer = VideoContainer
    VideoComponents = VideoComponents


ComfyAPI = ComfyAPI_latest
ComfyAPISync = ComfyAPISyncLatest

__all__ = ["ComfyAPI", "ComfyAPISync", "Input", "InputImpl", "Types", "ComfyExtension", "io", "comfy_io", "ui"]
