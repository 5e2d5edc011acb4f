"""The noise parameterisation of a diffusion model, in the sigma (Karras) view.

A latent at noise level sigma is ``x = x0 + sigma * eps`` (variance exploding form). The network sees
``x / sqrt(sigma^2 + 1)`` and an integer timestep: the index of the training sigma nearest in log space,
as ComfyUI does. Its output is turned into a denoised estimate according to the prediction type
(``eps``, ``v``, …). Continuous-time models (EDM and "v" with atan time) have the same interface.
"""
from __future__ import annotations

import math

import torch


def _reshape(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    if sigma.nelement() == 1:
        return sigma.view(())
    return sigma.view(sigma.shape[:1] + (1,) * (ndim - 1))


def scaled_linear_sigmas(timesteps: int = 1000, linear_start: float = 0.00085,
                         linear_end: float = 0.012, dtype=torch.float32) -> torch.Tensor:
    """Training sigmas of the Stable Diffusion "scaled linear" beta schedule (float64 maths, ``dtype`` result)."""
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).to(dtype)


def zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Rescale a schedule so its last step has (almost) zero SNR (Lin et al. 2023)."""
    alphas_bar_sqrt = (1 / ((sigmas * sigmas) + 1)).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt ** 2
    alphas_bar[-1] = 4.8973451890853435e-08
    return ((1 - alphas_bar) / alphas_bar) ** 0.5


PREDICTIONS = ("eps", "v", "edm", "x0", "img_to_img", "lcm", "cosmos_rflow")


class _Parameterisation:
    """The model's input/output convention, chosen by ``prediction``.

    ``eps`` predicts the noise, ``v`` the velocity, ``edm`` the EDM (Karras) preconditioned output,
    ``x0`` the clean latent itself, ``img_to_img`` the clean latent from an unscaled input, and ``lcm``
    a latent-consistency output (eps prediction combined with a timestep-dependent skip connection),
    ``cosmos_rflow`` a rectified-flow velocity in Cosmos's sigma convention (t = sigma / (sigma + 1)).
    """

    prediction = "eps"
    sigma_data = 1.0

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.prediction == "img_to_img":
            return x
        if self.prediction == "cosmos_rflow":
            return x * (1.0 - _reshape(sigma / (sigma + 1), x.ndim))
        return x / (_reshape(sigma, x.ndim) ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, model_input: torch.Tensor):
        if self.prediction in ("x0", "img_to_img"):
            return model_output
        if self.prediction == "cosmos_rflow":
            t = _reshape(sigma / (sigma + 1), model_output.ndim)
            return model_input * (1.0 - t) - model_output * t
        s = _reshape(sigma, model_output.ndim)
        d = self.sigma_data
        if self.prediction == "v":
            return model_input * d ** 2 / (s ** 2 + d ** 2) - model_output * s * d / (s ** 2 + d ** 2) ** 0.5
        if self.prediction == "edm":
            return model_input * d ** 2 / (s ** 2 + d ** 2) + model_output * s * d / (s ** 2 + d ** 2) ** 0.5
        x0 = model_input - model_output * s
        if self.prediction == "lcm":
            # consistency-model boundary condition with sigma_data 0.5 and timestep scaling 10
            t = self.timestep(sigma).view(sigma.shape[:1] + (1,) * (model_output.ndim - 1)) * 10.0
            s = sigma.view(sigma.shape[:1] + (1,) * (model_output.ndim - 1))
            x0 = model_input - model_output * s
            c_skip = 0.25 / (t ** 2 + 0.25)
            c_out = t / (t ** 2 + 0.25) ** 0.5
            return c_out * x0 + c_skip * model_input
        return x0

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        s = _reshape(sigma, noise.ndim)
        if self.prediction == "cosmos_rflow":
            max_denoise = False  # the flow starts from pure noise scaled by sigma
        noise = noise * torch.sqrt(1.0 + s ** 2.0) if max_denoise else noise * s
        return noise + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {prediction!r}")


class DiscreteSampling(_Parameterisation):
    """Sigma table + prediction type of a model trained on 1000 discrete timesteps."""

    def __init__(self, prediction: str = "eps", sigmas: torch.Tensor | None = None, zsnr: bool = False) -> None:
        _check_prediction(prediction)
        self.prediction = prediction
        # float64 until after the optional zero-terminal-SNR rescale, as ComfyUI computes it
        sigmas = scaled_linear_sigmas(dtype=torch.float64) if sigmas is None else sigmas
        self.base_sigmas = sigmas  # the training table before any zero-terminal-SNR rescaling
        if zsnr:
            sigmas = zero_terminal_snr(sigmas)
        self.zsnr = zsnr
        self.set_sigmas(sigmas.float())
        self.sigma_data = 1.0

    def set_sigmas(self, sigmas: torch.Tensor) -> None:
        self.sigmas = sigmas.float()
        self.log_sigmas = self.sigmas.log()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index of the nearest training sigma (log distance), shaped like ``sigma``."""
        dists = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a (fractional) timestep, interpolated in log space."""
        t = torch.clamp(timestep.float().to(self.log_sigmas.device), min=0, max=len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return self.sigma(torch.tensor((1.0 - percent) * 999.0)).item()


class DistilledDiscreteSampling(DiscreteSampling):
    """A discrete schedule distilled to 50 of its 1000 timesteps (latent consistency models)."""

    original_timesteps = 50

    def __init__(self, prediction: str = "lcm", sigmas: torch.Tensor | None = None, zsnr: bool = False) -> None:
        super().__init__(prediction, sigmas, zsnr)
        full = self.sigmas
        self.skip_steps = len(full) // self.original_timesteps
        # every skip_steps-th training sigma, counted from the noisiest
        picked = [full[len(full) - 1 - i * self.skip_steps] for i in range(self.original_timesteps)]
        self.set_sigmas(torch.stack(picked[::-1]))

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        index = super().timestep(sigma)
        return index * self.skip_steps + (self.skip_steps - 1)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return super().sigma((timestep.float() - (self.skip_steps - 1)) / self.skip_steps)


class ContinuousSampling(_Parameterisation):
    """A continuous-time schedule between sigma_min and sigma_max (EDM-style models, or "v" with atan time).

    ``time`` is ``"edm"`` (timestep = log(sigma) / 4), ``"v"`` (timestep = atan(sigma) * 2 / pi) or ``"rflow"``
    (timestep = sigma / (sigma + 1), Cosmos).
    """

    def __init__(self, prediction: str, sigma_min: float, sigma_max: float, sigma_data: float = 1.0,
                 time: str = "edm") -> None:
        _check_prediction(prediction)
        if time not in ("edm", "v", "rflow"):
            raise ValueError(f"unknown continuous time parameterisation {time!r}")
        if not (sigma_min > 0 and sigma_max > 0):
            raise ValueError("sigma_min and sigma_max must be positive")
        self.prediction = prediction
        self.time = time
        self.sigma_data = sigma_data
        self.sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        self.log_sigmas = self.sigmas.log()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.time == "v":
            return sigma.atan() / math.pi * 2
        if self.time == "rflow":
            return sigma / (sigma + 1)
        return 0.25 * sigma.log()

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        if self.time == "v":
            return (timestep * math.pi / 2).tan()
        if self.time == "rflow":
            top = self.sigma_max
            t = torch.as_tensor(timestep)
            return torch.where(t >= top / (top + 1), top.to(t.dtype), t / (1 - t))
        return (timestep / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        log_min = math.log(self.sigma_min)
        return math.exp((math.log(self.sigma_max) - log_min) * (1.0 - percent) + log_min)
