"""Mask nodes run on small tensors; outputs checked for shape, dtype and values."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.nodes.conftest import run_node  # noqa: E402


def test_solid_invert_threshold(node_ctx):
    (solid,) = run_node(node_ctx, "SolidMask", value=0.25, width=6, height=4)
    assert solid.shape == (1, 4, 6) and solid.dtype == torch.float32
    assert torch.all(solid == 0.25)
    (inverted,) = run_node(node_ctx, "InvertMask", mask=solid)
    assert torch.allclose(inverted, torch.full((1, 4, 6), 0.75))
    ramp = torch.linspace(0, 1, 11).reshape(1, 1, 11)
    (binary,) = run_node(node_ctx, "ThresholdMask", mask=ramp, value=0.5)
    assert binary.dtype == torch.float32
    assert binary.flatten().tolist() == [0.0] * 6 + [1.0] * 5  # strictly greater than the value


def test_mask_image_conversions(node_ctx):
    mask = torch.rand(2, 5, 7)
    (image,) = run_node(node_ctx, "MaskToImage", mask=mask)
    assert image.shape == (2, 5, 7, 3)
    assert torch.equal(image[..., 1], mask)
    rgba = torch.rand(1, 3, 4, 4)
    for index, channel in enumerate(["red", "green", "blue", "alpha"]):
        (out,) = run_node(node_ctx, "ImageToMask", image=rgba, channel=channel)
        assert out.shape == (1, 3, 4) and torch.equal(out, rgba[..., index])
    with pytest.raises(ValueError):
        run_node(node_ctx, "ImageToMask", image=rgba[..., :3], channel="alpha")


def test_image_color_to_mask(node_ctx):
    image = torch.zeros(1, 2, 2, 3)
    image[0, 0, 0] = torch.tensor([1.0, 0.0, 128 / 255])
    image[0, 1, 1] = torch.tensor([1.0, 0.0, 127 / 255])
    (mask,) = run_node(node_ctx, "ImageColorToMask", image=image, color=0xFF0080)
    assert mask.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
    (black,) = run_node(node_ctx, "ImageColorToMask", image=image, color=0)
    assert black.tolist() == [[[0.0, 1.0], [1.0, 0.0]]]


def test_crop_mask(node_ctx):
    mask = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(2, 6, 8)
    (out,) = run_node(node_ctx, "CropMask", mask=mask, x=2, y=1, width=3, height=10)
    assert out.shape == (2, 5, 3)  # clipped at the bottom edge
    assert torch.equal(out, mask[:, 1:, 2:5])


@pytest.mark.parametrize("operation,expected", [
    ("multiply", 0.6 * 0.8), ("add", 1.0), ("subtract", 0.0), ("and", 1.0), ("or", 1.0), ("xor", 0.0)])
def test_mask_composite(node_ctx, operation, expected):
    destination = torch.full((1, 4, 4), 0.6)
    source = torch.full((1, 2, 3), 0.8)
    (out,) = run_node(node_ctx, "MaskComposite", destination=destination, source=source, x=2, y=1,
                      operation=operation)
    assert out.shape == (1, 4, 4)
    region = out[:, 1:3, 2:4]  # the source is clipped at the right edge
    assert torch.allclose(region, torch.full_like(region, expected))
    outside = out.clone()
    outside[:, 1:3, 2:4] = 0.6
    assert torch.allclose(outside, destination)
    # off the mask: nothing changes
    (same,) = run_node(node_ctx, "MaskComposite", destination=destination, source=source, x=9, y=9,
                       operation=operation)
    assert torch.equal(same, destination)


def test_feather_mask(node_ctx):
    mask = torch.ones(1, 4, 6)
    (left,) = run_node(node_ctx, "FeatherMask", mask=mask, left=3, top=0, right=0, bottom=0)
    assert torch.allclose(left[0, 0], torch.tensor([1 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0]))
    (top,) = run_node(node_ctx, "FeatherMask", mask=mask, left=0, top=2, right=0, bottom=0)
    assert torch.allclose(top[0, :, 0], torch.tensor([0.5, 1.0, 1.0, 1.0]))
    # ComfyUI's right/bottom ramps index column -i for i = 0..n-1: the first column gets 1/n and the
    # last 2/n; kept so the same workflow gives the same mask.
    (right,) = run_node(node_ctx, "FeatherMask", mask=mask, left=0, top=0, right=2, bottom=0)
    assert torch.allclose(right[0, 0], torch.tensor([0.5, 1.0, 1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(mask, torch.ones(1, 4, 6))  # input untouched


def _reference_grow(mask, expand, tapered):
    """Straightforward per-step grey dilation/erosion with edge-repeating borders."""
    out = mask.clone()
    offsets = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]
    if not tapered:
        offsets += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    h, w = mask.shape[-2:]
    for _ in range(abs(expand)):
        prev = out.clone()
        for i in range(h):
            for j in range(w):
                values = [prev[:, min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)] for di, dj in offsets]
                stacked = torch.stack(values)
                out[:, i, j] = stacked.amax(0) if expand > 0 else stacked.amin(0)
    return out


@pytest.mark.parametrize("expand", [0, 1, 2, -1, -2, 9])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_mask(node_ctx, expand, tapered):
    torch.manual_seed(expand + 10 * tapered)
    mask = (torch.rand(2, 7, 9) > 0.8).float() * torch.rand(2, 7, 9)
    (out,) = run_node(node_ctx, "GrowMask", mask=mask, expand=expand, tapered_corners=tapered)
    assert out.shape == (2, 7, 9) and out.dtype == torch.float32
    assert torch.allclose(out, _reference_grow(mask, expand, tapered))


def test_grow_mask_point(node_ctx):
    mask = torch.zeros(1, 7, 7)
    mask[0, 3, 3] = 1.0
    (diamond,) = run_node(node_ctx, "GrowMask", mask=mask, expand=2, tapered_corners=True)
    (square,) = run_node(node_ctx, "GrowMask", mask=mask, expand=2, tapered_corners=False)
    assert diamond.sum() == 13 and square.sum() == 25
    (back,) = run_node(node_ctx, "GrowMask", mask=square, expand=-2, tapered_corners=False)
    assert torch.equal(back, mask)


def test_image_composite_masked(node_ctx):
    destination = torch.zeros(1, 6, 8, 3)
    source = torch.ones(1, 3, 4, 3)
    (out,) = run_node(node_ctx, "ImageCompositeMasked", destination=destination, source=source, x=6, y=2,
                      resize_source=False)
    assert out.shape == (1, 6, 8, 3)
    assert out[0, 2:5, 6:8].eq(1).all() and out.sum() == 3 * 2 * 3
    assert destination.sum() == 0  # not modified in place
    mask = torch.zeros(3, 4)
    mask[:, :2] = 1.0
    (masked,) = run_node(node_ctx, "ImageCompositeMasked", destination=destination, source=source, x=0, y=0,
                         resize_source=False, mask=mask)
    assert masked[0, :3, :2].eq(1).all() and masked[0, :3, 2:].eq(0).all()
    (resized,) = run_node(node_ctx, "ImageCompositeMasked", destination=destination, source=source, x=0, y=0,
                          resize_source=True)
    assert resized.eq(1).all()
    # an RGBA source loses its alpha on an RGB destination; an RGB source on RGBA gets an opaque one
    (rgb,) = run_node(node_ctx, "ImageCompositeMasked", destination=destination, source=torch.ones(1, 2, 2, 4),
                      x=0, y=0, resize_source=False)
    assert rgb.shape == (1, 6, 8, 3)
    (rgba,) = run_node(node_ctx, "ImageCompositeMasked", destination=torch.zeros(1, 4, 4, 4),
                       source=torch.full((1, 2, 2, 3), 0.5), x=1, y=1, resize_source=False)
    assert rgba.shape == (1, 4, 4, 4) and rgba[:, 1:3, 1:3, 3].eq(1).all() and rgba[:, 1:3, 1:3, :3].eq(0.5).all()


def test_latent_composite_masked(node_ctx):
    destination = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [3, 4]}
    source = {"samples": torch.ones(1, 4, 2, 2)}
    (out,) = run_node(node_ctx, "LatentCompositeMasked", destination=destination, source=source, x=16, y=40,
                      resize_source=False)
    assert out["batch_index"] == [3, 4]
    assert out["samples"].shape == (2, 4, 8, 8)
    assert out["samples"][:, :, 5:7, 2:4].eq(1).all() and out["samples"].sum() == 2 * 4 * 4
    assert destination["samples"].sum() == 0
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    (half,) = run_node(node_ctx, "LatentCompositeMasked", destination=destination, source=source, x=0, y=0,
                       resize_source=False, mask=mask)
    assert half["samples"][:, :, 0:2, 0].eq(1).all() and half["samples"][:, :, 0:2, 1].eq(0).all()


def test_mask_preview_saves_temp_png(node_ctx):
    from PIL import Image

    mask = torch.zeros(2, 5, 6)
    mask[1] = 1.0
    result = run_node(node_ctx, "MaskPreview", mask=mask)
    images = result["ui"]["images"]
    assert [i["type"] for i in images] == ["temp", "temp"]
    with Image.open(node_ctx.folders.temp / images[1]["subfolder"] / images[1]["filename"]) as png:
        assert png.size == (6, 5) and png.convert("L").getpixel((0, 0)) == 255


def test_load_image_mask(node_ctx):
    from PIL import Image

    import numpy as np

    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 51
    Image.fromarray(rgba, "RGBA").save(node_ctx.folders.input / "m.png")
    Image.fromarray(rgba[..., :3], "RGB").save(node_ctx.folders.input / "rgb.png")
    (alpha,) = run_node(node_ctx, "LoadImageMask", image="m.png", channel="alpha")
    assert alpha.shape == (1, 4, 5) and alpha.dtype == torch.float32
    assert torch.allclose(alpha, torch.full((1, 4, 5), 0.8))  # 1 - 51/255
    (red,) = run_node(node_ctx, "LoadImageMask", image="m.png", channel="red")
    assert red.eq(1).all()
    (green,) = run_node(node_ctx, "LoadImageMask", image="m.png", channel="green")
    assert green.eq(0).all()
    (opaque,) = run_node(node_ctx, "LoadImageMask", image="rgb.png", channel="alpha")
    assert opaque.eq(0).all()
    cls = node_ctx.registry.get("LoadImageMask")
    assert cls.INPUT_TYPES()["required"]["image"][0] == ["m.png", "rgb.png"]
    assert cls.VALIDATE_INPUTS(image="m.png") is True
    assert cls.VALIDATE_INPUTS(image="missing.png") != True  # noqa: E712
    assert cls.VALIDATE_INPUTS(image="../escape.png") != True  # noqa: E712
    assert len(cls.IS_CHANGED(image="m.png", channel="red")) == 64
    with pytest.raises(FileNotFoundError):
        run_node(node_ctx, "LoadImageMask", image="missing.png", channel="red")
