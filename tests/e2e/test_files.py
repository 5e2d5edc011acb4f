"""/view, uploads, model lists and metadata, /internal folder listings, against a real server.

Every hostile request asserts a 4xx status and that nothing outside the served folders was read into
the response or changed on disk: a sentinel folder sits next to the base directory, and links inside
input/, output/ and models/ point into it.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import struct
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image, PngImagePlugin

from tests.conftest import Server

SECRET = b"TOP-SECRET-SENTINEL"
PREFIXES = ("", "/api")


# --- helpers ---------------------------------------------------------------------------------------
def png(size=(8, 8), color=(255, 0, 0, 255), mode="RGBA", text: dict | None = None) -> bytes:
    img = Image.new(mode, size, color)
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def multipart(fields: dict) -> tuple[bytes, dict]:
    """fields: name -> str, or (filename, bytes) for a file part, or (raw disposition params, bytes)."""
    boundary = "hearthboundary" + uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            filename, data = value
            if isinstance(filename, bytes):  # raw parameters, for encodings urllib would not send
                params = filename
            else:  # a quoted-string: backslashes and quotes escaped, so the server sees them
                quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
                params = b'filename="' + quoted.encode("utf-8") + b'"'
            out.write(b'Content-Disposition: form-data; name="' + name.encode() + b'"; ' + params + b"\r\n")
            out.write(b"Content-Type: application/octet-stream\r\n\r\n")
            out.write(data)
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            out.write(value.encode("utf-8"))
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def safetensors_bytes(metadata: dict | None, tensors: bool = True) -> bytes:
    header: dict = {}
    data = b""
    if tensors:
        header["w"] = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
        data = struct.pack("<2f", 1.0, 2.0)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every entry under root (links not followed) with its kind and content hash."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if any(rel_dir == s or rel_dir.startswith(s + os.sep) for s in skip):
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel in skip:
                continue
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isfile(full):
                out[rel] = ("file", hashlib.sha256(Path(full).read_bytes()).hexdigest())
            else:
                out[rel] = ("dir",)
    return out


class Env:
    def __init__(self, root: Path, server: Server):
        self.root = root
        self.server = server
        self.base = server.base
        self.outside = root / "outside"

    def req(self, method, path, body=None, headers=None):
        return self.server.request(method, path, body, headers)

    def get(self, path, headers=None):
        return self.server.request("GET", path, None, headers)

    def upload(self, fields: dict, path="/upload/image"):
        body, headers = multipart(fields)
        return self.server.request("POST", path, body, headers)

    def assert_no_leak(self, body: bytes):
        assert SECRET not in body


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "dir" / "secret.txt").write_bytes(SECRET)
    (outside / "secret.png").write_bytes(png() + SECRET)
    (outside / "model.safetensors").write_bytes(safetensors_bytes({"secret": SECRET.decode()}))
    (outside / "model.png").write_bytes(png())
    base = root / "base"
    models = base / "models" / "checkpoints"
    models.mkdir(parents=True)
    server = Server(base, ["--max-upload-size", "1"]).start()
    for kind in ("input", "output", "temp"):
        os.symlink(outside / "secret.png", base / kind / "evil.png")
        os.symlink(outside / "secret.txt", base / kind / "evil.txt")
        os.symlink(outside / "dir", base / kind / "evildir")
    os.symlink(outside / "model.safetensors", models / "evil.safetensors")
    os.symlink(outside / "model.png", models / "evilpreview.png")
    (models / "evilpreview.safetensors").write_bytes(safetensors_bytes({}))
    os.symlink(outside / "dir", models / "evildir")
    try:
        yield Env(root, server)
    finally:
        server.stop()


SKIP_WRITABLE = ("base/input", "base/output", "base/temp", "base/user", "base/server.log")


@pytest.fixture(autouse=True)
def guard(env):
    """Nothing outside the writable folders changes during any test; the sentinel stays intact."""
    before = snapshot(env.root, SKIP_WRITABLE)
    yield
    assert (env.outside / "secret.txt").read_bytes() == SECRET
    assert snapshot(env.root, SKIP_WRITABLE) == before


@pytest.fixture
def frozen(env):
    """For hostile requests: the served folders themselves must not change either."""
    before = snapshot(env.base, ("user", "server.log"))
    yield
    assert snapshot(env.base, ("user", "server.log")) == before


# --- /view -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", PREFIXES)
def test_view_serves_uploaded_image(env, prefix):
    data = png(color=(1, 2, 3, 255))
    status, _, body = env.upload({"image": ("view_me.png", data), "type": "input"}, prefix + "/upload/image")
    assert status == 200, body
    assert json.loads(body) == {"name": "view_me.png", "subfolder": "", "type": "input"}
    status, headers, body = env.get(f"{prefix}/view?filename=view_me.png&type=input&subfolder=")
    assert status == 200
    assert body == data
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == 'filename="view_me.png"'
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_view_defaults_to_output_and_reads_subfolders(env):
    sub = env.base / "output" / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "out.png").write_bytes(png())
    (env.base / "output" / "top.png").write_bytes(png(color=(0, 0, 0, 255)))
    assert env.get("/view?filename=top.png")[0] == 200
    status, _, body = env.get("/view?filename=out.png&subfolder=a/b")
    assert status == 200 and body == (sub / "out.png").read_bytes()
    assert env.get("/view?filename=out.png&subfolder=a%2Fb&type=output")[0] == 200
    # ComfyUI serves the base name of a name that has folders
    assert env.get("/view?filename=x/top.png")[2] == (env.base / "output" / "top.png").read_bytes()


def test_view_types(env):
    for kind in ("input", "output", "temp"):
        (env.base / kind / f"kind_{kind}.png").write_bytes(png())
        assert env.get(f"/view?filename=kind_{kind}.png&type={kind}")[0] == 200
        assert env.get(f"/api/view?filename={quote(f'kind_{kind}.png [{kind}]')}&type=bogus")[0] == 200
    assert env.get("/view?filename=kind_input.png&type=output")[0] == 404


@pytest.mark.parametrize("query,status", [
    ("", 404),                                   # no filename
    ("filename=undefined&type=input", 404),      # what a fresh LoadImage asks for
    ("filename=nope.png", 404),
    ("filename=", 400),
    ("filename=x.png&type=bogus", 400),
    ("filename=x.png&type=", 400),
    ("filename=x.png&type=models", 400),
    ("filename=x.png&type=user", 400),
])
def test_view_missing_and_bad_type(env, frozen, query, status):
    for prefix in PREFIXES:
        got, _, body = env.get(f"{prefix}/view?{query}")
        assert got == status, (query, body)


@pytest.mark.parametrize("filename", [
    "../outside/secret.txt",
    "../../outside/secret.txt",
    "..%2F..%2Foutside%2Fsecret.txt",
    "%2e%2e%2f%2e%2e%2foutside%2fsecret.txt",
    "%2E%2E/%2E%2E/outside/secret.txt",
    "..%5C..%5Coutside%5Csecret.txt",
    "..\\..\\outside\\secret.txt",
    "sub/../../outside/secret.txt",
    "..",
    "/etc/passwd",
    "%2Fetc%2Fpasswd",
    "~/secret.txt",
    "C:secret.txt",
    "C:%5Cwindows%5Cwin.ini",
    "secret.txt%00.png",
    "%00",
    "x" * 300 + ".png",
    "y" * 5000,
])
def test_view_rejects_hostile_filenames(env, frozen, filename):
    for prefix in PREFIXES:
        for kind in ("input", "output", "temp"):
            status, _, body = env.get(f"{prefix}/view?type={kind}&filename={filename}")
            assert 400 <= status < 500, (filename, status)
            env.assert_no_leak(body)


@pytest.mark.parametrize("subfolder", [
    "..", "../..", "../outside", "..%2F..%2Foutside", "%2e%2e", "%2e%2e%2f%2e%2e%2foutside",
    "..%5C..", "/etc", "%2Fetc", "/", "a/../..", "C:", "x%00", "evildir", "evildir/sub",
])
def test_view_rejects_escaping_subfolders(env, frozen, subfolder):
    for prefix in PREFIXES:
        status, _, body = env.get(f"{prefix}/view?type=input&filename=secret.txt&subfolder={subfolder}")
        assert status in (403, 404), (subfolder, status)
        env.assert_no_leak(body)
    # a subfolder that escapes is refused as such (403), as ComfyUI does
    if ".." in subfolder.replace("%2e", ".").replace("%2E", ".") or subfolder.startswith(("/", "%2F")):
        assert env.get(f"/view?type=input&filename=secret.txt&subfolder={subfolder}")[0] == 403


def test_view_refuses_links_leaving_the_folder(env, frozen):
    for kind in ("input", "output", "temp"):
        for name in ("evil.png", "evil.txt"):
            for extra in ("", "&preview=webp;90", "&channel=a", "&channel=rgb"):
                status, _, body = env.get(f"/view?type={kind}&filename={name}{extra}")
                assert status == 403, (kind, name, extra, status)
                env.assert_no_leak(body)
        status, _, body = env.get(f"/view?type={kind}&filename=secret.txt&subfolder=evildir")
        assert status == 403


def test_view_preview_reencodes(env):
    (env.base / "output" / "prev.png").write_bytes(png(size=(16, 12), color=(10, 200, 30, 128)))
    for prefix in PREFIXES:
        status, headers, body = env.get(f"{prefix}/view?filename=prev.png&preview=webp;90")
        assert status == 200 and headers["Content-Type"] == "image/webp"
        assert headers["Content-Disposition"] == 'filename="prev.png"'
        assert Image.open(io.BytesIO(body)).format == "WEBP"
    status, headers, body = env.get("/view?filename=prev.png&preview=jpeg;50")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    img = Image.open(io.BytesIO(body))
    assert img.format == "JPEG" and img.size == (16, 12)
    # unknown formats fall back to webp; alpha channel forces webp
    assert env.get("/view?filename=prev.png&preview=gif;10")[1]["Content-Type"] == "image/webp"
    assert env.get("/view?filename=prev.png&preview=jpeg;50&channel=a")[1]["Content-Type"] == "image/webp"
    assert env.get("/view?filename=prev.png&preview=webp;999")[0] == 200


def test_view_channels(env):
    img = Image.new("RGBA", (4, 4), (200, 100, 50, 255))
    img.putpixel((0, 0), (200, 100, 50, 0))
    img.putpixel((1, 0), (200, 100, 50, 77))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    (env.base / "input" / "alpha.png").write_bytes(buf.getvalue())

    status, headers, body = env.get("/view?type=input&filename=alpha.png&channel=rgb")
    assert status == 200 and headers["Content-Type"] == "image/png"
    rgb = Image.open(io.BytesIO(body))
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (200, 100, 50)

    status, headers, body = env.get("/api/view?type=input&filename=alpha.png&channel=a")
    assert status == 200 and headers["Content-Type"] == "image/png"
    a = Image.open(io.BytesIO(body))
    assert a.mode == "RGBA"
    assert a.getpixel((0, 0)) == (0, 0, 0, 0)
    assert a.getpixel((1, 0)) == (0, 0, 0, 77)
    assert a.getpixel((2, 2)) == (0, 0, 0, 255)

    (env.base / "input" / "opaque.png").write_bytes(png(mode="RGB", color=(9, 9, 9)))
    a = Image.open(io.BytesIO(env.get("/view?type=input&filename=opaque.png&channel=a")[2]))
    assert a.getpixel((0, 0)) == (0, 0, 0, 255)

    status, _, body = env.get("/view?type=input&filename=alpha.png&channel=rgba")
    assert status == 200 and body == buf.getvalue()
    assert env.get("/view?type=input&filename=alpha.png&channel=bogus")[0] == 400


def test_view_conversion_of_non_image_is_400(env):
    (env.base / "output" / "notes.txt").write_bytes(b"not an image")
    for extra in ("&preview=webp;90", "&channel=a", "&channel=rgb"):
        assert env.get(f"/view?filename=notes.txt{extra}")[0] == 400


@pytest.mark.parametrize("name,content_type", [
    ("page.html", "application/octet-stream"),
    ("page.htm", "application/octet-stream"),
    ("page.xhtml", "application/octet-stream"),
    ("script.js", "application/octet-stream"),
    ("style.css", "application/octet-stream"),
    ("data.xml", "application/octet-stream"),
    ("pic.svg", "image/svg+xml"),
    ("blob.unknownext", "application/octet-stream"),
    ("noext", "application/octet-stream"),
])
def test_view_never_renders_active_content_inline(env, name, content_type):
    (env.base / "output" / name).write_bytes(b"<html><script>alert(1)</script></html>")
    for prefix in PREFIXES:
        status, headers, body = env.get(f"{prefix}/view?filename={name}")
        assert status == 200
        assert headers["Content-Type"].split(";")[0] == content_type
        assert headers["Content-Disposition"].startswith("attachment;")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "text/html" not in headers["Content-Type"]


def test_view_serves_exactly_the_named_file(env):
    """aiohttp would send a '.gz' sibling to clients that accept gzip; /view must not."""
    (env.base / "output" / "plain.txt").write_bytes(b"the real file")
    (env.base / "output" / "plain.txt.gz").write_bytes(b"\x1f\x8bnot this one")
    status, headers, body = env.get("/view?filename=plain.txt", headers={"Accept-Encoding": "gzip, br"})
    assert status == 200 and body == b"the real file"
    assert "Content-Encoding" not in headers
    assert headers["Content-Type"].startswith("text/plain")


def test_view_odd_but_valid_names(env):
    for name in ("ünïcode ✓.png", 'quote".png', "a..b.png", "semi;colon.png"):
        (env.base / "output" / name).write_bytes(png())
        status, headers, body = env.get("/view?filename=" + quote(name))
        assert status == 200, name
        disposition = headers["Content-Disposition"]
        assert disposition.startswith('filename="') and '\n' not in disposition
        assert disposition.count('"') == 2


# --- /upload/image ---------------------------------------------------------------------------------
def test_upload_duplicate_naming(env):
    first, second, third = png(color=(1, 1, 1, 255)), png(color=(2, 2, 2, 255)), png(color=(3, 3, 3, 255))
    for prefix in PREFIXES:
        name = f"dup{prefix.strip('/')}.png"
        stem = name[:-4]

        def up(data, **extra):
            status, _, body = env.upload({"image": (name, data), **extra}, prefix + "/upload/image")
            assert status == 200, body
            return json.loads(body)

        assert up(first) == {"name": name, "subfolder": "", "type": "input"}
        assert up(first)["name"] == name                       # same bytes: same name, no copy
        assert up(second)["name"] == f"{stem} (1).png"         # different bytes: renamed
        assert up(second)["name"] == f"{stem} (1).png"         # ...and that one is found again
        assert up(third)["name"] == f"{stem} (2).png"
        assert (env.base / "input" / name).read_bytes() == first
        assert (env.base / "input" / f"{stem} (1).png").read_bytes() == second
        assert up(third, overwrite="true")["name"] == name     # overwrite replaces in place
        assert (env.base / "input" / name).read_bytes() == third
        assert up(second, overwrite="1")["name"] == name
        assert (env.base / "input" / name).read_bytes() == second
        assert not list((env.base / "input").glob(".hearth-*"))


def test_upload_types_and_subfolders(env):
    data = png(color=(7, 7, 7, 255))
    for kind in ("input", "temp", "output"):
        status, _, body = env.upload({"image": ("typed.png", data), "type": kind, "subfolder": "s1/s2"})
        assert status == 200, body
        assert json.loads(body) == {"name": "typed.png", "subfolder": "s1/s2", "type": kind}
        assert (env.base / kind / "s1" / "s2" / "typed.png").read_bytes() == data
    status, _, body = env.upload({"image": ("typed.png", data), "type": ""})
    assert status == 200 and json.loads(body)["type"] == "input"


@pytest.mark.parametrize("fields", [
    {},
    {"type": "input"},
    {"image": "not a file part"},
    {"image": (b'filename=""', b"data")},
    {"image": (b"", b"data")},
    {"image": ("ok.png", png()), "type": "bogus"},
    {"image": ("ok.png", png()), "type": "models"},
    {"image": ("ok.png", png()), "type": "../input"},
])
def test_upload_bad_forms(env, frozen, fields):
    for prefix in PREFIXES:
        status, _, body = env.upload(fields, prefix + "/upload/image")
        assert status == 400, (fields, body)


def test_upload_non_multipart_bodies(env, frozen):
    for body, headers in [(b'{"image": "x"}', {"Content-Type": "application/json"}),
                          (b"image=x", {"Content-Type": "application/x-www-form-urlencoded"}),
                          (b"garbage", {"Content-Type": "multipart/form-data; boundary=zz"}),
                          (b"", {})]:
        status, _, _ = env.req("POST", "/upload/image", body, headers)
        assert status == 400


@pytest.mark.parametrize("filename", [
    "../escape.png", "../../escape.png", "/tmp/escape.png", "sub/escape.png",
    "..\\escape.png", "C:escape.png", "C:\\escape.png", "~escape/x.png", "..", ".", "x" * 300 + ".png",
    b"filename*=UTF-8''..%2Fescape.png", b"filename*=UTF-8''%00escape.png", b"filename*=UTF-8''esc%0Aape.png",
    b"filename*=UTF-8''%2Ftmp%2Fescape.png", b"filename*=UTF-8''..%5Cescape.png",
])
def test_upload_rejects_hostile_filenames(env, frozen, filename):
    for prefix in PREFIXES:
        for kind in ("input", "output", "temp"):
            status, _, body = env.upload({"image": (filename, b"payload"), "type": kind}, prefix + "/upload/image")
            assert status == 400, (filename, kind, body)
    assert not list(env.root.rglob("*escape*"))


def test_upload_leading_slash_stays_inside(env):
    """aiohttp itself drops one leading '/' of a part's filename; whatever arrives stays in input/."""
    status, _, body = env.upload({"image": ("/rooted.png", b"payload")})
    assert status in (200, 400)
    if status == 200:
        assert json.loads(body)["name"] == "rooted.png"
        (env.base / "input" / "rooted.png").unlink()
    assert not list(env.root.rglob("rooted*"))


