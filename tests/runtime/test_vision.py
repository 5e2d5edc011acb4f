"""CLIP vision, style models, unCLIP and GLIGEN: loaders, encoders and whole workflows with tiny files.

Reference numbers marked "ComfyUI" were measured once by running ComfyUI 0.3.64's own code (its
clip_vision.ClipVisionModel / clip_preprocess, t2i_adapter StyleAdapter, model_base.unclip_adm,
gligen.load_gligen) on the same seeded tiny weights and inputs, and are hard-coded here.
"""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from tests.runtime import tiny, tiny_vision as tv
from tests.runtime.conftest import make_harness, txt2img


@pytest.fixture(scope="module")
def vision_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("hearth_vision")
    models = base / "models"
    for sub in ("checkpoints", "clip_vision", "style_models", "gligen", "text_encoders"):
        (models / sub).mkdir(parents=True)
    save_file(tiny.sd15_checkpoint(), str(models / "checkpoints" / "sd15.safetensors"))
    save_file(tv.unclip_checkpoint(), str(models / "checkpoints" / "sd21_unclip.safetensors"))
    save_file(tv.hf_vision(), str(models / "clip_vision" / "hf_vit.safetensors"))
    save_file(tv.openclip_vision(), str(models / "clip_vision" / "openclip_vit.safetensors"))
    save_file(tv.hf_vision(seed=31, siglip=True, proj=None, grid=5), str(models / "clip_vision" / "siglip.safetensors"))
    save_file(tv.hf_vision(seed=33, llava=40), str(models / "clip_vision" / "llava.safetensors"))
    save_file(tv.style_adapter(), str(models / "style_models" / "t2i_style.safetensors"))
    save_file(tv.redux(), str(models / "style_models" / "redux.safetensors"))
    save_file(tv.gligen(), str(models / "gligen" / "gligen_tiny.safetensors"))
    save_file({"x": torch.zeros(3)}, str(models / "clip_vision" / "junk.safetensors"))
    save_file({"x": torch.zeros(3)}, str(models / "style_models" / "junk.safetensors"))
    save_file({"x": torch.zeros(3)}, str(models / "gligen" / "junk.safetensors"))
    save_file(tiny.materialise(tiny.hf_clip_shapes(), torch.Generator().manual_seed(1)),
              str(models / "clip_vision" / "text_encoder.safetensors"))
    return base


@pytest.fixture(scope="module")
def vh(vision_base):
    return make_harness(vision_base)


def _node(h, class_type, **inputs):
    from hearth.nodes.context import using

    with using(h.context()):
        cls = h.registry.get(class_type)
        assert cls is not None, class_type
        return getattr(cls(), cls.FUNCTION)(**inputs)


def _image():
    return torch.rand((2, 23, 37, 3), generator=torch.Generator().manual_seed(5))


# --- CLIP vision ----------------------------------------------------------------------------------

def test_clip_vision_matches_comfyui(vh):
    image = _image()
    hf, = _node(vh, "CLIPVisionLoader", clip_name="hf_vit.safetensors")
    assert hf.arch.kind == "clip" and hf.image_size == 16 and hf.arch.activation == "quick_gelu"
    out, = _node(vh, "CLIPVisionEncode", clip_vision=hf, image=image, crop="center")
    assert out.image_embeds.shape == (2, 24) and out["image_embeds"] is out.image_embeds
    assert out.last_hidden_state.shape == (2, 17, 32) and out.penultimate_hidden_states.shape == (2, 17, 32)
    assert out.mm_projected is None
    # ComfyUI
    torch.testing.assert_close(out.image_embeds[:, :4], torch.tensor(
        [[-0.7023707628, 0.6650823355, 0.2982940972, 0.8989838362],
         [-0.3698890210, 0.4444372952, 0.7704470754, 0.5938521624]]), atol=2e-5, rtol=0)
    torch.testing.assert_close(out.penultimate_hidden_states[1, 0, :4], torch.tensor(
        [-2.5771474839, 2.1290831566, -0.2468635440, -2.0963375568]), atol=2e-5, rtol=0)
    squashed, = _node(vh, "CLIPVisionEncode", clip_vision=hf, image=image, crop="none")
    torch.testing.assert_close(squashed.image_embeds[:, :4], torch.tensor(
        [[-0.3005740941, 0.2035591900, 0.4634162188, 0.7674401999],
         [-0.3312106729, 0.6595400572, -0.0052993745, 0.2577398717]]), atol=2e-5, rtol=0)


