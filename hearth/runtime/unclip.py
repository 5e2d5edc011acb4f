"""unCLIP image conditioning: CLIP image embeddings as the UNet's class (ADM) input, with noise augmentation.

An SD2.x unCLIP UNet takes ``[noised image embedding | embedding of the noise level]`` as its ``y``
input (2 × 768 for the ViT-L variant, 2 × 1024 for ViT-H). The embedding is noised like a diffusion
sample at level ``round(999 × noise_augmentation)`` of a 1000-step "squaredcos_cap_v2" schedule, with
noise drawn from a generator seeded with the sampling seed − 10, and the level is embedded
sinusoidally. Several embeddings (several images or several unCLIPConditioning nodes) are summed, each
scaled by its strength, and the sum is noised once more at the merge level (0.05 by default). Without
any image the input is zeros. SDXL models (Revision) use the noised embedding as their pooled vector.
"""
from __future__ import annotations

import math

MAX_NOISE_LEVEL = 1000
SDXL_POOLED = 1280


def _alpha_bar(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def noise_schedule(steps: int = 1000):
    """(sqrt(ᾱ_t), sqrt(1 − ᾱ_t)) as float32 tensors of the squared-cosine schedule (betas capped at 0.999)."""
    import numpy as np
    import torch

    betas = np.array([min(1 - _alpha_bar((i + 1) / steps) / _alpha_bar(i / steps), 0.999) for i in range(steps)])
    cumprod = np.cumprod(1.0 - betas, axis=0)
    return (torch.tensor(np.sqrt(cumprod), dtype=torch.float32),
            torch.tensor(np.sqrt(1.0 - cumprod), dtype=torch.float32))


def augment(embedding, level: int, dim: int, seed: int | None, schedule=None):
    """Noise one embedding [D] or [1,D] to ``level``; returns (noised [1,D], level embedding [1,dim])."""
    import torch

    from hearth.runtime.model import timestep_embedding

    x = embedding.reshape(1, -1).float()
    sqrt_ac, sqrt_1m = schedule if schedule is not None else noise_schedule()
    gen = torch.Generator().manual_seed(int(seed) if seed is not None else 0)
    noise = torch.randn(x.shape, dtype=x.dtype, generator=gen).to(x.device)
    noised = sqrt_ac[level].to(x.device) * x + sqrt_1m[level].to(x.device) * noise
    return noised, timestep_embedding(torch.tensor([level], device=x.device), dim)


def _level(amount: float) -> int:
    return round((MAX_NOISE_LEVEL - 1) * amount)


def unclip_adm(unclip_conditioning: list, device, dim: int, merge: float = 0.0, seed: int | None = None):
    """The ADM vector [1, D + dim] for a list of {clip_vision_output, strength, noise_augmentation}."""
    import torch

    schedule = noise_schedule()
    parts = []
    for entry in unclip_conditioning:
        output = entry["clip_vision_output"]
        embeds = output["image_embeds"] if not hasattr(output, "image_embeds") else output.image_embeds
        for embedding in embeds:
            noised, level_emb = augment(embedding.to(device), _level(entry["noise_augmentation"]), dim, seed,
                                        schedule)
            parts.append(torch.cat((noised, level_emb), 1) * entry["strength"])
    if not parts:
        raise ValueError("unCLIP conditioning without image embeddings")
    if len(parts) == 1:
        return parts[0]
    total = torch.stack(parts).sum(0)
    # ComfyUI draws this second noise from the global generator; Hearth seeds it like the first one
    noised, level_emb = augment(total[:, :dim], _level(merge), dim, seed, schedule)
    return torch.cat((noised, level_emb), 1)


def encode_adm(adm_channels: int, **kw):
    """An unCLIP model's ``y`` input for one conditioning entry (``kw`` as ``extra_conds`` gets it)."""
    import torch

    device = kw["device"]
    entries = kw.get("unclip_conditioning")
    if entries is None:
        return torch.zeros((1, adm_channels), device=device)
    seed = kw.get("seed")
    seed = (0 if seed is None else seed) - 10
    adm = unclip_adm(entries, device, adm_channels // 2, kw.get("unclip_noise_augment_merge", 0.05), seed)
    if adm.shape[1] != adm_channels:
        raise ValueError(f"the image embedding is {adm.shape[1] - adm_channels // 2} wide but this unCLIP model "
                         f"takes {adm_channels // 2} (use the CLIP vision model of its checkpoint)")
    return adm


def sdxl_pooled(**kw):
    """SDXL (Revision): the noised image embedding replaces the pooled text embedding."""
    seed = kw.get("seed")
    seed = (0 if seed is None else seed) - 10
    return unclip_adm(kw["unclip_conditioning"], kw["device"], SDXL_POOLED, 0.0, seed)[:, :SDXL_POOLED]


CLIP_VISION_PREFIX = "embedder.model.visual."


def load_checkpoint(path, manager, embedding_dirs=None):
    """unCLIPCheckpointLoader: (MODEL, CLIP, VAE, CLIP_VISION) from one file; CLIP_VISION is None when the
    file has no image encoder (ComfyUI returns None there too)."""
    import logging
    from pathlib import Path

    from hearth.runtime import clip_vision, loader
    from hearth.runtime.files import load_state_dict

    path = Path(path)
    model, clip, vae = loader.load_checkpoint(path, manager, embedding_dirs)

    def make():
        sd = load_state_dict(path)
        hf = clip_vision.to_hf_layout(sd, CLIP_VISION_PREFIX)
        if not hf:
            return None
        try:
            return clip_vision.build(hf, manager, f"{path.name}:clip_vision")
        except clip_vision.ClipVisionError as exc:
            raise clip_vision.ClipVisionError(f"{path.name}: {exc}") from None

    bundle = loader._cached(manager, path, "unclip_vision", make)
    vision = bundle.value
    if vision is None:
        logging.getLogger(__name__).warning("%s has no CLIP vision encoder", path.name)
    else:
        vision._bundle = bundle
    return model, clip, vae, vision
