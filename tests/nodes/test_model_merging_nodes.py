"""Model merging and saving nodes, run through the engine on tiny checkpoints.

Merged weights are read back from files the save nodes write (original key names), and compared with
values computed here from the original checkpoint tensors. ComfyUI's conventions checked: ModelMergeSimple's
ratio is model 1's share (1.0 keeps model 1); ModelMergeSubtract gives (model1 - model2) * multiplier; a
key whose shapes differ keeps model 1's weight scaled by its ratio (ComfyUI scales before it finds the shape
mismatch). An ad-hoc run against ComfyUI 0.3.64 itself (same merges, LoRA on the second model, block
ratios, subtract/add chains, shape mismatch, CLIP merges; checkpoints with real SD1 widths) gave
bit-identical saved weights, and ComfyUI loaded the files written here.
"""
from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from tests.runtime import tiny  # noqa: E402
from tests.runtime.conftest import make_harness, txt2img  # noqa: E402

torch.set_num_threads(1)

UNET = "model.diffusion_model."


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("merging")
    models = base / "models"
    for sub in ("checkpoints", "loras", "vae", "text_encoders", "diffusion_models"):
        (models / sub).mkdir(parents=True)
    ckpts = {
        "a.safetensors": tiny.sd15_checkpoint(seed=1),
        "b.safetensors": tiny.sd15_checkpoint(seed=21),
        "inpaint.safetensors": tiny.sd15_checkpoint(seed=11, unet=tiny.SD15_INPAINT_UNET),
        "xl_a.safetensors": tiny.sdxl_checkpoint(seed=3),
        "xl_b.safetensors": tiny.sdxl_checkpoint(seed=33),
        "sd2_a.safetensors": tiny.sd2_checkpoint(seed=2),
        "sd2_b.safetensors": tiny.sd2_checkpoint(seed=22),
        "refiner.safetensors": tiny.sdxl_refiner_checkpoint(),
    }
    for name, sd in ckpts.items():
        save_file(sd, str(models / "checkpoints" / name))
    save_file(tiny.sd15_lora(), str(models / "loras" / "tiny_lora.safetensors"))
    return base


@pytest.fixture(scope="module")
def h(base):
    return make_harness(base)


def original(base, name):
    return load_file(str(base / "models" / "checkpoints" / name))


def saved_files(h, sub):
    folder = h.folders.output / sub
    return sorted(folder.iterdir()) if folder.is_dir() else []


def run_and_load(h, prompt, prefix):
    """Run a prompt whose save node writes under output/<prefix>; return the newest file's tensors."""
    before = set(saved_files(h, prefix.rsplit("/", 1)[0]))
    h.run(prompt)
    new = [p for p in saved_files(h, prefix.rsplit("/", 1)[0]) if p not in before]
    assert len(new) == 1, new
    return load_file(str(new[0])), new[0]


