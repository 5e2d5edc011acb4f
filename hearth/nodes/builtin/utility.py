"""Utility nodes (PreviewAny, RebatchLatents, RebatchImages) and the tensor helpers the other
built-in node modules share: resampling, batch repetition, gaussian kernels.

IMAGE values are float32 [batch, height, width, channels] in 0..1, MASK values [batch, height, width],
LATENT values dicts holding "samples" [batch, channels, (frames,) height, width]. torch is imported
inside the functions so the server starts without it.
"""
from __future__ import annotations

import json
import math

PYTHON_MODULE = "comfy_extras.nodes_preview_any"
NODE_PYTHON_MODULES = {
    "RebatchLatents": "comfy_extras.nodes_rebatch",
    "RebatchImages": "comfy_extras.nodes_rebatch",
}

MAX_RESOLUTION = 16384
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


# --- shared tensor helpers ---------------------------------------------------------------------------
def _lanczos(samples, width: int, height: int):
    """Lanczos resampling through Pillow on 8-bit data, as ComfyUI does (so results match)."""
    import numpy as np
    import torch
    from PIL import Image

    frames = []
    for chw in samples:
        hwc = np.clip(255.0 * chw.movedim(0, -1).detach().cpu().float().numpy(), 0, 255).astype(np.uint8)
        if hwc.shape[-1] in (3, 4):
            resized = np.asarray(Image.fromarray(hwc).resize((width, height), Image.Resampling.LANCZOS))
        else:
            bands = [np.asarray(Image.fromarray(np.ascontiguousarray(hwc[..., c])).resize(
                (width, height), Image.Resampling.LANCZOS)) for c in range(hwc.shape[-1])]
            resized = np.stack(bands, axis=-1)
        frames.append(torch.from_numpy(resized.astype(np.float32) / 255.0).movedim(-1, 0))
    return torch.stack(frames).to(samples.device, samples.dtype)


def upscale(samples, width: int, height: int, method: str, crop: str = "disabled"):
    """Resize [N, C, H, W] (or [N, C, T, H, W]) samples to width x height.

    ``method`` is one of nearest-exact, bilinear, area, bicubic, lanczos; ``crop="center"`` first
    cuts the input to the target's aspect ratio, keeping its middle.
    """
    import torch

    shape = tuple(samples.shape)
    if len(shape) > 4:  # fold the extra (frame) dimensions into the batch
        frames = samples.reshape(shape[0], shape[1], -1, shape[-2], shape[-1]).movedim(2, 1)
        samples = frames.reshape(-1, shape[1], shape[-2], shape[-1])
    if crop == "center":
        in_h, in_w = samples.shape[-2], samples.shape[-1]
        in_aspect, out_aspect = in_w / in_h, width / height
        cut_x = cut_y = 0
        if in_aspect > out_aspect:
            cut_x = round((in_w - in_w * (out_aspect / in_aspect)) / 2)
        elif in_aspect < out_aspect:
            cut_y = round((in_h - in_h * (in_aspect / out_aspect)) / 2)
        samples = samples[..., cut_y:in_h - cut_y, cut_x:in_w - cut_x]
    if method == "lanczos":
        out = _lanczos(samples, width, height)
    elif method in ("nearest-exact", "bilinear", "area", "bicubic", "nearest"):
        out = torch.nn.functional.interpolate(samples, size=(height, width), mode=method)
    else:
        raise ValueError(f"unknown upscale method {method!r}")
    if len(shape) == 4:
        return out
    out = out.reshape((shape[0], -1, shape[1], height, width)).movedim(2, 1)
    return out.reshape(shape[:-2] + (height, width))


def repeat_to_batch_size(tensor, batch_size: int, dim: int = 0):
    """Cut or cyclically repeat ``tensor`` along ``dim`` to exactly ``batch_size`` entries."""
    size = tensor.shape[dim]
    if size > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    if size < batch_size:
        reps = [1] * tensor.ndim
        reps[dim] = math.ceil(batch_size / size)
        return tensor.repeat(reps).narrow(dim, 0, batch_size)
    return tensor


def gaussian_kernel(kernel_size: int, sigma: float, device=None):
    """A normalised 2-D gaussian of kernel_size x kernel_size whose coordinates span -1..1 (ComfyUI's
    post-processing convention: sigma is relative to the kernel radius, not in pixels)."""
    import torch

    axis = torch.linspace(-1, 1, kernel_size, device=device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    weights = torch.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def match_alpha(destination, source):
    """Make the source's channel count the destination's: drop its extra channels (alpha), or give it
    opaque ones."""
    import torch

    missing = destination.shape[-1] - source.shape[-1]
    if missing < 0:
        source = source[..., :destination.shape[-1]]
    elif missing > 0:
        source = torch.nn.functional.pad(source, (0, missing), value=1.0)
    return destination, source


def rotation_quarters(rotation: str) -> int:
    """'none' / '90 degrees' / '180 degrees' / '270 degrees' -> quarter turns clockwise."""
    for prefix, quarters in (("90", 1), ("180", 2), ("270", 3)):
        if rotation.startswith(prefix):
            return quarters
    return 0


# --- nodes ------------------------------------------------------------------------------------------
class PreviewAny:
    CATEGORY = "utils"
    RETURN_TYPES = ()
    FUNCTION = "main"
    OUTPUT_NODE = True
    DESCRIPTION = "Shows any value under the node as text."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("*", {})}}

    def main(self, source=None):
        if source is None:
            text = "None"
        elif isinstance(source, str):
            text = source
        elif isinstance(source, (bool, int, float)):
            text = str(source)
        else:
            try:
                text = json.dumps(source)
            except Exception:
                try:
                    text = str(source)
                except Exception:
                    text = "source exists, but could not be serialized."
        return {"ui": {"text": (text,)}}


class RebatchLatents:
    CATEGORY = "latent/batch"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_IS_LIST = (True,)
    OUTPUT_TOOLTIPS = (None,)
    INPUT_IS_LIST = True
    FUNCTION = "rebatch"
    DESCRIPTION = "Regroups a list of latent batches into batches of the given size."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latents": ("LATENT", {}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    @staticmethod
    def _entry(latent, offset: int):
        """(samples, noise mask at 8x the latent size, batch indices) of one input latent."""
        import torch

        samples = latent["samples"]
        n, h, w = samples.shape[0], samples.shape[-2], samples.shape[-1]
        mask = latent.get("noise_mask")
        if mask is None:
            mask = torch.ones((n, 1, h * 8, w * 8))
        else:
            mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
            if mask.shape[-2:] != (h * 8, w * 8):
                mask = torch.nn.functional.interpolate(mask, size=(h * 8, w * 8), mode="bilinear")
        if mask.shape[0] < n:
            mask = repeat_to_batch_size(mask, n)
        indices = list(latent["batch_index"]) if "batch_index" in latent else [offset + i for i in range(n)]
        return [samples, mask, indices]

    def rebatch(self, latents, batch_size):
        import torch

        size = batch_size[0]
        out: list[dict] = []
        pending = None  # [samples, masks, indices] not yet emitted
        seen = 0

        def emit(part):
            out.append({"samples": part[0], "noise_mask": part[1], "batch_index": part[2]})

        for latent in latents:
            entry = self._entry(latent, seen)
            seen += len(entry[2])
            if pending is None:
                pending = entry
            elif entry[0].shape[-2:] != pending[0].shape[-2:]:
                emit([pending[0][:size], pending[1][:size], pending[2][:size]])
                pending = entry
            else:
                pending = [torch.cat((pending[0], entry[0])), torch.cat((pending[1], entry[1])),
                           pending[2] + entry[2]]
            if pending[0].shape[0] > size:
                full = pending[0].shape[0] // size
                for i in range(full):
                    emit([part[i * size:(i + 1) * size] for part in pending])
                rest = full * size
                pending = [part[rest:] for part in pending] if rest < pending[0].shape[0] else None
        if pending is not None:
            emit([pending[0][:size], pending[1][:size], pending[2][:size]])
        for latent in out:
            if latent["noise_mask"].mean() == 1.0:
                del latent["noise_mask"]
        return (out,)


class RebatchImages:
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_IS_LIST = (True,)
    OUTPUT_TOOLTIPS = (None,)
    INPUT_IS_LIST = True
    FUNCTION = "rebatch"
    DESCRIPTION = "Regroups a list of image batches into batches of the given size."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def rebatch(self, images, batch_size):
        import torch

        size = batch_size[0]
        frames = [image[i:i + 1] for image in images for i in range(image.shape[0])]
        return ([torch.cat(frames[i:i + size], dim=0) for i in range(0, len(frames), size)],)


NODE_CLASS_MAPPINGS = {
    "PreviewAny": PreviewAny,
    "RebatchLatents": RebatchLatents,
    "RebatchImages": RebatchImages,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PreviewAny": "Preview Any",
    "RebatchLatents": "Rebatch Latents",
    "RebatchImages": "Rebatch Images",
}
