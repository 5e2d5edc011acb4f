"""ComfyUI's ``comfy.model_sampling`` over ``hearth.sampling.model_sampling``.

Packs build a model's sampling ComfyUI's way, a schedule class mixed with a prediction type::

    class ModelSamplingAdvanced(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
        pass
    m.add_object_patch("model_sampling", ModelSamplingAdvanced())

``ModelSamplingDiscrete`` is Hearth's ``DiscreteSampling`` (ComfyUI's 1000-step scaled-linear table,
``zsnr``), ``ModelSamplingContinuousEDM`` / ``ModelSamplingContinuousV`` are Hearth's
``ContinuousSampling`` (EDM log time, atan time); the prediction type comes from the mixin:
``EPS``, ``V_PREDICTION``, ``EDM``, ``X0``, ``IMG_TO_IMG``. A ``model_config`` argument is read for its
``sampling_settings`` only. Flow-matching samplings (``CONST``, ``ModelSamplingDiscreteFlow``,
``ModelSamplingFlux``, Stable Cascade, Cosmos RFlow) are not provided: Hearth loads no such models.
The schedule classes subclass torch-based code, so they are made on first access.
"""
from __future__ import annotations

import functools

from hearth.compat.shims_support import module_getattr, not_provided_class


class EPS:
    hearth_prediction = "eps"


class V_PREDICTION(EPS):
    hearth_prediction = "v"


class EDM(V_PREDICTION):
    hearth_prediction = "edm"


class X0(EPS):
    hearth_prediction = "x0"


class IMG_TO_IMG(X0):
    hearth_prediction = "img_to_img"


_FLOW = "flow-matching models are not in Hearth's runtime"
CONST = not_provided_class("comfy.model_sampling.CONST", _FLOW)
COSMOS_RFLOW = not_provided_class("comfy.model_sampling.COSMOS_RFLOW", _FLOW)
ModelSamplingDiscreteFlow = not_provided_class("comfy.model_sampling.ModelSamplingDiscreteFlow", _FLOW)
ModelSamplingFlux = not_provided_class("comfy.model_sampling.ModelSamplingFlux", _FLOW)
StableCascadeSampling = not_provided_class("comfy.model_sampling.StableCascadeSampling",
                                           "Stable Cascade is not in Hearth's runtime")
ModelSamplingCosmosRFlow = not_provided_class("comfy.model_sampling.ModelSamplingCosmosRFlow", _FLOW)


def _prediction(obj, default: str = "eps") -> str:
    for cls in type(obj).__mro__:
        if "hearth_prediction" in vars(cls):
            return vars(cls)["hearth_prediction"]
    return default


def _settings(model_config) -> dict:
    if model_config is None:
        return {}
    return dict(getattr(model_config, "sampling_settings", None) or {})


@functools.cache
def _discrete():
    from hearth.sampling.model_sampling import DiscreteSampling, scaled_linear_sigmas

    class ModelSamplingDiscrete(DiscreteSampling):
        """ComfyUI's discrete schedule (scaled-linear betas over 1000 steps), prediction from the mixin."""

        def __init__(self, model_config=None, zsnr=None):
            settings = _settings(model_config)
            schedule = settings.get("beta_schedule", "linear")
            if schedule != "linear":
                raise ValueError(f"comfy.model_sampling.ModelSamplingDiscrete: beta schedule {schedule!r} is not "
                                 "provided by Hearth (only 'linear', the scaled-linear schedule)")
            import torch

            sigmas = scaled_linear_sigmas(int(settings.get("timesteps", 1000)),
                                          settings.get("linear_start", 0.00085),
                                          settings.get("linear_end", 0.012), dtype=torch.float64)
            if zsnr is None:
                zsnr = bool(settings.get("zsnr", False))
            super().__init__(_prediction(self), sigmas, zsnr=zsnr)

    ModelSamplingDiscrete.__module__ = "comfy.model_sampling"
    return ModelSamplingDiscrete


@functools.cache
def _continuous(time: str, defaults: tuple):
    from hearth.sampling.model_sampling import ContinuousSampling

    class _Continuous(ContinuousSampling):
        def __init__(self, model_config=None):
            settings = _settings(model_config)
            self.set_parameters(settings.get("sigma_min", defaults[0]), settings.get("sigma_max", defaults[1]),
                                settings.get("sigma_data", defaults[2]))

        def set_parameters(self, sigma_min, sigma_max, sigma_data):
            ContinuousSampling.__init__(self, _prediction(self), sigma_min, sigma_max, sigma_data, time=time)

    _Continuous.__module__ = "comfy.model_sampling"
    return _Continuous


def _edm():
    cls = _continuous("edm", (0.002, 120.0, 1.0))
    cls.__name__ = cls.__qualname__ = "ModelSamplingContinuousEDM"
    return cls


def _v():
    cls = _continuous("v", (0.002, 120.0, 1.0))
    cls.__name__ = cls.__qualname__ = "ModelSamplingContinuousV"
    return cls


def rescale_zero_terminal_snr_sigmas(sigmas):
    from hearth.sampling.model_sampling import zero_terminal_snr

    return zero_terminal_snr(sigmas)


__getattr__ = module_getattr("comfy.model_sampling", {
    "ModelSamplingDiscrete": _discrete,
    "ModelSamplingContinuousEDM": _edm,
    "ModelSamplingContinuousV": _v,
})