def test_openclip_layout_is_converted(vh):
    oc, = _node(vh, "CLIPVisionLoader", clip_name="openclip_vit.safetensors")
    out, = _node(vh, "CLIPVisionEncode", clip_vision=oc, image=_image(), crop="center")
    # ComfyUI (convert_to_transformers + its CLIP vision model)
    torch.testing.assert_close(out.image_embeds[:, :4], torch.tensor(
        [[0.4812552631, -2.1113147736, 0.8775475621, 0.8372937441],
         [-0.0327931345, -1.8402103186, 0.2066469789, 0.9154180288]]), atol=2e-5, rtol=0)


def test_siglip_and_llava_outputs(vh):
    sig, = _node(vh, "CLIPVisionLoader", clip_name="siglip.safetensors")
    assert sig.arch.kind == "siglip" and sig.image_mean == [0.5, 0.5, 0.5] and sig.image_size == 20
    out, = _node(vh, "CLIPVisionEncode", clip_vision=sig, image=_image(), crop="center")
    assert out.last_hidden_state.shape == (2, 25, 32)
    assert torch.equal(out.image_embeds, out.last_hidden_state)
    assert out.all_hidden_states.shape == (2, 3, 25, 32)
    assert torch.equal(out.penultimate_hidden_states, out.all_hidden_states[:, -2])
    # ComfyUI
    torch.testing.assert_close(out.last_hidden_state[0, 3, :4], torch.tensor(
        [2.1531021595, -1.4426176548, -0.2209719867, -1.1797055006]), atol=2e-5, rtol=0)
    llava, = _node(vh, "CLIPVisionLoader", clip_name="llava.safetensors")
    out, = _node(vh, "CLIPVisionEncode", clip_vision=llava, image=_image(), crop="none")
    assert out.mm_projected.shape == (2, 16, 40) and torch.isfinite(out.mm_projected).all()


