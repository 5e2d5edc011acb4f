"""Seeded noise, drawn exactly as ComfyUI draws it so the same seed gives the same image.

* The initial noise for a batch comes from ``torch.manual_seed(seed)`` on the CPU, one draw of the whole
  latent shape; with a ``batch_index`` list (latents taken out of a larger batch) each index gets the
  draw it would have had in the full batch.
* Ancestral samplers draw their per-step noise from a separate ``torch.Generator`` seeded with the same
  seed, on the latent's device.
* SDE samplers use a Brownian tree (``torchsde``) seeded with the seed, so their noise is consistent
  whatever the step count.
"""
from __future__ import annotations

import torch


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: list[int] | None = None) -> torch.Tensor:
    generator = torch.manual_seed(seed)
    if batch_index is None:
        return torch.randn(latent.size(), dtype=latent.dtype, layout=latent.layout, generator=generator,
                           device="cpu")
    import numpy as np

    unique, inverse = np.unique(batch_index, return_inverse=True)
    draws = []
    for i in range(int(unique[-1]) + 1):
        noise = torch.randn([1] + list(latent.size())[1:], dtype=latent.dtype, layout=latent.layout,
                            generator=generator, device="cpu")
        if i in unique:
            draws.append(noise)
    return torch.cat([draws[i] for i in inverse.reshape(-1)], dim=0)


def default_noise_sampler(x: torch.Tensor, seed: int | None = None):
    """Fresh Gaussian noise shaped like ``x`` at each call, from a generator seeded with ``seed``."""
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)
    else:
        generator = None

    def sample(sigma, sigma_next):
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator)

    return sample


class _BatchedBrownianTree:
    def __init__(self, x: torch.Tensor, t0, t1, seed=None, cpu: bool = True) -> None:
        import torchsde

        self.cpu_tree = cpu
        t0, t1, self.sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        w0 = torch.zeros_like(x)
        self.batched = False
        if seed is None:
            seeds = (torch.randint(0, 2 ** 63 - 1, ()).item(),)
        elif isinstance(seed, (tuple, list)):
            if len(seed) != x.shape[0]:
                raise ValueError("a list of seeds needs one seed per batch item")
            self.batched = True
            seeds = tuple(seed)
            w0 = w0[0]
        else:
            seeds = (seed,)
        if cpu:
            t0, w0, t1 = t0.detach().cpu(), w0.detach().cpu(), t1.detach().cpu()
        self.trees = tuple(torchsde.BrownianTree(t0, w0, t1, entropy=s) for s in seeds)

    def __call__(self, t0, t1):
        t0, t1, sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        device, dtype = t0.device, t0.dtype
        if self.cpu_tree:
            t0, t1 = t0.detach().cpu().float(), t1.detach().cpu().float()
        w = torch.stack([tree(t0, t1) for tree in self.trees]).to(device=device, dtype=dtype) * (self.sign * sign)
        return w if self.batched else w[0]


class BrownianTreeNoiseSampler:
    """Noise for SDE samplers: normalised increments of a seeded Brownian motion over sigma."""

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seed=None, cpu: bool = False) -> None:
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self.tree = _BatchedBrownianTree(x, t0, t1, seed, cpu=cpu)

    def __call__(self, sigma, sigma_next):
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        return self.tree(t0, t1) / (t1 - t0).abs().sqrt()
