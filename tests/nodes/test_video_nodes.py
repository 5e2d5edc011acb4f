"""Video nodes: frames -> CreateVideo -> SaveVideo (mp4/h264) / SaveWEBM (vp9, av1) -> LoadVideo ->
GetVideoComponents, with audio, metadata, file naming and bad input; plus full engine runs."""
from __future__ import annotations

import math
import shutil

import pytest

torch = pytest.importorskip("torch")
av = pytest.importorskip("av")

from tests.nodes.conftest import run_node  # noqa: E402

FPS = 24.0


def _frames(n=10, h=48, w=64):
    """Smooth moving gradients: lossy codecs keep them close to the source."""
    ys = torch.linspace(0, 1, h)[:, None].expand(h, w)
    xs = torch.linspace(0, 1, w)[None, :].expand(h, w)
    return torch.stack([torch.stack([(xs + i / n) % 1.0, ys, torch.full((h, w), 0.25 + 0.05 * i)], dim=-1)
                        for i in range(n)])


def _stereo(seconds=1.0, sample_rate=16000):
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    wave = torch.stack([torch.sin(2 * math.pi * 440 * t), torch.sin(2 * math.pi * 660 * t)])[None] * 0.5
    return {"waveform": wave, "sample_rate": sample_rate}


def _saved_path(ctx, ui):
    entry = ui["ui"]["images"][0]
    return ctx.folders.output / entry["subfolder"] / entry["filename"]


def _load_components(ctx, name):
    (video,) = run_node(ctx, "LoadVideo", file=name)
    return run_node(ctx, "GetVideoComponents", video=video)


