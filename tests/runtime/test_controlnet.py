"""ControlNets and T2I-Adapters: tiny random-weight files in each supported layout, run through the engine.

The files are generated here: an original-layout ControlNet (the tiny SD1.5 UNet's input blocks and
middle block plus zero convs, hint encoder and middle output conv — the shapes enumerated from the
original ``cldm`` architecture, independently of Hearth's key maps), the same kind saved by diffusers
(a randomly initialised ``ControlNetModel`` of the tiny configuration), a diff ControlNet (deltas on the
tiny checkpoint), and TencentARC-layout full and light T2I-Adapters for a tiny four-level UNet.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors.torch import save_file  # noqa: E402

from tests.runtime import tiny  # noqa: E402
from tests.runtime.conftest import make_harness  # noqa: E402

# a four-level UNet shaped like SD1.5's (2 blocks per level, attention on the first three levels):
# the layout T2I-Adapters are made for
FOUR_LEVEL_UNET = tiny.UNetSpec(mult=(1, 2, 4, 4), num_res=(2, 2, 2, 2), down_depth=(1, 1, 1, 0))
HINT_CONVS = [(16, None), (16, 16), (32, 16), (32, 32), (96, 32), (96, 96), (256, 96), (None, 256)]


def controlnet_shapes(spec: tiny.UNetSpec, hint_channels: int = 3) -> dict[str, tuple]:
    """An original-layout ControlNet for ``spec``: its down path plus zero convs and the hint encoder."""
    unet = tiny.unet_shapes(spec)
    keys = {k: v for k, v in unet.items() if k.startswith(("time_embed.", "label_emb.", "input_blocks.",
                                                           "middle_block."))}
    n_in = 1 + max(int(k.split(".")[1]) for k in keys if k.startswith("input_blocks."))
    for i in range(n_in):
        for cand in (f"input_blocks.{i}.0.weight", f"input_blocks.{i}.0.op.weight",
                     f"input_blocks.{i}.0.out_layers.3.weight"):
            if cand in keys:
                ch = keys[cand][0]
                break
        keys[f"zero_convs.{i}.0.weight"] = (ch, ch, 1, 1)
        keys[f"zero_convs.{i}.0.bias"] = (ch,)
    mid = keys["middle_block.2.out_layers.3.weight"][0]
    keys["middle_block_out.0.weight"] = (mid, mid, 1, 1)
    keys["middle_block_out.0.bias"] = (mid,)
    for j, (o, i) in enumerate(HINT_CONVS):
        o = spec.mc if o is None else o
        i = hint_channels if i is None else i
        keys[f"input_hint_block.{2 * j}.weight"] = (o, i, 3, 3)
        keys[f"input_hint_block.{2 * j}.bias"] = (o,)
    return keys


def t2i_full_shapes(channel: int = 32, cin: int = 192) -> dict[str, tuple]:
    chans = [channel, channel * 2, channel * 4, channel * 4]
    keys = {"conv_in.weight": (channel, cin, 3, 3), "conv_in.bias": (channel,)}
    for i, c in enumerate(chans):
        for j in range(2):
            n = i * 2 + j
            if j == 0 and i > 0 and chans[i - 1] != c:
                keys[f"body.{n}.in_conv.weight"] = (c, chans[i - 1], 1, 1)
                keys[f"body.{n}.in_conv.bias"] = (c,)
            keys[f"body.{n}.block1.weight"] = (c, c, 3, 3)
            keys[f"body.{n}.block1.bias"] = (c,)
            keys[f"body.{n}.block2.weight"] = (c, c, 1, 1)
            keys[f"body.{n}.block2.bias"] = (c,)
    return keys


def t2i_light_shapes(channel: int = 32, cin: int = 192, nums_rb: int = 4) -> dict[str, tuple]:
    chans = [channel, channel * 2, channel * 4, channel * 4]
    keys = {}
    for i, c in enumerate(chans):
        inner = c // 4
        keys[f"body.{i}.in_conv.weight"] = (inner, cin if i == 0 else chans[i - 1], 1, 1)
        keys[f"body.{i}.in_conv.bias"] = (inner,)
        for k in range(nums_rb):
            for b in ("block1", "block2"):
                keys[f"body.{i}.body.{k}.{b}.weight"] = (inner, inner, 3, 3)
                keys[f"body.{i}.body.{k}.{b}.bias"] = (inner,)
        keys[f"body.{i}.out_conv.weight"] = (c, inner, 1, 1)
        keys[f"body.{i}.out_conv.bias"] = (c,)
    return keys


def diffusers_controlnet_sd(seed: int = 23) -> dict:
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                          down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), attention_head_dim=8,
                          norm_num_groups=32)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in net.state_dict().items():  # the zero convs start at zero: give everything random weights
        if v.ndim == 1:
            t = (1.0 + 0.05 * torch.randn(v.shape, generator=g)) if "norm" in k and k.endswith("weight") \
                else 0.02 * torch.randn(v.shape, generator=g)
        else:
            t = torch.randn(v.shape, generator=g) / max(1, v[0].numel()) ** 0.5
        out[k] = t.contiguous()
    return out


def union_extras(width: int = 32, types: int = 6, time_embed: int = 128, seed: int = 29) -> dict:
    """The extra weights of a union ControlNet (xinsir's ControlNet++), in its file's names."""
    shapes = {"task_embedding": (types, width), "spatial_ch_projs.weight": (width, width),
              "spatial_ch_projs.bias": (width,), "control_add_embedding.linear_1.weight": (time_embed, types * 256),
              "control_add_embedding.linear_1.bias": (time_embed,),
              "control_add_embedding.linear_2.weight": (time_embed, time_embed),
              "control_add_embedding.linear_2.bias": (time_embed,)}
    b = "transformer_layes.0."
    shapes.update({b + "attn.in_proj_weight": (3 * width, width), b + "attn.in_proj_bias": (3 * width,),
                   b + "attn.out_proj.weight": (width, width), b + "attn.out_proj.bias": (width,),
                   b + "ln_1.weight": (width,), b + "ln_1.bias": (width,), b + "ln_2.weight": (width,),
                   b + "ln_2.bias": (width,), b + "mlp.c_fc.weight": (4 * width, width),
                   b + "mlp.c_fc.bias": (4 * width,),
                   b + "mlp.c_proj.weight": (width, 4 * width), b + "mlp.c_proj.bias": (width,)})
    out = tiny.materialise(shapes, torch.Generator().manual_seed(seed))
    out["task_embedding"] = out["task_embedding"] * 50  # make the type matter
    return out


def control_lora_files(cn: dict, unet: dict, rank: int = 4, seed: int = 41) -> tuple[dict, dict]:
    """A Control-LoRA (ldm names) and the plain ControlNet it amounts to on ``unet`` (ldm names, no prefix).

    Hint encoder, zero convs and 1-D weights are stored in full; conv/linear weights of the down path
    as low-rank ``up``/``down`` differences from the model's own weights (ComfyUI adds ``up @ down``).
    """
    g = torch.Generator().manual_seed(seed)
    lora, plain = {"lora_controlnet": torch.tensor([])}, {}
    for k, v in cn.items():
        if not k.startswith(("input_blocks.", "middle_block.", "time_embed.", "label_emb.")) or v.ndim == 1:
            lora[k] = v
            plain[k] = v
            continue
        base = unet[k]
        up = 0.05 * torch.randn((v.shape[0], rank), generator=g)
        down = 0.05 * torch.randn((rank, v[0].numel()), generator=g)
        lora[k[:-len(".weight")] + ".up"] = up.reshape((v.shape[0], rank) + (1,) * (v.ndim - 2))
        lora[k[:-len(".weight")] + ".down"] = down.reshape((rank,) + tuple(v.shape[1:]))
        plain[k] = base + (up @ down).reshape(v.shape)
    return lora, plain


@pytest.fixture(scope="module")
def cn_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("hearth_cn")
    models = base / "models"
    for sub in ("checkpoints", "controlnet"):
        (models / sub).mkdir(parents=True)
    sd15 = tiny.sd15_checkpoint()
    save_file(sd15, str(models / "checkpoints" / "sd15.safetensors"))
    save_file(tiny.sd15_checkpoint(seed=31, unet=FOUR_LEVEL_UNET), str(models / "checkpoints" / "sd15_4l.safetensors"))
    g = torch.Generator().manual_seed(21)
    cn = tiny.materialise(controlnet_shapes(tiny.SD15_UNET), g, "control_model.")
    save_file(cn, str(models / "controlnet" / "control_tiny.safetensors"))
    torch.save({k[len("control_model."):]: v for k, v in cn.items()}, str(models / "controlnet" / "bare_tiny.pth"))
    diff = {}
    for k, v in cn.items():
        base_key = "model.diffusion_model." + k[len("control_model."):]
        diff[k] = v - sd15[base_key] if base_key in sd15 else v
    diff["difference"] = torch.tensor([])
    lora, plain = control_lora_files({k[len("control_model."):]: v for k, v in cn.items()},
                                     {k[len("model.diffusion_model."):]: v for k, v in sd15.items()})
    save_file(lora, str(models / "controlnet" / "control_lora_tiny.safetensors"))
    save_file(plain, str(models / "controlnet" / "control_lora_as_plain.safetensors"))
    save_file(diff, str(models / "controlnet" / "diff_tiny.safetensors"))
    save_file(tiny.sdxl_checkpoint(), str(models / "checkpoints" / "sdxl.safetensors"))
    save_file(tiny.materialise(controlnet_shapes(tiny.SDXL_UNET), g),
              str(models / "controlnet" / "xl_tiny.safetensors"))
    save_file(diffusers_controlnet_sd(), str(models / "controlnet" / "diffusers_tiny.safetensors"))
    save_file({**diffusers_controlnet_sd(), **union_extras()}, str(models / "controlnet" / "union_tiny.safetensors"))
    save_file(tiny.materialise(t2i_full_shapes(), g), str(models / "controlnet" / "t2i_full.safetensors"))
    save_file(tiny.materialise(t2i_light_shapes(), g), str(models / "controlnet" / "t2i_light.safetensors"))
    save_file(tiny.materialise(t2i_full_shapes(cin=64), g), str(models / "controlnet" / "t2i_sketch.safetensors"))
    save_file({"foo.weight": torch.zeros(3, 3)}, str(models / "controlnet" / "not_a_controlnet.safetensors"))
    (models / "controlnet" / "broken.safetensors").write_bytes(b"not a safetensors file at all")
    return base


@pytest.fixture(scope="module")
def h(cn_base):
    return make_harness(cn_base)


def prompt(ckpt="sd15.safetensors", controls=(), apply="advanced", cfg=5.0, seed=3, image_size=(64, 64),
           steps=3, batch=1):
    """txt2img; ``controls`` is a list of (file, strength, start, end) chained in order."""
    w, hh = image_size
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a house", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
        "9": {"class_type": "EmptyImage", "inputs": {"width": w, "height": hh, "batch_size": 1, "color": 0x3366CC}},
    }
    pos, neg = ["2", 0], ["3", 0]
    for n, (name, strength, start, end) in enumerate(controls):
        lid, aid = str(20 + 2 * n), str(21 + 2 * n)
        if name.startswith("diff:"):
            p[lid] = {"class_type": "DiffControlNetLoader", "inputs": {"model": ["1", 0],
                                                                       "control_net_name": name[5:]}}
        else:
            p[lid] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": name}}
        if apply == "advanced":
            p[aid] = {"class_type": "ControlNetApplyAdvanced", "inputs": {
                "positive": pos, "negative": neg, "control_net": [lid, 0], "image": ["9", 0], "strength": strength,
                "start_percent": start, "end_percent": end, "vae": ["1", 2]}}
            pos, neg = [aid, 0], [aid, 1]
        else:
            p[aid] = {"class_type": "ControlNetApply", "inputs": {
                "conditioning": pos, "control_net": [lid, 0], "image": ["9", 0], "strength": strength}}
            pos = [aid, 0]
    p["5"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": pos, "negative": neg, "latent_image": ["4", 0],
                                                   "denoise": 1.0}}
    p["6"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/cn"}}
    return p


def latent(h, p):
    return h.latent(h.run(p), "6")


@pytest.fixture(scope="module")
def baseline(h):
    return latent(h, prompt())


def test_each_layout_loads_and_steers(h, baseline):
    outs = {}
    for name in ("control_tiny.safetensors", "bare_tiny.pth", "diffusers_tiny.safetensors"):
        out = latent(h, prompt(controls=[(name, 1.0, 0.0, 1.0)]))
        assert out.shape == baseline.shape and torch.isfinite(out).all()
        assert (out - baseline).abs().max() > 1e-3, name
        outs[name] = out
    # the same weights with or without the control_model. prefix, safetensors or a weights-only pickle
    assert torch.equal(outs["control_tiny.safetensors"], outs["bare_tiny.pth"])


def test_sdxl_controlnet_uses_the_conditioning_vector(h):
    base = latent(h, prompt("sdxl.safetensors"))
    out = latent(h, prompt("sdxl.safetensors", controls=[("xl_tiny.safetensors", 1.0, 0.0, 1.0)]))
    assert torch.isfinite(out).all() and (out - base).abs().max() > 1e-3


def test_t2i_adapters_full_and_light(h):
    base = latent(h, prompt("sd15_4l.safetensors"))
    for name in ("t2i_full.safetensors", "t2i_light.safetensors", "t2i_sketch.safetensors"):
        out = latent(h, prompt("sd15_4l.safetensors", controls=[(name, 1.0, 0.0, 1.0)]))
        assert torch.isfinite(out).all()
        assert (out - base).abs().max() > 1e-3, name
        zero = latent(h, prompt("sd15_4l.safetensors", controls=[(name, 0.0, 0.0, 1.0)]))
        assert torch.equal(zero, base)


def test_strength_zero_and_empty_ranges_leave_the_latent_unchanged(h, baseline):
    name = "control_tiny.safetensors"
    assert torch.equal(latent(h, prompt(controls=[(name, 0.0, 0.0, 1.0)])), baseline)
    assert torch.equal(latent(h, prompt(controls=[(name, 1.0, 0.0, 0.0)])), baseline)  # end_percent 0
    assert torch.equal(latent(h, prompt(controls=[(name, 1.0, 1.0, 1.0)])), baseline)  # start_percent 1
    assert torch.equal(latent(h, prompt(controls=[(name, 0.0, 0.0, 1.0)], apply="old")), baseline)
    # a partial range is in between: differs from both
    part = latent(h, prompt(controls=[(name, 1.0, 0.5, 1.0)]))
    full = latent(h, prompt(controls=[(name, 1.0, 0.0, 1.0)]))
    assert not torch.equal(part, baseline) and not torch.equal(part, full)


def test_strength_scales_the_residuals(h, baseline):
    name = "control_tiny.safetensors"
    weak = latent(h, prompt(controls=[(name, 0.1, 0.0, 1.0)]))
    strong = latent(h, prompt(controls=[(name, 2.0, 0.0, 1.0)]))
    assert (weak - baseline).abs().max() < (strong - baseline).abs().max()


def test_chaining_two_controls(h, baseline):
    a = latent(h, prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)]))
    b = latent(h, prompt(controls=[("diffusers_tiny.safetensors", 1.0, 0.0, 1.0)]))
    ab = latent(h, prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0),
                                    ("diffusers_tiny.safetensors", 1.0, 0.0, 1.0)]))
    assert torch.isfinite(ab).all()
    for other in (a, b, baseline):
        assert (ab - other).abs().max() > 1e-4


def test_chain_residuals_are_summed(h):
    """At one step a chain's residuals are the sum of each control's own (scaled) residuals."""
    from hearth.runtime.controlnet import load_controlnet
    from hearth.runtime.loader import load_checkpoint

    manager = _manager_of(h)
    model, _, _ = load_checkpoint(h.folders.full_path("checkpoints", "sd15.safetensors"), manager)
    first = load_controlnet(h.folders.full_path("controlnet", "control_tiny.safetensors"), manager)
    second = load_controlnet(h.folders.full_path("controlnet", "diffusers_tiny.safetensors"), manager)
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    a = first.copy().set_cond_hint(hint, 0.7)
    b = second.copy().set_cond_hint(hint, 1.3)
    chain = second.copy().set_cond_hint(hint, 1.3).set_previous_controlnet(a)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([3.0, 3.0])
    cond = {"c_crossattn": torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(3))}
    with torch.inference_mode():
        ra = a.bind(model).get_control(x, sigma, cond, 2)
        rb = b.bind(model).get_control(x, sigma, cond, 2)
        rc = chain.bind(model).get_control(x, sigma, cond, 2)
    assert len(rc["output"]) == 4 and len(rc["middle"]) == 1
    for key in ("output", "middle"):
        for u, v, w in zip(ra[key], rb[key], rc[key]):
            torch.testing.assert_close(w, u + v)


def _manager_of(h):
    from hearth.runtime.memory import get_manager

    return get_manager(h.services, h.config)


def test_diff_controlnet_matches_the_full_one(h):
    full = latent(h, prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)]))
    diff = latent(h, prompt(controls=[("diff:diff_tiny.safetensors", 1.0, 0.0, 1.0)]))
    # (delta + base) rounds differently from the original weight; the random nets amplify that a little
    torch.testing.assert_close(diff, full, atol=2e-3, rtol=1e-3)
    from hearth.runtime.controlnet import load_controlnet
    from hearth.runtime.loader import load_checkpoint

    manager = _manager_of(h)
    model, _, _ = load_checkpoint(h.folders.full_path("checkpoints", "sd15.safetensors"), manager)
    a = load_controlnet(h.folders.full_path("controlnet", "control_tiny.safetensors"), manager)
    b = load_controlnet(h.folders.full_path("controlnet", "diff_tiny.safetensors"), manager, model)
    sa, sb = a.network.holder.module.state_dict(), b.network.holder.module.state_dict()
    assert sa.keys() == sb.keys()
    assert max(float((sa[k] - sb[k]).abs().max()) for k in sa) < 1e-6


def test_control_lora_is_the_model_plus_low_rank_differences(h, baseline):
    out = latent(h, prompt(controls=[("control_lora_tiny.safetensors", 1.0, 0.0, 1.0)]))
    plain = latent(h, prompt(controls=[("control_lora_as_plain.safetensors", 1.0, 0.0, 1.0)]))
    assert not torch.equal(out, baseline)
    torch.testing.assert_close(out, plain, atol=1e-4, rtol=1e-4)


def test_old_apply_node_reaches_the_negative_side(h, baseline):
    from hearth.sampling import guidance

    old = latent(h, prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)], apply="old"))
    adv = latent(h, prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)]))
    assert not torch.equal(old, baseline)
    # ControlNetApply puts the control on the positive side only, flagged for the uncond: same result
    torch.testing.assert_close(old, adv, atol=1e-5, rtol=1e-5)

    class Ctl:
        def bind(self, model):
            return self

    ctl = Ctl()
    conds = {"positive": [{"control": ctl, "control_apply_to_uncond": True}], "negative": [{}]}
    guidance.prepare_controls(None, conds)
    assert conds["negative"][0]["control"] is conds["positive"][0]["control"]
    conds = {"positive": [{"control": ctl, "control_apply_to_uncond": False}], "negative": [{}]}
    guidance.prepare_controls(None, conds)
    assert "control" not in conds["negative"][0]


def test_hint_is_resized_with_a_center_crop_and_batched(h, baseline):
    out = latent(h, prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)], image_size=(96, 80)))
    assert torch.isfinite(out).all() and not torch.equal(out, baseline)
    batch = latent(h, prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)], batch=2))
    assert batch.shape[0] == 2 and torch.isfinite(batch).all()


def test_broadcast_image_to():
    from hearth.runtime.controlnet import broadcast_image_to

    one = torch.zeros(1, 3, 4, 4)
    assert broadcast_image_to(one, 4, 2) is one
    hint = torch.arange(3.0).reshape(3, 1, 1, 1)
    # two images for a batch of 2 latents run as cond+uncond (4 rows): [0, 1, 0, 1]
    assert broadcast_image_to(hint, 4, 2).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert broadcast_image_to(hint[:1].repeat(2, 1, 1, 1), 6, 2).shape[0] == 6
    assert broadcast_image_to(hint, 5, 1).flatten().tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]


def test_t2i_features_go_where_the_original_unet_adds_them():
    """SD1.5-shaped UNet: the four adapter features follow input blocks 2, 5, 8 and 11."""
    from types import SimpleNamespace

    from hearth.runtime.controlnet import _t2i_layout, unet_residuals

    feats = [torch.full((1, c, s, s), float(i + 1)) for i, (c, s) in enumerate(((32, 8), (64, 4), (128, 2),
                                                                              (128, 1)))]
    layout = _t2i_layout(feats, xl=False)
    assert [i for i, f in enumerate(reversed(layout["input"])) if f is not None] == [2, 5, 8, 11]
    unet = SimpleNamespace(config=SimpleNamespace(block_out_channels=(32, 64, 128, 128), layers_per_block=2,
                                                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)))
    kw = unet_residuals(unet, layout, (1, 4, 8, 8), torch.device("cpu"), torch.float32)
    assert set(kw) == {"down_intrablock_additional_residuals"}
    assert [float(t.flatten()[0]) for t in kw["down_intrablock_additional_residuals"]] == [1.0, 2.0, 3.0, 4.0]
    # an SDXL-shaped UNet and an XL adapter: after the first downsampler, levels 2 and 3, then the middle
    xl = [torch.full((1, c, s, s), float(i + 1)) for i, (c, s) in enumerate(((32, 4), (64, 4), (128, 2),
                                                                           (128, 2)))]
    unet = SimpleNamespace(config=SimpleNamespace(block_out_channels=(32, 64, 128), layers_per_block=2,
                                                  down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 2))
    kw = unet_residuals(unet, _t2i_layout(xl, xl=True), (1, 4, 8, 8), torch.device("cpu"), torch.float32)
    assert [float(t.flatten()[0]) for t in kw["down_intrablock_additional_residuals"]] == [1.0, 2.0, 3.0, 4.0]
    # ControlNet residuals: one per skip connection, the middle one separately
    skips = [torch.full((1, c, s, s), float(i)) for i, (c, s) in enumerate(
        [(32, 8)] * 3 + [(32, 4)] + [(64, 4)] * 2 + [(64, 2)] + [(128, 2)] * 2)]
    kw = unet_residuals(unet, {"output": skips, "middle": [torch.ones(1, 128, 2, 2)]}, (1, 4, 8, 8),
                        torch.device("cpu"), torch.float32)
    assert [float(t.flatten()[0]) for t in kw["down_block_additional_residuals"]] == list(range(9))
    assert kw["mid_block_additional_residual"].shape == (1, 128, 2, 2)


def test_other_nodes(h, baseline):
    from hearth.nodes.context import using

    # SetUnionControlNetType only tags the control: a plain ControlNet ignores it
    p = prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)])
    plain = latent(h, p)
    p["30"] = {"class_type": "SetUnionControlNetType", "inputs": {"control_net": ["20", 0], "type": "depth"}}
    p["21"]["inputs"]["control_net"] = ["30", 0]
    assert torch.equal(latent(h, p), plain)
    # the AliMama inpainting apply node, with a ControlNet that takes no mask, is the advanced apply node
    p = prompt(controls=[("control_tiny.safetensors", 1.0, 0.0, 1.0)])
    p["31"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
    p["21"] = {"class_type": "ControlNetInpaintingAliMamaApply", "inputs": {
        "positive": ["2", 0], "negative": ["3", 0], "control_net": ["20", 0], "vae": ["1", 2], "image": ["9", 0],
        "mask": ["31", 0], "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}}
    assert torch.equal(latent(h, p), plain)
    # ConditioningSetAreaStrength sets the strength option on every entry
    with using(h.context()):
        from tests.nodes.conftest import run_node

        cond = [[torch.zeros(1, 77, 32), {"a": 1}], [torch.zeros(1, 77, 32), {}]]
        (out,) = run_node(h.context(), "ConditioningSetAreaStrength", conditioning=cond, strength=0.25)
        assert [o[1]["strength"] for o in out] == [0.25, 0.25] and "strength" not in cond[0][1]
    p = prompt()
    p["32"] = {"class_type": "ConditioningSetAreaStrength", "inputs": {"conditioning": ["2", 0], "strength": 2.0}}
    p["5"]["inputs"]["positive"] = ["32", 0]
    out = latent(h, p)
    assert torch.isfinite(out).all()


def test_union_controlnet_types(h, baseline):
    p = prompt(controls=[("union_tiny.safetensors", 1.0, 0.0, 1.0)])
    auto = latent(h, p)
    assert not torch.equal(auto, baseline)
    p["30"] = {"class_type": "SetUnionControlNetType", "inputs": {"control_net": ["20", 0], "type": "depth"}}
    p["21"]["inputs"]["control_net"] = ["30", 0]
    depth = latent(h, p)
    p["30"]["inputs"]["type"] = "canny/lineart/anime_lineart/mlsd"
    canny = latent(h, p)
    assert torch.isfinite(depth).all() and not torch.equal(depth, auto) and not torch.equal(depth, canny)
    p["30"]["inputs"]["type"] = "repaint"  # type 7: this one knows 6
    outcome = h.run(p, expect="error")
    assert "out of range" in str(outcome.error)


def test_bad_files_are_refused_clearly(h, cn_base):
    from hearth.runtime.controlnet import ControlNetError, load_controlnet
    from hearth.runtime.memory import ModelManager

    folder = cn_base / "models" / "controlnet"
    with pytest.raises(ControlNetError, match="not_a_controlnet.safetensors"):
        load_controlnet(folder / "not_a_controlnet.safetensors", ModelManager())
    with pytest.raises(ControlNetError, match="broken.safetensors"):
        load_controlnet(folder / "broken.safetensors", ModelManager())
    outcome = h.run(prompt(controls=[("not_a_controlnet.safetensors", 1.0, 0.0, 1.0)]), expect="error")
    assert "not_a_controlnet.safetensors" in str(outcome.error)


# Measured with ComfyUI 0.3.64's own ``comfy.cldm.cldm.ControlNet`` (its diffusers-format key conversion for
# the second file) on the same files and inputs, in an ad-hoc run: sum and sum of |x| of each residual
# (4 skip residuals, then the middle one).
COMFYUI_RESIDUALS = {
    "control_tiny.safetensors": ([12.9506, -235.5051, -116.4978, -142.2609, -307.6756],
                                 [2623.476, 5581.385, 1207.19, 2747.41, 3758.212]),
    "diffusers_tiny.safetensors": ([67.6728, 66.181, -83.5823, -149.6942, -172.6649],
                                   [2818.453, 5085.815, 1105.568, 2330.457, 3589.974]),
}


def test_residuals_match_comfyui(h):
    from hearth.runtime.controlnet import load_controlnet

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 8, 8, generator=g)
    hint = torch.rand(1, 3, 64, 64, generator=g)
    t = torch.tensor([999.0, 421.0])
    ctx = torch.randn(2, 77, 32, generator=g)
    for name, (sums, abs_sums) in COMFYUI_RESIDUALS.items():
        net = load_controlnet(h.folders.full_path("controlnet", name), _manager_of(h)).network.holder.module
        with torch.inference_mode():
            down, mid = net(x, t, encoder_hidden_states=ctx, controlnet_cond=hint, return_dict=False)
        got = list(down) + [mid]
        assert len(got) == len(sums)
        for r, s, a in zip(got, sums, abs_sums):
            assert abs(float(r.double().sum()) - s) < 0.05, name
            assert abs(float(r.double().abs().sum()) - a) < 1e-4 * a, name


def test_merge_semantics():
    from hearth.runtime.controlnet import _merge

    shared = torch.ones(1, 2, 2, 2)
    own = torch.ones(1, 2, 2, 2)
    out = _merge({"output": [shared, shared, own], "middle": [torch.full((1, 2, 1, 1), 2.0)]}, None, 3.0, False)
    assert out["output"][0] is out["output"][1] and float(shared[0, 0, 0, 0]) == 3.0  # scaled once
    assert float(own[0, 0, 0, 0]) == 3.0 and float(out["middle"][0].flatten()[0]) == 6.0
    prev = {"input": [torch.ones(1)], "middle": [None], "output": [torch.ones(1, 2, 2, 2), None, None, torch.zeros(1)]}
    out = _merge({"output": [None, torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2)]}, prev, 0.5, False)
    assert float(out["output"][0].flatten()[0]) == 1.0  # from the previous control only
    assert float(out["output"][1].flatten()[0]) == 0.5 and len(out["output"]) == 4 and out["input"] == prev["input"]
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    out = _merge({"output": [x]}, None, 2.0, True)  # shuffle ControlNets: spatial mean
    assert out["output"][0].flatten().tolist() == [3.0] * 4


def _with_neutral_freeu(p):
    """The same prompt with FreeU at factors 1 in front of the sampler: the patched block walk runs, the
    numbers stay (up to the Fourier filter's float rounding)."""
    p = dict(p)
    p["30"] = {"class_type": "FreeU", "inputs": {"model": ["1", 0], "b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0}}
    p["5"] = {**p["5"], "inputs": {**p["5"]["inputs"], "model": ["30", 0]}}
    return p


@pytest.mark.parametrize("ckpt,name", [("sd15.safetensors", "control_tiny.safetensors"),
                                       ("sd15_4l.safetensors", "t2i_full.safetensors"),
                                       ("sd15_4l.safetensors", "t2i_light.safetensors")])
def test_controls_also_steer_a_patched_model(h, ckpt, name):
    plain = latent(h, prompt(ckpt))
    controlled = latent(h, prompt(ckpt, controls=[(name, 1.0, 0.0, 1.0)]))
    patched = latent(h, _with_neutral_freeu(prompt(ckpt, controls=[(name, 1.0, 0.0, 1.0)])))
    assert (controlled - plain).abs().max() > 1e-3
    # latents here are ~100 in size: agreement to ~1e-5 relative is float rounding; no control gives ~1e-1
    assert torch.allclose(patched, controlled, atol=2e-3, rtol=1e-5), (patched - controlled).abs().max()