@pytest.mark.parametrize("subfolder", [
    "..", "../..", "../outside", "/tmp", "/", "a/../../..", "..\\..", "C:", "x\x00y", "evildir", "evildir/deeper",
])
def test_upload_rejects_escaping_subfolders(env, frozen, subfolder):
    for kind in ("input", "output", "temp"):
        status, _, body = env.upload({"image": ("sub_escape.png", b"payload"), "type": kind,
                                      "subfolder": subfolder})
        assert status in (400, 403), (subfolder, body)
    assert not list(env.root.rglob("sub_escape*"))


def test_upload_never_follows_links_out(env):
    """A name taken by a link to outside is skipped (never read); overwriting it is refused."""
    outside_before = snapshot(env.outside)
    status, _, body = env.upload({"image": ("evil.png", b"attacker bytes"), "type": "input"})
    assert status == 200
    assert json.loads(body)["name"] == "evil (1).png"
    status, _, body = env.upload({"image": ("evil.png", b"attacker bytes"), "type": "input", "overwrite": "true"})
    assert status == 403
    assert os.path.islink(env.base / "input" / "evil.png")
    assert snapshot(env.outside) == outside_before
    os.unlink(env.base / "input" / "evil (1).png")


def test_upload_size_limit_is_413(env, frozen):
    body, headers = multipart({"image": ("big.png", b"\0" * (1024 * 1024 + 4096))})
    try:
        status, _, _ = env.req("POST", "/upload/image", body, headers)
    except (ConnectionError, OSError):
        return  # the server may close the connection before the client finished sending
    assert status == 413