def test_preprocessing_matches_comfyui():
    from hearth.runtime.clip_vision import CLIP_MEAN, CLIP_STD, SIGLIP_MEAN, SIGLIP_STD, clip_preprocess

    image = _image()
    center = clip_preprocess(image, 16, CLIP_MEAN, CLIP_STD, crop=True)
    squash = clip_preprocess(image, 16, CLIP_MEAN, CLIP_STD, crop=False)
    assert center.shape == squash.shape == (2, 3, 16, 16)
    # ComfyUI clip_preprocess on the same image
    torch.testing.assert_close(center[0, :, 3, 5], torch.tensor([0.0763361454, -0.0712270737, -1.3522392511]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(squash[1, :, 7, 2], torch.tensor([1.0690290928, 0.3039672077, -0.3141743243]),
                               atol=1e-6, rtol=0)
    sig = clip_preprocess(image, 20, SIGLIP_MEAN, SIGLIP_STD, crop=True)
    torch.testing.assert_close(sig[1, :, 10, 4], torch.tensor([0.1137255430, -0.7960784435, 0.2549020052]),
                               atol=1e-6, rtol=0)
    # already the right size: only quantised to 8 bits and normalised; extra channels dropped
    exact = torch.rand((1, 16, 16, 4), generator=torch.Generator().manual_seed(1))
    expected = ((exact[..., :3] * 255).round() / 255).movedim(-1, 1)
    expected = (expected - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(clip_preprocess(exact, 16), expected)


def _meta(shapes):
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


@pytest.mark.parametrize("hidden,layers,inner,patch,grid,proj,siglip,size,name,act", [
    (1024, 24, 4096, 14, 16, 768, False, 224, "ViT-L", "quick_gelu"),
    (1024, 24, 4096, 14, 24, 768, False, 336, "ViT-L", "quick_gelu"),
    (1280, 32, 5120, 14, 16, 1024, False, 224, "ViT-H", "gelu"),
    (1664, 48, 8192, 14, 16, 1280, False, 224, "ViT-bigG", "gelu"),
    (1152, 27, 4304, 14, 27, None, True, 384, "SigLIP-384", "gelu_pytorch_tanh"),
    (1152, 27, 4304, 16, 32, None, True, 512, "SigLIP-512", "gelu_pytorch_tanh"),
])
def test_sizes_detected_from_shapes(hidden, layers, inner, patch, grid, proj, siglip, size, name, act):
    from hearth.runtime.clip_vision import infer_arch

    arch = infer_arch(_meta(tv.hf_vision_shapes(hidden, layers, inner, patch, grid, proj, siglip)))
    assert (arch.name, arch.image_size, arch.layers, arch.heads, arch.activation, arch.projection_dim) == (
        name, size, layers, 16, act, proj)


def test_bad_vision_files_are_refused(vh):
    from hearth.runtime.clip_vision import ClipVisionError

    for name in ("junk.safetensors", "text_encoder.safetensors"):
        with pytest.raises(ClipVisionError, match="vision"):
            _node(vh, "CLIPVisionLoader", clip_name=name)
    with pytest.raises(FileNotFoundError):
        _node(vh, "CLIPVisionLoader", clip_name="../checkpoints/sd15.safetensors")
    prompt = {"1": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "../../etc/passwd"}}}
    from hearth.nodes.context import using

    with using(vh.context()):
        assert not vh.engine.validate(prompt).ok
    with pytest.raises(RuntimeError, match="clip vision"):
        _node(vh, "CLIPVisionEncode", clip_vision=None, image=_image(), crop="center")
    hf, = _node(vh, "CLIPVisionLoader", clip_name="hf_vit.safetensors")
    with pytest.raises(ValueError, match="IMAGE"):
        hf.encode_image(torch.zeros((1, 8, 8)))


# --- style models ---------------------------------------------------------------------------------

def test_style_adapter_matches_comfyui(vh):
    style, = _node(vh, "StyleModelLoader", style_model_name="t2i_style.safetensors")
    from hearth.runtime.clip_vision import Output

    out = Output()
    out["last_hidden_state"] = torch.randn((2, 17, 32), generator=torch.Generator().manual_seed(9))
    tokens = style.get_cond(out)
    assert tokens.shape == (2, 4, 32)
    # ComfyUI StyleAdapter(width=32, context_dim=32, num_head=8, n_layes=2, num_token=4)
    torch.testing.assert_close(tokens[1, 2, :4], torch.tensor([1.4342330694, -0.4396347404, -1.4881935120,
                                                               -1.5436468124]), atol=2e-5, rtol=0)


def test_style_model_apply(vh):
    hf, = _node(vh, "CLIPVisionLoader", clip_name="hf_vit.safetensors")
    vision, = _node(vh, "CLIPVisionEncode", clip_vision=hf, image=_image(), crop="center")
    style, = _node(vh, "StyleModelLoader", style_model_name="t2i_style.safetensors")
    text = torch.randn((1, 77, 32), generator=torch.Generator().manual_seed(2))
    cond = [[text, {"pooled_output": torch.zeros(1, 32)}]]
    tokens = style.get_cond(vision).reshape(1, 8, 32)

    full, = _node(vh, "StyleModelApply", conditioning=cond, style_model=style, clip_vision_output=vision,
                  strength=1.0, strength_type="multiply")
    assert full[0][0].shape == (1, 85, 32) and torch.equal(full[0][0][:, :77], text)
    torch.testing.assert_close(full[0][0][:, 77:], tokens)
    assert "attention_mask" not in full[0][1] and "attention_mask" not in cond[0][1]

    half, = _node(vh, "StyleModelApply", conditioning=cond, style_model=style, clip_vision_output=vision,
                  strength=0.5, strength_type="multiply")
    torch.testing.assert_close(half[0][0][:, 77:], tokens * 0.5)
    zero, = _node(vh, "StyleModelApply", conditioning=cond, style_model=style, clip_vision_output=vision,
                  strength=0.0, strength_type="multiply")
    assert torch.count_nonzero(zero[0][0][:, 77:]) == 0

    same, = _node(vh, "StyleModelApply", conditioning=cond, style_model=style, clip_vision_output=vision,
                  strength=1.0, strength_type="attn_bias")
    assert torch.equal(same[0][0], full[0][0]) and "attention_mask" not in same[0][1]
    biased, = _node(vh, "StyleModelApply", conditioning=cond, style_model=style, clip_vision_output=vision,
                    strength=0.5, strength_type="attn_bias")
    torch.testing.assert_close(biased[0][0], full[0][0])  # tokens unscaled; the bias goes to the mask
    mask = biased[0][1]["attention_mask"]
    assert mask.shape == (1, 86, 86) and mask.dtype == torch.float16
    assert biased[0][1]["attention_mask_img_shape"] == (1, 1)
    log_half = torch.tensor(math.log(0.5), dtype=torch.float16)
    assert (mask[:, :77, 77:85] == log_half).all() and (mask[:, 85:, 77:85] == log_half).all()
    assert (mask[:, :, :77] == 0).all() and (mask[:, 77:85, :] == 0).all()
    hidden, = _node(vh, "StyleModelApply", conditioning=cond, style_model=style, clip_vision_output=vision,
                    strength=0.0, strength_type="attn_bias")
    assert torch.isinf(hidden[0][1]["attention_mask"][:, :77, 77:85]).all()
    # an existing mask is grown around the new tokens
    again, = _node(vh, "StyleModelApply", conditioning=biased, style_model=style, clip_vision_output=vision,
                   strength=1.0, strength_type="multiply")
    grown = again[0][1]["attention_mask"]
    assert again[0][0].shape == (1, 93, 32) and grown.shape == (1, 94, 94)
    assert torch.equal(grown[:, :85, :85], mask[:, :85, :85]) and (grown[:, :85, 85:93] == 0).all()


def test_style_model_bad_inputs(vh):
    from hearth.runtime.style_model import StyleModelError

    with pytest.raises(StyleModelError, match="invalid style model"):
        _node(vh, "StyleModelLoader", style_model_name="junk.safetensors")
    redux, = _node(vh, "StyleModelLoader", style_model_name="redux.safetensors")
    sig, = _node(vh, "CLIPVisionLoader", clip_name="siglip.safetensors")
    vision, = _node(vh, "CLIPVisionEncode", clip_vision=sig, image=_image(), crop="center")
    cond = [[torch.zeros((1, 77, 32)), {}]]
    out, = _node(vh, "StyleModelApply", conditioning=cond, style_model=redux, clip_vision_output=vision,
                 strength=1.0, strength_type="multiply")
    assert out[0][0].shape == (1, 77 + 2 * 25, 32)
    style, = _node(vh, "StyleModelLoader", style_model_name="t2i_style.safetensors")
    vision.last_hidden_state = torch.zeros((1, 17, 48))
    with pytest.raises(ValueError, match="is 48 wide"):
        _node(vh, "StyleModelApply", conditioning=cond, style_model=style, clip_vision_output=vision,
              strength=1.0, strength_type="multiply")


def _style_prompt(strength, strength_type="multiply"):
    p = txt2img(seed=11)
    p["20"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "hf_vit.safetensors"}}
    p["21"] = {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": 1, "color": 0x4080c0}}
    p["22"] = {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["20", 0], "image": ["21", 0],
                                                            "crop": "center"}}
    p["23"] = {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "t2i_style.safetensors"}}
    p["24"] = {"class_type": "StyleModelApply", "inputs": {"conditioning": ["2", 0], "style_model": ["23", 0],
                                                           "clip_vision_output": ["22", 0], "strength": strength,
                                                           "strength_type": strength_type}}
    p["5"]["inputs"]["positive"] = ["24", 0]
    return p