def loader_node(ckpt, nid="1"):
    return {nid: {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}


def model_save(src, prefix="merged/m", nid="99"):
    return {nid: {"class_type": "ModelSave", "inputs": {"model": src, "filename_prefix": prefix}}}


def merged_unet(h, node: dict, ckpt1="a.safetensors", ckpt2="b.safetensors"):
    p = {**loader_node(ckpt1, "1"), **loader_node(ckpt2, "2"), "10": node, **model_save(["10", 0])}
    sd, _ = run_and_load(h, p, "merged/m")
    return sd


def unet_keys(sd):
    return [k for k in sd if k.startswith(UNET)]


# --- merges ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [1.0, 0.0, 0.5, 0.3])
def test_merge_simple_ratio_on_weights(h, base, ratio):
    a, b = original(base, "a.safetensors"), original(base, "b.safetensors")
    node = {"class_type": "ModelMergeSimple", "inputs": {"model1": ["1", 0], "model2": ["2", 0], "ratio": ratio}}
    sd = merged_unet(h, node)
    assert set(sd) == set(unet_keys(a))
    for k in unet_keys(a):
        expected = a[k] * ratio + b[k] * (1.0 - ratio)
        assert torch.allclose(sd[k], expected, atol=1e-6), k
    if ratio == 1.0:
        assert all(torch.equal(sd[k], a[k]) for k in unet_keys(a))
    if ratio == 0.0:
        assert all(torch.equal(sd[k], b[k]) for k in unet_keys(a))


def test_subtract_and_add(h, base):
    a, b = original(base, "a.safetensors"), original(base, "b.safetensors")
    sub = {"class_type": "ModelMergeSubtract", "inputs": {"model1": ["1", 0], "model2": ["2", 0], "multiplier": 0.7}}
    sd = merged_unet(h, sub)
    for k in unet_keys(a):
        assert torch.allclose(sd[k], (a[k] - b[k]) * 0.7, atol=1e-6), k
    add = {"class_type": "ModelMergeAdd", "inputs": {"model1": ["1", 0], "model2": ["2", 0]}}
    sd = merged_unet(h, add)
    for k in unet_keys(a):
        assert torch.allclose(sd[k], a[k] + b[k], atol=1e-6), k
    # add-difference: a + (b - a) * 1 == b
    p = {**loader_node("a.safetensors", "1"), **loader_node("b.safetensors", "2"),
         "10": {"class_type": "ModelMergeSubtract",
                "inputs": {"model1": ["2", 0], "model2": ["1", 0], "multiplier": 1.0}},
         "11": {"class_type": "ModelMergeAdd", "inputs": {"model1": ["1", 0], "model2": ["10", 0]}},
         **model_save(["11", 0])}
    sd, _ = run_and_load(h, p, "merged/m")
    for k in unet_keys(a):
        assert torch.allclose(sd[k], b[k], atol=1e-6), k


def test_block_merge_hits_the_right_keys(h, base):
    a, b = original(base, "a.safetensors"), original(base, "b.safetensors")
    node = {"class_type": "ModelMergeBlocks",
            "inputs": {"model1": ["1", 0], "model2": ["2", 0], "input": 1.0, "middle": 0.0, "out": 0.25}}
    sd = merged_unet(h, node)
    seen = set()
    for k in unet_keys(a):
        name = k[len(UNET):]
        # "out" is the longest prefix matching both out.* and output_blocks.*; time_embed gets the first ratio
        ratio = 0.0 if name.startswith("middle") else 0.25 if name.startswith("out") else 1.0
        seen.add(name.split(".")[0])
        assert torch.allclose(sd[k], a[k] * ratio + b[k] * (1 - ratio), atol=1e-6), k
    assert {"input_blocks", "middle_block", "output_blocks", "out", "time_embed"} <= seen


def test_sd1_block_merge_longest_prefix(h, base):
    a, b = original(base, "a.safetensors"), original(base, "b.safetensors")
    ratios = {"time_embed.": 0.9, "label_emb.": 1.0}
    ratios.update({f"input_blocks.{i}.": 1.0 for i in range(12)})
    ratios.update({f"middle_block.{i}.": 1.0 for i in range(3)})
    ratios.update({f"output_blocks.{i}.": 1.0 for i in range(12)})
    ratios["out."] = 1.0
    ratios["input_blocks.1."] = 0.0
    ratios["middle_block.1."] = 0.5
    node = {"class_type": "ModelMergeSD1", "inputs": {"model1": ["1", 0], "model2": ["2", 0], **ratios}}
    sd = merged_unet(h, node)
    changed = 0
    for k in unet_keys(a):
        name = k[len(UNET):]
        r = (0.0 if name.startswith("input_blocks.1.") else 0.5 if name.startswith("middle_block.1.")
             else 0.9 if name.startswith("time_embed.") else 1.0)
        changed += r != 1.0
        assert torch.allclose(sd[k], a[k] * r + b[k] * (1 - r), atol=1e-6), k
    assert changed > 10
    # SD2 is registered as the same node
    node = {"class_type": "ModelMergeSD2", "inputs": {"model1": ["1", 0], "model2": ["2", 0], **ratios}}
    sd2 = merged_unet(h, node, "sd2_a.safetensors", "sd2_b.safetensors")
    a2, b2 = original(base, "sd2_a.safetensors"), original(base, "sd2_b.safetensors")
    k = UNET + "input_blocks.1.1.proj_in.weight"
    assert torch.equal(sd2[k], b2[k]) and torch.equal(sd2[UNET + "out.2.weight"], a2[UNET + "out.2.weight"])


def test_sdxl_block_merge(h, base):
    a, b = original(base, "xl_a.safetensors"), original(base, "xl_b.safetensors")
    ratios = {"time_embed.": 1.0, "label_emb.": 0.0}
    ratios.update({f"input_blocks.{i}": 1.0 for i in range(9)})
    ratios.update({f"middle_block.{i}": 1.0 for i in range(3)})
    ratios.update({f"output_blocks.{i}": 1.0 for i in range(9)})
    ratios["out."] = 1.0
    ratios["output_blocks.2"] = 0.5
    node = {"class_type": "ModelMergeSDXL", "inputs": {"model1": ["1", 0], "model2": ["2", 0], **ratios}}
    sd = merged_unet(h, node, "xl_a.safetensors", "xl_b.safetensors")
    for k in unet_keys(a):
        name = k[len(UNET):]
        r = 0.0 if name.startswith("label_emb.") else 0.5 if name.startswith("output_blocks.2") else 1.0
        assert torch.allclose(sd[k], a[k] * r + b[k] * (1 - r), atol=1e-6), k
    assert any(k.startswith(UNET + "label_emb.") for k in sd)


def test_longest_prefix_rule():
    from hearth.runtime.merge import longest_prefix_ratio

    ratios = {"input": 0.1, "input_blocks.1": 0.2, "input_blocks.1.1": 0.3, "out": 0.4}
    assert longest_prefix_ratio("input_blocks.1.1.proj_in.weight", ratios, 0.1) == 0.3
    assert longest_prefix_ratio("input_blocks.1.0.in_layers.2.weight", ratios, 0.1) == 0.2
    assert longest_prefix_ratio("input_blocks.10.0.x", ratios, 0.1) == 0.2  # plain string prefixes, as ComfyUI
    assert longest_prefix_ratio("output_blocks.3.0.x", ratios, 0.1) == 0.4
    assert longest_prefix_ratio("time_embed.0.weight", ratios, 0.7) == 0.7


def test_different_shapes_are_not_merged(h, base):
    a, inp = original(base, "a.safetensors"), original(base, "inpaint.safetensors")
    node = {"class_type": "ModelMergeSimple", "inputs": {"model1": ["1", 0], "model2": ["2", 0], "ratio": 0.3}}
    sd = merged_unet(h, node, "inpaint.safetensors", "a.safetensors")
    k0 = UNET + "input_blocks.0.0.weight"
    assert sd[k0].shape == inp[k0].shape == (32, 9, 3, 3)
    assert torch.allclose(sd[k0], inp[k0] * 0.3)  # ComfyUI scales model 1's weight, then skips the other
    for k in unet_keys(inp):
        if k != k0:
            assert torch.allclose(sd[k], inp[k] * 0.3 + a[k] * 0.7, atol=1e-6), k


def lora_node(src_model, src_clip, strength=1.0):
    return {"class_type": "LoraLoader", "inputs": {"model": src_model, "clip": src_clip,
                                                   "lora_name": "tiny_lora.safetensors",
                                                   "strength_model": strength, "strength_clip": strength}}


def test_lora_then_merge_then_lora(h, base):
    a, b = original(base, "a.safetensors"), original(base, "b.safetensors")
    p = {**loader_node("a.safetensors", "1"), **loader_node("b.safetensors", "2"),
         "3": lora_node(["2", 0], ["2", 1]),
         "10": {"class_type": "ModelMergeSimple", "inputs": {"model1": ["1", 0], "model2": ["3", 0], "ratio": 0.5}},
         "11": lora_node(["10", 0], ["1", 1]),
         **model_save(["3", 0], "merged/lora_b", "97"), **model_save(["10", 0], "merged/mix", "98"),
         **model_save(["11", 0], "merged/mix_lora", "99")}
    h.run(p)

    def newest(prefix):
        return load_file(str(saved_files(h, "merged")[[f.name.startswith(prefix) for f in
                                                        saved_files(h, "merged")].index(True)]))

    b_lora, mix, mix_lora = newest("lora_b_"), newest("mix_0"), newest("mix_lora_")
    delta = {k: b_lora[k] - b[k] for k in unet_keys(b)}
    touched = [k for k, d in delta.items() if d.abs().max() > 0]
    assert len(touched) == 4  # the tiny LoRA's four UNet modules
    for k in unet_keys(a):
        assert torch.allclose(mix[k], a[k] * 0.5 + b_lora[k] * 0.5, atol=1e-6), k
        assert torch.allclose(mix_lora[k], mix[k] + delta[k], atol=1e-5), k


def test_inputs_and_other_clones_unchanged(h, base):
    before = h.latent(h.run(txt2img("a.safetensors", seed=4)), "6")
    prompt = txt2img("a.safetensors", seed=4)
    prompt["20"] = loader_node("b.safetensors", "20")["20"]
    prompt["10"] = {"class_type": "ModelMergeSimple", "inputs": {"model1": ["1", 0], "model2": ["20", 0], "ratio": 0.5}}
    prompt["11"] = {"class_type": "CLIPMergeSimple", "inputs": {"clip1": ["1", 1], "clip2": ["20", 1], "ratio": 0.5}}
    prompt["5"]["inputs"]["model"] = ["10", 0]
    prompt["2"]["inputs"]["clip"] = ["11", 0]
    merged = h.latent(h.run(prompt), "6")
    assert not torch.allclose(merged, before)
    after = h.latent(h.run(txt2img("a.safetensors", seed=4)), "6")
    assert torch.equal(after, before)
    from hearth.runtime import loader
    from hearth.runtime.memory import get_manager

    model, clip, _ = loader.load_checkpoint(base / "models" / "checkpoints" / "a.safetensors",
                                            get_manager(h.services, h.config))
    assert not model.patcher.patches and not clip.encoders[0].patcher.patches


# --- CLIP merges ----------------------------------------------------------------------------------

def clip_file(h, prompt, name="clip_l"):
    before = set(saved_files(h, "clipout"))
    h.run(prompt)
    new = [p for p in saved_files(h, "clipout") if p not in before]
    assert [p.name.split("_0")[0] for p in new] == [f"c_{name}"], new
    return load_file(str(new[0]))


@pytest.mark.parametrize("kind,extra,expect", [
    ("CLIPMergeSimple", {"ratio": 0.25}, lambda x, y: x * 0.25 + y * 0.75),
    ("CLIPMergeSubtract", {"multiplier": 2.0}, lambda x, y: (x - y) * 2.0),
    ("CLIPMergeAdd", {}, lambda x, y: x + y),
])
def test_clip_merges(h, base, kind, extra, expect):
    a, b = original(base, "a.safetensors"), original(base, "b.safetensors")
    p = {**loader_node("a.safetensors", "1"), **loader_node("b.safetensors", "2"),
         "10": {"class_type": kind, "inputs": {"clip1": ["1", 1], "clip2": ["2", 1], **extra}},
         "11": {"class_type": "CLIPSave", "inputs": {"clip": ["10", 0], "filename_prefix": "clipout/c"}}}
    sd = clip_file(h, p)
    pre = "cond_stage_model.transformer."
    keys = [k[len(pre):] for k in a if k.startswith(pre + "text_model.") and not k.endswith("position_ids")]
    assert set(sd) == set(keys) | {"logit_scale"}
    for k in keys:
        x, y = a[pre + k].half().float(), b[pre + k].half().float()  # text encoders are kept in float16
        assert sd[k].dtype == torch.float16
        assert torch.allclose(sd[k].float(), expect(x, y).half().float(), atol=2e-3, rtol=1e-3), k


# --- saving ---------------------------------------------------------------------------------------

def checkpoint_save(model, clip, vae, prefix="checkpoints/ComfyUI", nid="90"):
    return {nid: {"class_type": "CheckpointSave", "inputs": {"model": model, "clip": clip, "vae": vae,
                                                             "filename_prefix": prefix}}}


@pytest.mark.parametrize("ckpt,extra_keys", [
    ("a.safetensors", set()),
    # ComfyUI writes CLIP-L's position ids for SDXL (real SDXL files have them; the tiny one does not)
    ("xl_a.safetensors", {"conditioner.embedders.0.transformer.text_model.embeddings.position_ids"}),
    ("sd2_a.safetensors", {"v_pred"}),  # the v-prediction marker ComfyUI adds
    ("refiner.safetensors", set()),
])
def test_checkpoint_save_same_layout_and_weights(h, base, ckpt, extra_keys):
    orig = original(base, ckpt)
    p = {**loader_node(ckpt), **checkpoint_save(["1", 0], ["1", 1], ["1", 2], f"ck_{ckpt[:-12]}/ComfyUI")}
    sd, path = run_and_load(h, p, f"ck_{ckpt[:-12]}/ComfyUI")
    assert path.name == "ComfyUI_00001_.safetensors"
    assert set(sd) == set(orig) | extra_keys
    for k, v in orig.items():
        if k.endswith("logit_scale"):
            continue  # not kept by the loader; ComfyUI's default value is written
        if k.startswith(("cond_stage_model.", "conditioner.")) and v.is_floating_point():
            assert sd[k].dtype == torch.float16 and torch.equal(sd[k], v.half()), k
        else:
            assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k


def test_checkpoint_save_reload_samples_identically(h, base):
    # a merged + LoRA'd model and CLIP, saved, loaded back: identical weights and the identical latent
    p = {**loader_node("a.safetensors", "1"), **loader_node("b.safetensors", "30"),
         "31": {"class_type": "ModelMergeSimple", "inputs": {"model1": ["1", 0], "model2": ["30", 0], "ratio": 0.6}},
         "32": {"class_type": "CLIPMergeSimple", "inputs": {"clip1": ["1", 1], "clip2": ["30", 1], "ratio": 0.6}},
         "33": lora_node(["31", 0], ["32", 0], 0.8)}
    prompt = txt2img("a.safetensors", seed=9)
    prompt.update(p)
    prompt["5"]["inputs"]["model"] = ["33", 0]
    prompt["2"]["inputs"]["clip"] = ["33", 1]
    prompt["3"]["inputs"]["clip"] = ["33", 1]
    prompt.update(checkpoint_save(["33", 0], ["33", 1], ["1", 2], "reload/ComfyUI"))
    outcome = h.run(prompt)
    direct = h.latent(outcome, "6")
    path = saved_files(h, "reload")[0]
    shutil.copy(path, base / "models" / "checkpoints" / "resaved.safetensors")
    again = h.latent(h.run(txt2img("resaved.safetensors", seed=9)), "6")
    assert torch.equal(direct, again)
    # and the file's weights are the patched ones, not model 1's
    a = original(base, "a.safetensors")
    sd = load_file(str(path))
    k = UNET + "out.2.weight"
    assert not torch.equal(sd[k], a[k])


def test_checkpoint_metadata_and_counter(h, base):
    p = {**loader_node("xl_a.safetensors"), **checkpoint_save(["1", 0], ["1", 1], ["1", 2], "meta/xl")}
    h.run(p)
    # (the same inputs again would be served from the cache, as in ComfyUI: save another model)
    h.run({**loader_node("xl_b.safetensors"), **checkpoint_save(["1", 0], ["1", 1], ["1", 2], "meta/xl")})
    names = [f.name for f in saved_files(h, "meta")]
    assert names == ["xl_00001_.safetensors", "xl_00002_.safetensors"]
    with safe_open(str(h.folders.output / "meta" / names[0]), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["prompt"]) == p
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
    assert meta["modelspec.title"] == "xl 1" and meta["modelspec.predict_key"] == "epsilon"
    assert meta["modelspec.sai_model_spec"] == "1.0.0" and meta["modelspec.implementation"] == "sgm"


def test_disable_metadata(base):
    h2 = make_harness(base, disable_metadata=True)
    p = {**loader_node("sd2_a.safetensors"), **checkpoint_save(["1", 0], ["1", 1], ["1", 2], "nometa/x"),
         "91": {"class_type": "VAESave", "inputs": {"vae": ["1", 2], "filename_prefix": "nometa/v"}}}
    h2.run(p)
    with safe_open(str(h2.folders.output / "nometa" / "x_00001_.safetensors"), "pt") as f:
        # ComfyUI keeps the prediction type even then; no workflow, no modelspec architecture for SD2
        assert f.metadata() == {"modelspec.predict_key": "v"}
    with safe_open(str(h2.folders.output / "nometa" / "v_00001_.safetensors"), "pt") as f:
        assert not f.metadata()


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/hearth_abs_escape", "a/../../escape", "..\\escape"])
def test_hostile_prefix_refused(h, base, prefix):
    p = {**loader_node("a.safetensors"), **checkpoint_save(["1", 0], ["1", 1], ["1", 2], prefix)}
    outcome = h.run(p, expect="error")
    assert outcome.error.node_type == "CheckpointSave"
    assert "output folder" in outcome.error.exception_message
    for leftover in (base / "escape_00001_.safetensors", base.parent / "escape_00001_.safetensors"):
        assert not leftover.exists()
    import glob

    assert not glob.glob("/tmp/hearth_abs_escape*")


def test_model_save_reloads_as_diffusion_model(h, base):
    orig = original(base, "a.safetensors")
    p = {**loader_node("a.safetensors"), **model_save(["1", 0], "unets/u")}
    sd, path = run_and_load(h, p, "unets/u")
    assert set(sd) == set(unet_keys(orig))
    assert all(torch.equal(sd[k], orig[k]) for k in sd)
    shutil.copy(path, base / "models" / "diffusion_models" / "u.safetensors")
    prompt = txt2img("a.safetensors", seed=3)
    prompt["40"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "u.safetensors", "weight_dtype": "default"}}
    prompt["5"]["inputs"]["model"] = ["40", 0]
    assert torch.equal(h.latent(h.run(prompt), "6"), h.latent(h.run(txt2img("a.safetensors", seed=3)), "6"))


