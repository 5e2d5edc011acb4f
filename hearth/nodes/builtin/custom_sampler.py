"""Custom sampling nodes (ComfyUI's comfy_extras.nodes_custom_sampler): sampling built from parts.

Values: SIGMAS is a 1-D float tensor (highest first, usually ending in 0); SAMPLER a
``hearth.sampling.ksampler.Sampler``; NOISE an object with ``seed`` and ``generate_noise(latent)``;
GUIDER a ``hearth.sampling.ksampler.CFGGuider`` (or subclass) with ``sample(...)``.
KSampler is CFGGuider + KSamplerSelect + BasicScheduler + RandomNoise run by SamplerCustomAdvanced.

Importing this module does not import torch.
"""
from __future__ import annotations

import math

from hearth.nodes.builtin.sd import _preview_callback
from hearth.sampling.names import SAMPLER_NAMES, SCHEDULER_NAMES

PYTHON_MODULE = "comfy_extras.nodes_custom_sampler"

_SIGMA_MAX = ("FLOAT", {"default": 14.614642, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})
_SIGMA_MIN = ("FLOAT", {"default": 0.0291675, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False})
_STEPS = ("INT", {"default": 20, "min": 1, "max": 10000})
_ETA = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False})
_S_NOISE = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False})
_CFG = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})
_SEED = ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True})


def _ksampler(name: str, options: dict | None = None):
    from hearth.sampling.ksampler import ksampler

    return ksampler(name, options)


def _as_sigmas(sigmas):
    import torch

    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        raise ValueError("SIGMAS must be a 1-D tensor of noise levels")
    return sigmas


# --- schedulers ----------------------------------------------------------------------------------

class _Scheduler:
    RETURN_TYPES = ("SIGMAS",)
    CATEGORY = "sampling/custom_sampling/schedulers"
    FUNCTION = "get_sigmas"


class BasicScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "scheduler": (SCHEDULER_NAMES,), "steps": _STEPS,
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model, scheduler, steps, denoise):
        import torch

        from hearth.sampling import schedules

        total = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return (torch.FloatTensor([]),)
            total = int(steps / denoise)
        sigmas = schedules.calculate_sigmas(model.model_sampling, scheduler, total).cpu()
        return (sigmas[-(steps + 1):],)


class KarrasScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "rho": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                               "round": False})}}

    def get_sigmas(self, steps, sigma_max, sigma_min, rho):
        from hearth.sampling import schedules

        return (schedules.karras(steps, sigma_min, sigma_max, rho),)


class ExponentialScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN}}

    def get_sigmas(self, steps, sigma_max, sigma_min):
        from hearth.sampling import schedules

        if sigma_min <= 0 or sigma_max <= 0:
            raise ValueError("ExponentialScheduler needs sigma_min and sigma_max above 0")
        return (schedules.exponential(steps, sigma_min, sigma_max),)


class PolyexponentialScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "rho": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                               "round": False})}}

    def get_sigmas(self, steps, sigma_max, sigma_min, rho):
        from hearth.sampling import schedules

        if sigma_min <= 0 or sigma_max <= 0:
            raise ValueError("PolyexponentialScheduler needs sigma_min and sigma_max above 0")
        return (schedules.polyexponential(steps, sigma_min, sigma_max, rho),)


class LaplaceScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": _STEPS, "sigma_max": _SIGMA_MAX, "sigma_min": _SIGMA_MIN,
                             "mu": ("FLOAT", {"default": 0.0, "min": -10.0, "max": 10.0, "step": 0.1, "round": False}),
                             "beta": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 10.0, "step": 0.1,
                                                "round": False})}}

    def get_sigmas(self, steps, sigma_max, sigma_min, mu, beta):
        from hearth.sampling import schedules

        return (schedules.laplace(steps, sigma_min, sigma_max, mu, beta),)


class SDTurboScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model, steps, denoise):
        import torch

        start = 10 - int(10 * denoise)
        # SD-Turbo's ten timesteps 999, 899, …, 99; a denoise below 1 starts further down the list
        timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start:start + steps]
        sigmas = model.model_sampling.sigma(timesteps)
        return (torch.cat([sigmas, sigmas.new_zeros([1])]),)


class BetaSamplingScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "steps": _STEPS,
                             "alpha": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 50.0, "step": 0.01,
                                                 "round": False}),
                             "beta": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 50.0, "step": 0.01,
                                                "round": False})}}

    def get_sigmas(self, model, steps, alpha, beta):
        from hearth.sampling import schedules

        return (schedules.beta(model.model_sampling, steps, alpha, beta),)


