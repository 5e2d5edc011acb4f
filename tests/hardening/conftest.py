"""Hardening suite: hostile input, faults and load against real `python -m hearth` processes.

Servers here are module-scoped where a test module can share one (starting one costs ~2 s and the
first prompt ~5 s for torch), always on 127.0.0.1 with their own base directory. Figures the issue
asks for (cases generated, 5xx, escapes, faults survived, load held) are collected in ``FIGURES``
and printed at the end of the run; with HEARTH_HARDENING_REPORT=<file> they are also written as JSON.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Server, free_port

SHARED = REPO.parent / "shared"
COMFY_SPEC = SHARED / "spec" / "comfyui-openapi.yaml"

FIGURES: dict[str, dict] = {}


def figure(section: str, **values) -> None:
    """Record figures for the end-of-run summary (numbers add up across tests, others are replaced)."""
    slot = FIGURES.setdefault(section, {})
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and isinstance(slot.get(key), (int, float)):
            slot[key] += value
        else:
            slot[key] = value


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    terminalreporter.section("hardening figures")
    for section, values in FIGURES.items():
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        terminalreporter.write_line(f"{section}: {shown}")
    target = os.environ.get("HEARTH_HARDENING_REPORT")
    if target:
        Path(target).write_text(json.dumps(FIGURES, indent=1, sort_keys=True))


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# --- strict JSON ---------------------------------------------------------------------------------------
def _no_constants(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json(raw: bytes):
    """Parse like a browser's JSON.parse: NaN/Infinity are errors."""
    return json.loads(raw, parse_constant=_no_constants)


def assert_comfy_error(status: int, raw: bytes, allowed=(400,)) -> dict:
    """A ComfyUI-shaped error: {"error": {type, message, details, extra_info}, "node_errors": {...}}."""
    assert status in allowed, (status, raw[:500])
    body = strict_json(raw)
    assert isinstance(body, dict) and set(body) >= {"error", "node_errors"}, body
    err = body["error"]
    assert isinstance(err, dict), body
    for key, kind in (("type", str), ("message", str), ("details", str), ("extra_info", dict)):
        assert isinstance(err.get(key), kind), (key, body)
    assert isinstance(body["node_errors"], dict), body
    return body