def test_vae_save_layout_and_reload(h, base):
    orig = original(base, "a.safetensors")
    p = {**loader_node("a.safetensors"), "91": {"class_type": "VAESave", "inputs": {"vae": ["1", 2],
                                                                                    "filename_prefix": "vaes/v"}}}
    sd, path = run_and_load(h, p, "vaes/v")
    pre = "first_stage_model."
    assert set(sd) == {k[len(pre):] for k in orig if k.startswith(pre)}
    for k, v in sd.items():
        assert v.shape == orig[pre + k].shape and torch.equal(v, orig[pre + k]), k
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["prompt"]) == p
    shutil.copy(path, base / "models" / "vae" / "v.safetensors")
    prompt = txt2img("a.safetensors", seed=2, save_image=True)
    prompt["41"] = {"class_type": "VAELoader", "inputs": {"vae_name": "v.safetensors"}}
    prompt["7"]["inputs"]["vae"] = ["41", 0]
    h.run(prompt)  # decodes with the reloaded VAE


def test_clip_save_sdxl_files_reload(h, base):
    p = {**loader_node("xl_a.safetensors"),
         "91": {"class_type": "CLIPSave", "inputs": {"clip": ["1", 1], "filename_prefix": "xlclip/c"}}}
    h.run(p)
    files = [f.name for f in saved_files(h, "xlclip")]
    assert files == ["c_clip_g_00001_.safetensors", "c_clip_l_00001_.safetensors"]
    with safe_open(str(h.folders.output / "xlclip" / files[1]), "pt") as f:
        meta = f.metadata()
        assert meta["format"] == "pt" and json.loads(meta["prompt"]) == p
        assert all(k.startswith("text_model.") or k == "logit_scale" for k in f.keys())
    for name in files:
        shutil.copy(h.folders.output / "xlclip" / name, base / "models" / "text_encoders" / name)
    prompt = txt2img("xl_a.safetensors", seed=5)
    prompt["42"] = {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": files[1], "clip_name2": files[0],
                                                                "type": "sdxl"}}
    prompt["2"]["inputs"]["clip"] = ["42", 0]
    prompt["3"]["inputs"]["clip"] = ["42", 0]
    assert torch.equal(h.latent(h.run(prompt), "6"), h.latent(h.run(txt2img("xl_a.safetensors", seed=5)), "6"))


