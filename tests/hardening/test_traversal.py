"""Path traversal corpus over every input that names a file.

A sentinel folder sits next to the server's base directory; links inside input/, output/, temp/,
the user folder and a custom node's web folder point into it. Every name of the corpus (``..`` in all
encodings, absolute, UNC and drive paths, NUL bytes, fullwidth dots, overlong UTF-8, very long
names, the links themselves) is sent, in several wire encodings, to every route and node input that
takes a file name. Each request must be answered 400/403/404 (a prompt naming such a file: a 400, or
for save prefixes a clean run-time error), no response may carry the sentinel's bytes, no sentinel
file may be read (its atime is watched: reads through a followed link count too) and nothing outside
the served folders may be written. ``escapes`` in the figures counts violations (must be 0).
"""
from __future__ import annotations

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
from PIL import Image

from tests.conftest import Server, free_port
from tests.hardening.conftest import figure

SECRET = b"HEARTH-TRAVERSAL-SENTINEL"
REFUSED = (400, 403, 404)


# --- the corpus -------------------------------------------------------------------------------------
def names(depth: int, outside: Path) -> list[tuple[str, bool]]:
    """(name, must be refused) for a folder ``depth`` levels below the sentinel's parent.

    Names that must be refused climb out of their folder, are absolute, name a drive or UNC share, hold
    a NUL byte or a backslash, are too long, or go through a link that leaves the folder. The others
    only look hostile (``....//``, ``..;/``, fullwidth dots, ``~``): on a POSIX file system they are
    ordinary names inside the folder, so creating them is allowed, but they must not reach outside.
    """
    up = [".."] * depth
    target = ["outside", "secret.txt"]
    strict = [
        "/".join(up + target),
        "\\".join(up + target),
        "/".join(up[:1]) + "\\" + "\\".join(up[1:] + target),
        "./" + "/".join(up + target),
        "/".join(["x"] + up + [".."] + target),
        "/".join([".."] * 12 + ["etc", "passwd"]),
        str(outside / "secret.txt"),
        "/etc/passwd",
        "//etc/passwd",
        "//server/share/secret.txt",
        "\\\\server\\share\\secret.txt",
        "\\\\?\\C:\\Windows\\win.ini",
        "C:secret.txt",
        "C:\\Windows\\win.ini",
        "c:/windows/win.ini",
        "secret.txt\x00.png",
        "\x00",
        "evil\x00/../../outside/secret.txt",
        "..",
        "x" * 300,
        "x" * 300 + ".png",
        "y" * 5000,
        "a/" * 2500 + "x",
        "evil.txt",
        "evil.png",
        "evildir/secret.txt",
        "evildir/../evildir/secret.txt",
        "../evil.png [output]",
    ]
    odd = [
        "/".join(["....//"] * depth) + "/".join(target),
        "..;/" * depth + "/".join(target),
        "\uff0e\uff0e\uff0f" * depth + "\uff0f".join(target),  # fullwidth dots and slash
        "\u2025/" * depth + "/".join(target),  # two-dot leader
        "..\u2215" * depth + "\u2215".join(target),  # division slash
        "file:///etc/passwd",
        "~/secret.txt",
        "~root/.bashrc",
        "a/" * 100 + "x",
        "evil.png [input]",
        ".",  # the folder itself: listing it is fine, reading it as a file is not
        "",
    ]
    return [(n, True) for n in strict] + [(n, False) for n in odd]


# Already-encoded URL pieces: (piece, must be refused). A decoder must turn none of them into a
# second round of '..' or '/'.
PRE_ENCODED = [
    ("%2e%2e%2f%2e%2e%2f%2e%2e%2foutside%2fsecret.txt", True),
    ("%2E%2E%5C%2E%2E%5Coutside%5Csecret.txt", True),
    ("..%2f..%2f..%2foutside%2fsecret.txt", True),
    ("%2e%2e/%2e%2e/%2e%2e/outside/secret.txt", True),
    ("..%00/secret.txt", True),
    ("%00", True),
    ("%252e%252e%252f%252e%252e%252foutside%252fsecret.txt", False),  # double encoded: a literal name
    ("..%252f..%252f..%252foutside%252fsecret.txt", False),
    ("%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afoutside%c0%afsecret.txt", False),  # overlong UTF-8
    ("%e0%80%ae%e0%80%ae/outside/secret.txt", False),
    ("%u002e%u002e%u2215outside%u2215secret.txt", False),
    ("%ff%fe..%2f", False),
]


