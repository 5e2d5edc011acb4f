"""Samplers under ComfyUI's names, one plain function each, in the style of k-diffusion.

Every sampler has the signature ``fn(model, x, sigmas, extra_args=None, callback=None, **options)``:

* ``model(x, sigma * s_in, **extra_args)`` returns the denoised estimate (guidance included);
  ``model.model_sampling`` is the model's ``DiscreteSampling``.
* ``x`` is the noised starting latent (already scaled to ``sigmas[0]``), ``sigmas`` the schedule.
* ``extra_args`` carries ``seed`` (for the samplers' own noise) and ``model_options`` (where CFG++
  samplers register a post-CFG hook to read the unconditional prediction).
* ``callback`` gets ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` once per step.

The mathematics follow the published algorithms and ComfyUI's choices of defaults (eta, s_noise, orders,
first-step handling) so results match it for the same seed.
"""
from __future__ import annotations

import math

import torch

from hearth.sampling.names import KSAMPLER_NAMES, SAMPLER_NAMES  # noqa: F401 (this module implements them)
from hearth.sampling.noise import BrownianTreeNoiseSampler, default_noise_sampler


# --- helpers ------------------------------------------------------------------------------------

def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    return x[(...,) + (None,) * (target_dims - x.ndim)]


def to_d(x, sigma, denoised):
    """The Karras ODE derivative dx/dsigma from a denoised estimate."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    """(sigma_down, sigma_up): where a deterministic step lands and how much fresh noise to add."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def half_log_snr(sigma):
    """log(alpha/sigma) for the variance-exploding parameterisation."""
    return sigma.log().neg()


def _ensure_args(extra_args):
    return {} if extra_args is None else extra_args


def _noise(x, extra_args, noise_sampler):
    return default_noise_sampler(x, seed=extra_args.get("seed")) if noise_sampler is None else noise_sampler


def _brownian(x, sigmas, extra_args, noise_sampler, cpu=True):
    if noise_sampler is not None:
        return noise_sampler
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=extra_args.get("seed"), cpu=cpu)


def _cb(callback, x, i, sigma, sigma_hat, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def capture_uncond(extra_args):
    """Register a post-CFG hook that records the unconditional prediction (for CFG++ samplers).

    Returns ``(extra_args, box)``; after each model call ``box[0]`` holds the last uncond prediction.
    """
    box = [None]

    def post_cfg(args):
        box[0] = args["uncond_denoised"]
        return args["denoised"]

    options = dict(extra_args.get("model_options", {}))
    options["sampler_post_cfg_function"] = list(options.get("sampler_post_cfg_function", [])) + [post_cfg]
    options["disable_cfg1_optimization"] = True
    return {**extra_args, "model_options": options}, box


def _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise):
    if s_churn > 0:
        gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.0
        sigma_hat = sigmas[i] * (gamma + 1)
    else:
        gamma, sigma_hat = 0, sigmas[i]
    if gamma > 0:
        x = x + torch.randn_like(x) * s_noise * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
    return x, sigma_hat


# --- first-order and Heun family ---------------------------------------------------------------

@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0):
    """Euler steps of the probability-flow ODE (Karras et al. 2022, Algorithm 2 without the correction)."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        x = x + d * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None):
    """Euler steps down to sigma_down, then fresh noise up to the next sigma."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
        else:
            d = to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i]) + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, s_churn=0.0, s_tmin=0.0,
                s_tmax=float("inf"), s_noise=1.0):
    """Heun's second-order method (Karras et al. 2022, Algorithm 2)."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in, **extra_args)
            d_2 = to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_heunpp2(model, x, sigmas, extra_args=None, callback=None, s_churn=0.0, s_tmin=0.0,
                   s_tmax=float("inf"), s_noise=1.0):
    """Heun++: a third evaluation one step ahead, weighted by sigma (from sd-webui-samplers-scheduler)."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if s_tmin <= sigmas[i] <= s_tmax else 0.0
        eps = torch.randn_like(x) * s_noise
        sigma_hat = sigmas[i] * (gamma + 1)
        if gamma > 0:
            x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2] * s_in, **extra_args))
            w = 3 * sigmas[0]
            w2, w3 = sigmas[i + 1] / w, sigmas[i + 2] / w
            x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


@torch.no_grad()
def sample_dpm_2(model, x, sigmas, extra_args=None, callback=None, s_churn=0.0, s_tmin=0.0,
                 s_tmax=float("inf"), s_noise=1.0):
    """DPM-Solver-2 style midpoint steps (in log sigma)."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x, sigma_hat = _churn(x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = model(x, sigma_hat * s_in, **extra_args)
        d = to_d(x, sigma_hat, denoised)
        _cb(callback, x, i, sigmas[i], sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None):
    """DPM-Solver-2 midpoint steps to sigma_down plus ancestral noise."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in, **extra_args))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


# --- linear multistep --------------------------------------------------------------------------

