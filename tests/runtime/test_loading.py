"""Loading: family detection, inferred architectures, file safety, sharing."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import load_file

from hearth.runtime import arch, families, loader
from hearth.runtime.files import UnsafeFileError, load_state_dict
from tests.runtime import tiny


def ckpt(base, name):
    return base / "models" / "checkpoints" / name


@pytest.mark.parametrize("name,family,prediction,in_ch,levels,adm", [
    ("sd15.safetensors", "sd15", "eps", 4, [32, 64], None),
    ("sd15_inpaint.safetensors", "sd15", "eps", 9, [32, 64], None),
    ("sd2_v.safetensors", "sd2", "v", 4, [32, 64], None),
    ("sdxl.safetensors", "sdxl", "eps", 4, [32, 64], 32 + 6 * 256),
    ("sdxl_refiner.safetensors", "sdxl_refiner", "eps", 4, [32, 64], 32 + 5 * 256),
    ("pruned.safetensors", "sd15", "eps", 4, [32, 64, 64], None),
])
def test_detect_family_and_architecture(model_base, name, family, prediction, in_ch, levels, adm):
    sd = load_state_dict(ckpt(model_base, name))
    det = loader.detect(sd)
    assert det.family.name == family
    assert det.prediction == prediction
    assert det.unet.in_channels == in_ch
    assert det.unet.level_channels == levels
    assert det.unet.adm_in_channels == adm


def test_inferred_architectures_match_the_specs(model_base):
    det = loader.detect(load_state_dict(ckpt(model_base, "pruned.safetensors")))
    u = det.unet
    assert u.num_res_blocks == [2, 1, 1]
    assert u.down_depth == [1, 1, 0]
    assert u.middle_depth is None
    assert u.up_depth == [[0, 0], [2, 1], [1, 1, 2]]
    assert not u.use_linear and u.context_dim == 32
    xl = loader.detect(load_state_dict(ckpt(model_base, "sdxl.safetensors"))).unet
    assert xl.down_depth == [0, 2] and xl.middle_depth == 2 and xl.context_dim == 64 and xl.use_linear
    assert xl.heads(64) == 1 and xl.num_head_channels == 64
    sd1 = loader.detect(load_state_dict(ckpt(model_base, "sd15.safetensors"))).unet
    assert sd1.num_heads == 8 and sd1.heads(32) == 8
    vae = arch.infer_vae(load_state_dict(ckpt(model_base, "sd15.safetensors")), "first_stage_model.")
    assert vae.level_channels == [32, 32, 64, 64] and vae.num_res_blocks == 1 and vae.embed_dim == 4


def test_every_weight_is_mapped_and_loaded(model_base, manager):
    for name in tiny_names():
        model, clip, vae = loader.load_checkpoint(ckpt(model_base, name), manager)
        sd = load_state_dict(ckpt(model_base, name))
        unet_keys = [k for k in sd if k.startswith("model.diffusion_model.")]
        assert len(model.ldm_to_diffusers) == len(unet_keys), name
        assert len(set(model.ldm_to_diffusers.values())) == len(unet_keys)
        assert clip is not None and vae is not None


def tiny_names():
    return ["sd15.safetensors", "sd15_inpaint.safetensors", "sd2_v.safetensors", "sdxl.safetensors",
            "sdxl_refiner.safetensors", "pruned.safetensors"]


def test_weights_land_in_the_right_places(model_base, manager):
    sd = load_file(str(ckpt(model_base, "sd15.safetensors")))
    model, clip, vae = loader.load_checkpoint(ckpt(model_base, "sd15.safetensors"), manager)
    unet = model.unet
    assert torch.equal(unet.conv_in.weight, sd["model.diffusion_model.input_blocks.0.0.weight"])
    assert torch.equal(unet.up_blocks[1].attentions[1].transformer_blocks[0].ff.net[2].weight,
                       sd["model.diffusion_model.output_blocks.3.1.transformer_blocks.0.ff.net.2.weight"])
    assert torch.equal(unet.mid_block.resnets[1].conv2.weight,
                       sd["model.diffusion_model.middle_block.2.out_layers.3.weight"])
    assert torch.equal(vae.module.decoder.up_blocks[0].resnets[0].conv1.weight,
                       sd["first_stage_model.decoder.up.3.block.0.conv1.weight"])
    assert torch.equal(vae.module.encoder.mid_block.attentions[0].to_q.weight,
                       sd["first_stage_model.encoder.mid.attn_1.q.weight"][:, :, 0, 0])
    enc = clip.encoders[0].model
    # text encoders are stored through float16 on the CPU, as ComfyUI stores them
    assert torch.equal(enc.text_model.encoder.layers[1].mlp.fc1.weight,
                       sd["cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.weight"].half().float())


def test_openclip_qkv_split(model_base, manager):
    sd = load_file(str(ckpt(model_base, "sd2_v.safetensors")))
    _, clip, _ = loader.load_checkpoint(ckpt(model_base, "sd2_v.safetensors"), manager)
    enc = clip.encoders[0].model
    fused = sd["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"]
    assert torch.equal(enc.text_model.encoder.layers[0].self_attn.k_proj.weight, fused[32:64].half().float())
    assert torch.equal(enc.text_projection.weight, sd["cond_stage_model.model.text_projection"].T.half().float())
    assert clip.encoders[0].spec is families.CLIP_H_SD2


def test_v_prediction_heuristic_and_marker():
    sd = tiny.sd2_checkpoint(v_prediction=False)
    assert loader.detect(sd).prediction == "eps"
    sd["v_pred"] = torch.tensor([])
    assert loader.detect(sd).prediction == "v"


def test_unet_only_files_detect_by_structure(model_base, manager):
    model = loader.load_unet(model_base / "models" / "diffusion_models" / "sd15_unet.safetensors", manager)
    assert model.family.name == "sd15"
    xl = {k[len("model.diffusion_model."):]: v for k, v in tiny.sdxl_refiner_checkpoint().items()
          if k.startswith("model.diffusion_model.")}
    assert loader.detect(xl).family.name == "sdxl_refiner"


def test_repeated_loads_share_networks(model_base, manager):
    a = loader.load_checkpoint(ckpt(model_base, "sd15.safetensors"), manager)
    b = loader.load_checkpoint(ckpt(model_base, "sd15.safetensors"), manager)
    assert a[0] is not b[0]
    assert a[0].patcher.holder is b[0].patcher.holder
    assert a[1].encoders[0].patcher.holder is b[1].encoders[0].patcher.holder


def test_pickle_checkpoint_weights_only_loads(tmp_path, manager):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": tiny.sd15_checkpoint()}, str(path))
    model, clip, vae = loader.load_checkpoint(path, manager)
    assert model.family.name == "sd15"


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {_Payload.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, manager):
    _Payload.marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"x": _Payload()}}, f)
    with pytest.raises(UnsafeFileError) as info:
        loader.load_checkpoint(path, manager)
    assert "evil.ckpt" in str(info.value)
    assert not _Payload.marker.exists()
    # torch.save'd zip pickles are checked the same way
    path2 = tmp_path / "evil2.pt"
    torch.save({"state_dict": {"x": _Payload()}}, str(path2))
    with pytest.raises(UnsafeFileError):
        load_state_dict(path2)
    assert not _Payload.marker.exists()


def test_not_a_model(tmp_path, manager):
    from safetensors.torch import save_file

    path = tmp_path / "junk.safetensors"
    save_file({"foo": torch.zeros(2)}, str(path))
    with pytest.raises(loader.DetectionError):
        loader.load_checkpoint(path, manager)


def test_diffusers_folder_loads_like_the_checkpoint(model_base, manager, tmp_path):
    import json

    from safetensors.torch import save_file

    model, clip, vae = loader.load_checkpoint(ckpt(model_base, "sd15.safetensors"), manager)
    folder = tmp_path / "tiny_diffusers"
    model.unet.save_pretrained(str(folder / "unet"))
    vae.module.save_pretrained(str(folder / "vae"))
    (folder / "text_encoder").mkdir()
    save_file({k: v.contiguous() for k, v in clip.encoders[0].model.state_dict().items()},
              str(folder / "text_encoder" / "model.safetensors"))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    m2, c2, v2 = loader.load_diffusers(folder, manager)
    assert m2.family.name == "sd15" and m2.model_sampling.prediction == "eps"
    x, c = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    with torch.inference_mode():
        assert torch.allclose(model.apply_model(x, torch.tensor([2.0]), c_crossattn=c),
                              m2.apply_model(x, torch.tensor([2.0]), c_crossattn=c), atol=1e-5)
    assert torch.allclose(clip.encode_conditioning("a cat")[0][0], c2.encode_conditioning("a cat")[0][0], atol=1e-5)
    lat = torch.randn(1, 4, 8, 8)
    assert torch.allclose(vae.decode(lat), v2.decode(lat), atol=1e-5)


# Reference outputs of ComfyUI 0.3.64's own UNetModel on the same weights and inputs (ad-hoc run of its
# openaimodel.UNetModel built from model_detection.detect_unet_config, 1 head for the XL case, 8 for the other):
# every 257th element of the output, then the mean absolute value.
_COMFY_PRUNED_REFERENCE = {
    "uneven_xl": ([0.00288, -0.36116, 0.4042, 0.04179, -0.05263, -0.36949, -0.00386, -0.18395], 0.438152),
    "one_res_mid": ([-0.18053, -0.26726, 0.06356, -0.39805, 0.08774, 0.7218, -0.89068, 0.4237], 0.450391),
}


@pytest.mark.parametrize("name", sorted(_COMFY_PRUNED_REFERENCE))
def test_unevenly_pruned_unets_load_and_match_comfyui(name, manager):
    """Depth varying within a level, attention-less blocks beside attention blocks, a middle block shallower
    than its level or reduced to one res block (SSD-1B, Vega, BK-SDM): built with exact identity padding."""
    if name == "uneven_xl":
        sd, ctx_dim, family = tiny.sdxl_checkpoint(seed=21, unet=tiny.UNEVEN_XL_UNET), 64, "sdxl"
    else:
        sd, ctx_dim, family = tiny.sd15_checkpoint(seed=22, unet=tiny.ONE_RES_MIDDLE_UNET), 32, "sd15"
    det = loader.detect(sd)
    assert det.family.name == family
    if name == "uneven_xl":  # the XL family's 64-channel heads would leave these 32-channel layers one head
        det.unet.num_head_channels, det.unet.num_heads = -1, 1
    model = loader.build_unet(sd, det, manager, name)
    pads = det.unet.padding()
    assert pads
    params = dict(model.unet.named_parameters())
    for prefix in pads:
        inside = [v for k, v in params.items() if k.startswith(prefix + ".")]
        assert inside and all(torch.count_nonzero(v) == 0 for v in inside), prefix
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=g)
    ctx64, ctx32 = torch.randn(2, 77, 64, generator=g), torch.randn(2, 77, 32, generator=g)
    y = torch.randn(2, 32 + 6 * 256, generator=g)
    kwargs = {"class_labels": y} if name == "uneven_xl" else {}
    with torch.no_grad():
        out = model.unet(x, torch.tensor([500.0, 20.0]), encoder_hidden_states=ctx64 if ctx_dim == 64 else ctx32,
                         return_dict=False, **kwargs)[0]
    values, mean_abs = _COMFY_PRUNED_REFERENCE[name]
    assert torch.allclose(out.flatten()[::257][:8], torch.tensor(values), atol=2e-4)
    assert abs(out.abs().mean().item() - mean_abs) < 2e-5


def test_pruned_unet_saves_without_its_identity_padding(manager):
    """The zero identity modules have no name in the original layout: saving leaves them out."""
    from hearth.runtime import save

    sd = tiny.sd15_checkpoint(seed=22, unet=tiny.ONE_RES_MIDDLE_UNET)
    det = loader.detect(sd)
    model = loader.build_unet(sd, det, manager, "one_res_mid")
    saved = save.unet_state_dict(model)
    original = {k[len("model.diffusion_model."):] for k in sd if k.startswith("model.diffusion_model.")}
    assert set(saved) == original


def test_lazy_reads_equal_safetensors_for_every_dtype(tmp_path):
    """Tensors are read with positioned reads (no memory map left resident): same values as safetensors."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from hearth.runtime.files import LazyStateDict

    g = torch.Generator().manual_seed(3)
    tensors = {"f32": torch.randn(3, 5, generator=g), "f16": torch.randn(7, generator=g).half(),
               "bf16": torch.randn(2, 2, generator=g).bfloat16(), "i64": torch.arange(6).reshape(2, 3),
               "u8": torch.arange(10, dtype=torch.uint8), "b": torch.tensor([True, False]),
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 4)}
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path))
    sd = LazyStateDict(path)
    with safe_open(str(path), framework="pt") as f:
        for name in tensors:
            ours, theirs = sd[name], f.get_tensor(name)
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and torch.equal(ours, theirs), name
    # a file cut short after it was opened: a clear error, not garbage
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    from hearth.runtime.files import WeightFileError

    with pytest.raises(WeightFileError, match="ends inside a tensor"):
        [sd[k] for k in tensors]


