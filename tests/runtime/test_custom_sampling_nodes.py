"""Custom-sampling, sampling-extras and model-advanced nodes run through the engine on the tiny checkpoints."""
from __future__ import annotations

import pytest
import torch

from tests.runtime.conftest import make_harness, txt2img

BASE = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a (red:1.2) cat", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
}


def custom_advanced(sampler="euler", scheduler="normal", steps=3, cfg=5.0, seed=1, denoise=1.0, model=("1", 0),
                    guider=None, sampler_node=None, noise=None, sigmas=None, extra=None, save_denoised=False):
    p = dict(BASE)
    p["10"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}}
    p["11"] = {"class_type": "BasicScheduler", "inputs": {"model": list(model), "scheduler": scheduler,
                                                          "steps": steps, "denoise": denoise}}
    p["12"] = {"class_type": "CFGGuider", "inputs": {"model": list(model), "positive": ["2", 0],
                                                     "negative": ["3", 0], "cfg": cfg}}
    p["13"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}
    p["5"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": noise or ["13", 0], "guider": guider or ["12", 0], "sampler": sampler_node or ["10", 0],
        "sigmas": sigmas or ["11", 0], "latent_image": ["4", 0]}}
    p["6"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/custom"}}
    if save_denoised:
        p["7"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 1], "filename_prefix": "latents/x0"}}
    p.update(extra or {})
    return p


def latent_of(h, prompt, node="6"):
    return h.latent(h.run(prompt), node)


@pytest.mark.parametrize("sampler,scheduler,denoise", [("euler", "normal", 1.0), ("dpmpp_2m_sde", "karras", 1.0),
                                                       ("euler_ancestral", "simple", 0.7), ("dpmpp_2m", "beta", 1.0)])
def test_custom_advanced_equals_ksampler(harness, sampler, scheduler, denoise):
    ks = latent_of(harness, txt2img(sampler=sampler, scheduler=scheduler, seed=21, denoise=denoise))
    custom = custom_advanced(sampler=sampler, scheduler=scheduler, seed=21, denoise=denoise)
    assert torch.equal(latent_of(harness, custom), ks)


@pytest.mark.parametrize("sampler", ["ddim", "euler_cfg_pp"])
def test_custom_advanced_equals_ksampler_when_inpainting(harness, sampler):
    mask = {"30": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 64}},
            "31": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["4", 0], "mask": ["30", 0]}}}
    ks = txt2img(sampler=sampler, seed=5, denoise=0.8)
    ks.update(mask)
    ks["5"]["inputs"]["latent_image"] = ["31", 0]
    custom = custom_advanced(sampler=sampler, seed=5, denoise=0.8, extra=mask)
    custom["5"]["inputs"]["latent_image"] = ["31", 0]
    a, b = latent_of(harness, ks), latent_of(harness, custom)
    assert torch.equal(a, b)


def test_sampler_custom_equals_ksampler_and_gives_denoised(harness):
    ks = latent_of(harness, txt2img(seed=4))
    p = custom_advanced(seed=4, save_denoised=True)
    p["5"] = {"class_type": "SamplerCustom", "inputs": {
        "model": ["1", 0], "add_noise": True, "noise_seed": 4, "cfg": 5.0, "positive": ["2", 0],
        "negative": ["3", 0], "sampler": ["10", 0], "sigmas": ["11", 0], "latent_image": ["4", 0]}}
    out = harness.run(p)
    assert torch.equal(harness.latent(out, "6"), ks)
    x0 = harness.latent(out, "7")
    assert x0.shape == ks.shape and torch.isfinite(x0).all()


def test_progress_and_previews_every_step(model_base):
    from hearth.engine.events import PreviewImage, Progress

    h = make_harness(model_base, preview_method="latent2rgb")
    h.run(custom_advanced(steps=3, seed=8))
    steps = [(e.value, e.max) for e in h.events if isinstance(e, Progress) and e.node == "5"]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert len([e for e in h.events if isinstance(e, PreviewImage)]) == 3


