"""More schedulers, samplers and guidance patches from ComfyUI's extras.

AlignYourStepsScheduler, GITSScheduler, OptimalStepsScheduler (published noise-level tables, see
hearth/sampling/noise_tables.py), SamplerLCMUpscale and SamplerEulerCFGpp, CFGZeroStar and CFGNorm,
APG (adaptive projected guidance), "Epsilon Scaling", PerpNeg and PerpNegGuider.

Model patches clone the MODEL and add a hook to its ``model_options`` (``sampler_cfg_function``,
``sampler_pre_cfg_function`` or ``sampler_post_cfg_function``), as ComfyUI's do.
Importing this module does not import torch.
"""
from __future__ import annotations

PYTHON_MODULE = "comfy_extras.nodes_align_your_steps"


def add_post_cfg(model, fn, disable_cfg1_optimization: bool = False):
    m = model.clone()
    m.model_options["sampler_post_cfg_function"] = list(m.model_options.get("sampler_post_cfg_function", [])) + [fn]
    if disable_cfg1_optimization:
        m.model_options["disable_cfg1_optimization"] = True
    return m


def add_pre_cfg(model, fn, disable_cfg1_optimization: bool = False):
    m = model.clone()
    m.model_options["sampler_pre_cfg_function"] = list(m.model_options.get("sampler_pre_cfg_function", [])) + [fn]
    if disable_cfg1_optimization:
        m.model_options["disable_cfg1_optimization"] = True
    return m


def set_cfg_function(model, fn, disable_cfg1_optimization: bool = False):
    m = model.clone()
    m.model_options["sampler_cfg_function"] = fn
    if disable_cfg1_optimization:
        m.model_options["disable_cfg1_optimization"] = True
    return m


# --- table schedulers ----------------------------------------------------------------------------

_DENOISE = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})


class AlignYourStepsScheduler:
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_type": ("COMBO", {"multiselect": False, "options": ["SD1", "SDXL", "SVD"]}),
                             "steps": ("INT", {"default": 10, "min": 1, "max": 10000}),
                             "denoise": _DENOISE}}

    def get_sigmas(self, model_type, steps, denoise):
        from hearth.sampling import noise_tables, schedules

        if model_type not in noise_tables.AYS:
            raise ValueError(f"unknown model type {model_type!r}")
        return (schedules.from_table(noise_tables.AYS[model_type], steps, denoise),)


class GITSScheduler:
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"coeff": ("FLOAT", {"default": 1.2, "min": 0.8, "max": 1.5, "step": 0.05}),
                             "steps": ("INT", {"default": 10, "min": 2, "max": 1000}),
                             "denoise": _DENOISE}}

    def get_sigmas(self, coeff, steps, denoise):
        from hearth.sampling import noise_tables, schedules

        lists = noise_tables.GITS.get(round(coeff, 2))
        if lists is None:
            raise ValueError(f"GITSScheduler has tables for coeff 0.80 to 1.50 in steps of 0.05, not {coeff}")
        if steps < 2:
            raise ValueError("GITSScheduler needs at least 2 steps")
        # tables for 2 … 20 steps; longer schedules resample the 20-step one
        levels = lists[steps - 2] if steps <= 20 else lists[-1]
        return (schedules.from_table(levels, steps, denoise),)


class OptimalStepsScheduler:
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    CATEGORY = "sampling/custom_sampling/schedulers"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_type": ("COMBO", {"multiselect": False, "options": ["FLUX", "Wan", "Chroma"]}),
                             "steps": ("INT", {"default": 20, "min": 3, "max": 1000}),
                             "denoise": _DENOISE}}

    def get_sigmas(self, model_type, steps, denoise):
        from hearth.sampling import noise_tables, schedules

        if model_type not in noise_tables.OPTIMAL_STEPS:
            raise ValueError(f"unknown model type {model_type!r}")
        return (schedules.from_table(noise_tables.OPTIMAL_STEPS[model_type], steps, denoise),)


# --- samplers ------------------------------------------------------------------------------------

