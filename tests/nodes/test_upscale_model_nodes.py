"""UpscaleModelLoader / ImageUpscaleWithModel: tiny random-weight ESRGAN files written in the three RRDBNet
key layouts (original ESRGAN "model.N", BasicSR/Real-ESRGAN "conv_first/body.N.rdbK", BSRGAN "RRDB_trunk")
and a Real-ESRGAN Compact file, loaded and run through the engine."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from tests.nodes.conftest import run_node  # noqa: E402

NF, GC, NB = 8, 32, 2  # growth channels: every published RRDBNet (and spandrel) uses 32


def _rrdb_weights(seed: int, in_nc: int = 3, out_nc: int = 3, n_up: int = 2) -> dict[str, torch.Tensor]:
    """Weights by role: ("first"|"body_conv"|"hr"|"last"|("up", i)|("rdb", block, k, conv), kind) -> tensor."""
    g = torch.Generator().manual_seed(seed)

    def conv(cin, cout, std):
        return torch.randn(cout, cin, 3, 3, generator=g) * std, torch.randn(cout, generator=g) * 0.01

    w = {}
    w["first"] = conv(in_nc, NF, 0.2)
    for b in range(NB):
        for k in (1, 2, 3):
            for c in range(1, 6):
                cin = NF + (c - 1) * GC
                w[("rdb", b, k, c)] = conv(cin, NF if c == 5 else GC, 0.05)
    w["body_conv"] = conv(NF, NF, 0.1)
    for i in range(n_up):
        w[("up", i)] = conv(NF, NF, 0.1)
    w["hr"] = conv(NF, NF, 0.1)
    weight, bias = conv(NF, out_nc, 0.1)
    w["last"] = (weight, bias + 0.5)  # outputs mostly inside 0..1, so the clamp hides little
    return w


def layout_new(w) -> dict[str, torch.Tensor]:
    """BasicSR / Real-ESRGAN names."""
    sd = {}
    for role, (weight, bias) in w.items():
        if role == "first":
            name = "conv_first"
        elif role == "body_conv":
            name = "conv_body"
        elif role == "hr":
            name = "conv_hr"
        elif role == "last":
            name = "conv_last"
        elif role[0] == "up":
            name = f"conv_up{role[1] + 1}"
        else:
            name = f"body.{role[1]}.rdb{role[2]}.conv{role[3]}"
        sd[f"{name}.weight"], sd[f"{name}.bias"] = weight, bias
    return sd


def layout_old(w) -> dict[str, torch.Tensor]:
    """The original ESRGAN repository's sequential names."""
    n_up = sum(1 for r in w if isinstance(r, tuple) and r[0] == "up")
    hr = 2 + 3 * n_up
    sd = {}
    for role, (weight, bias) in w.items():
        if role == "first":
            name = "model.0"
        elif role == "body_conv":
            name = f"model.1.sub.{NB}"
        elif role == "hr":
            name = f"model.{hr}"
        elif role == "last":
            name = f"model.{hr + 2}"
        elif role[0] == "up":
            name = f"model.{3 + 3 * role[1]}"
        else:
            name = f"model.1.sub.{role[1]}.RDB{role[2]}.conv{role[3]}.0"
        sd[f"{name}.weight"], sd[f"{name}.bias"] = weight, bias
    return sd


def layout_bsrgan(w) -> dict[str, torch.Tensor]:
    sd = {}
    for key, value in layout_new(w).items():
        key = (key.replace("conv_body", "trunk_conv").replace("conv_hr", "HRconv").replace("conv_up", "upconv"))
        if key.startswith("body."):
            parts = key.split(".")
            key = f"RRDB_trunk.{parts[1]}.RDB{parts[2][3:]}.{parts[3]}.{parts[4]}"
        sd[key] = value
    return sd