# --- custom nodes used by the fault tests ---------------------------------------------------------------
HOSTILE_NODES = r'''
import os
import time

from hearth.engine.progress import check_interrupt, report_progress


def _image_in():
    return {"required": {"image": ("IMAGE",)}}


class HardenSleep:
    """Sleeps, checking for interrupt every 20 ms (a cooperative long node)."""
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "seconds": ("FLOAT", {"default": 1.0, "min": 0, "max": 3600})}}

    def run(self, image, seconds):
        end = time.time() + seconds
        while time.time() < end:
            check_interrupt()
            time.sleep(min(0.02, max(end - time.time(), 0)))
        return (image,)


class HardenRaise:
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return _image_in()

    def run(self, image):
        raise ValueError("hardening: this node always fails")


class HardenHang:
    """Never returns on its own; only an interrupt ends it (check_interrupt raises)."""
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return _image_in()

    def run(self, image):
        i = 0
        while True:
            check_interrupt()
            time.sleep(0.01)
            i += 1
            if i % 10 == 0:
                report_progress(i % 1000, 1000)


class HardenBlockingSleep:
    """Blocks without ever checking for interrupt (a node that ignores the protocol)."""
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "seconds": ("FLOAT", {"default": 1.0, "min": 0, "max": 60})}}

    def run(self, image, seconds):
        time.sleep(seconds)
        return (image,)


class HardenExhaustMemory:
    """Allocates until the process runs out of address space (capped with RLIMIT_AS for this call)."""
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "headroom_mb": ("INT", {"default": 512, "min": 64, "max": 8192})}}

    def run(self, image, headroom_mb):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as f:
            vm_bytes = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vm_bytes + headroom_mb * 1024 * 1024, hard))
        hoard = []
        try:
            while True:
                hoard.append(bytearray(32 * 1024 * 1024))  # zero-filled: really committed
        finally:
            hoard.clear()
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class HardenSecretFail:
    """Receives the comfy.org credential as a hidden input, then fails."""
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)},
                "hidden": {"auth_token_comfy_org": "AUTH_TOKEN_COMFY_ORG", "api_key_comfy_org": "API_KEY_COMFY_ORG"}}

    def run(self, image, auth_token_comfy_org=None, api_key_comfy_org=None):
        raise RuntimeError(f"upstream refused the request (key {api_key_comfy_org})")


class HardenBadUi:
    """An output node whose ui holds values JSON cannot carry."""
    CATEGORY = "testing"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "kind": (["object", "nan"],)}}

    def run(self, image, kind):
        value = object() if kind == "object" else float("nan")
        return {"ui": {"value": [value]}}


class HardenChatty:
    """Reports progress many times (websocket load)."""
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "steps": ("INT", {"default": 100, "min": 1, "max": 100000})}}

    def run(self, image, steps):
        for i in range(steps):
            report_progress(i + 1, steps)
        return (image,)


class HardenNoPixelLimit:
    """Does what some custom node packs do at run time: switch Pillow's decompression-bomb check off."""
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return _image_in()

    def run(self, image):
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        return (image,)


NODE_CLASS_MAPPINGS = {
    "HardenNoPixelLimit": HardenNoPixelLimit,
    "HardenSleep": HardenSleep,
    "HardenRaise": HardenRaise,
    "HardenHang": HardenHang,
    "HardenBlockingSleep": HardenBlockingSleep,
    "HardenExhaustMemory": HardenExhaustMemory,
    "HardenSecretFail": HardenSecretFail,
    "HardenBadUi": HardenBadUi,
    "HardenChatty": HardenChatty,
}
'''


def write_hostile_pack(base: Path) -> Path:
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    path = base / "custom_nodes" / "hearth_hardening_nodes.py"
    path.write_text(HOSTILE_NODES)
    return path


def image_prompt(color: int = 0, size: int = 8, middle: dict | None = None, output: str = "PreviewImage") -> dict:
    """EmptyImage -> [middle node] -> output node. ``middle``: {"class_type", "inputs"} without the image link."""
    prompt: dict = {"1": {"class_type": "EmptyImage",
                          "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}}}
    source = ["1", 0]
    if middle is not None:
        prompt["3"] = {"class_type": middle["class_type"], "inputs": {"image": ["1", 0], **middle.get("inputs", {})}}
        source = ["3", 0]
    out_inputs: dict = {"images": source}
    if output == "SaveImage":
        out_inputs["filename_prefix"] = "harden"
    prompt["2"] = {"class_type": output, "inputs": out_inputs}
    return prompt


def submit(server: Server, prompt: dict, **extra) -> str:
    status, body = server.post_json("/prompt", {"prompt": prompt, **extra})
    assert status == 200, body
    return body["prompt_id"]


def wait_running(server: Server, prompt_id: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(item[1] == prompt_id for item in server.get_json("/queue")["queue_running"]):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{prompt_id} never started running:\n{server.log()[-3000:]}")


def worker_alive(server: Server, color: int, timeout: float = 60.0) -> None:
    """The next job runs to success (the worker survived whatever came before)."""
    pid = submit(server, image_prompt(color))
    entry = server.wait_history(pid, timeout)
    assert entry["status"]["status_str"] == "success", entry["status"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """Factory for servers shared by a test module: make(name, extra_args, pack=False)."""
    servers: list[Server] = []

    def make(name: str = "srv", extra_args: list[str] | None = None, pack: bool = False,
             port: int | None = None) -> Server:
        base = tmp_path_factory.mktemp(name)
        if pack:
            write_hostile_pack(base)
        s = Server(base, extra_args, port or free_port())
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()