def wire_forms(name: str, strict: bool) -> list[tuple[str, bool]]:
    """The name as it may appear in a URL: fully encoded, separators raw, and double encoded (which
    decodes to a literal name with '%' in it: odd, not an escape)."""
    full = quote(name, safe="")
    light = quote(name, safe="/\\:~.;")
    double = quote(full, safe="")
    forms = {full: strict, light: strict}
    forms.setdefault(double, False)
    return list(forms.items())


# --- environment ------------------------------------------------------------------------------------
def png(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, (255, 0, 0, 255)).save(buf, format="PNG")
    return buf.getvalue()


def safetensors_bytes(metadata: dict) -> bytes:
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": metadata}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + struct.pack("<2f", 1.0, 2.0)


WEBPACK = '''
NODE_CLASS_MAPPINGS = {}
WEB_DIRECTORY = "./web"
'''


class Env:
    def __init__(self, root: Path):
        self.root = root
        self.outside = root / "outside"
        self.base = root / "base"
        self.server: Server | None = None
        self.requests = 0
        self.escapes: list[str] = []
        self.statuses: dict[int, int] = {}

    # sentinel files and folders whose atime betrays a read
    def sentinels(self) -> list[Path]:
        return [p for p in [self.outside, *self.outside.rglob("*")]]

    def arm(self) -> None:
        """Set every sentinel's atime before its mtime: relatime then records the next read."""
        for p in self.sentinels():
            st = os.stat(p)
            os.utime(p, ns=(st.st_mtime_ns - 10 ** 12, st.st_mtime_ns))
        self._atimes = {p: os.stat(p).st_atime_ns for p in self.sentinels()}

    def touched(self) -> list[str]:
        return [str(p) for p in self.sentinels() if os.stat(p).st_atime_ns != self._atimes[p]]

    def send(self, label: str, method: str, path: str, body=None, headers=None, allowed=REFUSED) -> int:
        assert self.server is not None
        status, _, raw = self.server.request(method, path, body, headers)
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        problems = []
        if SECRET in raw:
            problems.append("response carries the sentinel")
        touched = self.touched()
        if touched:
            problems.append(f"read outside: {touched}")
            self.arm()
        if allowed is not None and status not in allowed:
            problems.append(f"status {status} ({raw[:200]!r})")
        if problems:
            self.escapes.append(f"{label}: {method} {path[:200]}: {'; '.join(problems)}")
        return status


def snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if any(Path(dirpath) == s or s in Path(dirpath).parents for s in skip):
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if full in skip:
                continue
            if full.is_symlink():
                out[str(full)] = ("link", os.readlink(full))
            elif full.is_file():
                out[str(full)] = ("file", hashlib.sha256(full.read_bytes()).hexdigest())
            else:
                out[str(full)] = ("dir",)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("traversal")
    e = Env(root)
    (e.outside / "dir").mkdir(parents=True)
    (e.outside / "secret.txt").write_bytes(SECRET)
    (e.outside / "dir" / "secret.txt").write_bytes(SECRET)
    (e.outside / "dir" / "secret.png").write_bytes(png() + SECRET)
    (e.outside / "secret.png").write_bytes(png() + SECRET)
    (e.outside / "secret.safetensors").write_bytes(safetensors_bytes({"s": SECRET.decode()}))
    (e.outside / "web.js").write_bytes(b"// " + SECRET)
    pack = e.base / "custom_nodes" / "webpack"
    (pack / "web").mkdir(parents=True)
    (pack / "__init__.py").write_text(WEBPACK)
    (pack / "web" / "ok.js").write_text("// fine\n")
    os.symlink(e.outside / "web.js", pack / "web" / "evil.js")
    os.symlink(e.outside / "dir", pack / "web" / "evildir")
    ckpt = e.base / "models" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "real.safetensors").write_bytes(safetensors_bytes({"ok": "1"}))
    e.server = Server(e.base, [], free_port()).start()
    user = e.base / "user" / "default"
    user.mkdir(parents=True, exist_ok=True)
    for folder in (e.base / "input", e.base / "output", e.base / "temp", user):
        os.symlink(e.outside / "secret.png", folder / "evil.png")
        os.symlink(e.outside / "secret.txt", folder / "evil.txt")
        os.symlink(e.outside / "dir", folder / "evildir")
    (user / "ok.json").write_text("{}")
    (e.base / "input" / "ok.png").write_bytes(png())
    e.writable = (e.base / "input", e.base / "output", e.base / "temp", e.base / "user", e.base / "server.log",
                  e.base / "custom_nodes" / "webpack" / "__pycache__")
    e.before = snapshot(root, e.writable)
    e.arm()
    try:
        yield e
    finally:
        e.server.stop()