def compact_weights(seed: int, scale: int = 2, num_conv: int = 2, nf: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {"body.0.weight": torch.randn(nf, 3, 3, 3, generator=g) * 0.2, "body.0.bias": torch.zeros(nf),
          "body.1.weight": torch.full((nf,), 0.25)}
    i = 2
    for _ in range(num_conv):
        sd[f"body.{i}.weight"] = torch.randn(nf, nf, 3, 3, generator=g) * 0.1
        sd[f"body.{i}.bias"] = torch.zeros(nf)
        sd[f"body.{i + 1}.weight"] = torch.full((nf,), 0.25)
        i += 2
    sd[f"body.{i}.weight"] = torch.randn(3 * scale * scale, nf, 3, 3, generator=g) * 0.1
    sd[f"body.{i}.bias"] = torch.zeros(3 * scale * scale)
    return sd


@pytest.fixture
def upscale_dir(node_ctx):
    folder = node_ctx.folders.folder("upscale_models").paths[0]
    folder.mkdir(parents=True, exist_ok=True)
    w4 = _rrdb_weights(1)
    save_file(layout_new(w4), str(folder / "esrgan_new_x4.safetensors"))
    torch.save(layout_old(w4), str(folder / "esrgan_old_x4.pth"))
    torch.save({"params_ema": layout_bsrgan(w4)}, str(folder / "bsrgan_x4.pth"))
    save_file(layout_new(_rrdb_weights(2, n_up=1)), str(folder / "esrgan_x2.safetensors"))
    save_file(layout_old(_rrdb_weights(3, n_up=3)), str(folder / "esrgan_old_x8.safetensors"))
    save_file(layout_old(_rrdb_weights(3, n_up=0)), str(folder / "esrgan_old_x1.safetensors"))
    # Real-ESRGAN x2: pixel-unshuffled input (12 channels), the network's own 4x
    torch.save({"params_ema": layout_new(_rrdb_weights(4, in_nc=12))}, str(folder / "realesrgan_x2plus.pth"))
    save_file(compact_weights(5), str(folder / "compact_x2.safetensors"))
    return folder


def _image(h=20, w=24, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, h, w, 3, generator=g)


def _load(ctx, name):
    return run_node(ctx, "UpscaleModelLoader", model_name=name)[0]


def test_listing_and_node_info(node_ctx, upscale_dir):
    info = node_ctx.registry.node_info("UpscaleModelLoader")
    options = info["input"]["required"]["model_name"][1]["options"]
    assert "esrgan_new_x4.safetensors" in options and "esrgan_old_x4.pth" in options


@pytest.mark.parametrize("name,scale", [("esrgan_new_x4.safetensors", 4), ("esrgan_old_x4.pth", 4),
                                        ("bsrgan_x4.pth", 4), ("esrgan_x2.safetensors", 2),
                                        ("esrgan_old_x8.safetensors", 8), ("esrgan_old_x1.safetensors", 1),
                                        ("realesrgan_x2plus.pth", 2), ("compact_x2.safetensors", 2)])
def test_output_is_scale_times_input(node_ctx, upscale_dir, name, scale):
    model = _load(node_ctx, name)
    assert model.scale == scale
    image = _image(h=9, w=10, batch=2)  # odd sizes: the unshuffle model pads to a multiple of 4
    (out,) = run_node(node_ctx, "ImageUpscaleWithModel", upscale_model=model, image=image)
    assert out.shape == (2, 9 * scale, 10 * scale, 3) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0.01


def test_key_layouts_give_the_same_network(node_ctx, upscale_dir):
    image = _image(h=10, w=12)
    outs = [run_node(node_ctx, "ImageUpscaleWithModel", upscale_model=_load(node_ctx, n), image=image)[0]
            for n in ("esrgan_new_x4.safetensors", "esrgan_old_x4.pth", "bsrgan_x4.pth")]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.testing.assert_close(outs[0], outs[2], rtol=0, atol=0)


def test_native_network_matches_reference_values(node_ctx, upscale_dir):
    """Values measured once with spandrel 0.4.2 (what ComfyUI uses) on the same files and input, so the
    hand-written networks compute what the published architectures compute."""
    from hearth.runtime.upscale import load_upscale_model

    g = torch.Generator().manual_seed(42)
    pixels = torch.rand(1, 3, 8, 10, generator=g)
    for name, expected in REFERENCE.items():
        model = load_upscale_model(upscale_dir / name, use_spandrel=False)
        out = model(pixels)
        got = [round(float(out.mean()), 5), round(float(out[0, 0, 3, 5]), 5), round(float(out[0, 2, -1, -1]), 5)]
        assert got == pytest.approx(expected, abs=2e-5), name


# (mean, out[0,0,3,5], out[0,2,-1,-1]) from spandrel 0.4.2 (ImageModelDescriptor.__call__), input as above.
# Measured with ComfyUI 0.3.64's venv (spandrel 0.4.2, torch 2.14); its full ImageUpscaleWithModel node also
# gave bit-identical images to Hearth's on a 530x600 input (two tiles each way) and on a 13x18 one.
REFERENCE: dict[str, list[float]] = {
    "bsrgan_x4.pth": [0.48675, 0.37782, 0.5171],
    "compact_x2.safetensors": [0.48189, 0.66867, 0.05563],
    "esrgan_new_x4.safetensors": [0.48675, 0.37782, 0.5171],
    "esrgan_old_x1.safetensors": [0.56335, 0.37275, 0.55211],
    "esrgan_old_x4.pth": [0.48675, 0.37782, 0.5171],
    "esrgan_old_x8.safetensors": [0.48476, 0.43521, 0.49753],
    "esrgan_x2.safetensors": [0.46534, 0.73395, 0.42422],
    "realesrgan_x2plus.pth": [0.57458, 0.48999, 0.57556],
}


def test_tiled_equals_single_tile(node_ctx, upscale_dir):
    from hearth.runtime.upscale import upscale_image

    model = _load(node_ctx, "esrgan_x2.safetensors")
    image = _image(h=32, w=40, seed=3)
    whole = upscale_image(model, image, tile=512, overlap=32)
    calls = []
    tiled = upscale_image(model, image, tile=24, overlap=8, progress=lambda d, t: calls.append((d, t)))
    assert tiled.shape == whole.shape == (1, 64, 80, 3)
    # overlapping tiles see less context at their borders: close, not identical
    assert (tiled - whole).abs().mean() < 0.02
    total = math.ceil((32 - 8) / (24 - 8)) * math.ceil((40 - 8) / (24 - 8))
    assert calls == [(i + 1, total) for i in range(total)]


def test_out_of_memory_halves_the_tile(node_ctx, upscale_dir, monkeypatch):
    from hearth.runtime import upscale

    model = _load(node_ctx, "compact_x2.safetensors")
    sizes = []
    real = model.model.forward

    def forward(x):
        sizes.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 256:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(x)

    monkeypatch.setattr(model.model, "forward", forward)
    out = upscale.upscale_image(model, _image(h=300, w=300), tile=512, overlap=32)
    assert out.shape == (1, 600, 600, 3)
    assert sizes[0] == 300 and max(sizes[1:]) == 256  # 512 failed, then 256-pixel tiles

    sizes.clear()
    monkeypatch.setattr(upscale, "MIN_TILE", 300)  # 256 would be too small now
    with pytest.raises(torch.cuda.OutOfMemoryError):
        upscale.upscale_image(model, _image(h=300, w=300), tile=512, overlap=32)


def test_engine_runs_loader_and_upscale(tmp_path):
    from tests.runtime.conftest import make_harness

    h = make_harness(tmp_path)
    folder = tmp_path / "models" / "upscale_models"
    folder.mkdir(parents=True, exist_ok=True)
    save_file(layout_new(_rrdb_weights(2, n_up=1)), str(folder / "x2.safetensors"))
    prompt = {
        "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "x2.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 20, "height": 12, "batch_size": 1, "color": 0x336699}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "up"}},
    }
    outcome = h.run(prompt)
    entry = outcome.outputs["4"]["images"][0]
    from PIL import Image

    with Image.open(h.folders.output / entry["subfolder"] / entry["filename"]) as img:
        assert img.size == (40, 24)
    assert any(type(e).__name__ == "Progress" and e.node == "3" for e in h.events)