# --- /upload/mask ----------------------------------------------------------------------------------
def _mask(size=(8, 8)) -> bytes:
    m = Image.new("RGBA", size, (0, 0, 0, 255))
    for x in range(size[0] // 2):
        for y in range(size[1]):
            m.putpixel((x, y), (0, 0, 0, 0))
    buf = io.BytesIO()
    m.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_upload_mask_applies_alpha_and_keeps_metadata(env, prefix):
    (env.base / "input" / "clip").mkdir(exist_ok=True)
    original = png(mode="RGB", color=(10, 20, 30), text={"prompt": '{"1": {}}', "workflow": "wf"})
    (env.base / "input" / "clip" / "orig.png").write_bytes(original)
    ref = json.dumps({"filename": "orig.png", "subfolder": "clip", "type": "input"})
    status, _, body = env.upload({"image": ("masked.png", _mask()), "type": "input", "subfolder": "clip",
                                  "original_ref": ref}, prefix + "/upload/mask")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["subfolder"] == "clip" and answer["type"] == "input"
    out = Image.open(env.base / "input" / "clip" / answer["name"])
    assert out.format == "PNG" and out.mode == "RGBA"
    assert out.getpixel((0, 0)) == (10, 20, 30, 0)
    assert out.getpixel((7, 7)) == (10, 20, 30, 255)
    assert out.text["prompt"] == '{"1": {}}' and out.text["workflow"] == "wf"
    # the same result again is recognised as the same file
    status, _, body = env.upload({"image": ("masked.png", _mask()), "type": "input", "subfolder": "clip",
                                  "original_ref": ref}, prefix + "/upload/mask")
    assert json.loads(body)["name"] == answer["name"]


def test_upload_mask_annotated_original(env):
    (env.base / "output" / "annot.png").write_bytes(png(mode="RGB"))
    ref = json.dumps({"filename": "annot.png [output]", "type": "input"})
    status, _, body = env.upload({"image": ("m2.png", _mask()), "original_ref": ref}, "/upload/mask")
    assert status == 200, body


@pytest.mark.parametrize("ref,status", [
    (None, 400),
    ("not json", 400),
    ("[]", 400),
    ('{"subfolder": ""}', 400),
    ('{"filename": ""}', 400),
    ('{"filename": 5}', 400),
    ('{"filename": "missing.png", "type": "input"}', 404),
    ('{"filename": "../outside/secret.png", "type": "input"}', 400),
    ('{"filename": "/etc/passwd", "type": "input"}', 400),
    ('{"filename": "..\\\\secret.png", "type": "input"}', 400),
    ('{"filename": "secret.png\\u0000", "type": "input"}', 400),
    ('{"filename": "secret.png", "subfolder": "../../outside", "type": "input"}', 403),
    ('{"filename": "secret.png", "subfolder": "/", "type": "input"}', 403),
    ('{"filename": "secret.png", "subfolder": "evildir", "type": "input"}', 403),
    ('{"filename": "evil.png", "type": "input"}', 403),
    ('{"filename": "evil.png", "type": "output"}', 403),
    ('{"filename": "x.png", "type": "bogus"}', 400),
])
def test_upload_mask_bad_refs(env, frozen, ref, status):
    fields = {"image": ("mask_bad.png", _mask()), "type": "input"}
    if ref is not None:
        fields["original_ref"] = ref
    for prefix in PREFIXES:
        got, _, body = env.upload(fields, prefix + "/upload/mask")
        assert got == status, (ref, body)
        env.assert_no_leak(body)


def test_upload_mask_bad_images(env, frozen):
    (env.base / "input" / "mask_orig.png").write_bytes(png(size=(8, 8), mode="RGB"))
    ref = json.dumps({"filename": "mask_orig.png", "type": "input"})
    try:
        for image in (b"not an image", _mask(size=(4, 4))):
            status, _, body = env.upload({"image": ("mask_x.png", image), "original_ref": ref}, "/upload/mask")
            assert status == 400, body
    finally:
        (env.base / "input" / "mask_orig.png").unlink()


# --- model folders ---------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", PREFIXES)
def test_models_lists(env, prefix):
    names = env.server.get_json(prefix + "/models")
    assert names[:3] == ["checkpoints", "configs", "loras"]
    assert "custom_nodes" in names and "text_encoders" in names and "diffusion_models" in names
    assert env.server.get_json(prefix + "/models/loras") == []
    assert env.get(prefix + "/models/nope")[0] == 404


def test_models_list_reflects_files_dropped_in(env):
    ckpt = env.base / "models" / "checkpoints"
    (ckpt / "sub").mkdir(exist_ok=True)
    (ckpt / "a.safetensors").write_bytes(b"x")
    (ckpt / "sub" / "b.ckpt").write_bytes(b"x")
    (ckpt / "notes.txt").write_bytes(b"x")
    try:
        listed = env.server.get_json("/models/checkpoints")
        assert "a.safetensors" in listed and "sub/b.ckpt" in listed and "notes.txt" not in listed
        (ckpt / "later.pt").write_bytes(b"x")
        assert "later.pt" in env.server.get_json("/api/models/checkpoints")
    finally:
        for p in ("a.safetensors", "sub/b.ckpt", "notes.txt", "later.pt"):
            (ckpt / p).unlink()
        (ckpt / "sub").rmdir()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_experiment_models(env, prefix):
    folders = env.server.get_json(prefix + "/experiment/models")
    names = [f["name"] for f in folders]
    assert "configs" not in names and "custom_nodes" not in names
    assert names[0] == "checkpoints"
    ckpt = next(f for f in folders if f["name"] == "checkpoints")
    assert ckpt["folders"] == [str(env.base / "models" / "checkpoints")]
    te = next(f for f in folders if f["name"] == "text_encoders")
    assert te["folders"] == [str(env.base / "models" / "text_encoders"), str(env.base / "models" / "clip")]
    assert env.get(prefix + "/experiment/models/nope")[0] == 404


def test_experiment_model_files(env):
    ckpt = env.base / "models" / "checkpoints"
    (ckpt / "deep").mkdir(exist_ok=True)
    (ckpt / ".hidden").mkdir(exist_ok=True)
    (ckpt / "deep" / "m.safetensors").write_bytes(b"12345")
    (ckpt / ".hidden" / "h.safetensors").write_bytes(b"1")
    (ckpt / ".dot.safetensors").write_bytes(b"1")
    (ckpt / "readme.md").write_bytes(b"1")
    os.symlink(ckpt, ckpt / "deep" / "loop")
    try:
        for prefix in PREFIXES:
            items = env.server.get_json(prefix + "/experiment/models/checkpoints")
            by_name = {i["name"]: i for i in items}
            assert "deep/m.safetensors" in by_name
            item = by_name["deep/m.safetensors"]
            assert set(item) == {"name", "pathIndex", "modified", "created", "size"}
            assert item["pathIndex"] == 0 and item["size"] == 5
            assert abs(item["modified"] - os.path.getmtime(ckpt / "deep" / "m.safetensors")) < 1e-3
            assert not any(".hidden" in n or ".dot" in n or n.endswith(".md") for n in by_name)
            # links leaving the folder are not listed; a link loop is listed once
            assert "evil.safetensors" not in by_name
            assert not any(n.startswith("evildir") for n in by_name)
            assert len(items) == len(by_name)
            assert not any("loop/" in n for n in by_name)
    finally:
        os.unlink(ckpt / "deep" / "loop")
        for p in ("deep/m.safetensors", ".hidden/h.safetensors", ".dot.safetensors", "readme.md"):
            (ckpt / p).unlink()
        (ckpt / "deep").rmdir()
        (ckpt / ".hidden").rmdir()


def test_experiment_model_preview(env):
    ckpt = env.base / "models" / "checkpoints"
    (ckpt / "sub").mkdir(exist_ok=True)
    (ckpt / "sub" / "pv.safetensors").write_bytes(safetensors_bytes({}))
    (ckpt / "sub" / "pv.png").write_bytes(png(size=(5, 5)))
    cover = io.BytesIO()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(cover, format="PNG")
    (ckpt / "cover.safetensors").write_bytes(safetensors_bytes(
        {"ssmd_cover_images": json.dumps([base64.b64encode(cover.getvalue()).decode()])}))
    (ckpt / "plain.safetensors").write_bytes(safetensors_bytes({}))
    try:
        for prefix in PREFIXES:
            status, headers, body = env.get(prefix + "/experiment/models/preview/checkpoints/0/sub/pv.safetensors")
            assert status == 200 and headers["Content-Type"] == "image/webp"
            assert Image.open(io.BytesIO(body)).size == (5, 5)
            status, _, body = env.get(prefix + "/experiment/models/preview/checkpoints/0/sub%2Fpv.safetensors")
            assert status == 200
            status, _, body = env.get(prefix + "/experiment/models/preview/checkpoints/0/cover.safetensors")
            assert status == 200 and Image.open(io.BytesIO(body)).size == (3, 3)
            assert env.get(prefix + "/experiment/models/preview/checkpoints/0/plain.safetensors")[0] == 404
            assert env.get(prefix + "/experiment/models/preview/checkpoints/0/missing.safetensors")[0] == 404
            assert env.get(prefix + "/experiment/models/preview/nope/0/plain.safetensors")[0] == 404
    finally:
        for p in ("sub/pv.safetensors", "sub/pv.png", "cover.safetensors", "plain.safetensors"):
            (ckpt / p).unlink()
        (ckpt / "sub").rmdir()


@pytest.mark.parametrize("tail,statuses", [
    ("checkpoints/x/a.safetensors", (400,)),
    ("checkpoints/-1/a.safetensors", (400,)),
    ("checkpoints/1/a.safetensors", (404,)),
    ("checkpoints/99999999999999999999/a.safetensors", (400, 404)),
    ("checkpoints/0/..%2F..%2F..%2Foutside%2Fmodel.safetensors", (400,)),
    ("checkpoints/0/%2e%2e%2f%2e%2e%2f%2e%2e%2foutside%2fmodel.safetensors", (400,)),
    ("checkpoints/0/..%5C..%5Coutside%5Cmodel.safetensors", (400,)),
    ("checkpoints/0/%2Fetc%2Fpasswd", (400,)),
    ("checkpoints/0/a%00.safetensors", (400,)),
    ("checkpoints/0/C:model.safetensors", (400,)),
    ("checkpoints/0/" + "z" * 300, (400,)),
    ("checkpoints/0/evil.safetensors", (403, 404)),
    ("checkpoints/0/evilpreview.safetensors", (404,)),    # its .png is a link to outside: not a preview
    ("checkpoints/0/evildir/model.safetensors", (403,)),
])
def test_experiment_model_preview_hostile(env, frozen, tail, statuses):
    for prefix in PREFIXES:
        status, _, body = env.get(f"{prefix}/experiment/models/preview/{tail}")
        assert status in statuses, (tail, status, body)
        env.assert_no_leak(body)


# --- /view_metadata --------------------------------------------------------------------------------
def test_view_metadata(env):
    ckpt = env.base / "models" / "checkpoints"
    (ckpt / "meta.safetensors").write_bytes(safetensors_bytes({"modelspec.title": "Meta", "n": "1"}))
    (ckpt / "nometa.safetensors").write_bytes(safetensors_bytes(None))
    (ckpt / "huge.safetensors").write_bytes(struct.pack("<Q", 2 ** 63) + b"{}")
    (ckpt / "lying.safetensors").write_bytes(struct.pack("<Q", 10_000) + b'{"__metadata__": {}}')
    (ckpt / "short.safetensors").write_bytes(b"\x01\x02")
    (ckpt / "badjson.safetensors").write_bytes(struct.pack("<Q", 8) + b"{not js}")
    (ckpt / "list.safetensors").write_bytes(struct.pack("<Q", 8) + b"[1,2,3] ")
    (ckpt / "meta.ckpt").write_bytes(b"x")
    try:
        for prefix in PREFIXES:
            status, _, body = env.get(prefix + "/view_metadata/checkpoints?filename=meta.safetensors")
            assert status == 200 and json.loads(body) == {"modelspec.title": "Meta", "n": "1"}
            for name in ("nometa", "huge", "lying", "short", "badjson", "list", "missing"):
                status, _, _ = env.get(f"{prefix}/view_metadata/checkpoints?filename={name}.safetensors")
                assert status == 404, name
            assert env.get(prefix + "/view_metadata/checkpoints?filename=meta.ckpt")[0] == 404
            assert env.get(prefix + "/view_metadata/checkpoints")[0] == 404
            assert env.get(prefix + "/view_metadata/nope?filename=meta.safetensors")[0] == 404
    finally:
        for name in ("meta", "nometa", "huge", "lying", "short", "badjson", "list"):
            (ckpt / f"{name}.safetensors").unlink()
        (ckpt / "meta.ckpt").unlink()


@pytest.mark.parametrize("filename", [
    "../../../outside/model.safetensors", "..%2F..%2F..%2Foutside%2Fmodel.safetensors",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2foutside%2fmodel.safetensors", "..%5Cmodel.safetensors",
    "%2Fetc%2Fmodel.safetensors", "C:model.safetensors", "a%00.safetensors", "x" * 300 + ".safetensors",
    "evil.safetensors", "evildir/model.safetensors",
])
def test_view_metadata_hostile(env, frozen, filename):
    for prefix in PREFIXES:
        status, _, body = env.get(f"{prefix}/view_metadata/checkpoints?filename={filename}")
        assert status in (400, 403, 404), (filename, status)
        env.assert_no_leak(body)


# --- /internal -------------------------------------------------------------------------------------
def test_internal_folder_paths(env):
    paths = env.server.get_json("/internal/folder_paths")
    assert paths["checkpoints"] == [str(env.base / "models" / "checkpoints")]
    assert paths["custom_nodes"] == [str(env.base / "custom_nodes")]
    assert all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in paths.values())
    assert env.get("/api/internal/folder_paths")[0] == 404


