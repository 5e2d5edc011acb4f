"""One sampling run: guider + sampler + sigmas + noise — ComfyUI's CFGGuider / KSAMPLER semantics.

There is one mechanism. A *guider* (``CFGGuider`` or a subclass) owns the model and the conditioning
and knows how to turn ``(x, sigma)`` into a guided denoised estimate; a *sampler* (``Sampler``) owns a
k-diffusion style function and its options; ``guider.sample(noise, latent, sampler, sigmas, ...)`` runs
them. KSampler is the special case "CFGGuider + sampler_object(name) + calculate_sigmas(...)", which is
also what the custom-sampling nodes (SamplerCustomAdvanced …) build piece by piece.

``model`` is a runtime diffusion model (``hearth.runtime.model.DiffusionModel``) offering
``model_sampling``, ``latent_format``, ``apply_model``, ``extra_conds`` and ``model_options``;
``prepare()`` is called before sampling so the memory manager can place (and patch) its weights.
"""
from __future__ import annotations

import inspect
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


def clone_model_options(options: dict | None) -> dict:
    """A copy of ``model_options`` whose lists and nested dicts can be changed without touching the original."""
    out = dict(options or {})
    for key, value in out.items():
        if isinstance(value, dict):
            out[key] = clone_model_options(value)
        elif isinstance(value, list):
            out[key] = list(value)
    return out


# --- what a sampler function calls ---------------------------------------------------------------

class Denoiser:
    """Wraps a guider for the sampler: the inpainting mask is re-imposed around every guided prediction."""

    def __init__(self, guider, sigmas: torch.Tensor, latent_image: torch.Tensor, noise: torch.Tensor) -> None:
        self.guider = guider
        self.inner_model = guider
        self.sigmas = sigmas
        self.latent_image = latent_image
        self.noise = noise

    @property
    def model_sampling(self):
        return self.guider.model_sampling

    def __call__(self, x, sigma, denoise_mask=None, model_options=None, seed=None):
        from hearth.engine.progress import check_interrupt

        check_interrupt()
        model_options = {} if model_options is None else model_options
        if denoise_mask is not None:
            if "denoise_mask_function" in model_options:
                denoise_mask = model_options["denoise_mask_function"](
                    sigma, denoise_mask, extra_options={"model": self.guider, "sigmas": self.sigmas})
            latent_mask = 1.0 - denoise_mask
            s = sigma.reshape([sigma.shape[0]] + [1] * (self.noise.ndim - 1))
            x = x * denoise_mask + self.model_sampling.noise_scaling(s, self.noise, self.latent_image) * latent_mask
        out = self.guider(x, sigma, model_options=model_options, seed=seed)
        if denoise_mask is not None:
            out = out * denoise_mask + self.latent_image * latent_mask
        return out


# --- samplers ------------------------------------------------------------------------------------

class Sampler:
    """A SAMPLER value: a sampler function ``fn(model, x, sigmas, extra_args, callback, **options)`` + options.

    ``inpaint_options={"random": True}`` re-noises the kept region of an inpainting run with fresh noise
    drawn from seed + 1 instead of the initial noise (what ComfyUI does for ``ddim``).
    """

    def __init__(self, function: Callable, extra_options: dict | None = None,
                 inpaint_options: dict | None = None) -> None:
        self.sampler_function = function
        self.extra_options = dict(extra_options or {})
        self.inpaint_options = dict(inpaint_options or {})
        # functions written for ComfyUI take a progress-bar flag ``disable``; Hearth's own do not
        try:
            self._takes_disable = "disable" in inspect.signature(function).parameters
        except (TypeError, ValueError):
            self._takes_disable = False

    @staticmethod
    def max_denoise(model_sampling, sigmas) -> bool:
        max_sigma = float(model_sampling.sigma_max)
        sigma = float(sigmas[0])
        return math.isclose(max_sigma, sigma, rel_tol=1e-05) or sigma > max_sigma

    def sample(self, guider, sigmas, extra_args: dict, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar: bool = False):
        extra_args["denoise_mask"] = denoise_mask
        inpaint_noise = noise
        if self.inpaint_options.get("random", False):
            seed = extra_args.get("seed")
            generator = torch.manual_seed((41 if seed is None else seed) + 1)
            inpaint_noise = torch.randn(noise.shape, generator=generator, device="cpu").to(noise.dtype).to(noise.device)
        model_k = Denoiser(guider, sigmas, latent_image, inpaint_noise)
        ms = guider.model_sampling
        x = ms.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(ms, sigmas))
        total = len(sigmas) - 1
        k_callback = None if callback is None else (
            lambda info: callback(info["i"], info["denoised"], info["x"], total))
        options = dict(self.extra_options)
        if self._takes_disable:
            options["disable"] = disable_pbar
        out = self.sampler_function(model_k, x, sigmas, extra_args=extra_args, callback=k_callback, **options)
        return ms.inverse_noise_scaling(sigmas[-1], out)


def ksampler(sampler_name: str, extra_options: dict | None = None, inpaint_options: dict | None = None) -> Sampler:
    """The Sampler for one of the k-diffusion names (``KSAMPLER_NAMES``) with extra options."""
    if sampler_name not in samplers.KSAMPLER_NAMES:
        raise ValueError(f"unknown sampler {sampler_name!r}")
    fn, _ = samplers.get_sampler(sampler_name)
    return Sampler(fn, extra_options, inpaint_options)


def sampler_object(name: str) -> Sampler:
    """The Sampler KSampler uses for ``sampler_name`` (any of ``SAMPLER_NAMES``)."""
    if name not in samplers.SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {name!r}")
    fn, random_inpaint_noise = samplers.get_sampler(name)
    return Sampler(fn, inpaint_options={"random": True} if random_inpaint_noise else None)


