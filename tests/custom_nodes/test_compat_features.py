"""The ComfyUI module names packs import for model patches, ControlNet, custom sampling, hooks, model
sampling, merging, CLIP vision / style / GLIGEN and video, used by a custom node pack in a real App.

The pack below is written into ``<base>/custom_nodes/`` and loaded by Hearth's pack loader (an App
made in this process, its HTTP side not started); prompts go through the App's engine. Each pack node
does the work the ComfyUI way (``model.set_model_attn1_patch``, ``comfy.controlnet.load_controlnet``,
``comfy_extras.nodes_custom_sampler.SamplerCustomAdvanced`` …) and its result is compared with
Hearth's built-in node doing the same thing, or checked directly. The models are the tiny random-weight
fixtures of tests/runtime.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors.torch import load_file, save_file  # noqa: E402

from tests.runtime import tiny  # noqa: E402
from tests.runtime import tiny_vision as tv  # noqa: E402
from tests.runtime.test_controlnet import controlnet_shapes  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

PACK = '''
"""Hearth test pack: ComfyUI's feature APIs, used as popular packs use them."""
import json
import os
from fractions import Fraction

import comfy.controlnet
import comfy.hooks
import comfy.model_patcher
import comfy.model_sampling
import comfy.sample
import comfy.utils
import folder_paths
from comfy_api.latest import Input, InputImpl, Types
from comfy_extras.nodes_custom_sampler import Guider_Basic, Noise_RandomNoise, SamplerCustomAdvanced
from comfy_extras.nodes_upscale_model import ImageUpscaleWithModel  # noqa: F401  (resolved at import)

_SEED = ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff})
_FLOAT = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})


class HTF_AttnPatchSample:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("LATENT", "STRING")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "latent": ("LATENT",), "seed": _SEED, "scale": _FLOAT}}

    def run(self, model, positive, negative, latent, seed, scale):
        calls = []

        def attn1(n, context, value, extra):
            calls.append((extra["block"][0], extra["n_heads"]))
            return n * scale, context * scale, value

        m = model.clone()
        to = m.model_options["transformer_options"].copy()  # as IPAdapter and friends do
        m.model_options["transformer_options"] = to
        m.set_model_attn1_patch(attn1)
        samples = latent["samples"]
        noise = comfy.sample.prepare_noise(samples, seed)
        out = comfy.sample.sample(m, noise, 3, 5.0, "euler", "normal", positive, negative, samples, seed=seed)
        report = {
            "is_model_patcher": isinstance(model, comfy.model_patcher.ModelPatcher),
            "calls": len(calls), "blocks": sorted({c[0] for c in calls}),
            "original_untouched": not model.model_options["transformer_options"].get("patches"),
            "dtype": str(m.model_dtype()), "load_device": str(m.load_device),
            "sampling": m.get_model_object("model_sampling") is m.model.model_sampling,
            "is_clone": m.is_clone(model),
        }
        return ({"samples": out}, json.dumps(report))


class HTF_Attn2Replace:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "scale": _FLOAT}}

    def patch(self, model, scale):
        from comfy.ldm.modules.attention import optimized_attention

        def replace(q, k, v, extra):
            return optimized_attention(q, k, v, extra["n_heads"]) * scale

        m = model.clone()
        for block, number in (("input", 1), ("middle", 0), ("output", 2), ("output", 3)):
            m.set_model_attn2_replace(replace, block, number)
        return (m,)


class HTF_CfgHooks:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    def patch(self, model):
        import comfy.samplers

        def calc(args):  # the default evaluation, called the ComfyUI way
            return comfy.samplers.calc_cond_batch(args["model"], args["conds"], args["input"], args["sigma"],
                                                  args["model_options"])

        def uncond_is_cond(args):
            out = args["conds_out"]
            return [out[0], out[0]]

        m = model.clone()
        m.set_model_sampler_calc_cond_batch_function(calc)
        m.set_model_sampler_pre_cfg_function(uncond_is_cond)
        m.model_options = comfy.model_patcher.set_model_options_post_cfg_function(
            m.model_options, lambda args: args["denoised"])
        return (m,)


class HTF_ControlNetApply:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("CONDITIONING", "STRING")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "image": ("IMAGE",),
                             "control_net_name": (folder_paths.get_filename_list("controlnet"),),
                             "strength": _FLOAT}}

    def apply(self, conditioning, image, control_net_name, strength):
        control = comfy.controlnet.load_controlnet(folder_paths.get_full_path_or_raise("controlnet",
                                                                                       control_net_name))
        kinds = [isinstance(control, comfy.controlnet.ControlBase), isinstance(control, comfy.controlnet.ControlNet),
                 isinstance(control, comfy.controlnet.T2IAdapter)]
        hint = image.movedim(-1, 1)
        out = []
        for t in conditioning:
            n = [t[0], t[1].copy()]
            c_net = control.copy().set_cond_hint(hint, strength)
            if "control" in t[1]:
                c_net.set_previous_controlnet(t[1]["control"])
            n[1]["control"] = c_net
            n[1]["control_apply_to_uncond"] = True
            out.append(n)
        return (out, json.dumps(kinds))