class SamplerLCMUpscale:
    UPSCALE_METHODS = ["bislerp", "nearest-exact", "bilinear", "area", "bicubic"]
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "sampling/custom_sampling/samplers"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"scale_ratio": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 20.0, "step": 0.01}),
                             "scale_steps": ("INT", {"default": -1, "min": -1, "max": 1000, "step": 1}),
                             "upscale_method": ("COMBO", {"multiselect": False, "options": cls.UPSCALE_METHODS})}}

    def get_sampler(self, scale_ratio, scale_steps, upscale_method):
        from hearth.sampling.custom import sample_lcm_upscale
        from hearth.sampling.ksampler import Sampler

        if upscale_method not in self.UPSCALE_METHODS:
            raise ValueError(f"unknown upscale method {upscale_method!r}")
        return (Sampler(sample_lcm_upscale, {"total_upscale": scale_ratio, "upscale_method": upscale_method,
                                             "upscale_steps": None if scale_steps < 0 else scale_steps}),)


class SamplerEulerCFGpp:
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"version": ("COMBO", {"multiselect": False, "options": ["regular", "alternative"]})}}

    def get_sampler(self, version):
        from hearth.sampling.custom import sample_euler_pp
        from hearth.sampling.ksampler import Sampler, ksampler

        if version == "alternative":
            return (Sampler(sample_euler_pp),)
        return (ksampler("euler_cfg_pp"),)


# --- guidance patches ----------------------------------------------------------------------------

class CFGZeroStar:
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("patched_model",)
    FUNCTION = "patch"
    CATEGORY = "advanced/guidance"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {})}}

    def patch(self, model):
        import torch

        def cfg_zero_star(args):
            # CFG-Zero* (Fan et al. 2025): rescale the unconditional prediction by the optimal projection
            # of the conditional noise onto the unconditional one
            x, cond_p, uncond_p = args["input"], args["cond_denoised"], args["uncond_denoised"]
            pos, neg = (x - cond_p), (x - uncond_p)
            pos_flat, neg_flat = pos.reshape(pos.shape[0], -1), neg.reshape(neg.shape[0], -1)
            alpha = (pos_flat * neg_flat).sum(dim=1, keepdim=True) / (
                torch.sum(neg_flat ** 2, dim=1, keepdim=True) + 1e-8)
            alpha = alpha.reshape([pos.shape[0]] + [1] * (pos.ndim - 1))
            return args["denoised"] + uncond_p * (alpha - 1.0) + args["cond_scale"] * uncond_p * (1.0 - alpha)

        return (add_post_cfg(model, cfg_zero_star),)


class CFGNorm:
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("patched_model",)
    FUNCTION = "patch"
    CATEGORY = "advanced/guidance"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    def patch(self, model, strength):
        import torch

        def cfg_norm(args):
            # never let the guided prediction's per-pixel channel norm exceed the conditional one's
            guided = args["denoised"]
            cond_norm = torch.norm(args["cond_denoised"], dim=1, keepdim=True)
            guided_norm = torch.norm(guided, dim=1, keepdim=True)
            return guided * (cond_norm / (guided_norm + 1e-8)).clamp(min=0.0, max=1.0) * strength

        return (add_post_cfg(model, cfg_norm),)


class APG:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "sampling/custom_sampling"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "eta": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                              "tooltip": "Weight of the guidance parallel to the prediction (1: plain CFG)."}),
            "norm_threshold": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 50.0, "step": 0.1,
                                         "tooltip": "Cap on the guidance vector's norm (0: no cap)."}),
            "momentum": ("FLOAT", {"default": 0.0, "min": -5.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "Running-average weight of past guidance (0: none)."}),
        }}

    def patch(self, model, eta, norm_threshold, momentum):
        import torch

        state = {"avg": None, "prev_sigma": None}  # per patched model, reset when a new run starts

        def pre_cfg(args):
            # Adaptive Projected Guidance (Sadat et al. 2024)
            out = args["conds_out"]
            if len(out) == 1:
                return out
            cond, uncond = out[0], out[1]
            sigma = args["sigma"][0]
            scale = args["cond_scale"]
            if state["prev_sigma"] is not None and sigma > state["prev_sigma"]:
                state["avg"] = None
            state["prev_sigma"] = sigma
            guide = cond - uncond
            if momentum != 0:
                state["avg"] = guide if state["avg"] is None else momentum * state["avg"] + guide
                guide = state["avg"]
            if norm_threshold > 0:
                norm = guide.norm(p=2, dim=[-1, -2, -3], keepdim=True)
                guide = guide * torch.minimum(torch.ones_like(norm), norm_threshold / norm)
            unit = torch.nn.functional.normalize(cond, dim=[-1, -2, -3])
            parallel = (guide * unit).sum(dim=[-1, -2, -3], keepdim=True) * unit
            orthogonal = guide - parallel
            modified = orthogonal + eta * parallel
            return [(uncond + modified) + (cond - uncond) / scale, uncond] + list(out[2:])

        return (add_pre_cfg(model, pre_cfg),)


