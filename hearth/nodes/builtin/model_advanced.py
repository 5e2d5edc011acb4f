"""Advanced model nodes (ComfyUI's comfy_extras.nodes_model_advanced): the model's noise parameterisation,
RescaleCFG and the compute dtype.

ModelSamplingStableCascade / SD3 / AuraFlow / Flux are left out on purpose: Hearth loads none of those
model families. Importing this module does not import torch.
"""
from __future__ import annotations

PYTHON_MODULE = "comfy_extras.nodes_model_advanced"

COMPUTE_DTYPES = ["default", "fp32", "fp16", "bf16"]


class ModelSamplingDiscrete:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"
    SAMPLINGS = {"eps": "eps", "v_prediction": "v", "lcm": "lcm", "x0": "x0", "img_to_img": "img_to_img"}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "sampling": (list(cls.SAMPLINGS),),
                             "zsnr": ("BOOLEAN", {"default": False})}}

    def patch(self, model, sampling, zsnr):
        from hearth.sampling.model_sampling import DiscreteSampling, DistilledDiscreteSampling

        if sampling not in self.SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}")
        current = model.model_sampling
        # the model's own training table (before any earlier zero-terminal-SNR patch)
        table = getattr(current, "base_sigmas", None)
        kind = DistilledDiscreteSampling if sampling == "lcm" else DiscreteSampling
        m = model.clone()
        m.model_sampling = kind(self.SAMPLINGS[sampling], table, zsnr=zsnr)
        return (m,)


class ModelSamplingContinuousEDM:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "sampling": (["v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow"],),
            "sigma_max": ("FLOAT", {"default": 120.0, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
            "sigma_min": ("FLOAT", {"default": 0.002, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
        }}

    def patch(self, model, sampling, sigma_max, sigma_min):
        from hearth.sampling.model_sampling import ContinuousSampling

        # sampling -> (prediction, sigma_data, time parameterisation)
        kinds = {"eps": ("eps", 1.0, "edm"), "v_prediction": ("v", 1.0, "edm"), "edm": ("edm", 0.5, "edm"),
                 "edm_playground_v2.5": ("edm", 0.5, "edm"), "cosmos_rflow": ("cosmos_rflow", 1.0, "rflow")}
        if sampling not in kinds:
            raise ValueError(f"unknown sampling {sampling!r}")
        prediction, sigma_data, time = kinds[sampling]
        m = model.clone()
        m.model_sampling = ContinuousSampling(prediction, sigma_min, sigma_max, sigma_data, time=time)
        if sampling == "edm_playground_v2.5":
            from hearth.sampling.latent_formats import PLAYGROUND_2_5_LATENT

            m.model_options["latent_format"] = PLAYGROUND_2_5_LATENT
        return (m,)


class ModelSamplingContinuousV:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "sampling": (["v_prediction"],),
            "sigma_max": ("FLOAT", {"default": 500.0, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
            "sigma_min": ("FLOAT", {"default": 0.03, "min": 0.0, "max": 1000.0, "step": 0.001, "round": False}),
        }}

    def patch(self, model, sampling, sigma_max, sigma_min):
        from hearth.sampling.model_sampling import ContinuousSampling

        if sampling != "v_prediction":
            raise ValueError(f"unknown sampling {sampling!r}")
        m = model.clone()
        m.model_sampling = ContinuousSampling("v", sigma_min, sigma_max, 1.0, time="v")
        return (m,)


class RescaleCFG:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/model"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "multiplier": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def patch(self, model, multiplier):
        import torch

        def rescale_cfg(args):
            # Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", section 3.4:
            # match the guided v-prediction's standard deviation to the conditional one's, then blend
            cond, uncond, scale = args["cond"], args["uncond"], args["cond_scale"]
            sigma = args["sigma"]
            sigma = sigma.view(sigma.shape[:1] + (1,) * (cond.ndim - 1))
            x_orig = args["input"]
            x = x_orig / (sigma * sigma + 1.0)
            v_cond = ((x - (x_orig - cond)) * (sigma ** 2 + 1.0) ** 0.5) / sigma
            v_uncond = ((x - (x_orig - uncond)) * (sigma ** 2 + 1.0) ** 0.5) / sigma
            v_cfg = v_uncond + scale * (v_cond - v_uncond)
            ro_pos = torch.std(v_cond, dim=(1, 2, 3), keepdim=True)
            ro_cfg = torch.std(v_cfg, dim=(1, 2, 3), keepdim=True)
            v_final = multiplier * (v_cfg * (ro_pos / ro_cfg)) + (1.0 - multiplier) * v_cfg
            return x_orig - (x - v_final * sigma / (sigma * sigma + 1.0) ** 0.5)

        m = model.clone()
        m.model_options["sampler_cfg_function"] = rescale_cfg
        return (m,)


class ModelComputeDtype:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "advanced/debug/model"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "dtype": (COMPUTE_DTYPES,)}}

    def patch(self, model, dtype):
        if dtype not in COMPUTE_DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}")
        m = model.clone()
        if dtype == "default":
            m.model_options.pop("compute_dtype", None)
        else:
            m.model_options["compute_dtype"] = dtype
        return (m,)


NODE_CLASS_MAPPINGS = {
    "ModelSamplingDiscrete": ModelSamplingDiscrete,
    "ModelSamplingContinuousEDM": ModelSamplingContinuousEDM,
    "ModelSamplingContinuousV": ModelSamplingContinuousV,
    "RescaleCFG": RescaleCFG,
    "ModelComputeDtype": ModelComputeDtype,
}

NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