def test_internal_files_newest_first(env):
    temp = env.base / "temp"
    now = time.time()
    for i, name in enumerate(("old.png", "mid.png", "new.png")):
        (temp / name).write_bytes(b"x")
        os.utime(temp / name, (now - 100 + i * 10, now - 100 + i * 10))
    (temp / "folder").mkdir(exist_ok=True)
    listed = env.server.get_json("/internal/files/temp")
    assert [n for n in listed if n in ("old.png", "mid.png", "new.png")] == ["new.png", "mid.png", "old.png"]
    assert "folder" not in listed
    assert "evil.png" not in listed and "evil.txt" not in listed  # links leaving the folder
    assert env.get("/api/internal/files/temp")[0] == 404


def test_internal_files_bad_type_and_missing_folder(env):
    for kind in ("bogus", "models", "user", "%2e%2e", "input%2F..%2F.."):
        status, _, body = env.get(f"/internal/files/{kind}")
        assert status in (400, 404) and (status == 404 or json.loads(body) == {"error": "Invalid directory type"})
    status, _, body = env.get("/internal/files/bogus")
    assert status == 400 and json.loads(body) == {"error": "Invalid directory type"}
    output = env.base / "output"
    moved = env.root / "output-moved"
    os.rename(output, moved)
    try:
        status, _, body = env.get("/internal/files/output")
        assert status == 200 and json.loads(body) == []
    finally:
        os.rename(moved, output)


# --- custom-node extras ----------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", PREFIXES)
def test_i18n_and_workflow_templates(env, prefix):
    assert env.server.get_json(prefix + "/i18n") == {}
    assert env.server.get_json(prefix + "/workflow_templates") == {}