def test_style_model_in_a_workflow(vh):
    plain = vh.latent(vh.run(txt2img(seed=11)), "6")
    styled = vh.latent(vh.run(_style_prompt(1.0)), "6")
    biased = vh.latent(vh.run(_style_prompt(0.3, "attn_bias")), "6")
    assert styled.shape == plain.shape and torch.isfinite(styled).all()
    assert not torch.allclose(styled, plain)
    # SD models do not read the attention mask: the bias type appends the tokens at full weight
    torch.testing.assert_close(biased, styled)


# --- unCLIP --------------------------------------------------------------------------------------

def test_unclip_adm_matches_comfyui():
    from hearth.runtime import unclip
    from hearth.runtime.clip_vision import Output

    g = torch.Generator().manual_seed(3)
    out = Output()
    out["image_embeds"] = torch.randn((1, 24), generator=g)
    adm = unclip.unclip_adm([{"clip_vision_output": out, "strength": 0.7, "noise_augmentation": 0.3}], "cpu", 24,
                            0.05, 5 - 10)
    assert adm.shape == (1, 48)
    # ComfyUI model_base.unclip_adm with CLIPEmbeddingNoiseAugmentation(timestep_dim=24), seed 5 - 10
    torch.testing.assert_close(adm[0, :3], torch.tensor([-0.7865166665, 0.6445153952, -1.2705636024]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(adm[0, 24:27], torch.tensor([-0.0154676335, 0.3677934110, -0.1598514169]),
                               atol=1e-6, rtol=0)
    assert torch.equal(unclip.encode_adm(48, device="cpu"), torch.zeros((1, 48)))
    a = unclip.encode_adm(48, device="cpu", seed=1, unclip_conditioning=[
        {"clip_vision_output": out, "strength": 1.0, "noise_augmentation": 0.5}])
    b = unclip.encode_adm(48, device="cpu", seed=1, unclip_conditioning=[
        {"clip_vision_output": out, "strength": 1.0, "noise_augmentation": 0.5}])
    c = unclip.encode_adm(48, device="cpu", seed=2, unclip_conditioning=[
        {"clip_vision_output": out, "strength": 1.0, "noise_augmentation": 0.5}])
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="unCLIP model takes"):
        unclip.encode_adm(64, device="cpu", unclip_conditioning=[
            {"clip_vision_output": out, "strength": 1.0, "noise_augmentation": 0.0}])


def test_unclip_checkpoint_loader(vh):
    model, clip, vae, vision = _node(vh, "unCLIPCheckpointLoader", ckpt_name="sd21_unclip.safetensors")
    assert model.family.name == "sd2_unclip" and clip is not None and vae is not None
    assert vision.arch.projection_dim == 24 and vision.image_size == 16
    # a checkpoint without an image encoder: no CLIP_VISION (as in ComfyUI), and encoding with it says so
    *_, none = _node(vh, "unCLIPCheckpointLoader", ckpt_name="sd15.safetensors")
    assert none is None
    with pytest.raises(RuntimeError, match="clip vision"):
        _node(vh, "CLIPVisionEncode", clip_vision=none, image=_image(), crop="center")


def _unclip_prompt(strength=1.0, noise_augmentation=0.0, seed=3):
    p = {
        "1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": "sd21_unclip.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "EmptyImage", "inputs": {"width": 48, "height": 32, "batch_size": 1, "color": 0xa03020}},
        "8": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 3], "image": ["7", 0],
                                                           "crop": "center"}},
        "9": {"class_type": "unCLIPConditioning", "inputs": {"conditioning": ["2", 0], "clip_vision_output": ["8", 0],
                                                             "strength": strength,
                                                             "noise_augmentation": noise_augmentation}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": 3, "cfg": 4.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["9", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/unclip"}},
    }
    return p