def _lms_coeff(order, t, i, j):
    from scipy import integrate

    if order - 1 > i:
        raise ValueError(f"order {order} too high for step {i}")

    def fn(tau):
        prod = 1.0
        for k in range(order):
            if j != k:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return integrate.quad(fn, t[i], t[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(model, x, sigmas, extra_args=None, callback=None, order=4):
    """Linear multistep (Adams-Bashforth in sigma) with Lagrange coefficients integrated numerically."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().numpy()
    ds = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            cur_order = min(i + 1, order)
            coeffs = [_lms_coeff(cur_order, sigmas_cpu, i, j) for j in range(cur_order)]
            x = x + sum(c * d for c, d in zip(coeffs, reversed(ds)))
    return x


# --- DPM-Solver (fast / adaptive) --------------------------------------------------------------

class _PIDStepSizeController:
    def __init__(self, h, pcoeff, icoeff, dcoeff, order=1, accept_safety=0.81, eps=1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.eps = eps
        self.errs: list[float] = []

    def propose_step(self, error):
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


class _DPMSolver:
    """DPM-Solver (Lu et al. 2022) in noise-prediction form, time variable t = -log(sigma)."""

    def __init__(self, model, extra_args, info_callback=None):
        self.model = model
        self.extra_args = extra_args
        self.info_callback = info_callback

    @staticmethod
    def t(sigma):
        return -sigma.log()

    @staticmethod
    def sigma(t):
        return t.neg().exp()

    def eps(self, cache, key, x, t):
        if key in cache:
            return cache[key], cache
        sigma = self.sigma(t) * x.new_ones([x.shape[0]])
        eps = (x - self.model(x, sigma, **self.extra_args)) / self.sigma(t)
        return eps, {key: eps, **cache}

    def step_1(self, x, t, t_next, cache):
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        return x - self.sigma(t_next) * h.expm1() * eps, cache

    def step_2(self, x, t, t_next, r1=1 / 2, cache=None):
        cache = {} if cache is None else cache
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        x_2 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / (2 * r1) * h.expm1() * (eps_r1 - eps)
        return x_2, cache

    def step_3(self, x, t, t_next, r1=1 / 3, r2=2 / 3, cache=None):
        cache = {} if cache is None else cache
        h = t_next - t
        eps, cache = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * (r1 * h).expm1() * eps
        eps_r1, cache = self.eps(cache, "eps_r1", u1, s1)
        u2 = (x - self.sigma(s2) * (r2 * h).expm1() * eps
              - self.sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_r1 - eps))
        eps_r2, cache = self.eps(cache, "eps_r2", u2, s2)
        x_3 = x - self.sigma(t_next) * h.expm1() * eps - self.sigma(t_next) / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        return x_3, cache

    def fast(self, x, t_start, t_end, nfe, eta=0.0, s_noise=1.0, noise_sampler=None):
        noise_sampler = _noise(x, self.extra_args, noise_sampler)
        m = math.floor(nfe / 3) + 1
        ts = torch.linspace(t_start, t_end, m + 1, device=x.device)
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        for i in range(len(orders)):
            cache = {}
            t, t_next = ts[i], ts[i + 1]
            if eta:
                sd, su = get_ancestral_step(self.sigma(t), self.sigma(t_next), eta)
                t_next_ = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t_next) ** 2 - self.sigma(t_next_) ** 2) ** 0.5
            else:
                t_next_, su = t_next, 0.0
            eps, cache = self.eps(cache, "eps", x, t)
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": i, "t": ts[i], "t_up": t, "denoised": x - self.sigma(t) * eps})
            if orders[i] == 1:
                x, cache = self.step_1(x, t, t_next_, cache)
            elif orders[i] == 2:
                x, cache = self.step_2(x, t, t_next_, cache=cache)
            else:
                x, cache = self.step_3(x, t, t_next_, cache=cache)
            x = x + su * s_noise * noise_sampler(self.sigma(t), self.sigma(t_next))
        return x

    def adaptive(self, x, t_start, t_end, order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0,
                 icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0, s_noise=1.0, noise_sampler=None,
                 max_steps=10000):
        from hearth.engine.progress import check_interrupt

        noise_sampler = _noise(x, self.extra_args, noise_sampler)
        if order not in (2, 3):
            raise ValueError("order should be 2 or 3")
        forward = t_end > t_start
        h_init = abs(h_init) * (1 if forward else -1)
        atol, rtol = torch.tensor(atol), torch.tensor(rtol)
        s = t_start
        x_prev = x
        pid = _PIDStepSizeController(h_init, pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
        steps = 0
        while (s < t_end - 1e-5) if forward else (s > t_end + 1e-5):
            check_interrupt()
            if steps >= max_steps:
                raise RuntimeError("dpm_adaptive did not converge")
            cache = {}
            t = torch.minimum(t_end, s + pid.h) if forward else torch.maximum(t_end, s + pid.h)
            if eta:
                sd, su = get_ancestral_step(self.sigma(s), self.sigma(t), eta)
                t_ = torch.minimum(t_end, self.t(sd))
                su = (self.sigma(t) ** 2 - self.sigma(t_) ** 2) ** 0.5
            else:
                t_, su = t, 0.0
            eps, cache = self.eps(cache, "eps", x, s)
            denoised = x - self.sigma(s) * eps
            if order == 2:
                x_low, cache = self.step_1(x, s, t_, cache)
                x_high, cache = self.step_2(x, s, t_, cache=cache)
            else:
                x_low, cache = self.step_2(x, s, t_, r1=1 / 3, cache=cache)
                x_high, cache = self.step_3(x, s, t_, cache=cache)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if pid.propose_step(error):
                x_prev = x_low
                x = x_high + su * s_noise * noise_sampler(self.sigma(s), self.sigma(t))
                s = t
            steps += 1
            if self.info_callback is not None:
                self.info_callback({"x": x, "i": steps - 1, "t": s, "t_up": s, "denoised": denoised})
        return x


def _dpm_bounds(sigmas):
    sigma_min = sigmas[-1]
    if sigma_min == 0:
        sigma_min = sigmas[-2]
    return sigma_min, sigmas[0]


@torch.no_grad()
def sample_dpm_fast(model, x, sigmas, extra_args=None, callback=None, eta=0.0, s_noise=1.0, noise_sampler=None):
    """DPM-Solver-fast: fixed steps of orders 3/2/1 with as many evaluations as the schedule has steps."""
    if len(sigmas) <= 1:
        return x
    extra_args = _ensure_args(extra_args)
    sigma_min, sigma_max = _dpm_bounds(sigmas)
    solver = _DPMSolver(model, extra_args)
    if callback is not None:
        solver.info_callback = lambda info: callback({"sigma": solver.sigma(info["t"]),
                                                      "sigma_hat": solver.sigma(info["t_up"]), **info})
    return solver.fast(x, solver.t(torch.as_tensor(sigma_max)), solver.t(torch.as_tensor(sigma_min)),
                       len(sigmas) - 1, eta, s_noise, noise_sampler)


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigmas, extra_args=None, callback=None, order=3, rtol=0.05, atol=0.0078,
                        h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0,
                        s_noise=1.0, noise_sampler=None):
    """DPM-Solver-23 with embedded error estimate and PID step-size control."""
    if len(sigmas) <= 1:
        return x
    extra_args = _ensure_args(extra_args)
    sigma_min, sigma_max = _dpm_bounds(sigmas)
    solver = _DPMSolver(model, extra_args)
    if callback is not None:
        solver.info_callback = lambda info: callback({"sigma": solver.sigma(info["t"]),
                                                      "sigma_hat": solver.sigma(info["t_up"]), **info})
    return solver.adaptive(x, solver.t(torch.as_tensor(sigma_max)), solver.t(torch.as_tensor(sigma_min)),
                           order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise,
                           noise_sampler)


# --- DPM-Solver++ family -----------------------------------------------------------------------

def _sigma_fn(t):
    return t.neg().exp()


def _t_fn(sigma):
    return sigma.log().neg()


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                              noise_sampler=None):
    """DPM-Solver++(2S) single-step second order, with ancestral noise."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _t_fn(sigmas[i]), _t_fn(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma_fn(s) / _sigma_fn(t)) * x - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, _sigma_fn(s) * s_in, **extra_args)
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                                     noise_sampler=None):
    """DPM-Solver++(2S) ancestral with CFG++ (renoising with the unconditional prediction)."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    extra_args, uncond = capture_uncond(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised + to_d(x, sigmas[i], uncond[0]) * sigma_down
        else:
            t, t_next = _t_fn(sigmas[i]), _t_fn(sigma_down)
            h = t_next - t
            s = t + 0.5 * h
            x_2 = (_sigma_fn(s) / _sigma_fn(t)) * (x + (denoised - uncond[0])) - (-h * 0.5).expm1() * denoised
            denoised_2 = model(x_2, _sigma_fn(s) * s_in, **extra_args)
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * (x + (denoised - uncond[0])) - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                     noise_sampler=None, r=1 / 2, cpu_noise=True):
    """DPM-Solver++ stochastic (SDE) second order, Brownian-tree noise."""
    if len(sigmas) <= 1:
        return x
    extra_args = _ensure_args(extra_args)
    noise_sampler = _brownian(x, sigmas, extra_args, noise_sampler, cpu=cpu_noise)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        lambda_s_1 = lambda_s + r * h
        fac = 1 / (2 * r)
        sigma_s_1 = lambda_s_1.neg().exp()
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        # step 1
        sd, su = get_ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + alpha_s_1 * noise_sampler(sigmas[i], sigma_s_1) * s_noise * su
        denoised_2 = model(x_2, sigma_s_1 * s_in, **extra_args)
        # step 2
        sd, su = get_ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None):
    """DPM-Solver++(2M): second-order multistep in half-log-SNR."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - _t_fn(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (_sigma_fn(t_next) / _sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args=None, callback=None):
    """DPM-Solver++(2M) with CFG++."""
    extra_args = _ensure_args(extra_args)
    extra_args, uncond = capture_uncond(extra_args)
    s_in = x.new_ones([x.shape[0]])
    old_uncond = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        t, t_next = _t_fn(sigmas[i]), _t_fn(sigmas[i + 1])
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond[0]
        else:
            r = (t - _t_fn(sigmas[i - 1])) / h
            mix = -torch.exp(-h) * uncond[0] - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond[0]
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, solver_type="midpoint", cpu_noise=True):
    """DPM-Solver++(2M) SDE with Brownian-tree noise; ``solver_type`` midpoint or heun."""
    if len(sigmas) <= 1:
        return x
    if solver_type not in ("heun", "midpoint"):
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = _ensure_args(extra_args)
    noise_sampler = _brownian(x, sigmas, extra_args, noise_sampler, cpu=cpu_noise)
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    h = h_last = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if old_denoised is not None:
                r = h_last / h
                if solver_type == "heun":
                    x = x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - old_denoised)
            if eta > 0 and s_noise > 0:
                x = x + (noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * h * eta).expm1().neg().sqrt() * s_noise)
        old_denoised = denoised
        h_last = h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, cpu_noise=True):
    """DPM-Solver++(3M) SDE with Brownian-tree noise."""
    if len(sigmas) <= 1:
        return x
    extra_args = _ensure_args(extra_args)
    noise_sampler = _brownian(x, sigmas, extra_args, noise_sampler, cpu=cpu_noise)
    s_in = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
            elif h_1 is not None:
                r = h_1 / h
                d = (denoised - denoised_1) / r
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + (alpha_t * phi_2) * d
            if eta > 0 and s_noise > 0:
                x = x + (noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * h * eta).expm1().neg().sqrt() * s_noise)
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def sample_dpmpp_sde_gpu(model, x, sigmas, extra_args=None, callback=None, **kw):
    return sample_dpmpp_sde(model, x, sigmas, extra_args, callback, cpu_noise=False, **kw)


