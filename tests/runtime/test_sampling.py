"""Samplers, schedulers, noise and guidance."""
from __future__ import annotations

import math

import pytest
import torch

from hearth.runtime import loader
from hearth.runtime.families import SD15_LATENT
from hearth.sampling import guidance, ksampler, samplers, schedules
from hearth.sampling.model_sampling import DiscreteSampling
from hearth.sampling.noise import prepare_noise


class FakeModel:
    """The exact denoiser for data ~ N(0, I), nudged by the text embedding; counts network calls."""

    def __init__(self, prediction="eps"):
        self.model_sampling = DiscreteSampling(prediction)
        self.latent_format = SD15_LATENT
        self.calls = 0
        self.batch_sizes = []

    def prepare(self):
        return torch.device("cpu")

    def extra_conds(self, **kw):
        return {"c_crossattn": guidance.CondCrossAttn(kw["cross_attn"])}

    def apply_model(self, x, sigma, c_crossattn=None, **_):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        s = sigma.view(-1, 1, 1, 1)
        return x / (1 + s ** 2) + 0.1 * c_crossattn.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def cond(value):
    return [[torch.full((1, 77, 8), float(value)), {}]]


@pytest.mark.parametrize("scheduler", schedules.SCHEDULER_NAMES)
@pytest.mark.parametrize("sampler", samplers.SAMPLER_NAMES)
def test_every_sampler_and_scheduler_is_finite(sampler, scheduler):
    model = FakeModel()
    latent = torch.zeros(1, 4, 4, 4)
    noise = prepare_noise(latent, 3)
    out = ksampler.ksample(model, noise, 4, 3.0, sampler, scheduler, cond(1), cond(-1), latent, seed=3)
    assert out.shape == latent.shape
    assert torch.isfinite(out).all()
    assert model.calls > 0


@pytest.fixture(scope="module")
def tiny_sd15(model_base, manager):
    return loader.load_checkpoint(model_base / "models" / "checkpoints" / "sd15.safetensors", manager)


@pytest.mark.parametrize("sampler", samplers.SAMPLER_NAMES)
def test_every_sampler_runs_the_real_network(tiny_sd15, sampler):
    model, clip, _ = tiny_sd15
    latent = torch.zeros(1, 4, 8, 8)
    out = ksampler.ksample(model, prepare_noise(latent, 5), 3, 4.0, sampler, "karras", clip.encode_conditioning("a cat"),
                           clip.encode_conditioning(""), latent, seed=5)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


@pytest.mark.parametrize("scheduler", schedules.SCHEDULER_NAMES)
def test_every_scheduler_runs_the_real_network(tiny_sd15, scheduler):
    model, clip, _ = tiny_sd15
    latent = torch.zeros(1, 4, 8, 8)
    out = ksampler.ksample(model, prepare_noise(latent, 5), 3, 4.0, "euler", scheduler, clip.encode_conditioning("a cat"),
                           clip.encode_conditioning(""), latent, seed=5)
    assert torch.isfinite(out).all()


def test_schedules_shape_and_order():
    ms = DiscreteSampling()
    for name in schedules.SCHEDULER_NAMES:
        sig = schedules.calculate_sigmas(ms, name, 10)
        assert sig[-1] == 0
        assert torch.all(sig[:-1] >= sig[1:]), name
        if name != "beta":
            assert len(sig) == 11, name
    karras = schedules.calculate_sigmas(ms, "karras", 5)
    assert karras[0] == pytest.approx(float(ms.sigma_max), rel=1e-5)
    assert karras[-2] == pytest.approx(float(ms.sigma_min), rel=1e-4)
    assert ms.sigma_max.item() == pytest.approx(14.6146, rel=1e-4)
    assert ms.sigma_min.item() == pytest.approx(0.0292, rel=1e-2)


def test_timestep_is_the_nearest_training_step():
    ms = DiscreteSampling()
    assert ms.timestep(ms.sigmas[500:501]).item() == 500
    assert ms.timestep(torch.tensor([ms.sigma_max.item() * 2])).item() == 999


def test_denoise_keeps_the_tail_of_a_longer_schedule():
    ms = DiscreteSampling()
    full = ksampler.calculate_sigmas(ms, "euler", "normal", 20)
    half = ksampler.calculate_sigmas(ms, "euler", "normal", 10, denoise=0.5)
    assert len(half) == 11 and torch.allclose(half, full[-11:])
    assert len(ksampler.calculate_sigmas(ms, "euler", "normal", 10, denoise=0.0)) == 0
    # dpm_2 / uni_pc ask for one more step and drop the penultimate sigma
    d2 = ksampler.calculate_sigmas(ms, "dpm_2", "normal", 10)
    ref = schedules.calculate_sigmas(ms, "normal", 11)
    assert len(d2) == 11 and torch.equal(d2, torch.cat([ref[:-2], ref[-1:]]))


def test_noise_is_comfyui_seeded():
    latent = torch.zeros(3, 4, 8, 8)
    expected = torch.randn(latent.size(), generator=torch.Generator().manual_seed(77))
    assert torch.equal(prepare_noise(latent, 77), expected)
    # batch_index picks the draws the items had in the full batch
    one = torch.zeros(1, 4, 8, 8)
    picked = prepare_noise(torch.zeros(2, 4, 8, 8), 77, [2, 0])
    g = torch.Generator().manual_seed(77)
    draws = [torch.randn([1, 4, 8, 8], generator=g) for _ in range(3)]
    assert torch.equal(picked[0], draws[2][0]) and torch.equal(picked[1], draws[0][0])
    assert prepare_noise(one, 77).shape == one.shape


