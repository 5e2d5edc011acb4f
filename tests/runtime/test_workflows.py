"""Whole workflows through the Engine with the tiny checkpoints."""
from __future__ import annotations

import pytest
import torch

from tests.runtime.conftest import make_harness, txt2img


def latent_of(h, prompt, node="6"):
    return h.latent(h.run(prompt), node)


def test_txt2img_each_family(harness):
    for ckpt in ("sd15.safetensors", "sd2_v.safetensors", "sdxl.safetensors", "sdxl_refiner.safetensors",
                 "pruned.safetensors"):
        out = latent_of(harness, txt2img(ckpt, save_image=True))
        assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all(), ckpt


def test_same_seed_same_latent_other_seed_differs(model_base):
    h1 = make_harness(model_base)
    a = latent_of(h1, txt2img(seed=123))
    h2 = make_harness(model_base)  # a fresh engine: no cache
    b = latent_of(h2, txt2img(seed=123))
    c = latent_of(h2, txt2img(seed=124))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batches_use_one_draw_for_the_whole_batch(harness):
    batch = latent_of(harness, txt2img(batch=2, seed=7))
    assert batch.shape[0] == 2 and not torch.equal(batch[0], batch[1])


def test_progress_events_every_step(harness):
    from hearth.engine.events import Progress

    harness.run(txt2img(steps=4, seed=99))
    steps = [e for e in harness.events if isinstance(e, Progress) and e.node == "5"]
    assert [(e.value, e.max) for e in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_previews_with_latent2rgb(model_base):
    from hearth.engine.events import PreviewImage

    h = make_harness(model_base, preview_method="latent2rgb")
    h.run(txt2img(steps=2, seed=5))
    previews = [e for e in h.events if isinstance(e, PreviewImage)]
    assert len(previews) == 2


def test_previews_with_taesd(model_base):
    from safetensors.torch import save_file

    from hearth.engine.events import PreviewImage
    from hearth.runtime.preview import _taesd_decoder

    approx = model_base / "models" / "vae_approx"
    approx.mkdir(exist_ok=True)
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in _taesd_decoder().state_dict().items()},
              str(approx / "taesd_decoder.safetensors"))
    h = make_harness(model_base, preview_method="taesd")
    h.run(txt2img(steps=2, seed=5))
    previews = [e for e in h.events if isinstance(e, PreviewImage)]
    assert len(previews) == 2
    from PIL import Image
    import io

    width, height = Image.open(io.BytesIO(previews[0].image)).size
    assert width == height > 0


def test_img2img_and_hires_fix(harness):
    p = txt2img(seed=3, save_image=True)
    p["9"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["1", 2]}}
    p["10"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 4, "steps": 4, "cfg": 5.0,
                                                    "sampler_name": "dpmpp_2m", "scheduler": "karras",
                                                    "positive": ["2", 0], "negative": ["3", 0],
                                                    "latent_image": ["9", 0], "denoise": 0.5}}
    p["11"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["5", 0], "upscale_method": "bislerp",
                                                           "scale_by": 1.5}}
    p["12"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 4, "steps": 4, "cfg": 5.0,
                                                    "sampler_name": "euler_ancestral", "scheduler": "normal",
                                                    "positive": ["2", 0], "negative": ["3", 0],
                                                    "latent_image": ["11", 0], "denoise": 0.5}}
    p["13"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "latents/i2i"}}
    p["14"] = {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": "latents/hires"}}
    p["15"] = {"class_type": "LatentUpscale", "inputs": {"samples": ["12", 0], "upscale_method": "nearest-exact",
                                                         "width": 128, "height": 96, "crop": "center"}}
    p["16"] = {"class_type": "SaveLatent", "inputs": {"samples": ["15", 0], "filename_prefix": "latents/up"}}
    out = harness.run(p)
    assert harness.latent(out, "13").shape == (1, 4, 8, 8)
    assert harness.latent(out, "14").shape == (1, 4, 12, 12)
    assert harness.latent(out, "16").shape == (1, 4, 12, 16)


def test_inpainting_model_and_noise_mask(harness):
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_inpaint.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699}},
        "5": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 64}},
        "6": {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["4", 0], "vae": ["1", 2], "mask": ["5", 0],
                                                              "grow_mask_by": 6}},
        "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 3, "cfg": 5.0,
                                                   "sampler_name": "ddim", "scheduler": "ddim_uniform",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["6", 0], "denoise": 1.0}},
        "8": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "latents/inpaint"}},
        "9": {"class_type": "InpaintModelConditioning", "inputs": {"positive": ["2", 0], "negative": ["3", 0],
                                                                   "vae": ["1", 2], "pixels": ["4", 0],
                                                                   "mask": ["5", 0], "noise_mask": True}},
        "10": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 3, "cfg": 5.0,
                                                    "sampler_name": "euler", "scheduler": "normal",
                                                    "positive": ["9", 0], "negative": ["9", 1],
                                                    "latent_image": ["9", 2], "denoise": 1.0}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "latents/inpaint2"}},
    }
    if "SolidMask" not in harness.registry:
        pytest.skip("SolidMask node not available")
    out = harness.run(p)
    for node in ("8", "11"):
        assert torch.isfinite(harness.latent(out, node)).all()