def sample_dpmpp_2m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, **kw):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, cpu_noise=False, **kw)


def sample_dpmpp_2m_sde_heun(model, x, sigmas, extra_args=None, callback=None, **kw):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, solver_type="heun", **kw)


def sample_dpmpp_2m_sde_heun_gpu(model, x, sigmas, extra_args=None, callback=None, **kw):
    return sample_dpmpp_2m_sde(model, x, sigmas, extra_args, callback, solver_type="heun", cpu_noise=False, **kw)


def sample_dpmpp_3m_sde_gpu(model, x, sigmas, extra_args=None, callback=None, **kw):
    return sample_dpmpp_3m_sde(model, x, sigmas, extra_args, callback, cpu_noise=False, **kw)


# --- DDPM, LCM ---------------------------------------------------------------------------------

@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """Ancestral DDPM posterior steps, computed in the variance-preserving frame."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        eps = (x - denoised) / sigma
        x_vp = x / torch.sqrt(1.0 + sigma ** 2.0)
        alpha_cumprod = 1 / ((sigma * sigma) + 1)
        alpha_cumprod_prev = 1 / ((sigma_prev * sigma_prev) + 1)
        alpha = alpha_cumprod / alpha_cumprod_prev
        mu = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - alpha_cumprod).sqrt())
        if sigma_prev > 0:
            mu = mu + ((1 - alpha) * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod)).sqrt() * noise_sampler(sigma, sigma_prev)
        x = mu
        if sigmas[i + 1] != 0:
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
    """Latent-consistency sampling: jump to the denoised estimate, renoise to the next sigma."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = model.model_sampling.noise_scaling(sigmas[i + 1], noise_sampler(sigmas[i], sigmas[i + 1]), x)
    return x


