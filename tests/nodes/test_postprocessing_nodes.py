"""Post-processing, morphology, YUV, Canny and compositing nodes on small images."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.nodes.conftest import run_node  # noqa: E402

BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_image_blend(node_ctx, mode):
    a, b = torch.full((1, 4, 4, 3), 0.2), torch.full((1, 4, 4, 3), 0.6)
    expected_mix = {"normal": 0.6, "multiply": 0.12, "screen": 1 - 0.8 * 0.4, "overlay": 2 * 0.2 * 0.6,
                    "soft_light": 0.2 + (2 * 0.6 - 1) * ((16 * 0.2 - 12) * 0.2 + 4) * 0.2 - (2 * 0.6 - 1) * 0.2,
                    "difference": 0.2 - 0.6}[mode]
    (out,) = run_node(node_ctx, "ImageBlend", image1=a, image2=b, blend_factor=0.5, blend_mode=mode)
    assert out.shape == (1, 4, 4, 3)
    assert torch.allclose(out, torch.tensor(min(max(0.5 * 0.2 + 0.5 * expected_mix, 0.0), 1.0)), atol=1e-6)
    (zero,) = run_node(node_ctx, "ImageBlend", image1=a, image2=b, blend_factor=0.0, blend_mode=mode)
    assert torch.allclose(zero, a)


def test_image_blend_resizes_and_matches_alpha(node_ctx):
    (out,) = run_node(node_ctx, "ImageBlend", image1=torch.zeros(2, 6, 8, 3), image2=torch.ones(1, 3, 4, 4),
                      blend_factor=1.0, blend_mode="normal")
    assert out.shape == (2, 6, 8, 3) and torch.allclose(out, torch.ones(2, 6, 8, 3))


def test_image_blur(node_ctx):
    flat = torch.full((1, 6, 6, 3), 0.4)
    (same,) = run_node(node_ctx, "ImageBlur", image=flat, blur_radius=2, sigma=1.0)
    assert torch.allclose(same, flat)
    dot = torch.zeros(1, 7, 7, 1)
    dot[0, 3, 3] = 1.0
    (blurred,) = run_node(node_ctx, "ImageBlur", image=dot, blur_radius=1, sigma=1.0)
    assert blurred.shape == (1, 7, 7, 1)
    assert torch.isclose(blurred.sum(), torch.tensor(1.0))  # energy kept away from the borders
    assert blurred[0, 3, 3, 0] < 1 and blurred[0, 2, 3, 0] > blurred[0, 2, 2, 0] > 0
    assert torch.allclose(blurred[0, :, :, 0], blurred[0, :, :, 0].t())


def test_image_sharpen(node_ctx):
    flat = torch.full((1, 6, 6, 3), 0.4)
    (same,) = run_node(node_ctx, "ImageSharpen", image=flat, sharpen_radius=1, sigma=1.0, alpha=1.0)
    assert torch.allclose(same, flat, atol=1e-6)
    step = torch.zeros(1, 6, 6, 1)
    step[:, :, 3:] = 0.5
    (sharp,) = run_node(node_ctx, "ImageSharpen", image=step, sharpen_radius=1, sigma=1.0, alpha=1.0)
    assert sharp[0, 0, 2, 0] == 0.0 and sharp[0, 0, 3, 0] > 0.5  # overshoot at the edge, clamped at 0
    assert 0 <= sharp.min() and sharp.max() <= 1
    (untouched,) = run_node(node_ctx, "ImageSharpen", image=step, sharpen_radius=1, sigma=1.0, alpha=0.0)
    assert torch.allclose(untouched, step)


@pytest.mark.parametrize("dither", ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"])
def test_image_quantize(node_ctx, dither):
    torch.manual_seed(1)
    image = torch.rand(2, 8, 10, 3)
    (out,) = run_node(node_ctx, "ImageQuantize", image=image, colors=4, dither=dither)
    assert out.shape == image.shape and out.dtype == torch.float32
    for b in range(2):
        assert len(torch.unique(out[b].reshape(-1, 3), dim=0)) <= 4
    (two,) = run_node(node_ctx, "ImageQuantize", image=torch.tensor([0.0, 1.0]).view(1, 1, 2, 1).expand(1, 1, 2, 3),
                      colors=2, dither=dither)
    assert two[0, 0].tolist() == [[0.0] * 3, [1.0] * 3]


def test_bayer_matrix():
    from hearth.nodes.builtin.postprocessing import _bayer_thresholds

    assert (_bayer_thresholds(2) * 4 + 2).tolist() == [[0.5, 2.5], [3.5, 1.5]]
    m = _bayer_thresholds(8)
    assert sorted(((m + 0.5) * 64 - 0.5).round().astype(int).flatten().tolist()) == list(range(64))


def test_canny(node_ctx):
    image = torch.zeros(1, 16, 16, 3)
    image[:, 4:12, 4:12] = 1.0
    (edges,) = run_node(node_ctx, "Canny", image=image, low_threshold=0.4, high_threshold=0.8)
    assert edges.shape == (1, 16, 16, 3) and edges.dtype == torch.float32
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    e = edges[0, :, :, 0]
    assert e[:, 0].sum() == 0 and e[7, 7] == 0  # nothing far from the square's outline
    assert e[7, 3:5].sum() == 1 and e[7, 11:13].sum() == 1 and e[3:5, 7].sum() == 1  # one-pixel-wide sides
    (none,) = run_node(node_ctx, "Canny", image=torch.full((1, 8, 8, 3), 0.5), low_threshold=0.1, high_threshold=0.2)
    assert none.sum() == 0
    with pytest.raises(ValueError):
        run_node(node_ctx, "Canny", image=image, low_threshold=0.8, high_threshold=0.4)


def test_canny_hysteresis():
    from hearth.nodes.builtin.postprocessing import canny

    # A band whose edges fade from strong at the top to nothing at the bottom, and a faint band whose
    # edge is weak everywhere.
    image = torch.zeros(1, 3, 32, 40)
    for row in range(32):
        image[0, :, row, 10:20] = 0.2 * (1 - row / 32)
    image[0, :, :, 30:] = 0.07

    def rows_per_column(low, high):
        counts = canny(image, low, high)[0, 0].sum(0)
        return {int(c): int(counts[c]) for c in counts.nonzero().flatten()}

    strong_only = rows_per_column(0.3, 0.3)
    tracked = rows_per_column(0.1, 0.3)
    assert set(strong_only) == set(tracked) == {10, 19}  # the faint band is weak and touches nothing strong
    assert tracked[10] > strong_only[10]  # weak pixels connected to strong ones survive
    assert rows_per_column(0.1, 0.15)[30] == 32  # with a lower high threshold the faint band is strong
    assert rows_per_column(0.1, 0.99) == {}


def _naive_window(image, size, reduce):
    """Reference: reduce over size x size windows (origin size // 2), ignoring pixels outside."""
    b, h, w, c = image.shape
    out = torch.empty_like(image)
    for i in range(h):
        for j in range(w):
            top, left = max(i - size // 2, 0), max(j - size // 2, 0)
            window = image[:, top:i - size // 2 + size, left:j - size // 2 + size]
            out[:, i, j] = reduce(window.reshape(b, -1, c), 1)
    return out


@pytest.mark.parametrize("size", [3, 4])
def test_morphology(node_ctx, size):
    torch.manual_seed(size)
    image = torch.rand(1, 7, 9, 3)
    dil = _naive_window(image, size, lambda t, d: t.amax(d))
    ero = _naive_window(image, size, lambda t, d: t.amin(d))
    results = {op: run_node(node_ctx, "Morphology", image=image, operation=op, kernel_size=size)[0]
               for op in ["erode", "dilate", "open", "close", "gradient", "top_hat", "bottom_hat"]}
    assert torch.allclose(results["dilate"], dil) and torch.allclose(results["erode"], ero)
    assert torch.allclose(results["gradient"], dil - ero)
    opened = _naive_window(ero, size, lambda t, d: t.amax(d))
    closed = _naive_window(dil, size, lambda t, d: t.amin(d))
    assert torch.allclose(results["open"], opened) and torch.allclose(results["close"], closed)
    assert torch.allclose(results["top_hat"], image - opened) and torch.allclose(results["bottom_hat"], closed - image)
    assert all(r.shape == image.shape for r in results.values())


def test_morphology_large_kernel(node_ctx):
    image = torch.zeros(1, 5, 5, 1)
    image[0, 2, 2] = 1.0
    (out,) = run_node(node_ctx, "Morphology", image=image, operation="dilate", kernel_size=999)
    assert out.eq(1).all()


def test_yuv_round_trip(node_ctx):
    torch.manual_seed(3)
    image = torch.rand(2, 4, 5, 3)
    y, u, v = run_node(node_ctx, "ImageRGBToYUV", image=image)
    assert y.shape == u.shape == v.shape == image.shape
    luma = 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]
    assert torch.allclose(y[..., 2], luma) and torch.allclose(u[..., 0], (image[..., 2] - luma) * 0.564 + 0.5)
    (rgb,) = run_node(node_ctx, "ImageYUVToRGB", Y=y, U=u, V=v)
    assert rgb.shape == image.shape and torch.allclose(rgb, image, atol=2e-3)
    gray = torch.full((1, 2, 2, 3), 0.3)
    y, u, v = run_node(node_ctx, "ImageRGBToYUV", image=gray)
    assert torch.allclose(u, torch.tensor(0.5)) and torch.allclose(v, torch.tensor(0.5))


# source colour 0.8 at alpha 0.5 with destination colour 0.2 at alpha 0.25 -> (colour, alpha)
PORTER_DUFF_CASES = [
    ("SRC", 0.8, 0.5), ("DST", 0.2, 0.25), ("CLEAR", 0.0, 0.0),
    ("SRC_OVER", (0.8 * 0.5 + 0.5 * 0.2 * 0.25) / 0.625, 0.625),
    ("DST_OVER", (0.2 * 0.25 + 0.75 * 0.8 * 0.5) / 0.625, 0.625), ("SRC_IN", 0.8, 0.125), ("DST_IN", 0.2, 0.125),
    ("SRC_OUT", 0.8, 0.375), ("DST_OUT", 0.2, 0.125), ("SRC_ATOP", (0.25 * 0.4 + 0.5 * 0.05) / 0.25, 0.25),
    ("DST_ATOP", (0.5 * 0.05 + 0.75 * 0.4) / 0.5, 0.5), ("XOR", (0.75 * 0.4 + 0.5 * 0.05) / 0.5, 0.5),
    ("ADD", (0.4 + 0.05) / 0.75, 0.75), ("MULTIPLY", 0.4 * 0.05 / 0.125, 0.125),
    ("SCREEN", (0.4 + 0.05 - 0.02) / 0.625, 0.625),
    ("DARKEN", (0.75 * 0.4 + 0.5 * 0.05 + 0.05) / 0.625, 0.625),
    ("LIGHTEN", (0.75 * 0.4 + 0.5 * 0.05 + 0.4) / 0.625, 0.625),
    ("OVERLAY", 2 * 0.4 * 0.05 / 0.625, 0.625),
]


@pytest.mark.parametrize("mode,color,alpha", PORTER_DUFF_CASES, ids=[case[0] for case in PORTER_DUFF_CASES])
def test_porter_duff(node_ctx, mode, color, alpha):
    source, destination = torch.full((1, 3, 3, 3), 0.8), torch.full((1, 3, 3, 3), 0.2)
    image, mask = run_node(node_ctx, "PorterDuffImageComposite", source=source,
                           source_alpha=torch.full((1, 3, 3), 0.5), destination=destination,
                           destination_alpha=torch.full((1, 3, 3), 0.75), mode=mode)
    assert image.shape == (1, 3, 3, 3) and mask.shape == (1, 3, 3)
    assert torch.allclose(image, torch.tensor(min(color, 1.0)), atol=1e-5)
    assert torch.allclose(mask, torch.tensor(1.0 - alpha), atol=1e-6)


def test_porter_duff_resizes_to_destination(node_ctx):
    image, mask = run_node(node_ctx, "PorterDuffImageComposite", source=torch.ones(2, 2, 2, 3),
                           source_alpha=torch.zeros(1, 4, 4), destination=torch.zeros(2, 6, 8, 3),
                           destination_alpha=torch.ones(2, 3, 3), mode="SRC_OVER")
    assert image.shape == (1, 6, 8, 3) and mask.shape == (1, 6, 8)  # the shortest batch wins
    assert torch.allclose(image, torch.ones(1, 6, 8, 3), atol=1e-5)
    assert torch.allclose(mask, torch.zeros(1, 6, 8), atol=1e-6)


def test_split_and_join_alpha(node_ctx):
    rgba = torch.rand(2, 3, 4, 4)
    rgb, mask = run_node(node_ctx, "SplitImageWithAlpha", image=rgba)
    assert torch.equal(rgb, rgba[..., :3]) and torch.allclose(mask, 1 - rgba[..., 3])
    (joined,) = run_node(node_ctx, "JoinImageWithAlpha", image=rgb, alpha=mask)
    assert joined.shape == (2, 3, 4, 4) and torch.allclose(joined, rgba, atol=1e-6)
    _, opaque = run_node(node_ctx, "SplitImageWithAlpha", image=rgb)
    assert opaque.eq(0).all()
    (resized,) = run_node(node_ctx, "JoinImageWithAlpha", image=rgb, alpha=torch.ones(1, 6, 8))
    assert resized.shape == (1, 3, 4, 4) and resized[..., 3].eq(0).all()