class EpsilonScaling:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "model_patches/unet"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "scaling_factor": ("FLOAT", {"default": 1.005, "min": 0.5, "max": 1.5, "step": 0.001,
                                                          "display": "number"})}}

    def patch(self, model, scaling_factor):
        factor = scaling_factor if scaling_factor != 0 else 1e-9

        def epsilon_scaling(args):
            # Ning et al. 2023: divide the guided noise prediction by a constant to counter exposure bias
            x = args["input"]
            return x - (x - args["denoised"]) / factor

        return (add_post_cfg(model, epsilon_scaling),)


class PerpNeg:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}), "empty_conditioning": ("CONDITIONING", {}),
                             "neg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    def patch(self, model, empty_conditioning, neg_scale):
        from hearth.sampling import guidance
        from hearth.sampling.custom import perp_neg

        nocond = guidance.convert_cond(empty_conditioning)

        def cfg_function(args):
            m, x, sigma = args["model"], args["input"], args["sigma"]
            options = args["model_options"]
            processed = guidance.encode_model_conds(m, [dict(c) for c in nocond], x, x.device, "negative")
            (pred_nocond,) = guidance.calc_cond_batch(m, [processed], x, sigma, options)
            return x - perp_neg(x, args["cond_denoised"], args["uncond_denoised"], pred_nocond, neg_scale,
                                args["cond_scale"])

        return (set_cfg_function(model, cfg_function),)


class PerpNegGuider:
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    CATEGORY = "_for_testing"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}), "positive": ("CONDITIONING", {}), "negative": ("CONDITIONING", {}),
            "empty_conditioning": ("CONDITIONING", {}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "neg_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    def get_guider(self, model, positive, negative, empty_conditioning, cfg, neg_scale):
        from hearth.sampling.custom import PerpNegGuider as Guider

        guider = Guider(model)
        guider.set_conds(positive, negative, empty_conditioning)
        guider.set_cfg(cfg, neg_scale)
        return (guider,)


NODE_CLASS_MAPPINGS = {
    "AlignYourStepsScheduler": AlignYourStepsScheduler,
    "GITSScheduler": GITSScheduler,
    "OptimalStepsScheduler": OptimalStepsScheduler,
    "SamplerLCMUpscale": SamplerLCMUpscale,
    "SamplerEulerCFGpp": SamplerEulerCFGpp,
    "CFGZeroStar": CFGZeroStar,
    "CFGNorm": CFGNorm,
    "APG": APG,
    "Epsilon Scaling": EpsilonScaling,
    "PerpNeg": PerpNeg,
    "PerpNegGuider": PerpNegGuider,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SamplerEulerCFGpp": "SamplerEulerCFG++",
    "APG": "Adaptive Projected Guidance",
    "PerpNeg": "Perp-Neg (DEPRECATED by PerpNegGuider)",
}

NODE_PYTHON_MODULES = {
    "AlignYourStepsScheduler": "comfy_extras.nodes_align_your_steps",
    "GITSScheduler": "comfy_extras.nodes_gits",
    "OptimalStepsScheduler": "comfy_extras.nodes_optimalsteps",
    "SamplerLCMUpscale": "comfy_extras.nodes_advanced_samplers",
    "SamplerEulerCFGpp": "comfy_extras.nodes_advanced_samplers",
    "CFGZeroStar": "comfy_extras.nodes_cfg",
    "CFGNorm": "comfy_extras.nodes_cfg",
    "APG": "comfy_extras.nodes_apg",
    "Epsilon Scaling": "comfy_extras.nodes_eps",
    "PerpNeg": "comfy_extras.nodes_perpneg",
    "PerpNegGuider": "comfy_extras.nodes_perpneg",
}
