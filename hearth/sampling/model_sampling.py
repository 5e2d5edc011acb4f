"""The noise parameterisation of a discrete-time diffusion model, in the sigma (Karras) view.

A latent at noise level sigma is ``x = x0 + sigma * eps`` (variance exploding form). The network sees
``x / sqrt(sigma^2 + 1)`` and an integer timestep: the index of the training sigma nearest in log space,
as ComfyUI does. Its output is turned into a denoised estimate according to the prediction type
(``eps`` or ``v``).
"""
from __future__ import annotations

import torch


def _reshape(sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    if sigma.nelement() == 1:
        return sigma.view(())
    return sigma.view(sigma.shape[:1] + (1,) * (ndim - 1))


def scaled_linear_sigmas(timesteps: int = 1000, linear_start: float = 0.00085,
                         linear_end: float = 0.012) -> torch.Tensor:
    """Training sigmas of the Stable Diffusion "scaled linear" beta schedule (float64 maths, float32 result)."""
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


def zero_terminal_snr(sigmas: torch.Tensor) -> torch.Tensor:
    """Rescale a schedule so its last step has (almost) zero SNR (Lin et al. 2023)."""
    alphas_bar_sqrt = (1 / ((sigmas * sigmas) + 1)).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt ** 2
    alphas_bar[-1] = 4.8973451890853435e-08
    return ((1 - alphas_bar) / alphas_bar) ** 0.5


class DiscreteSampling:
    """Sigma table + prediction type of a model trained on 1000 discrete timesteps."""

    def __init__(self, prediction: str = "eps", sigmas: torch.Tensor | None = None, zsnr: bool = False) -> None:
        if prediction not in ("eps", "v"):
            raise ValueError(f"unknown prediction type {prediction!r}")
        self.prediction = prediction
        sigmas = scaled_linear_sigmas() if sigmas is None else sigmas
        if zsnr:
            sigmas = zero_terminal_snr(sigmas)
        self.sigmas = sigmas.float()
        self.log_sigmas = self.sigmas.log()
        self.sigma_data = 1.0

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

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

    # --- the model's input/output convention ----------------------------------------------------
    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x / (_reshape(sigma, x.ndim) ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, model_input: torch.Tensor):
        s = _reshape(sigma, model_output.ndim)
        if self.prediction == "v":
            d = self.sigma_data
            return model_input * d ** 2 / (s ** 2 + d ** 2) - model_output * s * d / (s ** 2 + d ** 2) ** 0.5
        return model_input - model_output * s

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent_image: torch.Tensor,
                      max_denoise: bool = False) -> torch.Tensor:
        s = _reshape(sigma, noise.ndim)
        noise = noise * torch.sqrt(1.0 + s ** 2.0) if max_denoise else noise * s
        return noise + latent_image

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent
