"""Hostile files: decompression bombs, truncated and fake images, lying .safetensors headers, pickle
checkpoints with a malicious ``__reduce__``. Each is refused with a clear error (HTTP 4xx, or a prompt
that fails cleanly with the reason in its execution_error) and the server keeps serving.

Uploads store bytes as given (ComfyUI's /upload/image also takes audio, video and other files the
frontend sends), so a hostile image is refused where it is decoded: /view's conversions, /upload/mask,
LoadImage and the model loaders.
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from tests.hardening.conftest import figure, image_prompt, submit, worker_alive

REFUSALS: list[str] = []


# --- crafted files ----------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, complete: bool = True) -> bytes:
    """A grayscale PNG of zeros: a few hundred KB that decode to width*height bytes (or just its header)."""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if complete:
        z = zlib.compressobj(9)
        row = b"\x00" * (width + 1)
        data = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    else:
        data = zlib.compress(b"\x00" * (width + 1))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def png(size=(16, 16), color=(0, 128, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, color).save(buf, format="PNG")
    return buf.getvalue()


def safetensors_raw(header: dict, data: bytes, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


LYING_SAFETENSORS = {
    "offsets past the end": safetensors_raw({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}},
                                            b"\x00" * 16),
    "size disagrees with shape": safetensors_raw({"w": {"dtype": "F32", "shape": [1000, 1000],
                                                        "data_offsets": [0, 16]}}, b"\x00" * 16),
    "overlapping tensors": safetensors_raw({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}},
                                           b"\x00" * 24),
    "negative offset": safetensors_raw({"w": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}}, b"\x00" * 16),
    "header length 2**63": safetensors_raw({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                                           b"\x00" * 4, length=1 << 63),
    "header length past the file": safetensors_raw({}, b"", length=10 ** 9),
    "header not JSON": struct.pack("<Q", 16) + b"{not json at all" + b"\x00" * 8,
    "unknown dtype": safetensors_raw({"w": {"dtype": "Q99", "shape": [4], "data_offsets": [0, 16]}}, b"\x00" * 16),
    "shape with 2**62 elements": safetensors_raw({"w": {"dtype": "F32", "shape": [1 << 31, 1 << 31],
                                                        "data_offsets": [0, 16]}}, b"\x00" * 16),
    "empty file": b"",
}


class Evil:
    """Unpickling this would create the marker file (what a malicious checkpoint would do instead)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickles(marker: Path) -> dict[str, bytes]:
    import torch

    out = {"plain pickle": pickle.dumps({"state_dict": {"w": Evil(marker)}}, protocol=2)}
    buf = io.BytesIO()
    torch.save({"state_dict": {"model.diffusion_model.w": torch.zeros(2)}, "payload": Evil(marker)}, buf)
    out["torch zip"] = buf.getvalue()
    buf = io.BytesIO()
    torch.save(Evil(marker), buf, _use_new_zipfile_serialization=False)
    out["torch legacy"] = buf.getvalue()
    return out


