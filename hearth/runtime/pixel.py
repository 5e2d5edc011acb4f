"""The "pixel_space" VAE: latents are the pixels themselves (in -1..1), for pixel-space models."""
from __future__ import annotations


class PixelSpaceVAE:
    latent_channels = 3
    downscale_ratio = 1
    upscale_ratio = 1

    def encode(self, pixels):
        return pixels[..., :3].movedim(-1, 1) * 2.0 - 1.0

    def decode(self, latents):
        import torch

        return torch.clamp((latents + 1.0) / 2.0, 0.0, 1.0).movedim(1, -1).contiguous()

    def encode_tiled(self, pixels, **_):
        return self.encode(pixels)

    def decode_tiled(self, latents, **_):
        return self.decode(latents)