def test_set_latent_noise_mask_on_a_regular_model(harness):
    if "SolidMask" not in harness.registry:
        pytest.skip("SolidMask node not available")
    p = txt2img(seed=2, save_image=True)
    p["9"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["1", 2]}}
    p["10"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
    p["11"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["9", 0], "mask": ["10", 0]}}
    p["12"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 4, "steps": 3, "cfg": 5.0,
                                                    "sampler_name": "euler", "scheduler": "normal",
                                                    "positive": ["2", 0], "negative": ["3", 0],
                                                    "latent_image": ["11", 0], "denoise": 0.6}}
    p["13"] = {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": "latents/mask"}}
    assert torch.isfinite(harness.latent(harness.run(p), "13")).all()


def lora_prompt(strength_model=1.0, strength_clip=1.0, only_model=False):
    p = txt2img(seed=11)
    if only_model:
        p["20"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "tiny_lora.safetensors",
                                                                   "strength_model": strength_model}}
        p["5"]["inputs"]["model"] = ["20", 0]
    else:
        p["20"] = {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                          "lora_name": "tiny_lora.safetensors",
                                                          "strength_model": strength_model, "strength_clip": strength_clip}}
        p["5"]["inputs"]["model"] = ["20", 0]
        p["2"]["inputs"]["clip"] = ["20", 1]
        p["3"]["inputs"]["clip"] = ["20", 1]
    return p


def test_lora_changes_output_and_is_undone(model_base):
    h = make_harness(model_base)
    base = latent_of(h, txt2img(seed=11))
    with_lora = latent_of(h, lora_prompt())
    assert not torch.allclose(base, with_lora)
    model_only = latent_of(h, lora_prompt(only_model=True))
    assert not torch.allclose(model_only, with_lora) and not torch.allclose(model_only, base)
    zero = latent_of(h, lora_prompt(0.0, 0.0))
    assert torch.equal(zero, base)
    h2 = make_harness(model_base)   # a fresh engine, same shared networks: the base weights are restored
    assert torch.equal(latent_of(h2, txt2img(seed=11)), base)
    negative = latent_of(h, lora_prompt(-1.0, 1.0))
    assert not torch.allclose(negative, with_lora)


def test_lora_patches_every_key(model_base, manager):
    from hearth.runtime import lora as L
    from hearth.runtime import loader
    from hearth.runtime.apply_lora import apply_lora

    model, clip, _ = loader.load_checkpoint(model_base / "models" / "checkpoints" / "sd15.safetensors", manager)
    sd = loader.load_lora_file(model_base / "models" / "loras" / "tiny_lora.safetensors")
    m2, c2 = apply_lora(model, clip, sd, 1.0, 1.0)
    assert len(m2.patcher.patches) == 4 and len(c2.encoders[0].patcher.patches) == 2
    assert not model.patcher.patches and not clip.encoders[0].patcher.patches
    key_maps = {"unet": L.unet_lora_names(model.unet.state_dict().keys(), model.ldm_to_diffusers)}
    _, unused = L.build_patches(sd, key_maps)
    assert all(k.startswith("lora_te") for k in unused)