# --- guiders -------------------------------------------------------------------------------------

class CFGGuider:
    """A GUIDER value: positive/negative conditioning mixed with a classifier-free guidance scale.

    Subclasses change ``set_conds``/``set_cfg`` and ``predict_noise`` (the guided denoised estimate at one
    step); ``self.conds`` holds the processed conds and ``self.inner_model`` the model while sampling.
    """

    def __init__(self, model) -> None:
        self.model_patcher = model
        self.model_options = getattr(model, "model_options", None) or {}
        self.original_conds: dict[str, list[dict]] = {}
        self.cfg = 1.0

    @property
    def model_sampling(self):
        return self.model_patcher.model_sampling

    def set_conds(self, positive, negative) -> None:
        self.inner_set_conds({"positive": positive, "negative": negative})

    def set_cfg(self, cfg: float) -> None:
        self.cfg = cfg

    def inner_set_conds(self, conds: dict) -> None:
        for k, v in conds.items():
            self.original_conds[k] = guidance.convert_cond(v)

    def __call__(self, x, timestep, model_options=None, seed=None):
        return self.predict_noise(x, timestep, {} if model_options is None else model_options, seed)

    def predict_noise(self, x, timestep, model_options: dict, seed=None):
        return guidance.sampling_function(self.inner_model, x, timestep, self.conds.get("negative"),
                                          self.conds.get("positive"), self.cfg, model_options)

    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Sampler, sigmas: torch.Tensor,
               denoise_mask: torch.Tensor | None = None, callback: Callable | None = None,
               disable_pbar: bool = False, seed: int | None = None) -> torch.Tensor:
        """Sample from ``noise`` (unit variance) along ``sigmas``; returns the latent in VAE space (unscaled)."""
        if sigmas.shape[-1] == 0:
            return latent_image
        model = self.model_patcher
        self.inner_model = model
        self.conds = {k: [dict(c) for c in v] for k, v in self.original_conds.items()}
        hook_run = hooks.HookRun.prepare(model, self.conds)  # None unless some cond carries hooks
        try:
            device = model.prepare()
            noise = noise.to(device=device, dtype=torch.float32)
            latent_image = latent_image.to(device=device, dtype=torch.float32)
            sigmas = sigmas.to(device)
            if torch.count_nonzero(latent_image) > 0:  # the empty latent is not shifted
                latent_image = model.latent_format.process_in(latent_image)
            if denoise_mask is not None:
                denoise_mask = guidance.reshape_mask(denoise_mask, noise.shape).to(device)
            self.conds = guidance.process_conds(model, noise, self.conds, device, latent_image=latent_image,
                                                denoise_mask=denoise_mask, seed=seed)
            options = clone_model_options(self.model_options)
            options["sample_sigmas"] = sigmas
            options.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
            if hook_run is not None:
                hook_run.initialize_timesteps(self.conds)
                options[hooks.RUN_KEY] = hook_run
            extra_args = {"model_options": options, "seed": seed}
            with torch.inference_mode():
                out = sampler.sample(self, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
                                     disable_pbar)
                return model.latent_format.process_out(out.to(torch.float32))
        finally:
            if hook_run is not None:
                hook_run.finish()
            self.conds = {}
            self.inner_model = None


def guided_sample(model, noise, positive, negative, cfg, device, sampler: Sampler, sigmas, model_options=None,
                  latent_image=None, denoise_mask=None, callback=None, disable_pbar=False, seed=None):
    """ComfyUI's ``comfy.samplers.sample``: a CFGGuider over the model's own options runs ``sampler``
    (``device`` and ``model_options`` are accepted and, as there, not used)."""
    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider.sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)


def sample_with_sigmas(model, noise: torch.Tensor, positive, negative, cfg: float, sampler_name: str,
                       sigmas: torch.Tensor, latent_image: torch.Tensor, noise_mask: torch.Tensor | None = None,
                       callback: Callable | None = None, seed: int | None = None,
                       model_options: dict | None = None) -> torch.Tensor:
    """KSampler's run along given sigmas: a CFGGuider with ``sampler_object(sampler_name)``."""
    guider = CFGGuider(model)
    if model_options is not None:
        guider.model_options = model_options
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider.sample(noise, latent_image, sampler_object(sampler_name), sigmas, denoise_mask=noise_mask,
                         callback=callback, seed=seed)


def step_range(sigmas: torch.Tensor, start_step: int | None, last_step: int | None,
               force_full_denoise: bool) -> torch.Tensor | None:
    """KSamplerAdvanced's start/end steps on a schedule; None when nothing is left to sample."""
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[:last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return None
        sigmas = sigmas[start_step:]
    return sigmas


def ksample(model, noise: torch.Tensor, steps: int, cfg: float, sampler_name: str, scheduler: str, positive,
            negative, latent_image: torch.Tensor, denoise: float = 1.0, start_step: int | None = None,
            last_step: int | None = None, force_full_denoise: bool = False, noise_mask=None,
            callback: Callable | None = None, seed: int | None = None) -> torch.Tensor:
    """KSampler / KSamplerAdvanced: schedule ``steps`` (denoise, start/end step), then sample."""
    if sampler_name not in samplers.SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {sampler_name!r}")
    if scheduler not in schedules.SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}")
    sigmas = step_range(calculate_sigmas(model.model_sampling, sampler_name, scheduler, steps, denoise),
                        start_step, last_step, force_full_denoise)
    if sigmas is None:
        return latent_image if latent_image is not None else torch.zeros_like(noise)
    return sample_with_sigmas(model, noise, positive, negative, cfg, sampler_name, sigmas, latent_image,
                              noise_mask=noise_mask, callback=callback, seed=seed)