def test_mp4_round_trip_with_audio(node_ctx):
    frames, audio = _frames(), _stereo()
    (video,) = run_node(node_ctx, "CreateVideo", images=frames, fps=FPS, audio=audio)
    assert video.get_dimensions() == (64, 48)
    ui = run_node(node_ctx, "SaveVideo", video=video, filename_prefix="video/ComfyUI", format="auto", codec="auto",
                  prompt={"1": {"class_type": "CreateVideo"}}, extra_pnginfo={"workflow": {"nodes": []}})
    # ComfyUI's PreviewVideo output shape
    assert ui == {"ui": {"images": [{"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}],
                         "animated": (True,)}}
    path = _saved_path(node_ctx, ui)
    assert path.is_file() and path.parent.parent == node_ctx.folders.output

    shutil.copy(path, node_ctx.folders.input / "clip.mp4")
    (node_ctx.folders.input / "notes.txt").write_text("not a video")
    options = node_ctx.registry.node_info("LoadVideo")["input"]["required"]["file"][1]
    assert options["options"] == ["clip.mp4"] and options["video_upload"] is True

    images, sound, fps = _load_components(node_ctx, "clip.mp4")
    assert images.shape == frames.shape and images.dtype == torch.float32
    assert fps == FPS and isinstance(fps, float)
    assert (images - frames).abs().mean() < 0.03
    # AAC: same rate and channels, cut to the video's length (plus the codec's last partial frame)
    assert sound["sample_rate"] == 16000 and sound["waveform"].shape[:2] == (1, 2)
    expected = math.ceil(16000 / FPS * len(frames))
    assert expected <= sound["waveform"].shape[2] <= expected + 2048
    for channel in range(2):
        pair = torch.stack([audio["waveform"][0, channel, :6000], sound["waveform"][0, channel, :6000]])
        assert torch.corrcoef(pair)[0, 1] > 0.99

    with av.open(str(path)) as container:
        assert container.streams.video[0].codec.name == "h264"
        assert container.metadata["prompt"] == '{"1": {"class_type": "CreateVideo"}}'
        assert container.metadata["workflow"] == '{"nodes": []}'


def test_webm_round_trip_and_counter(node_ctx):
    frames = _frames(n=6, h=40, w=56)
    first = run_node(node_ctx, "SaveWEBM", images=frames, filename_prefix="anim", codec="vp9", fps=12.5, crf=20.0,
                     prompt={"p": 1}, extra_pnginfo={"workflow": {"w": 2}})
    assert first == {"ui": {"images": [{"filename": "anim_00001_.webm", "subfolder": "", "type": "output"}],
                            "animated": (True,)}}
    second = run_node(node_ctx, "SaveWEBM", images=frames, filename_prefix="anim", codec="vp9", fps=12.5, crf=20.0)
    assert second["ui"]["images"][0]["filename"] == "anim_00002_.webm"
    path = _saved_path(node_ctx, first)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec.name == "vp9"
        tags = {k.lower(): v for k, v in container.metadata.items()}  # Matroska upper-cases tag names
        assert tags["prompt"] == '{"p": 1}' and tags["workflow"] == '{"w": 2}'
    images, sound, fps = _load_components(node_ctx, "anim_00001_.webm [output]")
    assert images.shape == frames.shape and fps == 12.5 and sound is None
    assert (images - frames).abs().mean() < 0.03

    # a loaded WEBM saved again with format "auto": its VP9 stream is copied into the .mp4, not re-encoded
    (video,) = run_node(node_ctx, "LoadVideo", file="anim_00001_.webm [output]")
    ui = run_node(node_ctx, "SaveVideo", video=video, filename_prefix="again", format="auto", codec="auto")
    with av.open(str(_saved_path(node_ctx, ui))) as container:
        assert container.streams.video[0].codec.name == "vp9" and container.streams.video[0].frames == 6
    # another container (mp4 is not "matroska,webm") or codec re-encodes, to H.264
    ui = run_node(node_ctx, "SaveVideo", video=video, filename_prefix="again", format="mp4", codec="auto")
    assert ui["ui"]["images"][0]["filename"] == "again_00002_.mp4"
    with av.open(str(_saved_path(node_ctx, ui))) as container:
        assert container.streams.video[0].codec.name == "h264"


def test_webm_av1(node_ctx):
    frames = _frames(n=3, h=32, w=32)
    ui = run_node(node_ctx, "SaveWEBM", images=frames, filename_prefix="av1", codec="av1", fps=8.0, crf=32.0)
    images, _, fps = _load_components(node_ctx, ui["ui"]["images"][0]["filename"] + " [output]")
    assert images.shape == frames.shape and fps == 8.0


def test_disable_metadata(tmp_path):
    from hearth.nodes.context import using
    from tests.nodes.conftest import make_node_ctx

    ctx = make_node_ctx(tmp_path, "--disable-metadata")
    with using(ctx):
        (video,) = run_node(ctx, "CreateVideo", images=_frames(n=2), fps=10.0)
        ui = run_node(ctx, "SaveVideo", video=video, filename_prefix="v", format="mp4", codec="h264",
                      prompt={"a": 1}, extra_pnginfo={"workflow": {}})
        webm = run_node(ctx, "SaveWEBM", images=_frames(n=2), filename_prefix="w", codec="vp9", fps=10.0,
                        crf=32.0, prompt={"a": 1})
    for saved in (ui, webm):
        with av.open(str(_saved_path(ctx, saved))) as container:
            assert "prompt" not in {k.lower() for k in container.metadata}


def test_bad_input_is_refused_clearly(node_ctx):
    from hearth.media.video import VideoError
    from hearth.paths import SaveOutsideFolder

    (node_ctx.folders.input / "fake.mp4").write_bytes(b"this is text, not a video" * 20)
    (node_ctx.folders.input / "notes.txt").write_text("hello")
    for name in ("fake.mp4", "notes.txt"):
        with pytest.raises(VideoError, match="not a video file"):
            run_node(node_ctx, "LoadVideo", file=name)
    with pytest.raises(FileNotFoundError):
        run_node(node_ctx, "LoadVideo", file="missing.mp4")
    cls = node_ctx.registry.get("LoadVideo")
    assert cls.VALIDATE_INPUTS(file="../../etc/passwd") == "Invalid video file: ../../etc/passwd"
    assert cls.VALIDATE_INPUTS(file="fake.mp4") is True

    (video,) = run_node(node_ctx, "CreateVideo", images=_frames(n=2, h=15, w=20), fps=10.0)
    with pytest.raises(VideoError, match="even width and height"):
        run_node(node_ctx, "SaveVideo", video=video, filename_prefix="odd", format="auto", codec="auto")
    (video,) = run_node(node_ctx, "CreateVideo", images=_frames(n=2), fps=10.0)
    with pytest.raises(SaveOutsideFolder):
        run_node(node_ctx, "SaveVideo", video=video, filename_prefix="../../escape", format="auto", codec="auto")
    with pytest.raises(SaveOutsideFolder):
        run_node(node_ctx, "SaveWEBM", images=_frames(n=2), filename_prefix="/tmp/escape", codec="vp9", fps=10.0,
                 crf=32.0)
    with pytest.raises(VideoError):
        run_node(node_ctx, "CreateVideo", images=_frames(n=2), fps=10.0)[0].save_to(
            str(node_ctx.folders.output / "x.mkv"), format="mkv")
    assert not list(node_ctx.folders.output.rglob("*escape*"))


def test_engine_save_then_load(tmp_path):
    from tests.runtime.conftest import make_harness

    h = make_harness(tmp_path)
    save = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": 5, "color": 0x3366CC}},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 10.0}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "video/run",
                                                    "format": "auto", "codec": "auto"}},
        "4": {"class_type": "SaveWEBM", "inputs": {"images": ["1", 0], "filename_prefix": "run", "codec": "vp9",
                                                   "fps": 10.0, "crf": 32.0}},
    }
    outcome = h.run(save)
    assert outcome.outputs["3"]["images"][0]["filename"] == "run_00001_.mp4"
    assert outcome.outputs["3"]["animated"] == [True] or outcome.outputs["3"]["animated"] == (True,)
    assert (h.folders.output / "video" / "run_00001_.mp4").is_file()
    assert (h.folders.output / "run_00001_.webm").is_file()

    shutil.copy(h.folders.output / "video" / "run_00001_.mp4", h.folders.input / "in.mp4")
    load = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "in.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "frame"}},
    }
    outcome = h.run(load)
    saved = outcome.outputs["3"]["images"]
    assert len(saved) == 5
    from PIL import Image

    with Image.open(h.folders.output / saved[0]["filename"]) as img:
        assert img.size == (32, 24)
        r, g, b = img.convert("RGB").getpixel((16, 12))
        assert abs(r - 0x33) <= 4 and abs(g - 0x66) <= 4 and abs(b - 0xCC) <= 4