# --- iPNDM / DEIS ------------------------------------------------------------------------------

@torch.no_grad()
def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, max_order=4):
    """Improved pseudo-numerical (Adams-Bashforth) steps with fixed coefficients (Zhang & Chen 2023)."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    x_next = x
    buf: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        x_cur = x_next
        denoised = model(x_cur, t_cur * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        d_cur = (x_cur - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x_cur + (t_next - t_cur) * d_cur
        elif order == 2:
            x_next = x_cur + (t_next - t_cur) * (3 * d_cur - buf[-1]) / 2
        elif order == 3:
            x_next = x_cur + (t_next - t_cur) * (23 * d_cur - 16 * buf[-1] + 5 * buf[-2]) / 12
        else:
            x_next = x_cur + (t_next - t_cur) * (55 * d_cur - 59 * buf[-1] + 37 * buf[-2] - 9 * buf[-3]) / 24
        _push(buf, d_cur, max_order)
    return x_next


def _push(buf, value, max_order):
    if len(buf) == max_order - 1:
        for k in range(max_order - 2):
            buf[k] = buf[k + 1]
        buf[-1] = value
    else:
        buf.append(value)


@torch.no_grad()
def sample_ipndm_v(model, x, sigmas, extra_args=None, callback=None, max_order=4):
    """iPNDM with coefficients adapted to variable step sizes."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    x_next = x
    t_steps = sigmas
    buf: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        x_cur = x_next
        denoised = model(x_cur, t_cur * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        d_cur = (x_cur - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x_next = denoised
        elif order == 1:
            x_next = x_cur + (t_next - t_cur) * d_cur
        else:
            h_n = t_next - t_cur
            h_n_1 = t_cur - t_steps[i - 1]
            if order == 2:
                c1 = (2 + (h_n / h_n_1)) / 2
                c2 = -(h_n / h_n_1) / 2
                x_next = x_cur + (t_next - t_cur) * (c1 * d_cur + c2 * buf[-1])
            elif order == 3:
                h_n_2 = t_steps[i - 1] - t_steps[i - 2]
                temp = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
                c1 = (2 + (h_n / h_n_1)) / 2 + temp
                c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp
                c3 = temp * h_n_1 / h_n_2
                x_next = x_cur + (t_next - t_cur) * (c1 * d_cur + c2 * buf[-1] + c3 * buf[-2])
            else:
                h_n_2 = t_steps[i - 1] - t_steps[i - 2]
                h_n_3 = t_steps[i - 2] - t_steps[i - 3]
                temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
                temp2 = (((1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (6 * (h_n + h_n_1 + h_n_2)))
                         * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2))
                         / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3)))
                ratio = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))
                c1 = (2 + (h_n / h_n_1)) / 2 + temp1 + temp2
                c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + (h_n_1 / h_n_2) + ratio) * temp2
                c3 = temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + ratio * (1 + h_n_2 / h_n_3)) * temp2
                c4 = -temp2 * ratio * h_n_1 / h_n_2
                x_next = x_cur + (t_next - t_cur) * (c1 * d_cur + c2 * buf[-1] + c3 * buf[-2] + c4 * buf[-3])
        _push(buf, d_cur, max_order)
    return x_next


