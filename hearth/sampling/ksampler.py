"""One sampling run: schedule, noise, inpainting mask, guidance, sampler — ComfyUI's KSampler semantics.

``model`` is a runtime diffusion model (``hearth.runtime.model.DiffusionModel``) offering
``model_sampling``, ``latent_format``, ``apply_model`` and ``extra_conds``; ``prepare()`` is called
before sampling so the memory manager can place (and patch) its weights.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from hearth.sampling import guidance, hooks, samplers, schedules


def calculate_sigmas(model_sampling, sampler_name: str, scheduler: str, steps: int,
                     denoise: float | None = 1.0) -> torch.Tensor:
    """The sigmas KSampler uses for ``steps`` at ``denoise`` (a denoise below 1 keeps the tail of a longer run)."""

    def compute(n: int) -> torch.Tensor:
        discard = sampler_name in samplers.DISCARD_PENULTIMATE_SIGMA
        sig = schedules.calculate_sigmas(model_sampling, scheduler, n + 1 if discard else n)
        if discard:
            sig = torch.cat([sig[:-2], sig[-1:]])
        return sig

    if denoise is None or denoise > 0.9999:
        return compute(steps)
    if denoise <= 0.0:
        return torch.FloatTensor([])
    return compute(int(steps / denoise))[-(steps + 1):]


class Denoiser:
    """What a sampler calls: guided denoised estimate, with the inpainting mask re-imposed each step."""

    def __init__(self, model, conds: dict[str, list[dict]], cfg: float, latent_image: torch.Tensor,
                 noise: torch.Tensor) -> None:
        self.model = model
        self.model_sampling = model.model_sampling
        self.conds = conds
        self.cfg = cfg
        self.latent_image = latent_image
        self.noise = noise

    def __call__(self, x, sigma, denoise_mask=None, model_options=None, seed=None):
        from hearth.engine.progress import check_interrupt

        check_interrupt()
        model_options = model_options or {}
        if denoise_mask is not None:
            latent_mask = 1.0 - denoise_mask
            s = sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1))
            x = x * denoise_mask + self.model_sampling.noise_scaling(s, self.noise, self.latent_image) * latent_mask
        out = guidance.sampling_function(self.model, x, sigma, self.conds.get("negative"), self.conds.get("positive"),
                                         self.cfg, model_options)
        if denoise_mask is not None:
            out = out * denoise_mask + self.latent_image * latent_mask
        return out


def _max_denoise(model_sampling, sigmas) -> bool:
    max_sigma = float(model_sampling.sigma_max)
    sigma = float(sigmas[0])
    return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma


def sample_with_sigmas(model, noise: torch.Tensor, positive, negative, cfg: float, sampler_name: str,
                       sigmas: torch.Tensor, latent_image: torch.Tensor, noise_mask: torch.Tensor | None = None,
                       callback: Callable | None = None, seed: int | None = None,
                       model_options: dict | None = None) -> torch.Tensor:
    """Sample from ``noise`` (unit variance) along ``sigmas``; returns the latent in VAE space (unscaled)."""
    if sigmas.shape[-1] == 0:
        return latent_image
    device = model.prepare()
    dtype = torch.float32
    latent_format = model.latent_format
    noise = noise.to(device=device, dtype=dtype)
    latent_image = latent_image.to(device=device, dtype=dtype)
    sigmas = sigmas.to(device)
    if torch.count_nonzero(latent_image) > 0:  # the empty latent is not shifted
        latent_image = latent_format.process_in(latent_image)
    denoise_mask = None
    if noise_mask is not None:
        denoise_mask = guidance.reshape_mask(noise_mask, noise.shape).to(device)

    conds = {"positive": guidance.convert_cond(positive), "negative": guidance.convert_cond(negative)}
    hook_run = hooks.HookRun.prepare(model, conds)  # None unless some cond carries hooks
    conds = guidance.process_conds(model, noise, conds, device, latent_image=latent_image,
                                   denoise_mask=denoise_mask, seed=seed)
    fn, random_inpaint_noise = samplers.get_sampler(sampler_name)
    inpaint_noise = noise
    if random_inpaint_noise:
        generator = torch.manual_seed((41 if seed is None else seed) + 1)
        inpaint_noise = torch.randn(noise.shape, generator=generator, device="cpu").to(noise.dtype).to(device)
    denoiser = Denoiser(model, conds, cfg, latent_image, inpaint_noise)
    ms = model.model_sampling
    x = ms.noise_scaling(sigmas[0], noise, latent_image, _max_denoise(ms, sigmas))
    options = dict(model_options or {})
    options["sample_sigmas"] = sigmas
    if hook_run is not None:
        hook_run.initialize_timesteps(conds)
        options[hooks.RUN_KEY] = hook_run
    extra_args = {"model_options": options, "seed": seed, "denoise_mask": denoise_mask}
    total = len(sigmas) - 1
    k_callback = None if callback is None else (
        lambda info: callback(info["i"], info["denoised"], info["x"], total))
    try:
        with torch.inference_mode():
            out = fn(denoiser, x, sigmas, extra_args=extra_args, callback=k_callback)
            out = ms.inverse_noise_scaling(sigmas[-1], out)
            return latent_format.process_out(out.to(torch.float32))
    finally:
        if hook_run is not None:
            hook_run.finish()


def ksample(model, noise: torch.Tensor, steps: int, cfg: float, sampler_name: str, scheduler: str, positive,
            negative, latent_image: torch.Tensor, denoise: float = 1.0, start_step: int | None = None,
            last_step: int | None = None, force_full_denoise: bool = False, noise_mask=None,
            callback: Callable | None = None, seed: int | None = None) -> torch.Tensor:
    """KSampler / KSamplerAdvanced: schedule ``steps`` (denoise, start/end step), then sample."""
    if sampler_name not in samplers.SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {sampler_name!r}")
    if scheduler not in schedules.SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}")
    sigmas = calculate_sigmas(model.model_sampling, sampler_name, scheduler, steps, denoise)
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[:last_step + 1]
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step < len(sigmas) - 1:
            sigmas = sigmas[start_step:]
        else:
            return latent_image if latent_image is not None else torch.zeros_like(noise)
    return sample_with_sigmas(model, noise, positive, negative, cfg, sampler_name, sigmas, latent_image,
                              noise_mask=noise_mask, callback=callback, seed=seed,
                              model_options=getattr(model, "model_options", None))