def test_converting_reads_match_a_plain_cast(tmp_path, monkeypatch):
    """Reading with a dtype converts through a small reused buffer; results equal reading then casting."""
    from safetensors.torch import save_file

    from hearth.runtime import files

    monkeypatch.setattr(files, "_CHUNK_BYTES", 64)  # several chunks per tensor, and a ragged last one
    g = torch.Generator().manual_seed(4)
    tensors = {"big": torch.randn(37, 11, generator=g).half(), "bf": torch.randn(50, generator=g).bfloat16(),
               "f32": torch.randn(4, 4, generator=g), "tiny": torch.randn(1, generator=g).half(),
               "scalar": torch.tensor(1.5, dtype=torch.float16), "empty": torch.zeros(0, 3).half()}
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path))
    sd = files.LazyStateDict(path)
    refs = {k: files.deferred(sd, k) for k in sd}
    assert all(isinstance(r, files.TensorRef) for r in refs.values())
    assert refs["big"].shape == (37, 11) and refs["big"].ndim == 2
    for workers in (1, 3):
        out = files.read_tensors(refs, torch.float32, workers=workers)
        for k, t in tensors.items():
            assert out[k].dtype == torch.float32 and torch.equal(out[k], t.float()), (workers, k)
    # rounding through float16 first, as CPU text encoders are stored; plain tensors go the same way
    mixed = dict(refs, plain=torch.tensor([1 / 3]))
    out = files.read_tensors(mixed, torch.float32, via=torch.float16)
    assert torch.equal(out["f32"], tensors["f32"].half().float())
    assert torch.equal(out["big"], tensors["big"].float())  # already float16: read straight to float32
    assert torch.equal(out["bf"], tensors["bf"].half().float())  # bfloat16 is still rounded to float16
    assert torch.equal(out["plain"], torch.tensor([1 / 3]).half().float())
    # a plain mapping is not deferred
    assert torch.equal(files.deferred(dict(tensors), "big"), tensors["big"])


def test_check_weights_names_missing_and_misshapen_weights():
    """The one check every builder uses (checkpoints, union ControlNets, GLIGEN fusers)."""
    expected = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    arch.check_weights(expected, {"a.weight": torch.ones(2, 3), "a.bias": torch.ones(2), "extra": 1}, "net")
    with pytest.raises(arch.ArchitectureError, match=r"net: 1 weights missing, e\.g\. \['a\.bias'\]"):
        arch.check_weights(expected, {"a.weight": torch.ones(2, 3)}, "net")
    with pytest.raises(arch.ArchitectureError, match=r"net: a\.weight has shape \(3, 2\), expected \(2, 3\)"):
        arch.check_weights(expected, {"a.weight": torch.ones(3, 2), "a.bias": torch.ones(2)}, "net")