# --- helpers ----------------------------------------------------------------------------------------
def upload(server, name: str, data: bytes, kind: str = "input") -> tuple[int, bytes]:
    boundary = "hostile7c1f"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\n{kind}\r\n'
        f"--{boundary}--\r\n").encode()
    status, _, raw = server.request("POST", "/upload/image", body,
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return status, raw


def upload_mask(server, name: str, data: bytes, original: str) -> tuple[int, bytes]:
    boundary = "hostilemask"
    ref = json.dumps({"filename": original, "subfolder": "", "type": "input"})
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="original_ref"\r\n\r\n{ref}\r\n'
        f"--{boundary}--\r\n").encode()
    status, _, raw = server.request("POST", "/upload/mask", body,
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return status, raw


def refused_http(label: str, status: int, raw: bytes, allowed=(400, 404, 413)) -> None:
    assert status in allowed, (label, status, raw[:300])
    body = json.loads(raw)
    assert body["error"]["message"], body
    REFUSALS.append(label)


def failed_cleanly(server, prompt: dict, label: str, expect: str | tuple[str, ...]) -> dict:
    """The prompt is refused at validation (400) or runs and fails with a clear execution_error."""
    status, body = server.post_json("/prompt", {"prompt": prompt})
    if status == 400:
        REFUSALS.append(label)
        return body
    assert status == 200, body
    entry = server.wait_history(body["prompt_id"], 120)
    assert entry["status"]["status_str"] == "error", (label, entry["status"])
    kind, err = entry["status"]["messages"][-1]
    assert kind == "execution_error", (label, kind, err)
    message = (err["exception_type"] + ": " + err["exception_message"]).lower()
    wanted = (expect,) if isinstance(expect, str) else expect
    assert any(w in message for w in wanted), (label, message[:500])
    REFUSALS.append(label)
    return err


@pytest.fixture(scope="module")
def srv(module_server):
    return module_server("hostile", pack=True)


# --- images -----------------------------------------------------------------------------------------
def test_decompression_bombs(srv):
    bomb = png_bomb(60000, 60000, complete=False)  # 3.6 gigapixels: refused from the header
    assert len(bomb) < 100_000
    assert upload(srv, "bomb.png", bomb)[0] == 200  # stored as bytes, never decoded on upload
    for extra in ("&preview=webp;80", "&preview=jpeg;50", "&channel=rgb", "&channel=a"):
        start = time.time()
        status, _, raw = srv.request("GET", f"/view?filename=bomb.png&type=input{extra}")
        refused_http(f"/view{extra} of a bomb", status, raw)
        assert time.time() - start < 5
    status, _, raw = srv.request("GET", "/view?filename=bomb.png&type=input")
    assert status == 200 and raw == bomb  # the raw file itself is just bytes
    assert upload(srv, "plain.png", png())[0] == 200
    refused_http("mask that is a bomb", *upload_mask(srv, "m.png", bomb, "plain.png"))
    refused_http("mask onto a bomb", *upload_mask(srv, "m2.png", png(), "bomb.png"))
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "bomb.png"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    failed_cleanly(srv, prompt, "LoadImage of a bomb", ("decompression", "bomb", "exceeds limit", "too large",
                                                        "larger than", "refused"))
    worker_alive(srv, 0x050505)


def test_view_conversion_limit_does_not_depend_on_pillows_global(srv):
    """Any node may raise or switch off Pillow's process-wide MAX_IMAGE_PIXELS (some custom node packs do);
    /view's conversions keep their own limit, checked from the header."""
    pid = submit(srv, image_prompt(1, middle={"class_type": "HardenNoPixelLimit"}))
    assert srv.wait_history(pid)["status"]["status_str"] == "success"
    # 15000 x 15000 = 225 megapixels: a complete, valid image (about 220 KB) that would decode to 225 MB
    # and convert to 675 MB once Pillow's own check is off
    big = png_bomb(15000, 15000, complete=True)
    assert upload(srv, "big.png", big)[0] == 200
    start = time.time()
    status, _, raw = srv.request("GET", "/view?filename=big.png&type=input&preview=webp;80")
    refused_http("/view preview of a 225 MP image", status, raw)
    assert time.time() - start < 5


def test_load_image_refuses_oversized_images_from_the_header(srv):
    # only the header is valid: a refusal before decoding names the size, a decode attempt fails on the data
    assert upload(srv, "oversized.png", png_bomb(20000, 20000, complete=False))[0] == 200
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "oversized.png"}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    start = time.time()
    failed_cleanly(srv, prompt, "LoadImage of a 400 MP image", ("decompression", "bomb", "exceeds", "too large",
                                                                "larger than", "refused"))
    assert time.time() - start < 10  # refused from the header, not after decoding gigabytes