class VPScheduler(_Scheduler):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "steps": _STEPS,
            "beta_d": ("FLOAT", {"default": 19.9, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}),
            "beta_min": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}),
            "eps_s": ("FLOAT", {"default": 0.001, "min": 0.0, "max": 1.0, "step": 0.0001, "round": False})}}

    def get_sigmas(self, steps, beta_d, beta_min, eps_s):
        from hearth.sampling import schedules

        return (schedules.vp(steps, beta_d, beta_min, eps_s),)


# --- sigma manipulation --------------------------------------------------------------------------

class _SigmasNode:
    CATEGORY = "sampling/custom_sampling/sigmas"
    FUNCTION = "get_sigmas"


class SplitSigmas(_SigmasNode):
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",), "step": ("INT", {"default": 0, "min": 0, "max": 10000})}}

    def get_sigmas(self, sigmas, step):
        sigmas = _as_sigmas(sigmas)
        return (sigmas[:step + 1], sigmas[step:])


class SplitSigmasDenoise(_SigmasNode):
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, sigmas, denoise):
        sigmas = _as_sigmas(sigmas)
        steps = max(sigmas.shape[-1] - 1, 0)
        total = round(steps * denoise)
        # (as ComfyUI: with total 0 the high part is empty and the low part the last sigma)
        return (sigmas[:-total], sigmas[-(total + 1):])


class FlipSigmas(_SigmasNode):
    RETURN_TYPES = ("SIGMAS",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",)}}

    def get_sigmas(self, sigmas):
        sigmas = _as_sigmas(sigmas)
        if len(sigmas) == 0:
            return (sigmas,)
        sigmas = sigmas.flip(0)
        if sigmas[0] == 0:
            sigmas[0] = 0.0001
        return (sigmas,)


class SetFirstSigma(_SigmasNode):
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "set_first_sigma"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sigmas": ("SIGMAS",),
                             "sigma": ("FLOAT", {"default": 136.0, "min": 0.0, "max": 20000.0, "step": 0.001,
                                                 "round": False})}}

    def set_first_sigma(self, sigmas, sigma):
        sigmas = _as_sigmas(sigmas).clone()
        if len(sigmas) == 0:
            raise ValueError("SetFirstSigma: the sigmas are empty")
        sigmas[0] = sigma
        return (sigmas,)


class ExtendIntermediateSigmas(_SigmasNode):
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "extend"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sigmas": ("SIGMAS",),
            "steps": ("INT", {"default": 2, "min": 1, "max": 100}),
            "start_at_sigma": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 20000.0, "step": 0.01, "round": False}),
            "end_at_sigma": ("FLOAT", {"default": 12.0, "min": 0.0, "max": 20000.0, "step": 0.01, "round": False}),
            "spacing": (["linear", "cosine", "sine"],)}}

    def extend(self, sigmas, steps, start_at_sigma, end_at_sigma, spacing):
        import torch

        sigmas = _as_sigmas(sigmas)
        if start_at_sigma < 0:
            start_at_sigma = float("inf")
        shapes = {"linear": lambda t: t,
                  "cosine": lambda t: torch.sin(t * math.pi / 2),
                  "sine": lambda t: 1 - torch.cos(t * math.pi / 2)}
        if spacing not in shapes:
            raise ValueError(f"unknown spacing {spacing!r}")
        fractions = shapes[spacing](torch.linspace(0, 1, steps + 1, device=sigmas.device)[1:-1])
        out: list = []
        for i in range(len(sigmas) - 1):
            current, following = sigmas[i], sigmas[i + 1]
            out.append(current)
            if end_at_sigma <= current <= start_at_sigma:
                out.extend((fractions * (following - current) + current).tolist())
        if len(sigmas) > 0:
            out.append(sigmas[-1])
        return (torch.FloatTensor([float(v) for v in out]),)


class SamplingPercentToSigma(_SigmasNode):
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("sigma_value",)
    FUNCTION = "get_sigma"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "sampling_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.0001}),
            "return_actual_sigma": ("BOOLEAN", {"default": False, "tooltip": (
                "Give the model's real sigma at 0 and 1 instead of the sentinel values used for range checks.")}),
        }}

    def get_sigma(self, model, sampling_percent, return_actual_sigma):
        ms = model.model_sampling
        sigma = ms.percent_to_sigma(sampling_percent)
        if return_actual_sigma:
            if sampling_percent == 0.0:
                sigma = ms.sigma_max.item()
            elif sampling_percent == 1.0:
                sigma = ms.sigma_min.item()
        return (sigma,)