def test_denoised_output_is_last_x0(harness):
    out = harness.run(custom_advanced(steps=2, seed=3, save_denoised=True))
    result, x0 = harness.latent(out, "6"), harness.latent(out, "7")
    # euler's last step goes to sigma 0, so the output is the last denoised estimate
    assert torch.allclose(result, x0, atol=1e-6)


SAMPLER_NODES = {
    "SamplerEulerAncestral": {"eta": 1.0, "s_noise": 1.0},
    "SamplerEulerAncestralCFGPP": {"eta": 1.0, "s_noise": 1.0},
    "SamplerLMS": {"order": 3},
    "SamplerDPMPP_3M_SDE": {"eta": 1.0, "s_noise": 1.0, "noise_device": "cpu"},
    "SamplerDPMPP_2M_SDE": {"solver_type": "heun", "eta": 1.0, "s_noise": 1.0, "noise_device": "gpu"},
    "SamplerDPMPP_SDE": {"eta": 1.0, "s_noise": 1.0, "r": 0.5, "noise_device": "cpu"},
    "SamplerDPMPP_2S_Ancestral": {"eta": 1.0, "s_noise": 1.0},
    "SamplerDPMAdaptative": {"order": 3, "rtol": 0.05, "atol": 0.0078, "h_init": 0.05, "pcoeff": 0.0,
                             "icoeff": 1.0, "dcoeff": 0.0, "accept_safety": 0.81, "eta": 0.0, "s_noise": 1.0},
    "SamplerER_SDE": {"solver_type": "Reverse-time SDE", "max_stage": 2, "eta": 0.5, "s_noise": 1.0},
    "SamplerSASolver": {"model": ["1", 0], "eta": 1.0, "sde_start_percent": 0.2, "sde_end_percent": 0.8,
                        "s_noise": 1.0, "predictor_order": 2, "corrector_order": 2, "use_pece": False,
                        "simple_order_2": True},
    "SamplerLCMUpscale": {"scale_ratio": 1.0, "scale_steps": -1, "upscale_method": "bislerp"},
    "SamplerEulerCFGpp": {"version": "alternative"},
}


@pytest.mark.parametrize("node", list(SAMPLER_NODES))
def test_sampler_nodes_run(harness, node):
    p = custom_advanced(steps=3, seed=2, sampler_node=["20", 0],
                        extra={"20": {"class_type": node, "inputs": SAMPLER_NODES[node]}})
    out = latent_of(harness, p)
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()


def test_sampler_nodes_with_options_differ_from_defaults(harness):
    base = latent_of(harness, custom_advanced(sampler="euler_ancestral", steps=3, seed=2))
    same = latent_of(harness, custom_advanced(steps=3, seed=2, sampler_node=["20", 0], extra={
        "20": {"class_type": "SamplerEulerAncestral", "inputs": {"eta": 1.0, "s_noise": 1.0}}}))
    other = latent_of(harness, custom_advanced(steps=3, seed=2, sampler_node=["20", 0], extra={
        "20": {"class_type": "SamplerEulerAncestral", "inputs": {"eta": 0.0, "s_noise": 1.0}}}))
    euler = latent_of(harness, custom_advanced(sampler="euler", steps=3, seed=2))
    assert torch.equal(base, same) and not torch.equal(base, other)
    assert torch.allclose(other, euler, atol=1e-5)  # eta 0 is plain euler


def test_lcm_upscale_grows_the_latent(harness):
    p = custom_advanced(steps=2, seed=2, sampler_node=["20", 0], extra={
        "20": {"class_type": "SamplerLCMUpscale", "inputs": {"scale_ratio": 2.0, "scale_steps": -1,
                                                               "upscale_method": "bilinear"}}})
    assert latent_of(harness, p).shape == (1, 4, 16, 16)