def test_unclip_workflow(vh):
    with_image = vh.latent(vh.run(_unclip_prompt()), "6")
    without = vh.latent(vh.run(_unclip_prompt(strength=0.0)), "6")  # strength 0: the node changes nothing
    noised = vh.latent(vh.run(_unclip_prompt(noise_augmentation=0.6)), "6")
    again = vh.latent(vh.run(_unclip_prompt(noise_augmentation=0.6)), "6")
    assert with_image.shape == (1, 4, 8, 8) and torch.isfinite(with_image).all()
    assert not torch.allclose(with_image, without)
    assert not torch.allclose(with_image, noised)
    assert torch.equal(noised, again)


def test_unclip_conditioning_node_appends():
    from hearth.nodes.builtin.vision import unCLIPConditioning

    cond = [[torch.zeros(1, 2, 3), {"x": 1}]]
    node = unCLIPConditioning()
    assert node.apply_adm(cond, "out1", 0.0, 0.1)[0] is cond
    one, = node.apply_adm(cond, "out1", 0.5, 0.1)
    two, = node.apply_adm(one, "out2", 1.5, 0.0)
    assert "unclip_conditioning" not in cond[0][1]
    assert [e["clip_vision_output"] for e in two[0][1]["unclip_conditioning"]] == ["out1", "out2"]
    assert two[0][1]["unclip_conditioning"][0] == {"clip_vision_output": "out1", "strength": 0.5,
                                                   "noise_augmentation": 0.1}


