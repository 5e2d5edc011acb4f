"""The pieces of custom sampling: NOISE values, guider variants and extra sampler functions.

* ``RandomNoise(seed)`` / ``EmptyNoise()``: NOISE values, ``generate_noise(latent_dict)`` gives the initial
  noise (ComfyUI's seeded CPU draw, ``batch_index`` aware) or zeros.
* ``BasicGuider`` (one conditioning, no CFG), ``DualCFGGuider`` (two conds + negative, two scales),
  ``PerpNegGuider`` (perpendicular negative): ``CFGGuider`` subclasses.
* ``sample_lcm_upscale`` and ``sample_euler_pp``: sampler functions for SamplerLCMUpscale / SamplerEulerCFGpp.
"""
from __future__ import annotations

import math

import torch

from hearth.sampling import guidance
from hearth.sampling.ksampler import CFGGuider
from hearth.sampling.noise import prepare_noise
from hearth.sampling.samplers import to_d


# --- NOISE ---------------------------------------------------------------------------------------

class EmptyNoise:
    """No initial noise (sampling starts from the latent as it is)."""

    def __init__(self) -> None:
        self.seed = 0

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        return torch.zeros(samples.shape, dtype=samples.dtype, layout=samples.layout, device="cpu")


class RandomNoise:
    """Gaussian noise from ``seed``, drawn as KSampler draws it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        return prepare_noise(input_latent["samples"], self.seed, input_latent.get("batch_index"))


# --- guiders -------------------------------------------------------------------------------------

def with_prompt_type(conditioning: list, prompt_type: str) -> list:
    return [[t, {**opts, "prompt_type": prompt_type}] for t, opts in conditioning]


class BasicGuider(CFGGuider):
    """The positive conditioning alone (no negative, so no CFG pass)."""

    def set_conds(self, positive) -> None:  # type: ignore[override]
        self.inner_set_conds({"positive": positive})


class DualCFGGuider(CFGGuider):
    """Two conditionings and a negative: ``cfg1`` pushes cond1 away from cond2, ``cfg2`` cond2 from the negative.

    ``nested``: apply the cond1/cond2 guidance first, then scale the result against the negative.
    """

    def set_cfg(self, cfg1: float, cfg2: float, nested: bool = False) -> None:  # type: ignore[override]
        self.cfg1, self.cfg2, self.nested = cfg1, cfg2, nested

    def set_conds(self, positive, middle, negative) -> None:  # type: ignore[override]
        self.inner_set_conds({"positive": positive, "middle": with_prompt_type(middle, "negative"),
                              "negative": negative})

    def predict_noise(self, x, timestep, model_options: dict, seed=None):
        negative, middle, positive = (self.conds.get(k) for k in ("negative", "middle", "positive"))
        model = self.inner_model
        if self.nested:
            out = guidance.calc_cond_batch(model, [negative, middle, positive], x, timestep, model_options)
            pred_text = guidance.cfg_function(model, out[2], out[1], self.cfg1, x, timestep, model_options,
                                              cond=positive, uncond=middle)
            return out[0] + self.cfg2 * (pred_text - out[0])
        if not model_options.get("disable_cfg1_optimization", False) and math.isclose(self.cfg2, 1.0):
            negative = None
            if math.isclose(self.cfg1, 1.0):
                middle = None
        out = guidance.calc_cond_batch(model, [negative, middle, positive], x, timestep, model_options)
        return guidance.cfg_function(model, out[1], out[0], self.cfg2, x, timestep, model_options,
                                     cond=middle, uncond=negative) + (out[2] - out[1]) * self.cfg1


def perp_neg(x, pred_pos, pred_neg, pred_nocond, neg_scale: float, cond_scale: float):
    """Perp-Neg (Armandpour et al. 2023): only the part of the negative direction orthogonal to the positive one."""
    pos = pred_pos - pred_nocond
    neg = pred_neg - pred_nocond
    perp = neg - ((neg * pos).sum() / torch.norm(pos) ** 2) * pos
    return pred_nocond + cond_scale * (pos - perp * neg_scale)


class PerpNegGuider(CFGGuider):
    """CFG around an empty prompt with a perpendicular negative; all three predictions in one batch."""

    def set_conds(self, positive, negative, empty_negative_prompt) -> None:  # type: ignore[override]
        self.inner_set_conds({"positive": positive, "negative": negative,
                              "empty_negative_prompt": with_prompt_type(empty_negative_prompt, "negative")})

    def set_cfg(self, cfg: float, neg_scale: float) -> None:  # type: ignore[override]
        self.cfg, self.neg_scale = cfg, neg_scale

    def predict_noise(self, x, timestep, model_options: dict, seed=None):
        positive = self.conds.get("positive")
        negative = self.conds.get("negative")
        empty = self.conds.get("empty_negative_prompt")
        if not model_options.get("disable_cfg1_optimization", False) and math.isclose(self.neg_scale, 0.0):
            negative = None
            if math.isclose(self.cfg, 1.0):
                empty = None
        model = self.inner_model
        conds = [positive, negative, empty]
        out = guidance.calc_cond_batch(model, conds, x, timestep, model_options)
        for fn in model_options.get("sampler_pre_cfg_function", []):
            out = fn({"conds": conds, "conds_out": out, "cond_scale": self.cfg, "timestep": timestep, "input": x,
                      "sigma": timestep, "model": model, "model_options": model_options})
        pred_pos, pred_neg, pred_empty = out
        result = perp_neg(x, pred_pos, pred_neg, pred_empty, self.neg_scale, self.cfg)
        for fn in model_options.get("sampler_post_cfg_function", []):
            result = fn({"denoised": result, "cond": positive, "uncond": negative, "cond_scale": self.cfg,
                         "model": model, "uncond_denoised": pred_neg, "cond_denoised": pred_pos, "sigma": timestep,
                         "model_options": model_options, "input": x, "empty_cond": empty,
                         "empty_cond_denoised": pred_empty})
        return result


# --- extra sampler functions ---------------------------------------------------------------------

@torch.no_grad()
def sample_lcm_upscale(model, x, sigmas, extra_args=None, callback=None, total_upscale=2.0,
                       upscale_method="bislerp", upscale_steps=None):
    """LCM steps that also upscale the latent a little after each of the first ``upscale_steps`` steps."""
    import numpy as np

    extra_args = {} if extra_args is None else extra_args
    if upscale_steps is None:
        upscale_steps = max(len(sigmas) // 2 + 1, 2)
    else:
        upscale_steps = min(upscale_steps + 1, len(sigmas) + 1)
    factors = np.linspace(1.0, total_upscale, upscale_steps)[1:]
    height, width = x.shape[-2], x.shape[-1]
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if i < len(factors):
            x = guidance.common_upscale(x, round(width * factors[i]), round(height * factors[i]), upscale_method,
                                        "disabled")
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * torch.randn_like(x)
    return x


@torch.no_grad()
def sample_euler_pp(model, x, sigmas, extra_args=None, callback=None):
    """Euler CFG++ ("alternative" form): the step direction uses the unconditional prediction's noise."""
    from hearth.sampling.samplers import capture_uncond

    extra_args = {} if extra_args is None else extra_args
    extra_args, uncond = capture_uncond(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x - denoised + uncond[0], sigmas[i], denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x