# --- samplers ------------------------------------------------------------------------------------

class _SamplerNode:
    RETURN_TYPES = ("SAMPLER",)
    CATEGORY = "sampling/custom_sampling/samplers"
    FUNCTION = "get_sampler"


class KSamplerSelect(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sampler_name": (SAMPLER_NAMES,)}}

    def get_sampler(self, sampler_name):
        from hearth.sampling.ksampler import sampler_object

        return (sampler_object(sampler_name),)


class SamplerDPMPP_3M_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE, "noise_device": (["gpu", "cpu"],)}}

    def get_sampler(self, eta, s_noise, noise_device):
        name = "dpmpp_3m_sde" if noise_device == "cpu" else "dpmpp_3m_sde_gpu"
        return (_ksampler(name, {"eta": eta, "s_noise": s_noise}),)


class SamplerDPMPP_2M_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"solver_type": (["midpoint", "heun"],), "eta": _ETA, "s_noise": _S_NOISE,
                             "noise_device": (["gpu", "cpu"],)}}

    def get_sampler(self, solver_type, eta, s_noise, noise_device):
        name = "dpmpp_2m_sde" if noise_device == "cpu" else "dpmpp_2m_sde_gpu"
        return (_ksampler(name, {"eta": eta, "s_noise": s_noise, "solver_type": solver_type}),)


class SamplerDPMPP_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE,
                             "r": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.01, "round": False}),
                             "noise_device": (["gpu", "cpu"],)}}

    def get_sampler(self, eta, s_noise, r, noise_device):
        name = "dpmpp_sde" if noise_device == "cpu" else "dpmpp_sde_gpu"
        return (_ksampler(name, {"eta": eta, "s_noise": s_noise, "r": r}),)


class SamplerDPMPP_2S_Ancestral(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE}}

    def get_sampler(self, eta, s_noise):
        return (_ksampler("dpmpp_2s_ancestral", {"eta": eta, "s_noise": s_noise}),)


class SamplerEulerAncestral(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"eta": _ETA, "s_noise": _S_NOISE}}

    def get_sampler(self, eta, s_noise):
        return (_ksampler("euler_ancestral", {"eta": eta, "s_noise": s_noise}),)


class SamplerEulerAncestralCFGPP(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "eta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "round": False}),
            "s_noise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, "round": False})}}

    def get_sampler(self, eta, s_noise):
        return (_ksampler("euler_ancestral_cfg_pp", {"eta": eta, "s_noise": s_noise}),)


class SamplerLMS(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"order": ("INT", {"default": 4, "min": 1, "max": 100})}}

    def get_sampler(self, order):
        return (_ksampler("lms", {"order": order}),)


class SamplerDPMAdaptative(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        def f(default):
            return ("FLOAT", {"default": default, "min": 0.0, "max": 100.0, "step": 0.01, "round": False})

        return {"required": {"order": ("INT", {"default": 3, "min": 2, "max": 3}), "rtol": f(0.05),
                             "atol": f(0.0078), "h_init": f(0.05), "pcoeff": f(0.0), "icoeff": f(1.0),
                             "dcoeff": f(0.0), "accept_safety": f(0.81), "eta": f(0.0), "s_noise": f(1.0)}}

    def get_sampler(self, order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise):
        return (_ksampler("dpm_adaptive", {"order": order, "rtol": rtol, "atol": atol, "h_init": h_init,
                                           "pcoeff": pcoeff, "icoeff": icoeff, "dcoeff": dcoeff,
                                           "accept_safety": accept_safety, "eta": eta, "s_noise": s_noise}),)


class SamplerER_SDE(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "solver_type": ("COMBO", {"options": ["ER-SDE", "Reverse-time SDE", "ODE"]}),
            "max_stage": ("INT", {"default": 3, "min": 1, "max": 3}),
            "eta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01, "round": False,
                              "tooltip": "Stochasticity of the reverse-time SDE (0: the deterministic ODE); "
                                         "not used by the ER-SDE solver type."}),
            "s_noise": _S_NOISE}}

    def get_sampler(self, solver_type, max_stage, eta, s_noise):
        if solver_type not in ("ER-SDE", "Reverse-time SDE", "ODE"):
            raise ValueError(f"unknown solver type {solver_type!r}")
        if solver_type == "ODE" or (solver_type == "Reverse-time SDE" and eta == 0):
            eta, s_noise = 0, 0

        def reverse_time_sde_scaler(v):
            return v ** (eta + 1)

        scaler = None if solver_type == "ER-SDE" else reverse_time_sde_scaler
        return (_ksampler("er_sde", {"s_noise": s_noise, "noise_scaler": scaler, "max_stage": max_stage}),)