def _deis_coefficients(t_steps: torch.Tensor, max_order: int, n: int = 10000):
    """DEIS "tAB" coefficients: Lagrange polynomials integrated against the VP exponential integrand."""
    eps_s, sigma_min, sigma_max = 1e-3, torch.tensor(0.002), torch.tensor(80.0)
    beta_d = 2 * (torch.log(sigma_min ** 2 + 1) / eps_s - torch.log(sigma_max ** 2 + 1)) / (eps_s - 1)
    beta_min = torch.log(sigma_max ** 2 + 1) - 0.5 * beta_d
    ts = t_steps.detach().cpu()
    ts = ((beta_min ** 2 + 2 * beta_d * (ts ** 2 + 1).log()).sqrt() - beta_min) / beta_d
    beta_0, beta_1 = beta_min, beta_d + beta_min
    coeffs = []
    for i, (t_cur, t_next) in enumerate(zip(ts[:-1], ts[1:])):
        order = min(i + 1, max_order)
        if order == 1:
            coeffs.append([])
            continue
        taus = torch.linspace(t_cur, t_next, n)
        dtau = (t_next - t_cur) / n
        prev_t = ts[[i - k for k in range(order)]]
        alpha = torch.exp(-0.5 * taus ** 2 * (beta_1 - beta_0) - taus * beta_0)
        d_log_alpha = -taus * (beta_1 - beta_0) - beta_0
        integrand = -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))
        row = []
        for j in range(order):
            poly = 1
            for k in range(order):
                if k != j:
                    poly = poly * (taus - prev_t[k]) / (prev_t[j] - prev_t[k])
            row.append(torch.sum(integrand * poly) * dtau)
        coeffs.append(row)
    return coeffs


@torch.no_grad()
def sample_deis(model, x, sigmas, extra_args=None, callback=None, max_order=3):
    """Diffusion exponential integrator sampler (Zhang & Chen 2022), tAB variant."""
    extra_args = _ensure_args(extra_args)
    s_in = x.new_ones([x.shape[0]])
    x_next = x
    coeff_list = _deis_coefficients(sigmas, max_order)
    buf: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        x_cur = x_next
        denoised = model(x_cur, t_cur * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        d_cur = (x_cur - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next <= 0:
            order = 1
        if order == 1:
            x_next = x_cur + (t_next - t_cur) * d_cur
        else:
            c = coeff_list[i]
            x_next = x_cur + c[0] * d_cur
            for k in range(1, order):
                x_next = x_next + c[k] * buf[-k]
        _push(buf, d_cur, max_order)
    return x_next


# --- CFG++ Euler --------------------------------------------------------------------------------

@torch.no_grad()
def sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                                  noise_sampler=None):
    """Euler ancestral with CFG++ (Chung et al. 2024): renoise along the unconditional direction."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    extra_args, uncond = capture_uncond(extra_args)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        alpha_s = sigmas[i] * half_log_snr(sigmas[i]).exp()
        alpha_t = sigmas[i + 1] * half_log_snr(sigmas[i + 1]).exp()
        d = to_d(x, sigmas[i], alpha_s * uncond[0])
        sigma_down, sigma_up = get_ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta=eta)
        sigma_down = alpha_t * sigma_down
        x = alpha_t * denoised + sigma_down * d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def sample_euler_cfg_pp(model, x, sigmas, extra_args=None, callback=None):
    """Euler with CFG++."""
    return sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args, callback, eta=0.0, s_noise=0.0)


# --- RES multistep, gradient estimation ---------------------------------------------------------

@torch.no_grad()
def _res_multistep(model, x, sigmas, extra_args=None, callback=None, s_noise=1.0, noise_sampler=None, eta=1.0,
                   cfg_pp=False):
    """Second-order exponential multistep (RES, Zhang et al. 2023), optionally ancestral / CFG++."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    uncond = [None]
    if cfg_pp:
        extra_args, uncond = capture_uncond(extra_args)
    s_in = x.new_ones([x.shape[0]])

    def phi1(t):
        return torch.expm1(t) / t

    def phi2(t):
        return (phi1(t) - 1.0) / t

    old_sigma_down = old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + to_d(x, sigmas[i], uncond[0]) * sigma_down
            else:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old = _t_fn(sigmas[i]), _t_fn(old_sigma_down)
            t_next, t_prev = _t_fn(sigma_down), _t_fn(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            p1, p2 = phi1(-h), phi2(-h)
            b1 = torch.nan_to_num(p1 - p2 / c2, nan=0.0)
            b2 = torch.nan_to_num(p2 / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond[0])
                x = _sigma_fn(h) * x + h * (b1 * uncond[0] + b2 * old_denoised)
            else:
                x = _sigma_fn(h) * x + h * (b1 * denoised + b2 * old_denoised)
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old_denoised = uncond[0] if cfg_pp else denoised
        old_sigma_down = sigma_down
    return x


def sample_res_multistep(model, x, sigmas, extra_args=None, callback=None, s_noise=1.0, noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=0.0, cfg_pp=False)


def sample_res_multistep_cfg_pp(model, x, sigmas, extra_args=None, callback=None, s_noise=1.0, noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=0.0, cfg_pp=True)


def sample_res_multistep_ancestral(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                                   noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=eta, cfg_pp=False)


def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0,
                                          noise_sampler=None):
    return _res_multistep(model, x, sigmas, extra_args, callback, s_noise, noise_sampler, eta=eta, cfg_pp=True)


@torch.no_grad()
def sample_gradient_estimation(model, x, sigmas, extra_args=None, callback=None, ge_gamma=2.0, cfg_pp=False):
    """Euler with a gradient-estimation correction from the previous derivative (Permenter & Yuan 2024)."""
    extra_args = _ensure_args(extra_args)
    uncond = [None]
    if cfg_pp:
        extra_args, uncond = capture_uncond(extra_args)
    s_in = x.new_ones([x.shape[0]])
    old_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], uncond[0] if cfg_pp else denoised)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def sample_gradient_estimation_cfg_pp(model, x, sigmas, extra_args=None, callback=None, ge_gamma=2.0):
    return sample_gradient_estimation(model, x, sigmas, extra_args, callback, ge_gamma=ge_gamma, cfg_pp=True)