# --- GLIGEN --------------------------------------------------------------------------------------

def _gligen_prompt(boxes=((32, 24, 8, 16),), seed=5):
    p = txt2img(seed=seed)
    p["30"] = {"class_type": "GLIGENLoader", "inputs": {"gligen_name": "gligen_tiny.safetensors"}}
    last = ["2", 0]
    for i, (w, h, x, y) in enumerate(boxes):
        node = str(31 + i)
        p[node] = {"class_type": "GLIGENTextBoxApply", "inputs": {
            "conditioning_to": last, "clip": ["1", 1], "gligen_textbox_model": ["30", 0], "text": f"a dog {i}",
            "width": w, "height": h, "x": x, "y": y}}
        last = [node, 0]
    p["5"]["inputs"]["positive"] = last
    return p


def test_gligen_textbox_apply_entries(vh):
    from hearth.runtime import gligen

    model, clip, _ = _node(vh, "CheckpointLoaderSimple", ckpt_name="sd15.safetensors")
    net, = _node(vh, "GLIGENLoader", gligen_name="gligen_tiny.safetensors")
    assert net.key_dim == 32 and net.widths == [32, 64, 32, 32]
    cond = [[torch.zeros(1, 77, 32), {}]]
    one, = _node(vh, "GLIGENTextBoxApply", conditioning_to=cond, clip=clip, gligen_textbox_model=net,
                 text="a dog", width=64, height=40, x=16, y=8)
    two, = _node(vh, "GLIGENTextBoxApply", conditioning_to=one, clip=clip, gligen_textbox_model=net,
                 text="a cat", width=8, height=8, x=0, y=0)
    kind, model_, boxes = two[0][1]["gligen"]
    assert kind == "position" and model_ is net and len(boxes) == 2 and "gligen" not in cond[0][1]
    assert boxes[0][1:] == (5, 8, 1, 2) and boxes[1][1:] == (1, 1, 0, 0)
    assert boxes[0][0].shape == (1, 32)
    objs = net.objects((2, 4, 8, 8), boxes, "cpu", torch.float32)
    assert objs.shape == (2, gligen.MAX_OBJS, 32)
    with pytest.raises(gligen.GligenError, match="at most"):
        net.objects((1, 4, 8, 8), boxes * 16, "cpu", torch.float32)


def test_gligen_in_a_workflow_and_unet_left_clean(vh):
    plain = vh.latent(vh.run(txt2img(seed=5)), "6")
    boxed = vh.latent(vh.run(_gligen_prompt()), "6")
    moved = vh.latent(vh.run(_gligen_prompt(boxes=((16, 16, 40, 40),))), "6")
    assert torch.isfinite(boxed).all() and not torch.allclose(plain, boxed)
    assert not torch.allclose(boxed, moved)
    model, *_ = _node(vh, "CheckpointLoaderSimple", ckpt_name="sd15.safetensors")
    for module in model.unet.modules():
        assert not module._forward_pre_hooks and "fuser" not in module.__dict__
    assert torch.equal(vh.latent(vh.run(txt2img(seed=5)), "6"), plain)


