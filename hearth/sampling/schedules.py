"""Sigma schedules under ComfyUI's scheduler names.

Every function returns a float32 tensor of ``steps + 1`` sigmas (fewer for ``beta`` when timesteps
repeat) ending in 0, highest first. ``ms`` is a ``DiscreteSampling`` (its training sigma table).
"""
from __future__ import annotations

import math

import torch

from hearth.sampling.names import SCHEDULER_NAMES  # noqa: F401 (this module implements them)


def _append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def simple(ms, steps: int) -> torch.Tensor:
    """Evenly spaced indices into the training sigma table."""
    stride = len(ms.sigmas) / steps
    sigs = [float(ms.sigmas[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.FloatTensor(sigs + [0.0])


def ddim_uniform(ms, steps: int) -> torch.Tensor:
    """DDIM's uniform timestep spacing."""
    x = 1
    if math.isclose(float(ms.sigmas[x]), 0, abs_tol=0.00001):
        steps += 1
        sigs: list[float] = []
    else:
        sigs = [0.0]
    stride = max(len(ms.sigmas) // steps, 1)
    while x < len(ms.sigmas):
        sigs.append(float(ms.sigmas[x]))
        x += stride
    return torch.FloatTensor(sigs[::-1])


def normal(ms, steps: int, sgm: bool = False) -> torch.Tensor:
    """Linearly spaced (fractional) timesteps from sigma_max to sigma_min; ``sgm`` drops the endpoint."""
    start = ms.timestep(ms.sigma_max)
    end = ms.timestep(ms.sigma_min)
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps)
    sigs = [float(ms.sigma(t)) for t in timesteps]
    if append_zero:
        sigs.append(0.0)
    return torch.FloatTensor(sigs)


def sgm_uniform(ms, steps: int) -> torch.Tensor:
    return normal(ms, steps, sgm=True)


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) schedule: uniform in sigma^(1/rho)."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Uniform in log sigma."""
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def beta(ms, steps: int, alpha: float = 0.6, beta_: float = 0.6) -> torch.Tensor:
    """Timesteps at quantiles of a Beta(alpha, beta) distribution (Lee et al. 2024)."""
    import numpy
    import scipy.stats

    total = len(ms.sigmas) - 1
    ts = 1 - numpy.linspace(0, 1, steps, endpoint=False)
    ts = numpy.rint(scipy.stats.beta.ppf(ts, alpha, beta_) * total)
    sigs: list[float] = []
    last = -1
    for t in ts:
        if t != last:
            sigs.append(float(ms.sigmas[int(t)]))
        last = t
    sigs.append(0.0)
    return torch.FloatTensor(sigs)


def linear_quadratic(ms, steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None):
    """Linear then quadratic in sigma (from Mochi's sampler), scaled by sigma_max."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        if linear_steps is None:
            linear_steps = steps // 2
        linear_part = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quad_coef = step_diff / (linear_steps * quadratic_steps ** 2)
        lin_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps ** 2)
        const = quad_coef * (linear_steps ** 2)
        quad_part = [quad_coef * (i ** 2) + lin_coef * i + const for i in range(linear_steps, steps)]
        schedule = [1.0 - x for x in linear_part + quad_part + [1.0]]
    return torch.FloatTensor(schedule) * ms.sigma_max.cpu()


def kl_optimal(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Uniform in arctan(sigma) (the KL-optimal schedule of Teng et al. 2024)."""
    idx = torch.arange(n, dtype=torch.float).div_(n - 1) if n > 1 else torch.zeros(1)
    sigmas = idx.new_zeros(n + 1)
    sigmas[:-1] = (idx * math.atan(sigma_min) + (1 - idx) * math.atan(sigma_max)).tan_()
    return sigmas


# name -> (function, takes the model sampling object)
SCHEDULERS = {
    "simple": (simple, True),
    "sgm_uniform": (sgm_uniform, True),
    "karras": (karras, False),
    "exponential": (exponential, False),
    "ddim_uniform": (ddim_uniform, True),
    "beta": (beta, True),
    "normal": (normal, True),
    "linear_quadratic": (linear_quadratic, True),
    "kl_optimal": (kl_optimal, False),
}


def calculate_sigmas(ms, scheduler: str, steps: int) -> torch.Tensor:
    try:
        fn, uses_ms = SCHEDULERS[scheduler]
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler!r}") from None
    if uses_ms:
        return fn(ms, steps)
    return fn(steps, float(ms.sigma_min), float(ms.sigma_max))


# --- the custom-sampling schedulers (k-diffusion's constructions) ---------------------------------

def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """log sigma follows a polynomial ramp of degree ``rho`` from log sigma_max to log sigma_min."""
    ramp = torch.linspace(1, 0, n) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> torch.Tensor:
    """The continuous variance-preserving schedule of Song et al. (2021)."""
    t = torch.linspace(1, eps_s, n)
    return _append_zero(torch.sqrt(torch.special.expm1(beta_d * t ** 2 / 2 + beta_min * t)))


def laplace(n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5) -> torch.Tensor:
    """log sigma at the quantiles of a Laplace(mu, beta) distribution (Hang et al. 2024), clamped; no final 0."""
    x = torch.linspace(0, 1, n)
    centred = 0.5 - x
    log_sigma = mu - beta * torch.sign(centred) * torch.log(1 - 2 * torch.abs(centred) + 1e-5)
    return torch.clamp(torch.exp(log_sigma), min=sigma_min, max=sigma_max)


def loglinear_interp(levels, num_steps: int):
    """Resample a decreasing list of noise levels to ``num_steps`` points, linearly in log space (numpy array)."""
    import numpy as np

    xs = np.linspace(0, 1, len(levels))
    ys = np.log(np.asarray(levels, dtype=np.float64)[::-1])
    new_ys = np.interp(np.linspace(0, 1, num_steps), xs, ys)
    return np.exp(new_ys)[::-1].copy()


def from_table(levels, steps: int, denoise: float) -> torch.Tensor:
    """A schedule from a published table of noise levels (AYS, GITS, OptimalSteps): ``steps`` steps, resampled
    when the table has another length, keeping the last ``round(steps * denoise)`` steps; the final sigma is 0."""
    total = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.FloatTensor([])
        total = round(steps * denoise)
    sigmas = list(levels)
    if steps + 1 != len(sigmas):
        sigmas = loglinear_interp(sigmas, steps + 1)
    sigmas = sigmas[-(total + 1):]
    sigmas[-1] = 0
    return torch.FloatTensor(sigmas)
