"""The VAE value: pixels ⇄ latents, whole or in overlapping tiles.

LATENT tensors are kept in the VAE's own space (unscaled), as ComfyUI keeps them; the family's scale
factor is applied when sampling starts and undone when it ends. Pixels are IMAGE tensors
[B, H, W, C] in 0..1; sides that are not multiples of the downscale factor are center-cropped before
encoding. When a whole-image pass runs out of GPU memory it is retried in tiles.
"""
from __future__ import annotations

import itertools
import logging
import math

import torch

from hearth.runtime.patcher import Patcher

log = logging.getLogger(__name__)


def tiled_scale(samples, function, tile=(64, 64), overlap=8, upscale_amount=4.0, out_channels=3,
                output_device="cpu", progress=None):
    """Apply ``function`` to overlapping tiles and blend them with linear feathering (2-D)."""
    dims = len(tile)
    up = [upscale_amount] * dims
    # an overlap as large as a tile would never advance (ComfyUI fails there); shrink it instead
    ov = [overlap if overlap < t else t // 4 for t in tile]

    def scaled(shape):
        return [round(up[i] * shape[i]) for i in range(dims)]

    output = torch.empty([samples.shape[0], out_channels] + scaled(samples.shape[2:]), device=output_device)
    for b in range(samples.shape[0]):
        s = samples[b:b + 1]
        if all(s.shape[d + 2] <= tile[d] for d in range(dims)):
            output[b:b + 1] = function(s).to(output_device)
            if progress:
                progress()
            continue
        out = torch.zeros([1, out_channels] + scaled(s.shape[2:]), device=output_device)
        out_div = torch.zeros_like(out)
        positions = [range(0, s.shape[d + 2] - ov[d], tile[d] - ov[d]) if s.shape[d + 2] > tile[d] else [0]
                     for d in range(dims)]
        for it in itertools.product(*positions):
            s_in = s
            origin = []
            for d in range(dims):
                pos = max(0, min(s.shape[d + 2] - ov[d], it[d]))
                length = min(tile[d], s.shape[d + 2] - pos)
                s_in = s_in.narrow(d + 2, pos, length)
                origin.append(round(up[d] * pos))
            ps = function(s_in).to(output_device)
            mask = torch.ones_like(ps)
            for d in range(2, dims + 2):
                feather = round(up[d - 2] * ov[d - 2])
                if feather >= mask.shape[d]:
                    continue
                for t in range(feather):
                    a = (t + 1) / feather
                    mask.narrow(d, t, 1).mul_(a)
                    mask.narrow(d, mask.shape[d] - 1 - t, 1).mul_(a)
            o, o_d = out, out_div
            for d in range(dims):
                o = o.narrow(d + 2, origin[d], mask.shape[d + 2])
                o_d = o_d.narrow(d + 2, origin[d], mask.shape[d + 2])
            o.add_(ps * mask)
            o_d.add_(mask)
            if progress:
                progress()
        output[b:b + 1] = out / out_div
    return output


class VAE:
    def __init__(self, patcher: Patcher, manager, latent_channels: int, downscale_ratio: int) -> None:
        self.patcher = patcher
        self.manager = manager
        self.latent_channels = latent_channels
        self.downscale_ratio = downscale_ratio
        self.upscale_ratio = downscale_ratio

    @property
    def module(self):
        return self.patcher.holder.module

    def _ready(self):
        device = self.manager.load(self.patcher.holder)
        self.patcher.activate()
        return device, self.patcher.holder.dtype

    def crop_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        r = self.downscale_ratio
        for d in (1, 2):
            size = pixels.shape[d]
            x = (size // r) * r
            if x != size:
                pixels = pixels.narrow(d, (size % r) // 2, x)
        return pixels

    # --- raw passes -----------------------------------------------------------------------------
    def _decode_fn(self, device, dtype):
        def fn(z):
            with torch.inference_mode():
                return self.module.decode(z.to(device=device, dtype=dtype)).sample.float()
        return fn

    def _encode_fn(self, device, dtype):
        def fn(px):
            with torch.inference_mode():
                x = (px * 2.0 - 1.0).to(device=device, dtype=dtype)
                return self.module.encode(x).latent_dist.mode().float()
        return fn

    @staticmethod
    def _to_image(x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x + 1.0) / 2.0, min=0.0, max=1.0).movedim(1, -1).contiguous()

    # --- public ---------------------------------------------------------------------------------
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        device, dtype = self._ready()
        fn = self._decode_fn(device, dtype)
        per_item = 2178 * latents.shape[2] * latents.shape[3] * 64 * torch.finfo(dtype).bits // 8
        n = max(1, int(self.manager.free_memory(device) // max(1, per_item)))
        try:
            out = [self._to_image(fn(latents[i:i + n]).cpu()) for i in range(0, latents.shape[0], n)]
            return torch.cat(out)
        except torch.OutOfMemoryError:
            log.warning("out of memory in VAE decode; retrying in tiles")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return self.decode_tiled(latents)

    def decode_tiled(self, latents: torch.Tensor, tile_x: int = 64, tile_y: int = 64, overlap: int = 16,
                     progress=None) -> torch.Tensor:
        device, dtype = self._ready()
        fn = self._decode_fn(device, dtype)
        r = self.upscale_ratio
        out = (tiled_scale(latents, fn, (tile_y * 2, tile_x // 2), overlap, r, 3, progress=progress)
               + tiled_scale(latents, fn, (tile_y // 2, tile_x * 2), overlap, r, 3, progress=progress)
               + tiled_scale(latents, fn, (tile_y, tile_x), overlap, r, 3, progress=progress)) / 3.0
        return self._to_image(out)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = self.crop_pixels(pixels[..., :3]).movedim(-1, 1)
        device, dtype = self._ready()
        fn = self._encode_fn(device, dtype)
        per_item = 1767 * pixels.shape[2] * pixels.shape[3] * torch.finfo(dtype).bits // 8
        n = max(1, int(self.manager.free_memory(device) // max(1, per_item)))
        try:
            return torch.cat([fn(pixels[i:i + n]).cpu() for i in range(0, pixels.shape[0], n)])
        except torch.OutOfMemoryError:
            log.warning("out of memory in VAE encode; retrying in tiles")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return self.encode_tiled(pixels.movedim(1, -1))

    def encode_tiled(self, pixels: torch.Tensor, tile_x: int = 512, tile_y: int = 512, overlap: int = 64,
                     progress=None) -> torch.Tensor:
        pixels = self.crop_pixels(pixels[..., :3]).movedim(-1, 1)
        device, dtype = self._ready()
        fn = self._encode_fn(device, dtype)
        r = 1 / self.downscale_ratio
        c = self.latent_channels
        out = tiled_scale(pixels, fn, (tile_y, tile_x), overlap, r, c, progress=progress)
        out += tiled_scale(pixels, fn, (tile_y // 2, tile_x * 2), overlap, r, c, progress=progress)
        out += tiled_scale(pixels, fn, (tile_y * 2, tile_x // 2), overlap, r, c, progress=progress)
        return out / 3.0

    def tile_steps(self, h: int, w: int, tile_x: int, tile_y: int, overlap: int) -> int:
        def steps(tx, ty):
            rows = 1 if h <= ty else math.ceil((h - overlap) / (ty - overlap))
            cols = 1 if w <= tx else math.ceil((w - overlap) / (tx - overlap))
            return rows * cols
        return steps(tile_x, tile_y) + steps(tile_x // 2, tile_y * 2) + steps(tile_x * 2, tile_y // 2)