@pytest.fixture(autouse=True)
def nothing_written_outside(env):
    env.arm()
    yield
    assert snapshot(env.root, env.writable) == env.before  # (reads the sentinels itself: re-armed next test)
    assert (env.outside / "secret.txt").read_bytes() == SECRET


def _report(env: Env, section: str) -> None:
    figure("path traversal", requests=env.requests, escapes=len(env.escapes))
    assert not env.escapes, f"{len(env.escapes)} escapes in {section}:\n" + "\n".join(env.escapes[:40])


# --- HTTP routes ------------------------------------------------------------------------------------
def query_targets(w: str) -> list[tuple[str, str]]:
    return [(f"/view?type={kind}&filename={w}", "GET") for kind in ("input", "output", "temp")] + [
        (f"/view?type=input&filename=secret.txt&subfolder={w}", "GET"),
        (f"/view?filename={w}&preview=webp;50&channel=rgb", "GET"),
        (f"/view_metadata/checkpoints?filename={w}", "GET"),
        (f"/view_metadata/checkpoints?filename={w}.safetensors", "GET"),
        (f"/userdata?dir={w}&recurse=true", "GET"),
        (f"/v2/userdata?path={w}", "GET"),
    ]


def path_targets(w: str) -> list[tuple[str, str]]:
    return [
        (f"/userdata/{w}", "GET"), (f"/userdata/{w}", "DELETE"), (f"/userdata/{w}", "POST"),
        (f"/userdata/ok.json/move/{w}", "POST"), (f"/userdata/{w}/move/moved.json", "POST"),
        (f"/view_metadata/{w}?filename=real.safetensors", "GET"),
        (f"/experiment/models/preview/checkpoints/0/{w}", "GET"),
        (f"/experiment/models/{w}", "GET"), (f"/models/{w}", "GET"), (f"/internal/files/{w}", "GET"),
        (f"/extensions/webpack/{w}", "GET"), (f"/templates/{w}", "GET"), (f"/docs/{w}", "GET"), (f"/{w}", "GET"),
    ]


def test_url_inputs(env):
    forms = [f for name, strict in names(3, env.outside) for f in wire_forms(name, strict)] + PRE_ENCODED
    forms += [("..%2F" * n + "outside%2Fsecret.txt", True) for n in (1, 2, 3, 4, 5)]
    ok = env.base / "user" / "default" / "ok.json"
    for w, strict in forms:
        allowed = REFUSED if strict else REFUSED + (200, 204, 409)
        # In a URL path, raw '.' and '..' segments are resolved before routing (RFC 3986), so such a URL
        # lands on another route (usually the static root), which may not take the method: 405.
        targets = [(p, m, allowed) for p, m in query_targets(w)] + [(p, m, allowed + (405,))
                                                                     for p, m in path_targets(w)]
        for path, method, ok_status in targets:
            body = b"pwned" if method == "POST" else None
            for prefix in ("", "/api"):
                if prefix and path.startswith(("/internal", "/extensions", "/templates", "/docs")):
                    continue
                if prefix and path.startswith("/") and path.count("/") == 1 and not path.startswith("/userdata"):
                    continue  # the frontend root is not mirrored
                env.send("url", method, prefix + path, body, allowed=ok_status)
                if not ok.exists():  # a move of ok.json to an odd but legal name succeeded
                    ok.write_text("{}")
    # links leaving the served folders, named plainly
    for path in ("/extensions/webpack/evil.js", "/extensions/webpack/evildir/secret.txt", "/userdata/evil.txt",
                 "/userdata/evildir%2Fsecret.txt", "/view?filename=evil.png&type=output&preview=webp;50",
                 "/view?filename=secret.png&subfolder=evildir&type=temp", "/v2/userdata?path=evildir",
                 "/userdata?dir=evildir"):
        env.send("link", "GET", path)
    env.send("link", "POST", "/userdata/evil.txt", b"overwrite through the link")
    env.send("link", "POST", "/userdata/evildir%2Fnew.txt", b"write through the link")
    env.send("link", "POST", "/userdata/ok.json/move/evildir%2Fmoved.json", None)
    env.send("link", "DELETE", "/userdata/evildir%2Fsecret.txt")
    # the legitimate neighbours still work (the corpus did not just break every route)
    assert env.server.request("GET", "/extensions/webpack/ok.js")[0] == 200
    assert env.server.request("GET", "/userdata/ok.json")[0] == 200
    assert env.server.request("GET", "/view?filename=ok.png&type=input")[0] == 200
    _report(env, "URL inputs")