class SamplerSASolver(_SamplerNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "eta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, "round": False}),
            "sde_start_percent": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.001}),
            "sde_end_percent": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.001}),
            "s_noise": _S_NOISE,
            "predictor_order": ("INT", {"default": 3, "min": 1, "max": 6}),
            "corrector_order": ("INT", {"default": 4, "min": 0, "max": 6}),
            "use_pece": ("BOOLEAN", {}),
            "simple_order_2": ("BOOLEAN", {}),
        }}

    def get_sampler(self, model, eta, sde_start_percent, sde_end_percent, s_noise, predictor_order,
                    corrector_order, use_pece, simple_order_2):
        ms = model.model_sampling
        start, end = ms.percent_to_sigma(sde_start_percent), ms.percent_to_sigma(sde_end_percent)

        def tau_func(sigma):
            # the SDE part runs with strength eta between the two sigmas, the rest is an ODE
            if eta <= 0:
                return 0.0
            sigma = sigma.item() if hasattr(sigma, "item") else sigma
            return eta if start >= sigma >= end else 0.0

        return (_ksampler("sa_solver", {"tau_func": tau_func, "s_noise": s_noise, "predictor_order": predictor_order,
                                        "corrector_order": corrector_order, "use_pece": use_pece,
                                        "simple_order_2": simple_order_2}),)


# --- noise ---------------------------------------------------------------------------------------

class DisableNoise:
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    CATEGORY = "sampling/custom_sampling/noise"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def get_noise(self):
        from hearth.sampling.custom import EmptyNoise

        return (EmptyNoise(),)


class RandomNoise(DisableNoise):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise_seed": _SEED}}

    def get_noise(self, noise_seed):
        from hearth.sampling.custom import RandomNoise as Noise

        return (Noise(noise_seed),)


class AddNoise:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "add_noise"
    CATEGORY = "_for_testing/custom_sampling/noise"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "noise": ("NOISE",), "sigmas": ("SIGMAS",),
                             "latent_image": ("LATENT",)}}

    def add_noise(self, model, noise, sigmas, latent_image):
        import torch

        sigmas = _as_sigmas(sigmas)
        if len(sigmas) == 0:
            return (latent_image,)
        samples = latent_image["samples"]
        drawn = noise.generate_noise(latent_image)
        # the noise of the whole interval: from the first sigma down to the last
        scale = torch.abs(sigmas[0] - sigmas[-1]) if len(sigmas) > 1 else sigmas[0]
        fmt = model.latent_format
        if torch.count_nonzero(samples) > 0:  # the empty latent is not shifted
            samples = fmt.process_in(samples)
        noisy = model.model_sampling.noise_scaling(scale, drawn, samples)
        noisy = torch.nan_to_num(fmt.process_out(noisy), nan=0.0, posinf=0.0, neginf=0.0)
        out = latent_image.copy()
        out["samples"] = noisy
        return (out,)


# --- guiders -------------------------------------------------------------------------------------

class _GuiderNode:
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "sampling/custom_sampling/guiders"


class CFGGuider(_GuiderNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "cfg": _CFG}}

    def get_guider(self, model, positive, negative, cfg):
        from hearth.sampling.ksampler import CFGGuider as Guider

        guider = Guider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return (guider,)


class DualCFGGuider(_GuiderNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "cond1": ("CONDITIONING",), "cond2": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "cfg_conds": _CFG, "cfg_cond2_negative": _CFG,
                             "style": (["regular", "nested"],)}}

    def get_guider(self, model, cond1, cond2, negative, cfg_conds, cfg_cond2_negative, style):
        from hearth.sampling.custom import DualCFGGuider as Guider

        guider = Guider(model)
        guider.set_conds(cond1, cond2, negative)
        guider.set_cfg(cfg_conds, cfg_cond2_negative, nested=style == "nested")
        return (guider,)


class BasicGuider(_GuiderNode):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    def get_guider(self, model, conditioning):
        from hearth.sampling.custom import BasicGuider as Guider

        guider = Guider(model)
        guider.set_conds(conditioning)
        return (guider,)


# --- sampling ------------------------------------------------------------------------------------

def _fix_empty_latent_channels(model, samples):
    import torch

    from hearth.sampling.guidance import repeat_to_batch_size

    channels = model.latent_format.channels
    if samples.shape[1] != channels and torch.count_nonzero(samples) == 0:
        samples = repeat_to_batch_size(samples, channels, dim=1)
    return samples