def test_sdxl_base_then_refiner(harness):
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "2": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"clip": ["1", 1], "width": 1024, "height": 1024,
                                                             "crop_w": 0, "crop_h": 0, "target_width": 1024,
                                                             "target_height": 1024, "text_g": "a cat " * 30,
                                                             "text_l": "a cat"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["1", 0], "add_noise": "enable", "noise_seed": 5,
                                                           "steps": 6, "cfg": 6.0, "sampler_name": "dpmpp_2m_sde",
                                                           "scheduler": "karras", "positive": ["2", 0],
                                                           "negative": ["3", 0], "latent_image": ["4", 0],
                                                           "start_at_step": 0, "end_at_step": 4,
                                                           "return_with_leftover_noise": "enable"}},
        "6": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_refiner.safetensors"}},
        "7": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"ascore": 6.0, "width": 1024, "height": 1024,
                                                                    "text": "a cat", "clip": ["6", 1]}},
        "8": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {"ascore": 2.5, "width": 1024, "height": 1024,
                                                                    "text": "blurry", "clip": ["6", 1]}},
        "9": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["6", 0], "add_noise": "disable", "noise_seed": 5,
                                                           "steps": 6, "cfg": 6.0, "sampler_name": "dpmpp_2m_sde",
                                                           "scheduler": "karras", "positive": ["7", 0],
                                                           "negative": ["8", 0], "latent_image": ["5", 0],
                                                           "start_at_step": 4, "end_at_step": 10000,
                                                           "return_with_leftover_noise": "disable"}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["6", 2]}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["9", 0], "filename_prefix": "latents/xl"}},
        "12": {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}},
    }
    out = harness.run(p)
    assert torch.isfinite(harness.latent(out, "11")).all()


def test_conditioning_nodes(harness):
    p = txt2img(seed=8)
    extra = {
        "20": {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["2", 0], "width": 64, "height": 64,
                                                               "x": 0, "y": 0, "strength": 1.0}},
        "21": {"class_type": "ConditioningSetAreaPercentage", "inputs": {"conditioning": ["3", 0], "width": 0.5,
                                                                         "height": 1.0, "x": 0.5, "y": 0,
                                                                         "strength": 0.8}},
        "22": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["20", 0], "conditioning_2": ["21", 0]}},
        "23": {"class_type": "ConditioningAverage", "inputs": {"conditioning_to": ["22", 0],
                                                               "conditioning_from": ["3", 0],
                                                               "conditioning_to_strength": 0.7}},
        "24": {"class_type": "ConditioningConcat", "inputs": {"conditioning_to": ["23", 0], "conditioning_from": ["2", 0]}},
        "25": {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["24", 0], "start": 0.0,
                                                                        "end": 0.6}},
        "26": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["3", 0]}},
        "27": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["1", 1], "stop_at_clip_layer": -2}},
        "28": {"class_type": "CLIPTextEncode", "inputs": {"text": "skip", "clip": ["27", 0]}},
        "29": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["25", 0], "conditioning_2": ["28", 0]}},
    }
    if "SolidMask" in harness.registry:
        extra["30"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 32}}
        extra["31"] = {"class_type": "ConditioningSetMask", "inputs": {"conditioning": ["29", 0], "mask": ["30", 0],
                                                                       "strength": 1.0, "set_cond_area": "mask bounds"}}
        extra["32"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["29", 0],
                                                                       "conditioning_2": ["31", 0]}}
        final = ["32", 0]
    else:
        final = ["29", 0]
    p.update(extra)
    p["5"]["inputs"]["positive"] = final
    p["5"]["inputs"]["negative"] = ["26", 0]
    assert torch.isfinite(latent_of(harness, p)).all()


def test_tiled_vae_and_latent_files(harness):
    p = txt2img(seed=21, width=128, height=96)
    p["7"] = {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["5", 0], "vae": ["1", 2], "tile_size": 64,
                                                         "overlap": 32, "temporal_size": 64, "temporal_overlap": 8}}
    p["8"] = {"class_type": "VAEEncodeTiled", "inputs": {"pixels": ["7", 0], "vae": ["1", 2], "tile_size": 64,
                                                         "overlap": 32, "temporal_size": 64, "temporal_overlap": 8}}
    p["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "latents/tiled"}}
    p["10"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
    out = harness.run(p)
    tiled = harness.latent(out, "9")
    assert tiled.shape == (1, 4, 12, 16) and torch.isfinite(tiled).all()
    # round trip through LoadLatent
    import shutil

    entry = out.outputs["6"]["latents"][0]
    src = harness.folders.output / entry["subfolder"] / entry["filename"]
    shutil.copy(src, harness.folders.input / "roundtrip.latent")
    q = {"1": {"class_type": "LoadLatent", "inputs": {"latent": "roundtrip.latent"}},
         "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/rt"}}}
    assert torch.equal(harness.latent(harness.run(q), "2"), harness.latent(out, "6"))