# --- ER-SDE, SEEDS, SA-Solver -------------------------------------------------------------------

@torch.no_grad()
def sample_er_sde(model, x, sigmas, extra_args=None, callback=None, s_noise=1.0, noise_sampler=None,
                  noise_scaler=None, max_stage=3):
    """Extended reverse-time SDE solver, VP data prediction, up to stage 3 (Cui et al. 2023)."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])

    def default_scaler(v):
        return v * ((v ** 0.3).exp() + 10.0)

    noise_scaler = default_scaler if noise_scaler is None else noise_scaler
    n_points = 200.0
    point_idx = torch.arange(0, n_points, dtype=torch.float32, device=x.device)
    er_lambdas = half_log_snr(sigmas).neg().exp()
    old_denoised = old_denoised_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam_s, lam_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s, alpha_t = sigmas[i] / lam_s, sigmas[i + 1] / lam_t
            r_alpha = alpha_t / alpha_s
            r = noise_scaler(lam_t) / noise_scaler(lam_s)
            x = r_alpha * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = lam_t - lam_s
                step = -dt / n_points
                pos = lam_t + point_idx * step
                scaled = noise_scaler(pos)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old_denoised) / (lam_s - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * noise_scaler(lam_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((pos - lam_s) / scaled) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((lam_s - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt ** 2) / 2 + s_u * noise_scaler(lam_t)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                x = x + (alpha_t * noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise
                         * (lam_t ** 2 - lam_s ** 2 * r ** 2).sqrt().nan_to_num(nan=0.0))
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_seeds_2(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0, noise_sampler=None,
                   r=0.5):
    """SEEDS-2: stochastic explicit exponential derivative-free solver, 2 stages (Gonzalez et al. 2023)."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    inject = eta > 0 and s_noise > 0
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_s1 = torch.lerp(lam_s, lam_t, r)
        sigma_s1 = lam_s1.neg().exp()
        alpha_s1 = sigma_s1 * lam_s1.exp()
        alpha_t = sigmas[i + 1] * lam_t.exp()
        x_2 = sigma_s1 / sigmas[i] * (-r * h * eta).exp() * x - alpha_s1 * torch.expm1(-r * h_eta) * denoised
        if inject:
            sde_noise = (-2 * r * h * eta).expm1().neg().sqrt() * noise_sampler(sigmas[i], sigma_s1)
            x_2 = x_2 + sde_noise * sigma_s1 * s_noise
        denoised_2 = model(x_2, sigma_s1 * s_in, **extra_args)
        denoised_d = torch.lerp(denoised, denoised_2, fac)
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * torch.expm1(-h_eta) * denoised_d
        if inject:
            seg = (r - 1) * h * eta
            sde_noise = sde_noise * seg.exp() + seg.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_s1, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


def _h_phi_2(h):
    return (torch.expm1(h) - h) / h


@torch.no_grad()
def sample_seeds_3(model, x, sigmas, extra_args=None, callback=None, eta=1.0, s_noise=1.0, noise_sampler=None,
                   r_1=1.0 / 3, r_2=2.0 / 3):
    """SEEDS-3: three-stage variant."""
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        _cb(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_s1, lam_s2 = torch.lerp(lam_s, lam_t, r_1), torch.lerp(lam_s, lam_t, r_2)
        sigma_s1, sigma_s2 = lam_s1.neg().exp(), lam_s2.neg().exp()
        alpha_s1, alpha_s2 = sigma_s1 * lam_s1.exp(), sigma_s2 * lam_s2.exp()
        alpha_t = sigmas[i + 1] * lam_t.exp()
        x_2 = sigma_s1 / sigmas[i] * (-r_1 * h * eta).exp() * x - alpha_s1 * torch.expm1(-r_1 * h_eta) * denoised
        if inject:
            sde_noise = (-2 * r_1 * h * eta).expm1().neg().sqrt() * noise_sampler(sigmas[i], sigma_s1)
            x_2 = x_2 + sde_noise * sigma_s1 * s_noise
        denoised_2 = model(x_2, sigma_s1 * s_in, **extra_args)
        a3_2 = r_2 / r_1 * _h_phi_2(-r_2 * h_eta)
        a3_1 = torch.expm1(-r_2 * h_eta) - a3_2
        x_3 = sigma_s2 / sigmas[i] * (-r_2 * h * eta).exp() * x - alpha_s2 * (a3_1 * denoised + a3_2 * denoised_2)
        if inject:
            seg = (r_1 - r_2) * h * eta
            sde_noise = sde_noise * seg.exp() + seg.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_s1, sigma_s2)
            x_3 = x_3 + sde_noise * sigma_s2 * s_noise
        denoised_3 = model(x_3, sigma_s2 * s_in, **extra_args)
        b3 = _h_phi_2(-h_eta) / r_2
        b1 = torch.expm1(-h_eta) - b3
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3)
        if inject:
            seg = (r_2 - 1) * h * eta
            sde_noise = sde_noise * seg.exp() + seg.mul(2).expm1().neg().sqrt() * noise_sampler(sigma_s2, sigmas[i + 1])
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


def _sa_exponential_coeffs(s, t, order, tau):
    """(1 + tau^2) * integral of exp((1 + tau^2) x) x^p dx from s to t, exp((1+tau^2) t) factored out, p < order."""
    tau_mul = 1 + tau ** 2
    h = t - s
    p = torch.arange(order, dtype=s.dtype, device=s.device)
    product_terms = t ** p - s ** p * (-tau_mul * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    log_fact = (p + 1).lgamma()
    coeff = log_fact.unsqueeze(1) - log_fact.unsqueeze(0)
    if tau > 0:
        coeff = coeff - depth * math.log(tau_mul)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0)
    coeff = (coeff.exp() * signs).tril()
    return coeff @ product_terms