def test_gligen_with_closed_gates_changes_nothing(vision_base, tmp_path):
    sd = tv.gligen()
    for k in sd:
        if k.endswith(("alpha_attn", "alpha_dense")):
            sd[k] = torch.tensor(0.0)
    save_file(sd, str(vision_base / "models" / "gligen" / "closed.safetensors"))
    h = make_harness(vision_base)
    plain = txt2img(seed=5)
    plain["5"]["inputs"]["cfg"] = 1.0  # one cond per step, so the batches are the same with and without boxes
    p = _gligen_prompt()
    p["5"]["inputs"]["cfg"] = 1.0
    p["30"]["inputs"]["gligen_name"] = "closed.safetensors"
    # tanh(0) = 0: the fusers add exactly nothing
    assert torch.equal(h.latent(h.run(p), "6"), h.latent(h.run(plain), "6"))


def test_gligen_bad_files(vh, vision_base):
    from hearth.runtime.gligen import GligenError

    with pytest.raises(GligenError, match="not a GLIGEN model"):
        _node(vh, "GLIGENLoader", gligen_name="junk.safetensors")
    sd = tv.gligen()
    sd = {k: v for k, v in sd.items() if not k.startswith("middle_block.")}
    save_file(sd, str(vision_base / "models" / "gligen" / "short.safetensors"))
    p = _gligen_prompt()
    p["30"]["inputs"]["gligen_name"] = "short.safetensors"
    outcome = vh.run(p, expect="error")
    assert "fusers" in str(outcome.error) or "wide" in str(outcome.error)


def test_sdxl_revision_pooled_vector():
    from hearth.runtime import unclip
    from hearth.runtime.clip_vision import Output

    out = Output()
    out["image_embeds"] = torch.randn((1, 1280), generator=torch.Generator().manual_seed(8))
    pooled = unclip.sdxl_pooled(device="cpu", seed=20, unclip_conditioning=[
        {"clip_vision_output": out, "strength": 1.0, "noise_augmentation": 0.0}])
    assert pooled.shape == (1, 1280)
    # level 0 of the schedule: almost the embedding itself
    torch.testing.assert_close(pooled, out.image_embeds, atol=0.05, rtol=0)


def test_vision_nodes_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; import hearth.nodes.builtin.vision as m; "
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, "
            "[k for k in sys.modules if k.startswith(('torch', 'diffusers'))][:3]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unclip_family_detected_from_real_unet_shapes():
    from hearth.runtime import families, loader

    for adm in (1536, 2048):
        spec = tiny.UNetSpec(mc=320, mult=(1, 2, 4, 4), num_res=(2, 2, 2, 2), down_depth=(1, 1, 1, 0),
                             context=1024, linear=True, adm=adm)
        sd = {k: torch.empty(v, device="meta") for k, v in tiny.unet_shapes(spec).items()}
        sd["v_pred"] = torch.empty((), device="meta")
        det = loader.detect(sd)  # a bare UNet: no text encoder to go by
        assert det.family is families.SD2_UNCLIP and det.unet.adm_in_channels == adm
    # with its OpenCLIP text encoder in the file
    ckpt = tv.unclip_checkpoint()
    assert loader.detect(ckpt).family is families.SD2_UNCLIP
    assert loader.detect(tiny.sd2_checkpoint()).family is families.SD2


def test_vision_shapes_that_do_not_fit_are_refused():
    from hearth.runtime.clip_vision import ClipVisionError, infer_arch

    shapes = tv.hf_vision_shapes()
    shapes["vision_model.embeddings.position_embedding.weight"] = (20, 32)
    with pytest.raises(ClipVisionError, match="square"):
        infer_arch(_meta(shapes))
    shapes = tv.hf_vision_shapes()
    del shapes["vision_model.encoder.layers.1.layer_norm1.weight"]
    with pytest.raises(ClipVisionError, match="layer 1"):
        infer_arch(_meta(shapes))