def test_guiders(harness):
    cfg1 = latent_of(harness, custom_advanced(cfg=1.0, seed=6))
    basic = latent_of(harness, custom_advanced(seed=6, guider=["20", 0], extra={
        "20": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["2", 0]}}}))
    assert torch.equal(cfg1, basic)  # CFG 1 skips the negative: the same as the positive alone
    for style in ("regular", "nested"):
        dual = latent_of(harness, custom_advanced(seed=6, guider=["20", 0], extra={
            "20": {"class_type": "DualCFGGuider", "inputs": {
                "model": ["1", 0], "cond1": ["2", 0], "cond2": ["3", 0], "negative": ["3", 0], "cfg_conds": 3.0,
                "cfg_cond2_negative": 2.0, "style": style}}}))
        assert torch.isfinite(dual).all()
    # regular DualCFG with cond2 == negative and cfg_cond2_negative 1: cond2 + cfg_conds * (cond1 - cond2)
    dual = latent_of(harness, custom_advanced(seed=6, guider=["20", 0], extra={
        "20": {"class_type": "DualCFGGuider", "inputs": {
            "model": ["1", 0], "cond1": ["2", 0], "cond2": ["3", 0], "negative": ["3", 0], "cfg_conds": 5.0,
            "cfg_cond2_negative": 1.0, "style": "regular"}}}))
    assert torch.allclose(dual, latent_of(harness, custom_advanced(seed=6, cfg=5.0)), atol=1e-4)
    perp = latent_of(harness, custom_advanced(seed=6, guider=["20", 0], extra={
        "20": {"class_type": "PerpNegGuider", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "empty_conditioning": ["21", 0],
            "cfg": 5.0, "neg_scale": 1.0}},
        "21": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}}}))
    assert torch.isfinite(perp).all()


def test_disable_noise_and_add_noise(harness):
    # no noise, no mask, zero latent: every step keeps x at the model's prediction of an empty image
    p = custom_advanced(steps=2, seed=1, noise=["20", 0], extra={"20": {"class_type": "DisableNoise", "inputs": {}}})
    assert torch.isfinite(latent_of(harness, p)).all()
    p = dict(BASE)
    p["11"] = {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 4,
                                                          "denoise": 1.0}}
    p["13"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}}
    p["5"] = {"class_type": "AddNoise", "inputs": {"model": ["1", 0], "noise": ["13", 0], "sigmas": ["11", 0],
                                                   "latent_image": ["4", 0]}}
    p["6"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/noised"}}
    noised = latent_of(harness, p)
    from hearth.runtime.families import SD15_LATENT
    from hearth.sampling.model_sampling import DiscreteSampling
    from hearth.sampling.noise import prepare_noise

    expected = SD15_LATENT.process_out(prepare_noise(torch.zeros(1, 4, 8, 8), 5) * DiscreteSampling().sigma_max)
    assert torch.allclose(noised, expected, atol=1e-4)


MODEL_PATCHES = {
    "CFGZeroStar": {},
    "CFGNorm": {"strength": 1.0},
    "APG": {"eta": 0.5, "norm_threshold": 5.0, "momentum": 0.5},
    "Epsilon Scaling": {"scaling_factor": 1.005},
    "PerpNeg": {"empty_conditioning": ["21", 0], "neg_scale": 1.0},
    "RescaleCFG": {"multiplier": 0.7},
    "ModelSamplingDiscrete": {"sampling": "v_prediction", "zsnr": True},
    "ModelSamplingContinuousEDM": {"sampling": "edm", "sigma_max": 80.0, "sigma_min": 0.002},
    "ModelSamplingContinuousV": {"sampling": "v_prediction", "sigma_max": 500.0, "sigma_min": 0.03},
    "ModelSamplingContinuousEDM/playground": {"sampling": "edm_playground_v2.5", "sigma_max": 80.0,
                                              "sigma_min": 0.002},
    "ModelSamplingContinuousEDM/cosmos": {"sampling": "cosmos_rflow", "sigma_max": 80.0, "sigma_min": 0.002},
    "ModelComputeDtype": {"dtype": "bf16"},
    "ModelComputeDtype/fp16": {"dtype": "fp16"},
}


@pytest.mark.parametrize("node", list(MODEL_PATCHES))
def test_model_patches_change_the_result(harness, node):
    plain = latent_of(harness, custom_advanced(seed=9, steps=2))
    extra = {"20": {"class_type": node.split("/")[0], "inputs": {"model": ["1", 0], **MODEL_PATCHES[node]}},
             "21": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}}}
    patched = latent_of(harness, custom_advanced(seed=9, steps=2, model=("20", 0), extra=extra))
    assert patched.shape == plain.shape and torch.isfinite(patched).all()
    assert not torch.equal(patched, plain)