def test_garbage_and_hostile_files_are_refused(node_ctx, upscale_dir):
    from hearth.runtime.files import WeightFileError

    (upscale_dir / "garbage.pth").write_bytes(b"\x00not a pickle at all" * 10)
    (upscale_dir / "garbage.safetensors").write_bytes(b"\xff" * 64)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    (upscale_dir / "evil.pth").write_bytes(pickle.dumps({"model.0.weight": Evil()}))
    save_file({"some.other.weight": torch.zeros(3, 3)}, str(upscale_dir / "unknown.safetensors"))
    save_file({"model.0.weight": torch.zeros(3, 3)}, str(upscale_dir / "truncated_esrgan.safetensors"))
    for name in ("garbage.pth", "garbage.safetensors", "evil.pth", "unknown.safetensors",
                 "truncated_esrgan.safetensors"):
        with pytest.raises(WeightFileError):
            _load(node_ctx, name)
    with pytest.raises(WeightFileError, match=r"hearth\[upscale\]"):
        from hearth.runtime.upscale import load_upscale_model

        load_upscale_model(upscale_dir / "unknown.safetensors", use_spandrel=False)
    with pytest.raises(FileNotFoundError):
        _load(node_ctx, "../../etc/passwd")
    with pytest.raises(FileNotFoundError):
        _load(node_ctx, "missing.pth")