def test_truncated_and_fake_images(srv):
    good = png((64, 64))
    samples = {
        "truncated.png": good[: len(good) // 2],
        "header_only.png": good[:33],
        "text.png": b"this is not an image at all\n" * 10,
        "html.png": b"<html><script>alert(1)</script></html>",
        "zip.png": b"PK\x03\x04" + b"\x00" * 100,
        "empty.png": b"",
        "gif_header.gif": b"GIF89a" + b"\xff" * 20,
        "jpeg_soi.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 50,
        "bad_crc.png": good[:20] + bytes([good[20] ^ 0xFF]) + good[21:],
    }
    for name, data in samples.items():
        status, raw = upload(srv, name, data)
        assert status == 200, (name, raw)  # bytes are stored as given (the UI uploads audio/video here too)
        for extra in ("&preview=webp;80", "&channel=rgb", "&channel=a"):
            status, _, raw = srv.request("GET", f"/view?filename={name}&type=input{extra}")
            if name == "bad_crc.png" and status == 200:
                continue  # Pillow ignores a bad CRC in ancillary data: decoding it is fine
            refused_http(f"/view{extra} of {name}", status, raw)
        if name != "bad_crc.png":
            refused_http(f"mask from {name}", *upload_mask(srv, f"m_{name}.png", data, "plain.png"))
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        if name == "bad_crc.png":
            continue
        failed_cleanly(srv, prompt, f"LoadImage of {name}",
                       ("truncated", "cannot identify", "not", "no frames", "invalid", "broken", "error", "unrecognized"))
    worker_alive(srv, 0x060606)


# --- model files ------------------------------------------------------------------------------------
def test_lying_safetensors_headers_in_view_metadata(srv):
    ckpt = srv.base / "models" / "checkpoints"
    for i, (label, data) in enumerate(LYING_SAFETENSORS.items()):
        (ckpt / f"lie{i}.safetensors").write_bytes(data)
        start = time.time()
        status, _, raw = srv.request("GET", f"/view_metadata/checkpoints?filename=lie{i}.safetensors")
        assert status in (200, 404), (label, status, raw[:200])
        assert time.time() - start < 2, label
        REFUSALS.append(f"view_metadata: {label}")
    assert srv.get_json("/models/checkpoints")


def _loaders(srv) -> dict:
    info = srv.get_json("/object_info")
    if "CheckpointLoaderSimple" not in info:
        pytest.skip("CheckpointLoaderSimple is not registered yet (the model runtime is being written); "
                    "these tests run once it is")
    return info


def test_lying_safetensors_checkpoints_fail_cleanly(srv):
    info = _loaders(srv)
    folders = {"CheckpointLoaderSimple": ("checkpoints", "ckpt_name"), "VAELoader": ("vae", "vae_name"),
               "UNETLoader": ("unet", "unet_name")}
    for class_type, (folder, input_name) in folders.items():
        if class_type not in info:
            continue
        target = srv.base / "models" / folder
        target.mkdir(parents=True, exist_ok=True)
        for i, (label, data) in enumerate(LYING_SAFETENSORS.items()):
            name = f"{class_type.lower()}_lie{i}.safetensors"
            (target / name).write_bytes(data)
            inputs = {input_name: name}
            if class_type == "UNETLoader":
                inputs["weight_dtype"] = "default"
            prompt = {"1": {"class_type": class_type, "inputs": inputs},
                      "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
            failed_cleanly(srv, prompt, f"{class_type}: {label}", ("safetensors", "header", "invalid", "cannot",
                                                                    "not a valid", "metadata", "corrupt", "error"))
    worker_alive(srv, 0x070707)


def test_malicious_pickle_checkpoints_never_run(srv, tmp_path):
    info = _loaders(srv)
    marker = tmp_path / "PWNED-by-reduce"
    folders = {"CheckpointLoaderSimple": ("checkpoints", "ckpt_name"), "VAELoader": ("vae", "vae_name"),
               "UNETLoader": ("unet", "unet_name")}
    for class_type, (folder, input_name) in folders.items():
        if class_type not in info:
            continue
        target = srv.base / "models" / folder
        target.mkdir(parents=True, exist_ok=True)
        for label, data in evil_pickles(marker).items():
            for ext in (".ckpt", ".pt", ".pth", ".bin"):
                name = f"{class_type.lower()}_{label.replace(' ', '_')}{ext}"
                (target / name).write_bytes(data)
                inputs = {input_name: name}
                if class_type == "UNETLoader":
                    inputs["weight_dtype"] = "default"
                prompt = {"1": {"class_type": class_type, "inputs": inputs},
                          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
                failed_cleanly(srv, prompt, f"{class_type}: {label}{ext}",
                               ("refusing", "unsafe", "arbitrary", "weights_only", "unpickl", "cannot read"))
                assert not marker.exists(), f"the pickle's __reduce__ ran ({class_type}, {label}{ext})"
    worker_alive(srv, 0x080808)


def test_figures(srv):
    figure("hostile files", refused=len(REFUSALS))
    assert srv.get_json("/system_stats")