def test_cfg_one_skips_the_negative_pass():
    latent = torch.zeros(1, 4, 4, 4)
    noise = prepare_noise(latent, 1)
    m1 = FakeModel()
    ksampler.ksample(m1, noise, 4, 1.0, "euler", "normal", cond(1), cond(-1), latent, seed=1)
    assert m1.calls == 4 and m1.batch_sizes == [1] * 4
    m2 = FakeModel()
    ksampler.ksample(m2, noise, 4, 2.0, "euler", "normal", cond(1), cond(-1), latent, seed=1)
    assert m2.calls == 4 and m2.batch_sizes == [2] * 4  # cond and uncond batched together
    m3 = FakeModel()  # CFG++ samplers always need the negative
    ksampler.ksample(m3, noise, 4, 1.0, "euler_cfg_pp", "normal", cond(1), cond(-1), latent, seed=1)
    assert m3.batch_sizes == [2] * 4


def test_cfg_mixes_predictions():
    model = FakeModel()
    x = torch.randn(1, 4, 4, 4)
    sigma = torch.tensor([1.0])
    conds = {"positive": guidance.convert_cond(cond(1)), "negative": guidance.convert_cond(cond(-1))}
    conds = guidance.process_conds(model, x, conds, "cpu")
    out = guidance.sampling_function(model, x, sigma, conds["negative"], conds["positive"], 3.0, {})
    base = x / 2
    assert torch.allclose(out, base - 0.1 + (0.2) * 3.0, atol=1e-5)


def test_areas_masks_strength_and_timestep_ranges():
    model = FakeModel()
    x = torch.zeros(1, 4, 16, 16)
    sigma = torch.tensor([1.0])
    area = [[torch.full((1, 77, 8), 1.0), {"area": (8, 8, 0, 0), "strength": 1.0}]]
    full = [[torch.full((1, 77, 8), -1.0), {}]]
    conds = {"positive": guidance.convert_cond(area + full), "negative": guidance.convert_cond(full)}
    conds = guidance.process_conds(model, x, conds, "cpu")
    out = guidance.calc_cond_batch(model, [conds["positive"]], x, sigma, {})[0]
    assert out[0, 0, 15, 15] == pytest.approx(-0.1)          # only the full cond there
    assert -0.1 < out[0, 0, 4, 4] < 0.1                         # both averaged inside the area
    # a mask cond weights by mask
    mask = torch.zeros(1, 16, 16)
    mask[:, :, 8:] = 1.0
    masked = [[torch.full((1, 77, 8), 1.0), {"mask": mask, "mask_strength": 1.0}]]
    conds = guidance.process_conds(model, x, {"positive": guidance.convert_cond(masked + full)}, "cpu")
    out = guidance.calc_cond_batch(model, [conds["positive"]], x, sigma, {})[0]
    assert out[0, 0, 0, 12] == pytest.approx(0.0, abs=1e-5) and out[0, 0, 0, 2] == pytest.approx(-0.1)
    # a timestep range removes the cond outside it
    ranged = [[torch.full((1, 77, 8), 1.0), {"start_percent": 0.5, "end_percent": 1.0}]]
    conds = guidance.process_conds(model, x, {"positive": guidance.convert_cond(ranged + full)}, "cpu")
    high = guidance.calc_cond_batch(model, [conds["positive"]], x, torch.tensor([14.0]), {})[0]
    low = guidance.calc_cond_batch(model, [conds["positive"]], x, torch.tensor([0.1]), {})[0]
    assert high.mean() == pytest.approx(-0.1) and low.mean() == pytest.approx(0.0, abs=1e-5)


def test_inpaint_mask_keeps_the_unmasked_latent():
    model = FakeModel()
    latent = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1.0
    out = ksampler.ksample(model, prepare_noise(latent, 2), 4, 2.0, "euler", "normal", cond(1), cond(-1), latent,
                           noise_mask=mask, seed=2)
    assert torch.allclose(out[..., :4], latent[..., :4], atol=1e-5)
    assert not torch.allclose(out[..., 4:], latent[..., 4:])


def test_v_prediction_denoised():
    ms = DiscreteSampling("v")
    x = torch.randn(1, 4, 2, 2)
    s = torch.tensor([2.0])
    v = torch.randn_like(x)
    d = ms.calculate_denoised(s, v, x)
    assert torch.allclose(d, x / 5 - v * 2 / math.sqrt(5))


def test_sde_samplers_are_seed_deterministic():
    latent = torch.zeros(1, 4, 4, 4)
    runs = []
    for _ in range(2):
        runs.append(ksampler.ksample(FakeModel(), prepare_noise(latent, 9), 5, 2.0, "dpmpp_2m_sde", "karras",
                                     cond(1), cond(-1), latent, seed=9))
    other = ksampler.ksample(FakeModel(), prepare_noise(latent, 9), 5, 2.0, "dpmpp_2m_sde", "karras",
                             cond(1), cond(-1), latent, seed=10)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], other)


def test_bislerp_and_upscale():
    x = torch.randn(1, 4, 8, 8)
    for method in ("nearest-exact", "bilinear", "area", "bicubic", "bislerp"):
        out = guidance.common_upscale(x, 12, 10, method, "disabled")
        assert out.shape == (1, 4, 10, 12) and torch.isfinite(out).all()
    assert guidance.common_upscale(x, 4, 8, "bilinear", "center").shape == (1, 4, 8, 4)


def test_every_listed_name_is_implemented():
    """The torch-free name lists (node interfaces) and the implementations agree."""
    assert list(schedules.SCHEDULERS) == schedules.SCHEDULER_NAMES
    for name in samplers.SAMPLER_NAMES:
        fn, _ = samplers.get_sampler(name)
        assert callable(fn), name