def test_wrong_channel_count_is_a_clear_error(node_ctx, upscale_dir):
    model = _load(node_ctx, "compact_x2.safetensors")
    with pytest.raises(ValueError, match="channel"):
        run_node(node_ctx, "ImageUpscaleWithModel", upscale_model=model, image=torch.rand(1, 8, 8, 4))


def test_hostile_sizes_are_checked_before_building(node_ctx, upscale_dir):
    """A file that names block 99999, or claims a huge width through one tensor, is refused without
    building (and allocating) the network it describes."""
    from hearth.runtime.files import WeightFileError

    sd = layout_new(_rrdb_weights(1))
    sd["body.99999.rdb1.conv1.weight"] = torch.zeros(GC, NF, 3, 3)
    save_file(sd, str(upscale_dir / "many_blocks.safetensors"))
    sd = layout_new(_rrdb_weights(1))
    sd["conv_body.weight"] = torch.zeros(1, 1, 1, 1)
    save_file(sd, str(upscale_dir / "bad_shape.safetensors"))
    sd = layout_new(_rrdb_weights(1))
    sd["conv_first.weight"] = torch.zeros(100000, 3, 3, 3)  # nf=100000 would mean terabytes of body weights
    sd["conv_first.bias"] = torch.zeros(100000)
    save_file(sd, str(upscale_dir / "wide.safetensors"))
    from hearth.runtime.upscale import load_upscale_model

    for name in ("many_blocks.safetensors", "bad_shape.safetensors", "wide.safetensors"):
        with pytest.raises(WeightFileError):
            load_upscale_model(upscale_dir / name, use_spandrel=False)


def test_spandrel_and_native_agree(node_ctx, upscale_dir):
    """With the optional extra installed, files load through spandrel; Hearth's own networks give the same
    pixels (skipped where spandrel is not installed)."""
    pytest.importorskip("spandrel")
    from hearth.runtime.upscale import load_upscale_model, upscale_image

    image = _image(h=9, w=10)
    for name in ("esrgan_old_x4.pth", "realesrgan_x2plus.pth", "compact_x2.safetensors"):
        via_spandrel = load_upscale_model(upscale_dir / name)
        assert via_spandrel.descriptor is not None
        native = load_upscale_model(upscale_dir / name, use_spandrel=False)
        torch.testing.assert_close(upscale_image(via_spandrel, image), upscale_image(native, image))