@pytest.mark.parametrize("sampling", ["eps", "lcm", "x0", "img_to_img"])
def test_model_sampling_discrete_variants_run(harness, sampling):
    extra = {"20": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["1", 0], "sampling": sampling,
                                                                       "zsnr": False}}}
    out = latent_of(harness, custom_advanced(seed=9, steps=2, model=("20", 0), extra=extra))
    assert torch.isfinite(out).all()


def test_model_sampling_eps_is_the_default(harness):
    extra = {"20": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["1", 0], "sampling": "eps",
                                                                       "zsnr": False}}}
    assert torch.equal(latent_of(harness, custom_advanced(seed=9, steps=2, model=("20", 0), extra=extra)),
                       latent_of(harness, custom_advanced(seed=9, steps=2)))


def test_compute_dtype_fp32_on_fp32_weights_is_unchanged(harness):
    extra = {"20": {"class_type": "ModelComputeDtype", "inputs": {"model": ["1", 0], "dtype": "fp32"}}}
    assert torch.equal(latent_of(harness, custom_advanced(seed=9, steps=2, model=("20", 0), extra=extra)),
                       latent_of(harness, custom_advanced(seed=9, steps=2)))


def test_schedulers_and_sigma_nodes_through_the_engine(harness):
    extra = {
        "30": {"class_type": "KarrasScheduler", "inputs": {"steps": 4, "sigma_max": 14.614642,
                                                          "sigma_min": 0.0291675, "rho": 7.0}},
        "31": {"class_type": "SplitSigmas", "inputs": {"sigmas": ["30", 0], "step": 2}},
        "32": {"class_type": "AlignYourStepsScheduler", "inputs": {"model_type": "SD1", "steps": 3, "denoise": 1.0}},
        "33": {"class_type": "SDTurboScheduler", "inputs": {"model": ["1", 0], "steps": 2, "denoise": 1.0}},
    }
    for sig in (["31", 1], ["32", 0], ["33", 0]):
        out = latent_of(harness, custom_advanced(seed=3, sigmas=sig, extra=extra))
        assert torch.isfinite(out).all()


def test_comfy_samplers_facade_is_hearths_mechanism():
    """Packs reach CFGGuider / KSAMPLER / sampler_object / sample_custom through the comfy.* facades."""
    import importlib.util
    from pathlib import Path

    from hearth.sampling import ksampler

    def load(name):  # the facade file, loaded standalone (the finder that maps comfy.* is not installed here)
        path = Path(ksampler.__file__).parents[1] / "compat" / "shims" / "comfy" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_facade_comfy_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    comfy_sample, comfy_samplers = load("sample"), load("samplers")
    from hearth.sampling.noise import prepare_noise
    from tests.runtime.test_sampling import FakeModel, cond

    assert comfy_samplers.CFGGuider is ksampler.CFGGuider and comfy_samplers.KSAMPLER is ksampler.Sampler
    latent = torch.zeros(1, 4, 4, 4)
    sigmas = ksampler.calculate_sigmas(FakeModel().model_sampling, "euler", "karras", 4)
    reference = ksampler.ksample(FakeModel(), prepare_noise(latent, 3), 4, 3.0, "euler", "karras", cond(1), cond(-1),
                                 latent, seed=3)

    calls = []

    def sample_pack_euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        calls.append(disable)
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i] * s_in, **extra_args)
            x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        return x

    out = comfy_sample.sample_custom(FakeModel(), prepare_noise(latent, 3), 3.0,
                                     comfy_samplers.KSAMPLER(sample_pack_euler), sigmas, cond(1), cond(-1), latent,
                                     disable_pbar=True, seed=3)
    assert calls == [True] and torch.allclose(out, reference, atol=1e-6)
    out = comfy_sample.sample_custom(FakeModel(), prepare_noise(latent, 3), 3.0, comfy_samplers.sampler_object("euler"),
                                     sigmas, cond(1), cond(-1), latent, seed=3)
    assert torch.equal(out, reference)

    class HalfGuider(comfy_samplers.CFGGuider):  # a pack's guider: the mean of the two predictions
        def predict_noise(self, x, timestep, model_options={}, seed=None):
            conds = [self.conds["positive"], self.conds["negative"]]
            pos, neg = comfy_samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
            return (pos + neg) / 2

    guider = HalfGuider(FakeModel())
    guider.set_conds(cond(1), cond(-1))
    out = guider.sample(prepare_noise(latent, 3), latent, comfy_samplers.ksampler("euler"), sigmas, seed=3)
    assert out.shape == latent.shape and not torch.equal(out, reference)