def run_guider(guider, noise, sampler, sigmas, latent_image: dict):
    """SamplerCustomAdvanced's run: (output, denoised_output) LATENT dicts."""
    sigmas = _as_sigmas(sigmas)
    if "samples" not in latent_image:
        raise ValueError("latent_image has no samples")
    model = guider.model_patcher
    latent = latent_image.copy()
    latent["samples"] = _fix_empty_latent_channels(model, latent["samples"])
    steps = sigmas.shape[-1] - 1
    x0 = {}
    preview = _preview_callback(model, max(steps, 1))

    def callback(step, denoised, x, total):
        x0["x0"] = denoised
        preview(step, denoised, x, total)

    samples = guider.sample(noise.generate_noise(latent), latent["samples"], sampler, sigmas,
                            denoise_mask=latent.get("noise_mask"), callback=callback, seed=noise.seed)
    out = latent.copy()
    out["samples"] = samples.cpu()
    if "x0" in x0:
        denoised = latent.copy()
        denoised["samples"] = model.latent_format.process_out(x0["x0"].cpu().float())
    else:
        denoised = out
    return (out, denoised)


class SamplerCustom:
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    CATEGORY = "sampling/custom_sampling"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "add_noise": ("BOOLEAN", {"default": True}), "noise_seed": _SEED,
                             "cfg": _CFG, "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "sampler": ("SAMPLER",), "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}

    def sample(self, model, add_noise, noise_seed, cfg, positive, negative, sampler, sigmas, latent_image):
        from hearth.sampling.custom import EmptyNoise
        from hearth.sampling.custom import RandomNoise as Noise
        from hearth.sampling.ksampler import CFGGuider as Guider

        guider = Guider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        noise = Noise(noise_seed) if add_noise else EmptyNoise()
        noise.seed = noise_seed  # the samplers' own noise is seeded by noise_seed either way
        return run_guider(guider, noise, sampler, sigmas, latent_image)


class SamplerCustomAdvanced:
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    CATEGORY = "sampling/custom_sampling"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise": ("NOISE",), "guider": ("GUIDER",), "sampler": ("SAMPLER",),
                             "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}

    def sample(self, noise, guider, sampler, sigmas, latent_image):
        return run_guider(guider, noise, sampler, sigmas, latent_image)


NODE_CLASS_MAPPINGS = {
    "SamplerCustom": SamplerCustom,
    "BasicScheduler": BasicScheduler,
    "KarrasScheduler": KarrasScheduler,
    "ExponentialScheduler": ExponentialScheduler,
    "PolyexponentialScheduler": PolyexponentialScheduler,
    "LaplaceScheduler": LaplaceScheduler,
    "VPScheduler": VPScheduler,
    "BetaSamplingScheduler": BetaSamplingScheduler,
    "SDTurboScheduler": SDTurboScheduler,
    "KSamplerSelect": KSamplerSelect,
    "SamplerEulerAncestral": SamplerEulerAncestral,
    "SamplerEulerAncestralCFGPP": SamplerEulerAncestralCFGPP,
    "SamplerLMS": SamplerLMS,
    "SamplerDPMPP_3M_SDE": SamplerDPMPP_3M_SDE,
    "SamplerDPMPP_2M_SDE": SamplerDPMPP_2M_SDE,
    "SamplerDPMPP_SDE": SamplerDPMPP_SDE,
    "SamplerDPMPP_2S_Ancestral": SamplerDPMPP_2S_Ancestral,
    "SamplerDPMAdaptative": SamplerDPMAdaptative,
    "SamplerER_SDE": SamplerER_SDE,
    "SamplerSASolver": SamplerSASolver,
    "SplitSigmas": SplitSigmas,
    "SplitSigmasDenoise": SplitSigmasDenoise,
    "FlipSigmas": FlipSigmas,
    "SetFirstSigma": SetFirstSigma,
    "ExtendIntermediateSigmas": ExtendIntermediateSigmas,
    "SamplingPercentToSigma": SamplingPercentToSigma,
    "CFGGuider": CFGGuider,
    "DualCFGGuider": DualCFGGuider,
    "BasicGuider": BasicGuider,
    "RandomNoise": RandomNoise,
    "DisableNoise": DisableNoise,
    "AddNoise": AddNoise,
    "SamplerCustomAdvanced": SamplerCustomAdvanced,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerEulerAncestralCFGPP": "SamplerEulerAncestralCFG++",
}
