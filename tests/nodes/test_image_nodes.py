"""Image nodes (scaling, batching, cropping, padding, stitching, saving …) run on small tensors."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from tests.nodes.conftest import run_node  # noqa: E402

METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]


def gradient_image(batch=1, height=8, width=12, channels=3):
    y = torch.linspace(0, 1, height).view(1, height, 1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width, 1)
    return ((x + y) / 2).expand(batch, height, width, channels).contiguous()


@pytest.mark.parametrize("method", METHODS)
def test_image_scale(node_ctx, method):
    image = gradient_image(2)
    (out,) = run_node(node_ctx, "ImageScale", image=image, upscale_method=method, width=24, height=4,
                      crop="disabled")
    assert out.shape == (2, 4, 24, 3) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    (keep,) = run_node(node_ctx, "ImageScale", image=image, upscale_method=method, width=0, height=16,
                       crop="disabled")
    assert keep.shape == (2, 16, 24, 3)  # width follows the aspect ratio
    (same,) = run_node(node_ctx, "ImageScale", image=image, upscale_method=method, width=0, height=0,
                       crop="disabled")
    assert same is image
    (by,) = run_node(node_ctx, "ImageScaleBy", image=image, upscale_method=method, scale_by=0.5)
    assert by.shape == (2, 4, 6, 3)


def test_image_scale_values(node_ctx):
    image = torch.zeros(1, 2, 2, 3)
    image[0, 0, 0] = 1.0
    (nearest,) = run_node(node_ctx, "ImageScaleBy", image=image, upscale_method="nearest-exact", scale_by=2.0)
    assert nearest[0, :2, :2].eq(1).all() and nearest[0, 2:].eq(0).all() and nearest[0, :, 2:].eq(0).all()
    # centre crop: a 4x2 image scaled to 2x2 keeps its middle rows
    tall = torch.arange(4, dtype=torch.float32).view(1, 4, 1, 1).expand(1, 4, 2, 3) / 3
    (cropped,) = run_node(node_ctx, "ImageScale", image=tall, upscale_method="nearest-exact", width=2, height=2,
                          crop="center")
    assert torch.allclose(cropped[0, :, 0, 0], torch.tensor([1 / 3, 2 / 3]))


def test_lanczos_matches_pillow(node_ctx):
    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    image = torch.rand(1, 9, 11, 3)
    (out,) = run_node(node_ctx, "ImageScale", image=image, upscale_method="lanczos", width=17, height=5,
                      crop="disabled")
    pil = Image.fromarray((image[0].numpy() * 255).clip(0, 255).astype(np.uint8)).resize((17, 5), Image.LANCZOS)
    assert torch.allclose(out[0], torch.from_numpy(np.asarray(pil).astype(np.float32) / 255))
    (gray,) = run_node(node_ctx, "ImageScale", image=image[..., :1], upscale_method="lanczos", width=6, height=6,
                       crop="disabled")
    assert gray.shape == (1, 6, 6, 1)


def test_scale_to_total_pixels_and_max_dimension(node_ctx):
    image = gradient_image(1, 100, 200)
    (out,) = run_node(node_ctx, "ImageScaleToTotalPixels", image=image, upscale_method="bilinear", megapixels=0.01)
    # 0.01 MP = 10485 pixels at 2:1 -> 145 x 72
    assert out.shape == (1, 72, 145, 3)
    (longest,) = run_node(node_ctx, "ImageScaleToMaxDimension", image=image, upscale_method="area", largest_size=50)
    assert longest.shape == (1, 25, 50, 3)
    (tall,) = run_node(node_ctx, "ImageScaleToMaxDimension", image=image.transpose(1, 2), upscale_method="lanczos",
                       largest_size=50)
    assert tall.shape == (1, 50, 25, 3)
    (square,) = run_node(node_ctx, "ImageScaleToMaxDimension", image=image[:, :50, :50], upscale_method="bicubic",
                         largest_size=10)
    assert square.shape == (1, 10, 10, 3)


def test_image_batch(node_ctx):
    a, b = gradient_image(2, 8, 8), torch.ones(1, 4, 6, 3)
    (out,) = run_node(node_ctx, "ImageBatch", image1=a, image2=b)
    assert out.shape == (3, 8, 8, 3) and torch.equal(out[:2], a) and torch.allclose(out[2], torch.ones(8, 8, 3))
    (repeated,) = run_node(node_ctx, "RepeatImageBatch", image=a, amount=3)
    assert repeated.shape == (6, 8, 8, 3) and torch.equal(repeated[4:], a)


def test_image_from_batch(node_ctx):
    batch = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 2, 2, 3)
    (out,) = run_node(node_ctx, "ImageFromBatch", image=batch, batch_index=1, length=2)
    assert out[:, 0, 0, 0].tolist() == [1.0, 2.0]
    (clamped,) = run_node(node_ctx, "ImageFromBatch", image=batch, batch_index=99, length=4)
    assert clamped[:, 0, 0, 0].tolist() == [4.0]


def test_image_crop(node_ctx):
    image = torch.arange(6 * 8, dtype=torch.float32).view(1, 6, 8, 1).expand(1, 6, 8, 3)
    (out,) = run_node(node_ctx, "ImageCrop", image=image, width=3, height=2, x=4, y=1)
    assert out.shape == (1, 2, 3, 3) and torch.equal(out, image[:, 1:3, 4:7])
    (edge,) = run_node(node_ctx, "ImageCrop", image=image, width=512, height=512, x=100, y=100)
    assert edge.shape == (1, 1, 1, 3) and edge[0, 0, 0, 0] == 47  # x, y clamp to the last pixel


def test_image_pad_for_outpaint(node_ctx):
    image = torch.ones(1, 10, 10, 3)
    out, mask = run_node(node_ctx, "ImagePadForOutpaint", image=image, left=4, top=0, right=0, bottom=2,
                         feathering=2)
    assert out.shape == (1, 12, 14, 3) and mask.shape == (1, 12, 14)
    assert out[0, :10, 4:].eq(1).all() and out[0, :, :4].eq(0.5).all() and out[0, 10:].eq(0.5).all()
    assert mask[0, :, :4].eq(1).all() and mask[0, 10:].eq(1).all()
    # inside: ((f - d) / f)^2 at distance d < f from a padded side; unpadded sides don't count
    assert mask[0, 0, 4] == 1.0 and mask[0, 0, 5] == 0.25 and mask[0, 0, 6] == 0.0
    assert mask[0, 9, 13] == 0.25 and mask[0, 8, 13] == 0.0 and mask[0, 0, 13] == 0.0
    _, no_feather = run_node(node_ctx, "ImagePadForOutpaint", image=image, left=8, top=8, right=8, bottom=8,
                             feathering=0)
    assert no_feather[0, 8:18, 8:18].eq(0).all() and no_feather.sum() == 26 * 26 - 100


def test_image_add_noise(node_ctx):
    image = torch.full((1, 4, 4, 3), 0.5)
    (a,) = run_node(node_ctx, "ImageAddNoise", image=image, seed=7, strength=0.3)
    (b,) = run_node(node_ctx, "ImageAddNoise", image=image, seed=7, strength=0.3)
    (c,) = run_node(node_ctx, "ImageAddNoise", image=image, seed=8, strength=0.3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    expected = torch.clamp(0.5 + 0.3 * torch.randn((1, 4, 4, 3), generator=torch.Generator().manual_seed(7)), 0, 1)
    assert torch.allclose(a, expected)
    (none,) = run_node(node_ctx, "ImageAddNoise", image=image, seed=7, strength=0.0)
    assert torch.equal(none, image)
    run_node(node_ctx, "ImageAddNoise", image=image, seed=0xFFFFFFFFFFFFFFFF, strength=0.1)


def test_image_rotate_flip(node_ctx):
    image = torch.arange(6, dtype=torch.float32).view(1, 2, 3, 1)
    (r90,) = run_node(node_ctx, "ImageRotate", image=image, rotation="90 degrees")
    assert r90[0, :, :, 0].tolist() == [[3.0, 0.0], [4.0, 1.0], [5.0, 2.0]]  # clockwise
    (r180,) = run_node(node_ctx, "ImageRotate", image=image, rotation="180 degrees")
    assert r180[0, :, :, 0].tolist() == [[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]
    (r270,) = run_node(node_ctx, "ImageRotate", image=image, rotation="270 degrees")
    assert r270[0, :, :, 0].tolist() == [[2.0, 5.0], [1.0, 4.0], [0.0, 3.0]]
    (none,) = run_node(node_ctx, "ImageRotate", image=image, rotation="none")
    assert torch.equal(none, image)
    (vertical,) = run_node(node_ctx, "ImageFlip", image=image, flip_method="x-axis: vertically")
    assert vertical[0, :, :, 0].tolist() == [[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]
    (horizontal,) = run_node(node_ctx, "ImageFlip", image=image, flip_method="y-axis: horizontally")
    assert horizontal[0, :, :, 0].tolist() == [[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]


def test_image_stitch(node_ctx):
    a = torch.zeros(1, 4, 6, 3)
    b = torch.ones(2, 2, 2, 3)
    (alone,) = run_node(node_ctx, "ImageStitch", image1=a, direction="right", match_image_size=True,
                        spacing_width=0, spacing_color="white")
    assert alone is a
    (right,) = run_node(node_ctx, "ImageStitch", image1=a, image2=b, direction="right", match_image_size=True,
                        spacing_width=2, spacing_color="red")
    assert right.shape == (2, 4, 6 + 2 + 4, 3)  # image2 scaled to height 4; batch follows the larger
    assert right[:, :, 6:8].tolist() == [[[[1.0, 0.0, 0.0]] * 2] * 4] * 2
    assert right[:, :, 8:].eq(1).all() and right[:, :, :6].eq(0).all()
    (up,) = run_node(node_ctx, "ImageStitch", image1=a, image2=b, direction="up", match_image_size=False,
                     spacing_width=3, spacing_color="white")
    assert up.shape == (2, 2 + 4 + 4, 6, 3)  # odd spacing rounds up to even
    assert up[:, :2, :2].eq(1).all() and up[:, :2, 2:4].eq(1).all() and up[:, :2, 4:].eq(1).all()  # white pad
    assert up[:, 6:].eq(0).all()
    (down,) = run_node(node_ctx, "ImageStitch", image1=a, image2=torch.ones(1, 2, 2, 4), direction="down",
                       match_image_size=False, spacing_width=0, spacing_color="black")
    assert down.shape == (1, 6, 6, 4) and down[0, :4, :, 3].eq(1).all()  # alpha added to image1


def test_resize_and_pad_image(node_ctx):
    image = torch.full((1, 10, 20, 3), 0.5)
    (out,) = run_node(node_ctx, "ResizeAndPadImage", image=image, target_width=8, target_height=8,
                      padding_color="black", interpolation="area")
    assert out.shape == (1, 8, 8, 3)
    assert out[0, 2:6].eq(0.5).all() and out[0, :2].eq(0).all() and out[0, 6:].eq(0).all()
    (white,) = run_node(node_ctx, "ResizeAndPadImage", image=image, target_width=40, target_height=30,
                        padding_color="white", interpolation="lanczos")
    assert white.shape == (1, 30, 40, 3) and white[0, :5].eq(1).all()
    assert torch.allclose(white[0, 5:25], torch.tensor(127 / 255))  # lanczos works on 8 bits, truncated


def test_get_image_size(node_ctx):
    image = torch.zeros(3, 5, 7, 3)
    assert run_node(node_ctx, "GetImageSize", image=image) == (7, 5, 3)
    assert run_node(node_ctx, "GetImageSize", image=image, unique_id="12") == (7, 5, 3)  # no prompt running


def test_get_image_size_shows_text_while_running(node_ctx):
    from hearth.engine import progress
    from hearth.engine.events import ProgressText

    events = []
    run = progress.RunState("p1", events.append, progress.Interrupt(), None)
    token = progress.bind(progress.NodeExecution("p1", "12", "12", None, "12", None, run))
    try:
        assert run_node(node_ctx, "GetImageSize", image=torch.zeros(2, 3, 4, 3), unique_id="12") == (4, 3, 2)
    finally:
        progress.unbind(token)
    assert events == [ProgressText("p1", "12", "width: 4, height: 3\n batch size: 2")]


def test_save_animated_png(node_ctx):
    from PIL import Image

    frames = torch.stack([torch.full((6, 5, 3), v) for v in (0.0, 0.5, 1.0)])
    result = run_node(node_ctx, "SaveAnimatedPNG", images=frames, fps=10.0, compress_level=1,
                      filename_prefix="anim/test", prompt={"1": {"class_type": "X"}},
                      extra_pnginfo={"workflow": {"a": 1}})
    (entry,) = result["ui"]["images"]
    assert result["ui"]["animated"] == (True,)
    assert entry["subfolder"] == "anim" and entry["type"] == "output" and entry["filename"] == "test_00001_.png"
    path = node_ctx.folders.output / "anim" / entry["filename"]
    with Image.open(path) as png:
        assert png.n_frames == 3 and png.size == (5, 6) and png.info.get("duration") == 100
        png.seek(2)
        assert png.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    data = path.read_bytes()
    assert b"comf" in data and b"prompt\x00" in data and b'workflow\x00{"a": 1}' in data
    again = run_node(node_ctx, "SaveAnimatedPNG", images=frames, fps=10.0, compress_level=1,
                     filename_prefix="anim/test")
    assert again["ui"]["images"][0]["filename"] == "test_00002_.png"


def test_save_animated_webp(node_ctx):
    from PIL import Image

    frames = torch.stack([torch.full((8, 8, 3), v) for v in (0.0, 1.0)])
    result = run_node(node_ctx, "SaveAnimatedWEBP", images=frames, fps=4.0, filename_prefix="w", lossless=True,
                      quality=80, method="fastest", prompt={"p": 1}, extra_pnginfo={"workflow": {"w": 2}})
    (entry,) = result["ui"]["images"]
    assert result["ui"]["animated"] == (True,)
    with Image.open(node_ctx.folders.output / entry["filename"]) as webp:
        assert webp.n_frames == 2 and webp.size == (8, 8)
        exif = webp.getexif()
        assert exif[0x0110] == 'prompt:{"p": 1}' and exif[0x010F] == 'workflow:{"w": 2}'
        webp.seek(1)
        assert webp.convert("RGB").getpixel((3, 3)) == (255, 255, 255)
    single = run_node(node_ctx, "SaveAnimatedWEBP", images=frames[:1], fps=4.0, filename_prefix="w", lossless=False,
                      quality=50, method="default")
    assert single["ui"]["animated"] == (False,) and single["ui"]["images"][0]["filename"] == "w_00002_.webp"


def test_save_svg(node_ctx):
    import io

    class SVG:
        def __init__(self, data):
            self.data = data

    svg = SVG([io.BytesIO(b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>'), io.BytesIO(b"<svg></svg>")])
    result = run_node(node_ctx, "SaveSVGNode", svg=svg, filename_prefix="svg/out", prompt={"1": 2})
    names = [entry["filename"] for entry in result["ui"]["images"]]
    assert names == ["out_00001_.svg", "out_00002_.svg"]
    text = (node_ctx.folders.output / "svg" / names[0]).read_text()
    assert text.startswith('<svg xmlns="http://www.w3.org/2000/svg">') and "<metadata>" in text and "<rect/>" in text
    start = text.index("<![CDATA[") + len("<![CDATA[")
    assert json.loads(text[start:text.index("]]>")]) == {"prompt": {"1": 2}}


def test_save_respects_disable_metadata(node_ctx):
    node_ctx.config.disable_metadata = True
    frames = torch.zeros(2, 4, 4, 3)
    result = run_node(node_ctx, "SaveAnimatedPNG", images=frames, fps=1.0, compress_level=0, prompt={"x": 1})
    data = (node_ctx.folders.output / result["ui"]["images"][0]["filename"]).read_bytes()
    assert b"comf" not in data


def test_load_image_output(node_ctx):
    from PIL import Image

    Image.new("RGB", (5, 3), (255, 0, 0)).save(node_ctx.folders.output / "result.png")
    image, mask = run_node(node_ctx, "LoadImageOutput", image="result.png [output]")
    assert image.shape == (1, 3, 5, 3) and image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert mask.shape == (1, 64, 64)
    cls = node_ctx.registry.get("LoadImageOutput")
    assert cls.VALIDATE_INPUTS(image="result.png [output]") is True
    assert cls.VALIDATE_INPUTS(image="result.png") != True  # noqa: E712  (plain names are in input/)