def test_tiled_decode_matches_whole_decode_in_one_tile(model_base, manager):
    from hearth.runtime import loader

    _, _, vae = loader.load_checkpoint(model_base / "models" / "checkpoints" / "sd15.safetensors", manager)
    lat = torch.randn(1, 4, 8, 8)
    assert torch.allclose(vae.decode(lat), vae.decode_tiled(lat, tile_x=64, tile_y=64, overlap=8), atol=1e-5)


def test_separate_loaders(harness):
    p = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "sd15_unet.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "tiny_vae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["2", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 3, "cfg": 1.0,
                                                   "sampler_name": "lcm", "scheduler": "sgm_uniform",
                                                   "positive": ["4", 0], "negative": ["4", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["3", 0]}},
        "8": {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}},
        "9": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "xl_clip_l.safetensors",
                                                         "clip_name2": "xl_clip_g.safetensors", "type": "sdxl"}},
        "10": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["9", 0]}},
        "11": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "12": {"class_type": "KSampler", "inputs": {"model": ["11", 0], "seed": 1, "steps": 2, "cfg": 3.0,
                                                    "sampler_name": "euler", "scheduler": "simple",
                                                    "positive": ["10", 0], "negative": ["10", 0],
                                                    "latent_image": ["5", 0], "denoise": 1.0}},
        "13": {"class_type": "SaveLatent", "inputs": {"samples": ["12", 0], "filename_prefix": "latents/dual"}},
        "14": {"class_type": "CheckpointLoader", "inputs": {"config_name": "v1-inference.yaml",
                                                            "ckpt_name": "sd15.safetensors"}},
        "15": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "16": {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["15", 0]}},
        "17": {"class_type": "VAEDecode", "inputs": {"samples": ["16", 0], "vae": ["15", 0]}},
        "18": {"class_type": "PreviewImage", "inputs": {"images": ["17", 0]}},
        "19": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["14", 2]}},
        "20": {"class_type": "PreviewImage", "inputs": {"images": ["19", 0]}},
    }
    out = harness.run(p)
    assert torch.isfinite(harness.latent(out, "13")).all()


def test_unet_loader_equals_checkpoint_model(harness):
    a = txt2img(seed=31)
    b = txt2img(seed=31)
    b["30"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "sd15_unet.safetensors", "weight_dtype": "default"}}
    b["5"]["inputs"]["model"] = ["30", 0]
    assert torch.equal(latent_of(harness, a), latent_of(harness, b))


def test_missing_file_is_a_validation_error(harness):
    from hearth.nodes.context import using

    p = txt2img("nope.safetensors")
    with using(harness.context()):
        result = harness.engine.validate(p)
    assert not result.ok


def test_model_list_reads_folders_at_request_time(harness):
    from hearth.nodes.builtin.sd import CheckpointLoaderSimple
    from hearth.nodes.context import using

    with using(harness.context()):
        names = CheckpointLoaderSimple.INPUT_TYPES()["required"]["ckpt_name"][0]
        (harness.folders.models / "checkpoints" / "later.safetensors").write_bytes(b"")
        names2 = CheckpointLoaderSimple.INPUT_TYPES()["required"]["ckpt_name"][0]
        (harness.folders.models / "checkpoints" / "later.safetensors").unlink()
    assert "later.safetensors" not in names and "later.safetensors" in names2


def test_interrupt_stops_sampling(model_base):
    import threading

    from hearth.engine import Interrupt
    from hearth.engine.events import Progress
    from hearth.nodes.context import using

    h = make_harness(model_base)
    interrupt = Interrupt()

    def emit(event):
        if isinstance(event, Progress) and event.value == 2:
            interrupt.set()

    p = txt2img(steps=20, seed=77)
    with using(h.context()):
        result = h.engine.validate(p)
        outcome = h.engine.execute("p", p, {}, result.outputs, emit, interrupt)
    assert outcome.status == "interrupted"
    del threading


def test_model_manager_service_and_free(harness):
    harness.run(txt2img(seed=1))
    mm = harness.services["model_manager"]
    stats = mm.device_stats()
    assert stats[0]["type"] == "cpu" and stats[0]["vram_total"] > 0
    mm.unload_all()
    harness.run(txt2img(seed=1))


def test_nodes_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; import hearth.nodes.builtin.sd as m; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, "
            "[k for k in sys.modules if k.startswith(('torch', 'diffusers'))][:3]")
    subprocess.run([sys.executable, "-c", code], check=True)