def test_diffusers_loaded_model_saves_in_original_layout(base, tmp_path):
    import json as _json

    from hearth.runtime import loader, save
    from hearth.runtime.memory import ModelManager

    manager = ModelManager()
    ckpt = base / "models" / "checkpoints" / "xl_a.safetensors"
    model, clip, vae = loader.load_checkpoint(ckpt, manager)
    folder = tmp_path / "pipe"
    model.unet.save_pretrained(str(folder / "unet"))
    vae.module.save_pretrained(str(folder / "vae"))
    for sub, enc in (("text_encoder", clip.encoders[0]), ("text_encoder_2", clip.encoders[1])):
        (folder / sub).mkdir()
        save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()},
                  str(folder / sub / "model.safetensors"))
    (folder / "model_index.json").write_text(_json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    m2, c2, v2 = loader.load_diffusers(folder, manager)
    assert not m2.ldm_to_diffusers
    sd = save.checkpoint_state_dict(m2, c2, v2)
    orig = load_file(str(ckpt))
    assert set(unet_keys(sd)) == set(unet_keys(orig))
    assert all(torch.equal(sd[k], orig[k]) for k in unet_keys(orig))


def test_patcher_strength_model_and_weight_of():
    """The patch maths on a bare module: weight * strength_model + strength * other (other with its patches)."""
    from hearth.runtime import lora as L
    from hearth.runtime.patcher import ModuleHolder, Patcher

    g = torch.Generator().manual_seed(0)
    lin1, lin2 = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    w1, w2 = lin1.weight.detach().clone(), lin2.weight.detach().clone()
    p1, p2 = Patcher(ModuleHolder(lin1, "a", "unet")), Patcher(ModuleHolder(lin2, "b", "unet"))
    d = torch.randn(4, 4, generator=g)
    p2l = p2.clone()
    p2l.add_patches({"weight": L.Diff(d)}, 0.5)
    merged = p1.clone()
    merged.add_patches(p2l.key_patches(["weight"]), 0.25, 0.75)
    p2l.add_patches({"weight": L.Diff(d)}, 10.0)  # later patches on the source do not leak into the merge
    merged.activate()
    assert torch.allclose(lin1.weight, w1 * 0.75 + 0.25 * (w2 + 0.5 * d))
    assert torch.allclose(merged.patched_weight("weight"), lin1.weight)
    p2l.activate()  # the source module now holds other weights; the merge still reads the originals
    p1.activate()
    assert torch.equal(lin1.weight, w1)
    merged.activate()
    assert torch.allclose(lin1.weight, w1 * 0.75 + 0.25 * (w2 + 0.5 * d))
    # a merge of a module with itself (the same shared network)
    self_mix = p1.clone()
    self_mix.add_patches(p1.key_patches(), 0.5, 0.5)
    self_mix.activate()
    assert torch.allclose(lin1.weight, w1) and torch.allclose(lin1.bias, p1.patched_weight("bias"))
    # shapes that differ: scaled, not merged
    odd = Patcher(ModuleHolder(torch.nn.Linear(3, 4), "c", "unet"))
    mism = p1.clone()
    mism.add_patches(odd.key_patches(["weight"]), 0.5, 0.5)
    assert torch.allclose(mism.patched_weight("weight"), w1 * 0.5)


def test_prediction_markers():
    from types import SimpleNamespace

    from hearth.runtime.save import model_marker_keys
    from hearth.sampling.model_sampling import DiscreteSampling

    def keys(pred, zsnr=False):
        return set(model_marker_keys(SimpleNamespace(model_sampling=DiscreteSampling(pred, zsnr=zsnr))))

    assert keys("eps") == set() and keys("v") == {"v_pred"} and keys("v", True) == {"v_pred", "ztsnr"}