# Sigma nodes other tests call directly (checked there against ComfyUI's numbers): here each one runs
# through the engine with its widgets at their defaults, feeding a PreviewAny, and the shown value must be
# what a direct call returns.
SIGMA_NODES = ["BetaSamplingScheduler", "ExponentialScheduler", "LaplaceScheduler", "PolyexponentialScheduler",
               "VPScheduler", "GITSScheduler", "OptimalStepsScheduler", "ExtendIntermediateSigmas", "FlipSigmas",
               "SetFirstSigma", "SplitSigmasDenoise", "SamplingPercentToSigma", "TorchCompileModel"]


@pytest.mark.parametrize("name", SIGMA_NODES)
def test_sigma_and_model_nodes_through_the_engine(harness, name):
    from hearth.nodes.context import using

    info = harness.registry.node_info(name)
    links = {"MODEL": ["1", 0], "SIGMAS": ["11", 0]}
    inputs = {}
    for section in ("required", "optional"):
        for input_name, spec in info["input"].get(section, {}).items():
            kind = spec[0]
            if isinstance(kind, str) and kind in links:
                inputs[input_name] = links[kind]
            elif isinstance(kind, list):
                inputs[input_name] = kind[0]
            elif kind == "COMBO":
                inputs[input_name] = spec[1]["options"][0]
            else:
                inputs[input_name] = spec[1]["default"]
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "11": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 6,
                                                          "denoise": 1.0}},
        "20": {"class_type": name, "inputs": inputs},
        "21": {"class_type": "PreviewAny", "inputs": {"source": ["20", 0]}},
    }
    if name == "TorchCompileModel":  # compiling the network is lazy (first sampling call): not done here
        prompt["20"]["inputs"]["backend"] = "cudagraphs"
    outcome = harness.run(prompt)
    shown = outcome.outputs["21"]["text"][0]
    cls = harness.registry.get(name)
    with using(harness.context()):
        from hearth.nodes.builtin.custom_sampler import BasicScheduler
        from hearth.nodes.builtin.sd import CheckpointLoaderSimple

        model = CheckpointLoaderSimple().load_checkpoint("sd15.safetensors")[0]
        sigmas = BasicScheduler().get_sigmas(model, "karras", 6, 1.0)[0]
        args = {k: model if v == ["1", 0] else sigmas if v == ["11", 0] else v for k, v in inputs.items()}
        direct = getattr(cls(), cls.FUNCTION)(**args)[0]
    if name == "TorchCompileModel":
        assert "compiled_network" in direct.model_options and shown
    elif isinstance(direct, float):
        assert float(shown) == pytest.approx(direct)
    else:
        assert torch.is_tensor(direct) and direct.ndim == 1 and torch.isfinite(direct).all()
        assert shown == str(direct)