def _sa_b_coeffs(sigma_next, lambdas, lambda_s, lambda_t, tau, simple_order_2=False, corrector=False):
    """Stochastic Adams b_i coefficients (Xue et al. 2023, eqs. 15 and 18).

    ``simple_order_2``: for two points use the paper's simplified order-2 predictor/corrector (appendix D).
    """
    n = lambdas.shape[0]
    if simple_order_2 and n == 2:
        tau_mul = 1 + tau ** 2
        h = lambda_t - lambda_s
        alpha_t = sigma_next * lambda_t.exp()
        whole = alpha_t * (-h * tau_mul).expm1().neg()
        if corrector:
            b_1 = alpha_t * (0.5 * tau_mul * h)
            return torch.stack([whole - b_1, b_1])
        b_2 = alpha_t * (0.5 * tau_mul * h ** 2) / (lambdas[-2] - lambda_s)
        return torch.stack([b_2, whole - b_2])
    integrals = _sa_exponential_coeffs(lambda_s, lambda_t, n, tau)
    vander_t = torch.vander(lambdas, n, increasing=True).T
    return sigma_next * lambda_t.exp() * torch.linalg.solve(vander_t, integrals)


@torch.no_grad()
def sample_sa_solver(model, x, sigmas, extra_args=None, callback=None, tau_func=None, s_noise=1.0,
                     noise_sampler=None, predictor_order=3, corrector_order=4, use_pece=False,
                     simple_order_2=False):
    """Stochastic Adams predictor-corrector solver (SA-Solver, Xue et al. 2023)."""
    if len(sigmas) <= 1:
        return x
    extra_args = _ensure_args(extra_args)
    noise_sampler = _noise(x, extra_args, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    ms = model.model_sampling
    lambdas = half_log_snr(sigmas)
    if tau_func is None:
        start, end = ms.percent_to_sigma(0.2), ms.percent_to_sigma(0.8)

        def tau_func(sigma):
            sigma = sigma.item() if isinstance(sigma, torch.Tensor) else sigma
            return 1.0 if start >= sigma >= end else 0.0

    max_order = max(predictor_order, corrector_order)
    x_pred = x
    h, tau_t, noise = 0.0, 0.0, 0.0
    preds: list[torch.Tensor] = []
    lower_to_end = sigmas[-1].item() == 0
    for i in range(len(sigmas) - 1):
        denoised = model(x_pred, sigmas[i] * s_in, **extra_args)
        _cb(callback, x_pred, i, sigmas[i], sigmas[i], denoised)
        preds.append(denoised)
        preds = preds[-max_order:]
        p_order = min(predictor_order, len(preds))
        c_order = 0 if (i == 0 or (sigmas[i + 1] == 0 and not use_pece)) else min(corrector_order, len(preds))
        if lower_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)
        if c_order == 0:
            x = x_pred
        else:
            b = _sa_b_coeffs(sigmas[i], lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i], tau_t,
                                 simple_order_2, corrector=True)
            corr = torch.tensordot(torch.stack(preds[-c_order:], dim=1), b, dims=([1], [0]))
            x = sigmas[i] / sigmas[i - 1] * (-(tau_t ** 2) * h).exp() * x + corr
            if tau_t > 0 and s_noise > 0:
                x = x + noise
            if use_pece:
                denoised = model(x, sigmas[i] * s_in, **extra_args)
                preds[-1] = denoised
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            tau_t = tau_func(sigmas[i + 1])
            b = _sa_b_coeffs(sigmas[i + 1], lambdas[i - p_order + 1:i + 1], lambdas[i], lambdas[i + 1], tau_t,
                                 simple_order_2)
            pred = torch.tensordot(torch.stack(preds[-p_order:], dim=1), b, dims=([1], [0]))
            h = lambdas[i + 1] - lambdas[i]
            x_pred = sigmas[i + 1] / sigmas[i] * (-(tau_t ** 2) * h).exp() * x + pred
            if tau_t > 0 and s_noise > 0:
                noise = (noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
                         * (-2 * tau_t ** 2 * h).expm1().neg().sqrt() * s_noise)
                x_pred = x_pred + noise
    return x


def sample_sa_solver_pece(model, x, sigmas, extra_args=None, callback=None, **kw):
    return sample_sa_solver(model, x, sigmas, extra_args, callback, use_pece=True, **kw)


# --- UniPC --------------------------------------------------------------------------------------