class HTF_SamplerCustomAdvanced(SamplerCustomAdvanced):
    CATEGORY = "hearth_test"


class HTF_Noise:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise_seed": _SEED}}

    def get_noise(self, noise_seed):
        return (Noise_RandomNoise(noise_seed),)


class HTF_Guider:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    def get_guider(self, model, conditioning):
        guider = Guider_Basic(model)
        guider.set_conds(conditioning)
        return (guider,)


class HTF_HookLora:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "lora_name": (folder_paths.get_filename_list("loras"),),
                             "strength": _FLOAT}}

    def apply(self, conditioning, lora_name, strength):
        lora = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("loras", lora_name), safe_load=True)
        hooks = comfy.hooks.create_hook_lora(lora, strength, strength)
        assert isinstance(hooks, comfy.hooks.HookGroup)
        return (comfy.hooks.set_hooks_for_conditioning(conditioning, hooks),)


class HTF_VPrediction:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    def patch(self, model):
        class ModelSamplingAdvanced(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
            pass

        m = model.clone()
        m.add_object_patch("model_sampling", ModelSamplingAdvanced(zsnr=True))
        return (m,)


class HTF_Merge:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "ratio": _FLOAT}}

    def merge(self, model1, model2, ratio):
        m = model1.clone()
        kp = model2.get_key_patches("diffusion_model.")
        for k in kp:
            m.add_patches({k: kp[k]}, 1.0 - ratio, ratio)
        return (m,)


class HTF_SaveVideo:
    CATEGORY = "hearth_test"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0}),
                             "filename_prefix": ("STRING", {"default": "htf"})}}

    def save(self, images, fps, filename_prefix):
        video = InputImpl.VideoFromComponents(Types.VideoComponents(images=images, frame_rate=Fraction(fps)))
        assert isinstance(video, Input.Video)
        width, height = video.get_dimensions()
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height)
        file = f"{filename}_{counter:05}_.{Types.VideoContainer.get_extension(Types.VideoContainer.AUTO)}"
        video.save_to(os.path.join(folder, file), format=Types.VideoContainer.MP4, codec=Types.VideoCodec.H264)
        return {"ui": {"images": [{"filename": file, "subfolder": subfolder, "type": "output"}], "animated": (True,)},
                "result": (video,)}


