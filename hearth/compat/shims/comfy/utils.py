"""ComfyUI's ``comfy.utils``: progress bars over Hearth's engine progress, tensor helpers over
Hearth's own (resizing, batching, tiling), weight files through ``hearth.runtime.files``.

torch is imported by the functions that need it, not by importing this module.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from hearth.compat.shims_support import module_getattr, not_provided

log = logging.getLogger("comfy.utils")

PROGRESS_BAR_ENABLED = True


def set_progress_bar_enabled(enabled: bool) -> None:
    global PROGRESS_BAR_ENABLED  # a ComfyUI toggle packs flip; it only affects console bars there
    PROGRESS_BAR_ENABLED = bool(enabled)


set_progress_bar_global_hook = not_provided(
    "comfy.utils.set_progress_bar_global_hook", "progress goes through Hearth's engine; use ProgressBar")


class ProgressBar:
    """Reports a node's progress (``progress`` / ``progress_state`` messages, optional preview).

    Made inside node code, it remembers that node, so updates from threads the node starts still
    land on it.
    """

    def __init__(self, total: int, node_id: str | None = None) -> None:
        from hearth.engine.progress import current_execution

        self.total = total
        self.current = 0
        self.node_id = node_id
        self._execution = current_execution()

    def update_absolute(self, value: float, total: float | None = None, preview: Any = None) -> None:
        from hearth.engine import progress

        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        token = None
        if progress.current_execution() is None and self._execution is not None:
            token = progress.bind(self._execution)
        try:
            progress.report_progress(self.current, self.total, preview, self.node_id)
        finally:
            if token is not None:
                progress.unbind(token)

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)


# --- weight files --------------------------------------------------------------------------------
def load_torch_file(ckpt, safe_load: bool = False, device=None, return_metadata: bool = False):
    """A weight file as a dict of tensors (safetensors, or a weights-only pickle; never arbitrary pickles)."""
    from hearth.runtime import files

    sd = files.load_state_dict(ckpt)
    metadata = sd.metadata() if isinstance(sd, files.LazyStateDict) else None
    out = files.materialize(sd)
    if device is not None:
        out = {k: v.to(device) if hasattr(v, "to") else v for k, v in out.items()}
    return (out, metadata) if return_metadata else out


def save_torch_file(sd: dict, ckpt, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(ckpt), metadata=metadata)


def calculate_parameters(sd: dict, prefix: str = "") -> int:
    return sum(v.nelement() for k, v in sd.items() if k.startswith(prefix))


def weight_dtype(sd: dict, prefix: str = ""):
    counts: dict[Any, int] = {}
    for k, v in sd.items():
        if k.startswith(prefix):
            counts[v.dtype] = counts.get(v.dtype, 0) + v.nelement()
    return max(counts, key=counts.get) if counts else None


def state_dict_key_replace(state_dict: dict, keys_to_replace: dict) -> dict:
    for old, new in keys_to_replace.items():
        if old in state_dict:
            state_dict[new] = state_dict.pop(old)
    return state_dict


def state_dict_prefix_replace(state_dict: dict, replace_prefix: dict, filter_keys: bool = False) -> dict:
    out = {} if filter_keys else state_dict
    for old, new in replace_prefix.items():
        for key in [k for k in state_dict if k.startswith(old)]:
            out[new + key[len(old):]] = state_dict.pop(key)
    return out


# --- module attributes ---------------------------------------------------------------------------
def get_attr(obj, attr: str):
    for name in attr.split("."):
        obj = getattr(obj, name)
    return obj


def set_attr(obj, attr: str, value):
    names = attr.split(".")
    for name in names[:-1]:
        obj = getattr(obj, name)
    previous = getattr(obj, names[-1])
    setattr(obj, names[-1], value)
    return previous


def set_attr_param(obj, attr: str, value):
    import torch

    return set_attr(obj, attr, torch.nn.Parameter(value, requires_grad=False))


def copy_to_param(obj, attr: str, value) -> None:
    get_attr(obj, attr).data.copy_(value)


# --- tensors -------------------------------------------------------------------------------------
def common_upscale(samples, width: int, height: int, upscale_method: str, crop: str):
    """Resize [B, C, H, W] samples (ComfyUI's helper; Hearth's own resize underneath)."""
    if upscale_method == "bislerp":
        return bislerp(samples, width, height)  # raises: not in Hearth's runtime yet
    from hearth.nodes.builtin.utility import upscale

    return upscale(samples, width, height, upscale_method, crop)


def lanczos(samples, width: int, height: int):
    from hearth.nodes.builtin.utility import _lanczos

    return _lanczos(samples, width, height)


bislerp = not_provided("comfy.utils.bislerp", "Hearth's runtime has no bislerp resampling yet")


def repeat_to_batch_size(tensor, batch_size: int, dim: int = 0):
    from hearth.nodes.builtin.utility import repeat_to_batch_size as repeat

    return repeat(tensor, batch_size, dim)


def resize_to_batch_size(tensor, batch_size: int):
    """Stretch or squeeze a batch to ``batch_size`` by picking evenly spaced entries (ComfyUI's rule)."""
    from hearth.sampling.guidance import resize_to_batch_size as resize

    return resize(tensor, batch_size)


def get_tiled_scale_steps(width: int, height: int, tile_x: int, tile_y: int, overlap: int) -> int:
    rows = 1 if height <= tile_y else math.ceil((height - overlap) / (tile_y - overlap))
    cols = 1 if width <= tile_x else math.ceil((width - overlap) / (tile_x - overlap))
    return rows * cols


def tiled_scale(samples, function, tile_x: int = 64, tile_y: int = 64, overlap: int = 8, upscale_amount: float = 4,
                out_channels: int = 3, output_device="cpu", pbar=None):
    from hearth.runtime.vae import tiled_scale as hearth_tiled_scale

    return hearth_tiled_scale(samples, function, tile=(tile_y, tile_x), overlap=overlap,
                              upscale_amount=upscale_amount, out_channels=out_channels,
                              output_device=output_device,
                              progress=(lambda: pbar.update(1)) if pbar is not None else None)


__getattr__ = module_getattr("comfy.utils")
