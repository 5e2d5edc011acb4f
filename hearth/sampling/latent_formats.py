"""Latent formats a sampling patch can put on a model (ModelSamplingContinuousEDM's edm_playground_v2.5)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hearth.runtime.families import LatentFormat


@dataclass(frozen=True)
class MeanStdLatentFormat(LatentFormat):
    """A VAE latent normalised per channel: ``(latent - mean) * scale_factor / std``."""

    means: tuple = ()
    stds: tuple = ()

    def _stats(self, latent):
        shape = (1, len(self.means)) + (1,) * (latent.ndim - 2)
        mean = torch.tensor(self.means, device=latent.device, dtype=latent.dtype).view(shape)
        std = torch.tensor(self.stds, device=latent.device, dtype=latent.dtype).view(shape)
        return mean, std

    def process_in(self, latent):
        mean, std = self._stats(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent):
        mean, std = self._stats(latent)
        return latent * std / self.scale_factor + mean


# Playground v2.5 (an SDXL-architecture EDM model): its published latent statistics, preview factors and
# the SDXL tiny-autoencoder preview decoder.
PLAYGROUND_2_5_LATENT = MeanStdLatentFormat(
    0.5, rgb_factors=((0.3920, 0.4054, 0.4549), (-0.2634, -0.0196, 0.0653), (0.0568, 0.1687, -0.0755),
                      (-0.3112, -0.2359, -0.2076)),
    taesd_decoder="taesdxl_decoder", means=(-1.6574, 1.886, -1.383, 2.5155), stds=(8.4927, 5.9022, 6.5498, 5.2299))