NODE_CLASS_MAPPINGS = {name: cls for name, cls in globals().items() if name.startswith("HTF_")}
'''


def _write_base(base: Path) -> None:
    models = base / "models"
    for sub in ("checkpoints", "loras", "controlnet", "clip_vision", "style_models", "gligen"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    save_file(tiny.sd15_checkpoint(), str(models / "checkpoints" / "sd15.safetensors"))
    save_file(tiny.sdxl_checkpoint(), str(models / "checkpoints" / "sdxl.safetensors"))
    save_file(tiny.sd15_lora(), str(models / "loras" / "tiny_lora.safetensors"))
    save_file(tv.unclip_checkpoint(), str(models / "checkpoints" / "sd21_unclip.safetensors"))
    g = torch.Generator().manual_seed(21)
    save_file(tiny.materialise(controlnet_shapes(tiny.SD15_UNET), g, "control_model."),
              str(models / "controlnet" / "control_tiny.safetensors"))
    save_file(tv.hf_vision(), str(models / "clip_vision" / "hf_vit.safetensors"))
    save_file(tv.style_adapter(), str(models / "style_models" / "t2i_style.safetensors"))
    save_file(tv.gligen(), str(models / "gligen" / "gligen_tiny.safetensors"))
    pack = base / "custom_nodes" / "hearth_features_pack"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)


class AppRunner:
    """An App (custom nodes loaded, no HTTP server) and a way to run prompts through its engine."""

    def __init__(self, base: Path) -> None:
        from hearth.app import App
        from hearth.config import Config

        self.app = App(Config(base_directory=base, cpu=True))

    def run(self, prompt: dict):
        from hearth.engine import Interrupt
        from hearth.nodes.context import using

        events, lock = [], threading.Lock()

        def emit(event):
            with lock:
                events.append(event)

        with using(self.app.node_context):
            result = self.app.engine.validate(prompt)
            assert result.ok, (result.error, result.node_errors)
            outcome = self.app.engine.execute("p", prompt, {}, result.outputs, emit, Interrupt())
        assert outcome.status == "success", outcome.error
        return outcome

    def latent(self, prompt: dict, node: str = "9"):
        prompt = dict(prompt)
        prompt["99"] = {"class_type": "SaveLatent", "inputs": {"samples": [node, 0], "filename_prefix": "htf/l"}}
        entry = self.run(prompt).outputs["99"]["latents"][0]
        return load_file(str(self.app.folders.output / entry["subfolder"] / entry["filename"]))["latent_tensor"]

    def text(self, prompt: dict, node: str, index: int = 1):
        prompt = dict(prompt)
        prompt["98"] = {"class_type": "PreviewAny", "inputs": {"source": [node, index]}}
        return self.run(prompt).outputs["98"]["text"][0]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    base = tmp_path_factory.mktemp("compat_features")
    _write_base(base)
    r = AppRunner(base)
    loaded = {p.name: p for p in r.app.custom_node_packs}
    assert loaded["hearth_features_pack"].ok, loaded["hearth_features_pack"].error
    yield r
    r.app.store.close()


def base_prompt(seed: int = 3) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a (red:1.2) house", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }


def ksampler(model=("1", 0), positive=("2", 0), negative=("3", 0), seed=3, steps=3, cfg=5.0) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": list(model), "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
        "scheduler": "normal", "positive": list(positive), "negative": list(negative), "latent_image": ["4", 0],
        "denoise": 1.0}}


@pytest.fixture(scope="module")
def baseline(runner):
    return runner.latent({**base_prompt(), "9": ksampler()})


# --- model patches (ModelPatcher API on MODEL) ------------------------------------------------------
def test_attn1_patch_from_a_pack_runs_in_sampling(runner, baseline):
    def prompt(scale):
        return {**base_prompt(), "9": {"class_type": "HTF_AttnPatchSample", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent": ["4", 0], "seed": 3,
            "scale": scale}}}

    identity = runner.latent(prompt(1.0))
    # same numbers as the unpatched KSampler (the patched walk computes attention its own way: float noise only)
    assert torch.allclose(identity, baseline, atol=1e-4), (identity - baseline).abs().max()
    halved = runner.latent(prompt(0.5))
    assert (halved - baseline).abs().max() > 1e-2
    report = json.loads(runner.text(prompt(0.5), "9"))
    # tiny SD1.5: 1 input + 1 middle + 2 output transformer blocks, 3 steps, cond and uncond batched together
    assert report == {"is_model_patcher": True, "calls": 12, "blocks": ["input", "middle", "output"],
                      "original_untouched": True, "dtype": "torch.float32", "load_device": "cpu",
                      "sampling": True, "is_clone": True}


def test_attn2_replace_with_comfy_optimized_attention(runner, baseline):
    def prompt(scale):
        return {**base_prompt(), "5": {"class_type": "HTF_Attn2Replace", "inputs": {"model": ["1", 0],
                                                                                     "scale": scale}},
                "9": ksampler(model=("5", 0))}

    same = runner.latent(prompt(1.0))
    assert torch.allclose(same, baseline, atol=1e-4), (same - baseline).abs().max()
    assert (runner.latent(prompt(0.0)) - baseline).abs().max() > 1e-2


def test_optimized_attention_layouts_and_masks():
    from comfy.ldm.modules.attention import optimized_attention
    from hearth.runtime.unet_patches import attention

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn((2, 6, 8), generator=g) for _ in range(3))
    out = optimized_attention(q, k, v, 2)
    assert torch.allclose(out, attention(q, k, v, 2), atol=1e-6)
    split = [t.view(2, -1, 2, 4).transpose(1, 2) for t in (q, k, v)]
    assert torch.allclose(optimized_attention(*split, 2, skip_reshape=True, skip_output_reshape=True)
                          .transpose(1, 2).reshape(2, -1, 8), out, atol=1e-6)
    # a mask that blocks every key but the first: each query gets the first value
    mask = torch.full((6, 6), float("-inf"))
    mask[:, 0] = 0
    masked = optimized_attention(q, k, v, 2, mask=mask)
    assert torch.allclose(masked, v[:, :1].expand(-1, 6, -1), atol=1e-6)
    assert torch.allclose(optimized_attention(q, k, v, 2, mask=mask.expand(2, 6, 6)), masked, atol=1e-6)


def test_pre_cfg_and_calc_cond_batch_functions(runner):
    # with the uncond prediction replaced by the cond one, CFG 5 gives the cond prediction: CFG 1's result
    patched = runner.latent({**base_prompt(), "5": {"class_type": "HTF_CfgHooks", "inputs": {"model": ["1", 0]}},
                             "9": ksampler(model=("5", 0), cfg=5.0)})
    cfg1 = runner.latent({**base_prompt(), "9": ksampler(cfg=1.0)})
    assert torch.allclose(patched, cfg1, atol=1e-4), (patched - cfg1).abs().max()


def test_model_options_helpers_change_the_dict_given():
    import comfy.model_patcher as mp

    shared = {"transformer_options": {"patches_replace": {"attn2": {("input", 1): "old"}}}}
    options = mp.create_model_options_clone(shared)
    assert mp.set_model_options_patch_replace(options, "new", "attn2", "input", 1) is options
    assert options["transformer_options"]["patches_replace"]["attn2"][("input", 1)] == "new"
    assert shared["transformer_options"]["patches_replace"]["attn2"][("input", 1)] == "old"
    mp.set_model_options_post_cfg_function(options, "post", disable_cfg1_optimization=True)
    mp.set_model_options_pre_cfg_function(options, "pre")
    assert options["sampler_post_cfg_function"] == ["post"] and options["sampler_pre_cfg_function"] == ["pre"]
    assert options["disable_cfg1_optimization"] is True and "sampler_post_cfg_function" not in shared


def test_model_sampling_object_patch_matches_the_builtin_node(runner, baseline):
    pack = runner.latent({**base_prompt(), "5": {"class_type": "HTF_VPrediction", "inputs": {"model": ["1", 0]}},
                          "9": ksampler(model=("5", 0))})
    builtin = runner.latent({**base_prompt(), "5": {"class_type": "ModelSamplingDiscrete", "inputs": {
        "model": ["1", 0], "sampling": "v_prediction", "zsnr": True}}, "9": ksampler(model=("5", 0))})
    assert torch.equal(pack, builtin)
    assert (pack - baseline).abs().max() > 1e-2


def test_get_key_patches_and_add_patches_merge_like_model_merge_simple(runner, baseline):
    p = {**base_prompt(), "5": {"class_type": "LoraLoaderModelOnly", "inputs": {
        "model": ["1", 0], "lora_name": "tiny_lora.safetensors", "strength_model": 1.0}}}
    pack = runner.latent({**p, "6": {"class_type": "HTF_Merge", "inputs": {
        "model1": ["1", 0], "model2": ["5", 0], "ratio": 0.3}}, "9": ksampler(model=("6", 0))})
    builtin = runner.latent({**p, "6": {"class_type": "ModelMergeSimple", "inputs": {
        "model1": ["1", 0], "model2": ["5", 0], "ratio": 0.3}}, "9": ksampler(model=("6", 0))})
    assert torch.equal(pack, builtin)
    assert (pack - baseline).abs().max() > 1e-3


def test_add_patches_takes_comfyui_keys_and_tuples(runner):
    import comfy.sd
    from hearth.compat.shims_support import NotProvidedError
    from hearth.nodes.context import using

    with using(runner.app.node_context):
        path = runner.app.folders.full_path("checkpoints", "sd15.safetensors")
        model, _, _, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_clip=False, output_vae=False)
    key = "diffusion_model.input_blocks.0.0.weight"
    dif = model.ldm_to_diffusers["input_blocks.0.0.weight"]
    original = model.patcher.holder.original(dif).float()
    delta = torch.randn(original.shape, generator=torch.Generator().manual_seed(4))
    m = model.clone()
    assert m.add_patches({key: (delta,), "diffusion_model.no_such.weight": (delta,)}, 0.5) == [key]
    assert torch.allclose(m.patcher.patched_weight(dif), original + 0.5 * delta)
    m2 = model.clone()
    m2.add_patches({key: ("diff", (delta,))}, 1.0, 0.5)  # strength_model scales the weight first
    assert torch.allclose(m2.patcher.patched_weight(dif), 0.5 * original + delta)
    m3 = model.clone()
    m3.add_patches({key: ("set", (delta,))})
    assert torch.equal(m3.patcher.patched_weight(dif), delta)
    assert model.patcher.patches == {}  # clones' patches never reach the original
    state = model.model_state_dict("diffusion_model.input_blocks.0.")
    assert set(state) == {k for k in state if k.startswith("diffusion_model.input_blocks.0.")} and key in state
    with pytest.raises(NotProvidedError, match="add_patches"):
        model.clone().add_patches({(key, (0, 0, 1)): (delta,)})
    with pytest.raises(NotProvidedError, match="patch type 'lora'"):
        model.clone().add_patches({key: ("lora", (delta, delta, None, None, None))})
    import comfy.model_patcher

    with pytest.raises(NotProvidedError, match="monkeypatching"):
        comfy.model_patcher.ModelPatcher.clone = lambda self: self
    with pytest.raises(NotProvidedError, match="ModelPatcher.add_wrapper"):
        model.add_wrapper("x", lambda: None)
    assert not hasattr(model, "add_callback")  # loud on use, still an AttributeError for hasattr
    with pytest.raises(NotProvidedError, match="ModelPatcher.model.model_config"):
        model.model.model_config  # noqa: B018
    m5 = model.clone()
    m5.set_model_compute_dtype(torch.bfloat16)
    assert m5.model_options["compute_dtype"] == "bf16" and "compute_dtype" not in model.model_options
    m5.set_model_compute_dtype(None)
    assert "compute_dtype" not in m5.model_options
    m4 = model.clone()
    m4.model_patches_to(torch.device("cpu"))
    assert m4.model_options["transformer_options"] == {}
    assert model.model.latent_format.hearth_format is model.latent_format and model.model.get_dtype() == torch.float32


def _load(runner, name="sd15.safetensors"):
    import comfy.sd
    from hearth.nodes.context import using

    with using(runner.app.node_context):
        path = runner.app.folders.full_path("checkpoints", name)
        model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=False)
    return model, clip


def test_model_base_classes_and_model_type(runner):
    import comfy.model_base as mb
    import comfy.model_sampling as ms
    from hearth.compat.shims_support import NotProvidedError

    sd15, _ = _load(runner)
    xl, _ = _load(runner, "sdxl.safetensors")
    assert isinstance(sd15.model, mb.BaseModel) and not isinstance(sd15.model, (mb.SDXL, mb.SDXLRefiner))
    assert isinstance(xl.model, mb.SDXL) and isinstance(xl.model, mb.BaseModel)
    assert not isinstance(xl.model, mb.SDXL_instructpix2pix) and not isinstance(object(), mb.BaseModel)
    assert sd15.model.model_type is mb.ModelType.EPS
    v = sd15.clone()

    class VPred(ms.ModelSamplingDiscrete, ms.V_PREDICTION):
        pass

    v.add_object_patch("model_sampling", VPred())
    assert v.model.model_type is mb.ModelType.V_PREDICTION and sd15.model.model_type is mb.ModelType.EPS
    assert torch.equal(v.model.model_sampling.sigmas, sd15.model_sampling.sigmas)
    with pytest.raises(NotProvidedError, match="SDXL"):
        mb.SDXL()


def test_latent_formats(runner):
    import comfy.latent_formats as lf
    from hearth.compat.shims_support import NotProvidedError
    from hearth.runtime.families import SD15_LATENT, SDXL_LATENT

    sd15, _ = _load(runner)
    xl, _ = _load(runner, "sdxl.safetensors")
    fmt = sd15.model.latent_format
    assert isinstance(fmt, lf.SD15) and isinstance(fmt, lf.LatentFormat) and not isinstance(fmt, lf.SDXL)
    assert isinstance(xl.get_model_object("latent_format"), lf.SDXL)
    assert fmt.scale_factor == 0.18215 and fmt.latent_channels == 4 and fmt.latent_dimensions == 2
    assert fmt.latent_rgb_factors[0] == [0.3512, 0.2297, 0.3227] and fmt.latent_rgb_factors_bias is None
    assert lf.SDXL().latent_rgb_factors_bias == list(SDXL_LATENT.rgb_bias) and lf.SDXL() == xl.model.latent_format
    x = torch.ones((1, 4, 2, 2))
    assert torch.allclose(lf.SDXL().process_in(x), x * 0.13025)
    assert lf.SD15(scale_factor=0.5).scale_factor == 0.5 and isinstance(lf.SD15(scale_factor=0.5), lf.SD15)
    m = sd15.clone()
    m.add_object_patch("latent_format", lf.SDXL())
    assert m.latent_format is SDXL_LATENT and sd15.latent_format is SD15_LATENT

    class Custom(lf.LatentFormat):
        scale_factor = 2.0

    assert isinstance(Custom(), lf.LatentFormat) and not isinstance(Custom(), lf.SDXL)
    with pytest.raises(NotProvidedError):
        m.add_object_patch("latent_format", Custom())
    with pytest.raises(NotProvidedError, match="latent_format"):
        m.add_object_patch("diffusion_model.input_blocks", None)


def test_comfy_lora_key_map_and_load_lora_patch_like_lora_loader(runner):
    import comfy.lora
    import comfy.sd
    import comfy.utils

    model, _ = _load(runner)
    lora = comfy.utils.load_torch_file(str(runner.app.folders.full_path("loras", "tiny_lora.safetensors")))
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    assert key_map["lora_unet_input_blocks_1_1_proj_in"] == "diffusion_model.input_blocks.1.1.proj_in.weight"
    patches = comfy.lora.load_lora(lora, key_map)
    assert patches and all(k.startswith("diffusion_model.") for k in patches)
    mine = model.clone()
    assert sorted(mine.add_patches(patches, 0.7)) == sorted(patches)
    reference, _ = comfy.sd.load_lora_for_models(model, None, lora, 0.7, 0.0)
    assert set(mine.patcher.patches) == set(reference.patcher.patches)
    for key in mine.patcher.patches:
        assert torch.equal(mine.patcher.patched_weight(key), reference.patcher.patched_weight(key)), key


# --- ControlNet --------------------------------------------------------------------------------------
def test_controlnet_loaded_and_applied_by_a_pack_matches_the_builtin_nodes(runner, baseline):
    image = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x3366CC}}
    pack_prompt = {**base_prompt(), "7": image, "8": {"class_type": "HTF_ControlNetApply", "inputs": {
        "conditioning": ["2", 0], "image": ["7", 0], "control_net_name": "control_tiny.safetensors",
        "strength": 0.8}}, "9": ksampler(positive=("8", 0))}
    pack = runner.latent(pack_prompt)
    builtin = runner.latent({**base_prompt(), "7": image,
                             "6": {"class_type": "ControlNetLoader", "inputs": {
                                 "control_net_name": "control_tiny.safetensors"}},
                             "8": {"class_type": "ControlNetApply", "inputs": {
                                 "conditioning": ["2", 0], "control_net": ["6", 0], "image": ["7", 0],
                                 "strength": 0.8}}, "9": ksampler(positive=("8", 0))})
    assert torch.equal(pack, builtin)
    assert (pack - baseline).abs().max() > 1e-3
    assert json.loads(runner.text(pack_prompt, "8")) == [True, True, False]


# --- custom sampling from comfy_extras ---------------------------------------------------------------
def test_sampler_custom_advanced_subclass_and_extras_helpers(runner):
    def prompt(prefix):
        noise = "HTF_Noise" if prefix else "RandomNoise"
        guider = {"class_type": "HTF_Guider", "inputs": {"model": ["1", 0], "conditioning": ["2", 0]}} if prefix \
            else {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["2", 0]}}
        return {**base_prompt(),
                "5": {"class_type": noise, "inputs": {"noise_seed": 11}},
                "6": guider,
                "7": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
                "8": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras",
                                                                 "steps": 3, "denoise": 1.0}},
                "9": {"class_type": "HTF_SamplerCustomAdvanced" if prefix else "SamplerCustomAdvanced",
                      "inputs": {"noise": ["5", 0], "guider": ["6", 0], "sampler": ["7", 0], "sigmas": ["8", 0],
                                 "latent_image": ["4", 0]}}}

    pack, builtin = runner.latent(prompt(True)), runner.latent(prompt(False))
    assert pack.shape == (1, 4, 8, 8) and torch.equal(pack, builtin)


# --- hooks -------------------------------------------------------------------------------------------
def test_hook_lora_from_a_pack_matches_the_builtin_hook_nodes(runner, baseline):
    pack = runner.latent({**base_prompt(), "8": {"class_type": "HTF_HookLora", "inputs": {
        "conditioning": ["2", 0], "lora_name": "tiny_lora.safetensors", "strength": 1.0}},
        "9": ksampler(positive=("8", 0))})
    builtin = runner.latent({**base_prompt(),
                             "7": {"class_type": "CreateHookLora", "inputs": {
                                 "lora_name": "tiny_lora.safetensors", "strength_model": 1.0,
                                 "strength_clip": 1.0}},
                             "8": {"class_type": "ConditioningSetProperties", "inputs": {
                                 "cond_NEW": ["2", 0], "strength": 1.0, "set_cond_area": "default",
                                 "hooks": ["7", 0]}}, "9": ksampler(positive=("8", 0))})
    assert torch.equal(pack, builtin)
    assert (pack - baseline).abs().max() > 1e-4


# --- video -------------------------------------------------------------------------------------------
def test_video_built_and_saved_by_a_pack(runner):
    pytest.importorskip("av")
    from hearth.media.video import VideoFromFile

    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 16, "batch_size": 5,
                                                           "color": 0x2080F0}},
              "2": {"class_type": "HTF_SaveVideo", "inputs": {"images": ["1", 0], "fps": 10.0,
                                                              "filename_prefix": "htf/clip"}},
              "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
              "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 2]}}}
    outputs = runner.run(prompt).outputs
    (saved,) = outputs["2"]["images"]
    assert saved == {"filename": "clip_00001_.mp4", "subfolder": "htf", "type": "output"}
    assert outputs["4"]["text"] == ["10.0"]
    components = VideoFromFile(str(runner.app.folders.output / "htf" / "clip_00001_.mp4")).get_components()
    assert tuple(components.images.shape) == (5, 16, 32, 3) and float(components.frame_rate) == 10.0
    blue = components.images[..., 2].mean().item()
    assert abs(blue - 0xF0 / 255) < 0.05


# --- CLIP vision, style models, GLIGEN ---------------------------------------------------------------
def test_clip_vision_style_and_gligen_loaders(runner):
    import comfy.clip_vision
    import comfy.sd
    from hearth.nodes.context import using

    folders = runner.app.folders
    image = torch.rand((2, 23, 37, 3), generator=torch.Generator().manual_seed(5))
    with using(runner.app.node_context):
        cv = comfy.clip_vision.load(str(folders.full_path("clip_vision", "hf_vit.safetensors")))
        assert isinstance(cv, comfy.clip_vision.ClipVisionModel)
        out = cv.encode_image(image, crop=True)
        assert isinstance(out, comfy.clip_vision.Output)
        loader = runner.app.registry.get("CLIPVisionLoader")
        encode = runner.app.registry.get("CLIPVisionEncode")
        (node_cv,) = loader().load_clip("hf_vit.safetensors")
        (node_out,) = encode().encode(node_cv, image, "center")
        for k in ("last_hidden_state", "image_embeds", "penultimate_hidden_states"):
            assert torch.equal(out[k], node_out[k]), k
        pixels = comfy.clip_vision.clip_preprocess(image, size=16)
        assert tuple(pixels.shape) == (2, 3, 16, 16)
        style = comfy.sd.load_style_model(str(folders.full_path("style_models", "t2i_style.safetensors")))
        assert isinstance(style, comfy.sd.StyleModel)
        from hearth.runtime.gligen import GligenNet

        gligen = comfy.sd.load_gligen(str(folders.full_path("gligen", "gligen_tiny.safetensors")))
        assert isinstance(gligen, GligenNet)
        unclip = str(folders.full_path("checkpoints", "sd21_unclip.safetensors"))
        model, clip, vae, vision = comfy.sd.load_checkpoint_guess_config(unclip, output_clipvision=True)
        assert isinstance(vision, comfy.clip_vision.ClipVisionModel) and clip is not None and vae is not None
        import comfy.model_base

        assert isinstance(model.model, comfy.model_base.SD21UNCLIP)
        assert comfy.sd.load_checkpoint_guess_config(unclip, output_clipvision=False)[3] is None


# --- which names resolve -----------------------------------------------------------------------------
MAPPED = {
    "comfy.model_patcher": ["ModelPatcher", "set_model_options_patch_replace", "set_model_options_post_cfg_function",
                            "set_model_options_pre_cfg_function", "create_model_options_clone"],
    "comfy.controlnet": ["load_controlnet", "ControlBase", "ControlNet", "ControlLora", "T2IAdapter", "StrengthType",
                         "broadcast_image_to"],
    "comfy.clip_vision": ["load", "ClipVisionModel", "Output", "clip_preprocess", "convert_to_transformers"],
    "comfy.sd": ["load_style_model", "load_gligen", "StyleModel", "load_checkpoint_guess_config",
                 "load_lora_for_models", "VAE", "CLIP"],
    "comfy.hooks": ["HookGroup", "Hook", "WeightHook", "HookKeyframe", "HookKeyframeGroup", "InterpolationMethod",
                    "EnumHookType", "EnumWeightTarget", "EnumHookScope", "EnumHookMode", "_HookRef",
                    "create_hook_lora", "create_hook_model_as_lora", "get_patch_weights_from_model",
                    "set_hooks_for_conditioning", "set_timesteps_for_conditioning", "set_mask_for_conditioning",
                    "combine_conditioning", "combine_with_new_conds", "conditioning_set_values_with_hooks",
                    "set_conds_props", "set_conds_props_and_combine", "set_default_conds_and_combine"],
    "comfy.model_sampling": ["ModelSamplingDiscrete", "ModelSamplingContinuousEDM", "ModelSamplingContinuousV",
                             "EPS", "V_PREDICTION", "EDM", "X0", "IMG_TO_IMG", "rescale_zero_terminal_snr_sigmas"],
    "comfy.ldm.modules.attention": ["optimized_attention", "optimized_attention_masked",
                                    "optimized_attention_for_device"],
    "comfy_extras.nodes_post_processing": ["Blur", "Sharpen", "Blend", "Quantize", "ImageScaleToTotalPixels"],
    "comfy_extras.nodes_rebatch": ["LatentRebatch", "ImageRebatch"],
    "comfy_extras.nodes_primitive": ["String", "Int", "Float", "Boolean"],
    "comfy.model_base": ["ModelType", "BaseModel", "SDXL", "SDXLRefiner", "SD21UNCLIP", "SD15_instructpix2pix",
                         "SDXL_instructpix2pix"],
    "comfy.lora": ["model_lora_keys_unet", "load_lora"],
    "comfy.latent_formats": ["LatentFormat", "SD15", "SDXL", "SDXL_Playground_2_5"],
    "comfy_api.latest": ["Input", "InputImpl", "Types", "io", "ui", "ComfyExtension"],
    "comfy_api.input": ["VideoInput", "ImageInput", "AudioInput", "MaskInput", "LatentInput"],
    "comfy_api.input_impl": ["VideoFromFile", "VideoFromComponents"],
    "comfy_api.util": ["VideoContainer", "VideoCodec", "VideoComponents"],
    "comfy_extras.nodes_custom_sampler": ["SamplerCustomAdvanced", "SamplerCustom", "KSamplerSelect", "BasicScheduler",
                                          "CFGGuider", "Noise_RandomNoise", "Noise_EmptyNoise", "Guider_Basic",
                                          "Guider_DualCFG"],
    "comfy_extras.nodes_upscale_model": ["ImageUpscaleWithModel", "UpscaleModelLoader"],
    "comfy_extras.nodes_video": ["SaveVideo", "CreateVideo", "GetVideoComponents", "LoadVideo"],
    "comfy_extras.nodes_model_advanced": ["ModelSamplingDiscrete", "RescaleCFG"],
    "comfy_extras.nodes_hooks": ["CreateHookLora", "SetClipHooks"],
    "comfy_extras.nodes_mask": ["GrowMask", "composite"],
    "comfy_extras.nodes_perpneg": ["Guider_PerpNeg", "perp_neg"],
    "comfy_extras.nodes_freelunch": ["FreeU", "FreeU_V2", "Fourier_filter"],
    "comfy_extras.nodes_sag": ["SelfAttentionGuidance", "gaussian_blur_2d"],
    "comfy_extras.nodes_controlnet": ["SetUnionControlNetType"],
}

NOT_PROVIDED = {
    "comfy.model_patcher": ["LowVramPatch", "get_key_weight",
                            "ModelPatcher"],  # constructing one around a pack's own module
    "comfy.controlnet": ["load_controlnet_state_dict", "ControlLoraOps", "load_controlnet_mmdit"],
    "comfy.clip_vision": ["load_clipvision_from_sd", "IMAGE_ENCODERS"],
    "comfy.sd": ["load_controlnet", "load_diffusion_model_state_dict"],
    "comfy.hooks": ["ObjectPatchHook", "TransformerOptionsHook", "load_hook_lora_for_models"],
    "comfy.model_sampling": ["CONST", "ModelSamplingFlux", "ModelSamplingDiscreteFlow", "StableCascadeSampling"],
    "comfy.ldm.modules.attention": ["CrossAttention", "BasicTransformerBlock"],
    "comfy": ["sampler_helpers", "weight_adapter"],
    "comfy.model_base": ["Flux", "SD3", "WAN21"],
    "comfy.lora": ["model_lora_keys_clip", "calculate_weight"],
    "comfy.latent_formats": ["SD3", "Flux", "Wan21"],
    "comfy_extras.nodes_custom_sampler": ["hearth_test_no_such_name", "KSampler", "run_guider"],
    "comfy_extras.nodes_freelunch": ["fourier_filter"],  # a Hearth helper: not under ComfyUI's module name
    "comfy_extras.nodes_model_merging": ["save_checkpoint"],
}


def _resolve(module: str, name: str):
    import importlib

    value = getattr(importlib.import_module(module), name)
    if isinstance(value, type) and value.__init__ is not object.__init__:
        doc = value.__doc__ or ""
        if "is not provided by Hearth" in doc:  # a placeholder class: constructing it must fail
            value()
    return value


def test_every_mapped_name_resolves_to_hearth_code(runner):
    from hearth.nodes.context import using

    with using(runner.app.node_context):
        for module, names in MAPPED.items():
            for name in names:
                value = _resolve(module, name)
                assert value is not None, (module, name)
                origin = getattr(value, "__module__", "") or ""
                if isinstance(value, type) or callable(value):
                    # Hearth code, a shim (which forwards to it) or torch's Tensor
                    assert origin.startswith(("hearth.", "comfy", "torch", "builtins")), (module, name, origin)
        import comfy.controlnet
        import comfy.model_patcher
        import comfy_extras.nodes_custom_sampler as extras
        from hearth.nodes.builtin import custom_sampler
        from hearth.runtime import controlnet
        from hearth.runtime.model import DiffusionModel
        from hearth.sampling import custom

        assert issubclass(DiffusionModel, comfy.model_patcher.ModelPatcher)
        assert comfy.model_patcher.ModelPatcher.set_model_attn1_patch is DiffusionModel.set_model_attn1_patch
        assert comfy.controlnet.T2IAdapter is controlnet.T2IAdapter
        assert extras.SamplerCustomAdvanced is custom_sampler.SamplerCustomAdvanced
        assert extras.Noise_RandomNoise is custom.RandomNoise


def test_unmapped_names_raise_not_provided_naming_them(runner):
    import importlib

    from hearth.compat.shims_support import NotProvidedError
    from hearth.nodes.context import using

    with using(runner.app.node_context):
        for module, names in NOT_PROVIDED.items():
            mod = importlib.import_module(module)
            for name in names:
                try:
                    value = getattr(mod, name)
                except NotProvidedError as exc:  # an absent name: loud, and still an AttributeError
                    assert isinstance(exc, AttributeError) and name in str(exc), (module, name, str(exc))
                    assert not hasattr(mod, name)
                    with pytest.raises(ImportError, match=name):
                        exec(f"from {module} import {name}", {})
                    continue
                with pytest.raises(NotProvidedError, match=name):  # a stand-in: using it fails, naming it
                    value()


def test_feature_shims_import_without_torch():
    code = textwrap.dedent("""
        import sys
        from hearth.compat.finder import install_finder
        install_finder()
        import comfy.model_patcher, comfy.controlnet, comfy.clip_vision, comfy.hooks, comfy.model_sampling, comfy.sd
        import comfy.model_base, comfy.lora, comfy.latent_formats
        import comfy_api.latest, comfy_api.input, comfy_api.input_impl, comfy_api.util, comfy.ldm.modules.attention
        import hearth.compat.model_api
        assert "torch" not in sys.modules, "a shim imported torch"
        comfy.model_sampling.EPS, comfy_api.latest.Types.VideoContainer, comfy_api.latest.InputImpl.VideoFromFile
        assert "torch" not in sys.modules, "a torch-free name imported torch"
        comfy.model_sampling.ModelSamplingDiscrete
        assert "torch" in sys.modules
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