def _unipc_update(model_fn, x, model_prev_list, t_prev_list, t, order, variant, use_corrector=True):
    """One UniPC (Zhao et al. 2023) multistep predictor-corrector update in data-prediction form, B(h) variant.

    Times are sigmas; alpha_t = 1/sqrt(1+sigma^2), std_t = sigma * alpha_t, lambda = -log(sigma).
    """
    dims = x.dim()

    def alpha(s):
        return torch.exp(0.5 * torch.log(1 / (s * s + 1)))

    def lam(s):
        log_mean = 0.5 * torch.log(1 / (s * s + 1))
        return log_mean - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_mean))

    def std(s):
        return torch.sqrt(1.0 - torch.exp(2.0 * 0.5 * torch.log(1 / (s * s + 1))))

    def ex(v):
        return v[(...,) + (None,) * (dims - 1)]

    t_prev_0 = t_prev_list[-1]
    lambda_prev_0, lambda_t = lam(t_prev_0), lam(t)
    model_prev_0 = model_prev_list[-1]
    sigma_prev_0, sigma_t = std(t_prev_0), std(t)
    alpha_t = alpha(t)
    h = lambda_t - lambda_prev_0

    rks, d1s = [], []
    for i in range(1, order):
        rk = ((lam(t_prev_list[-(i + 1)]) - lambda_prev_0) / h)[0]
        rks.append(rk)
        d1s.append((model_prev_list[-(i + 1)] - model_prev_0) / rk)
    rks.append(1.0)
    rks = torch.tensor(rks, device=x.device)

    hh = -h[0]
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial_i = 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    r_rows, b = [], []
    for i in range(1, order + 1):
        r_rows.append(torch.pow(rks, i - 1))
        b.append(h_phi_k * factorial_i / b_h)
        factorial_i *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial_i
    r_mat = torch.stack(r_rows)
    b = torch.tensor(b, device=x.device)

    d1s_t = torch.stack(d1s, dim=1) if d1s else None
    if d1s_t is not None:
        rhos_p = torch.tensor([0.5], device=x.device) if order == 2 else torch.linalg.solve(r_mat[:-1, :-1], b[:-1])
    if use_corrector:
        rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(r_mat, b)

    x_t_ = ex(sigma_t / sigma_prev_0) * x - ex(alpha_t * h_phi_1) * model_prev_0
    pred_res = torch.tensordot(d1s_t, rhos_p, dims=([1], [0])) if d1s_t is not None else 0
    x_t = x_t_ - ex(alpha_t * b_h) * pred_res
    model_t = None
    if use_corrector:
        model_t = model_fn(x_t, t)
        corr_res = torch.tensordot(d1s_t, rhos_c[:-1], dims=([1], [0])) if d1s_t is not None else 0
        x_t = x_t_ - ex(alpha_t * b_h) * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
    return x_t, model_t


@torch.no_grad()
def sample_uni_pc(model, x, sigmas, extra_args=None, callback=None, variant="bh1"):
    """UniPC multistep (order up to 3, lower order at the end), data prediction."""
    extra_args = _ensure_args(extra_args)
    timesteps = sigmas.clone()
    if sigmas[-1] == 0:
        timesteps[-1] = 0.001
    x = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)

    def model_fn(xv, t):
        # xv is in the VP frame; the denoiser works in the VE frame.
        t = t.expand(xv.shape[0]) if t.reshape(-1).shape[0] == 1 else t
        s = t.view(t.shape[:1] + (1,) * (xv.ndim - 1))
        x_ve = xv * ((s ** 2 + 1.0) ** 0.5)
        eps = (x_ve - model(x_ve, t, **extra_args)) / s
        alpha_t = torch.exp(0.5 * torch.log(1 / (t * t + 1)))
        std_t = torch.sqrt(1.0 - alpha_t ** 2)
        return (xv - std_t[(...,) + (None,) * (xv.ndim - 1)] * eps) / alpha_t[(...,) + (None,) * (xv.ndim - 1)]

    steps = len(timesteps) - 1
    order = min(3, len(timesteps) - 2)
    model_prev_list: list[torch.Tensor] = []
    t_prev_list: list[torch.Tensor] = []
    for step_index in range(steps):
        if step_index == 0:
            vec_t = timesteps[0].expand(x.shape[0])
            model_prev_list = [model_fn(x, vec_t)]
            t_prev_list = [vec_t]
        elif step_index < order:
            vec_t = timesteps[step_index].expand(x.shape[0])
            x, model_x = _unipc_update(model_fn, x, model_prev_list, t_prev_list, vec_t, step_index, variant)
            if model_x is None:
                model_x = model_fn(x, vec_t)
            model_prev_list.append(model_x)
            t_prev_list.append(vec_t)
        else:
            extra_final = 1 if step_index == steps - 1 else 0
            for step in range(step_index, step_index + 1 + extra_final):
                vec_t = timesteps[step].expand(x.shape[0])
                step_order = min(order, steps + 1 - step)
                use_corrector = step != steps
                x, model_x = _unipc_update(model_fn, x, model_prev_list, t_prev_list, vec_t, step_order, variant,
                                           use_corrector=use_corrector)
                for k in range(order - 1):
                    t_prev_list[k] = t_prev_list[k + 1]
                    model_prev_list[k] = model_prev_list[k + 1]
                t_prev_list[-1] = vec_t
                if step < steps:
                    if model_x is None:
                        model_x = model_fn(x, vec_t)
                    model_prev_list[-1] = model_x
        if callback is not None:
            callback({"x": x, "i": step_index, "denoised": model_prev_list[-1]})
    return x / torch.exp(0.5 * torch.log(1 / (timesteps[-1] * timesteps[-1] + 1)))


def sample_uni_pc_bh2(model, x, sigmas, extra_args=None, callback=None):
    return sample_uni_pc(model, x, sigmas, extra_args, callback, variant="bh2")


# --- the registry -------------------------------------------------------------------------------


# Samplers that end one step early on their own; the scheduler is asked for one more step and the
# penultimate sigma dropped, as ComfyUI does.
DISCARD_PENULTIMATE_SIGMA = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


def get_sampler(name: str):
    """(function, inpaint_random_noise) for a sampler name."""
    if name == "ddim":
        return sample_euler, True
    if name == "uni_pc":
        return sample_uni_pc, False
    if name == "uni_pc_bh2":
        return sample_uni_pc_bh2, False
    if name not in KSAMPLER_NAMES:
        raise ValueError(f"unknown sampler {name!r}")
    return globals()[f"sample_{name}"], False