# --- multipart uploads ------------------------------------------------------------------------------
def multipart(fields: dict) -> tuple[bytes, dict]:
    boundary = "trav" + uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            params, data = value
            out.write(b'Content-Disposition: form-data; name="' + name.encode() + b'"; ' + params + b"\r\n")
            out.write(b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            out.write(value.encode("utf-8", "surrogatepass") + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def filename_params(name: str) -> list[bytes]:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    raw = b'filename="' + quoted.encode("utf-8", "surrogatepass") + b'"'
    star = b"filename*=UTF-8''" + quote(name, safe="").encode()
    return [raw, star]


def test_upload_inputs(env):
    for name, strict in names(2, env.outside):
        allowed = REFUSED if strict else REFUSED + (200,)
        for params in filename_params(name):
            for kind in ("input", "output", "temp"):
                # a file part's name is reduced to a plain name or refused; either way it lands inside
                body, headers = multipart({"image": (params, png()), "type": kind})
                env.send("upload filename", "POST", "/upload/image", body, headers, allowed=REFUSED + (200,))
        body, headers = multipart({"image": (b'filename="t.png"', png()), "subfolder": name})
        env.send("upload subfolder", "POST", "/upload/image", body, headers, allowed=allowed)
        body, headers = multipart({"image": (b'filename="t.png"', png()), "type": name})
        env.send("upload type", "POST", "/upload/image", body, headers, allowed=REFUSED + ((200,) if not name else ()))
        for key in ("filename", "subfolder", "type"):
            ref = {"filename": "ok.png", "subfolder": "", "type": "input", key: name}
            ok_ref = allowed + ((200,) if key != "filename" and not name else ())
            body, headers = multipart({"image": (b'filename="m.png"', png()), "original_ref": json.dumps(ref)})
            env.send(f"mask original_ref.{key}", "POST", "/upload/mask", body, headers, allowed=ok_ref)
        body, headers = multipart({"image": (b'filename="m.png"', png()), "subfolder": name,
                                   "original_ref": json.dumps({"filename": "ok.png", "type": "input"})})
        env.send("mask subfolder", "POST", "/upload/mask", body, headers, allowed=allowed)
    # an upload whose name is a link to outside is never written through
    body, headers = multipart({"image": (b'filename="evil.png"', b"attacker"), "type": "input",
                               "overwrite": "true"})
    env.send("upload onto link", "POST", "/upload/image", body, headers)
    _report(env, "uploads")
    # names that were accepted (200) were stored inside the folder under a plain name
    for kind in ("input", "output", "temp"):
        for entry in (env.base / kind).rglob("*"):
            assert env.base / kind in entry.resolve().parents or entry.is_symlink() or entry.parent.is_symlink(), entry


# --- prompts: save prefixes, image names and every model-name input ---------------------------------
FILE_INPUTS = {
    "LoadImage": ["image"], "LoadImageMask": ["image"], "LoadLatent": ["latent"],
    "CheckpointLoaderSimple": ["ckpt_name"], "CheckpointLoader": ["config_name", "ckpt_name"],
    "DiffusersLoader": ["model_path"], "UNETLoader": ["unet_name"], "CLIPLoader": ["clip_name"],
    "DualCLIPLoader": ["clip_name1", "clip_name2"], "VAELoader": ["vae_name"], "LoraLoader": ["lora_name"],
    "LoraLoaderModelOnly": ["lora_name"], "CLIPVisionLoader": ["clip_name"], "ControlNetLoader": ["control_net_name"],
    "UpscaleModelLoader": ["model_name"], "StyleModelLoader": ["style_model_name"], "GLIGENLoader": ["gligen_name"],
    "HypernetworkLoader": ["hypernetwork_name"], "unCLIPCheckpointLoader": ["ckpt_name"],
}


def _defaults(info: dict, skip: str) -> dict:
    """Valid-looking values for a node's other required inputs (links go to node "9", a real loader)."""
    inputs = {}
    for name, spec in info["input"].get("required", {}).items():
        if name == skip:
            continue
        kind = spec[0]
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if isinstance(kind, list):
            inputs[name] = kind[0] if kind else "real.safetensors"
        elif kind in ("INT", "FLOAT", "BOOLEAN", "STRING"):
            inputs[name] = opts.get("default", {"INT": 1, "FLOAT": 1.0, "BOOLEAN": False, "STRING": ""}[kind])
        else:
            inputs[name] = ["9", 0 if kind == "MODEL" else 1 if kind == "CLIP" else 2]
    return inputs


def test_prompt_file_inputs(env):
    info = env.server.get_json("/object_info")
    corpus = dict(names(3, env.outside))
    corpus.update(names(2, env.outside))
    corpus["ok.png/../../outside/secret.txt"] = True
    accepted = []
    tried = 0
    loader = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "real.safetensors"}}
    for class_type, inputs in FILE_INPUTS.items():
        if class_type not in info:
            continue
        for input_name in inputs:
            for name, strict in corpus.items():
                node = {"class_type": class_type, "inputs": {**_defaults(info[class_type], input_name),
                                                             input_name: name}}
                prompt = {"1": node, "9": loader, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
                # an odd name may be a real file inside the folder (an earlier test uploaded some)
                status, _, raw = env.server.request("POST", "/prompt", json.dumps({"prompt": prompt}).encode())
                env.requests += 1
                tried += 1
                if status == 200:
                    accepted.append(json.loads(raw)["prompt_id"])
                if status != 400 and (strict or status != 200):
                    env.escapes.append(f"{class_type}.{input_name}={name[:60]!r}: status {status} {raw[:200]!r}")
    # save prefixes: accepted or refused, never written outside output/ (the snapshot fixture checks)
    saved = []
    savers = [c for c in ("SaveImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveLatent") if c in info]
    for class_type in savers:
        source = ({"class_type": "EmptyLatentImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}}
                  if class_type == "SaveLatent" else
                  {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}})
        image_input = "samples" if class_type == "SaveLatent" else "images"
        for name in corpus:
            inputs = {**_defaults(info[class_type], image_input), image_input: ["1", 0], "filename_prefix": name}
            prompt = {"1": source, "2": {"class_type": class_type, "inputs": inputs}}
            status, _, raw = env.server.request("POST", "/prompt", json.dumps({"prompt": prompt}).encode())
            env.requests += 1
            tried += 1
            if status == 200:
                saved.append(json.loads(raw)["prompt_id"])
            elif status != 400:
                env.escapes.append(f"{class_type} prefix {name[:80]!r}: status {status}")
    for pid in saved + accepted:
        entry = env.server.wait_history(pid, 60)
        assert entry["status"]["completed"] in (True, False)
    time.sleep(0.2)
    touched = env.touched()
    if touched:
        env.escapes.append(f"save prefixes read outside: {touched}")
    # what was written stays inside output/
    output = (env.base / "output").resolve()
    for entry in output.rglob("*"):
        if not entry.is_symlink() and not any(p.is_symlink() for p in entry.parents):
            assert output in entry.resolve().parents
    figure("path traversal", prompt_cases=tried)
    _report(env, "prompt file inputs")
