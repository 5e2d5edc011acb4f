"""Shared fixtures: a real Hearth server started as a subprocess on a free loopback port."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `python -m hearth` process with its own base directory."""

    def __init__(self, base: Path, extra_args: list[str] | None = None, port: int | None = None):
        self.base = Path(base)
        self.port = port or free_port()
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.log_path = self.base / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30.0) -> "Server":
        self.base.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "hearth", "--port", str(self.port), "--base-directory", str(self.base),
               *self.extra_args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(self.base))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=1) as r:
                    if r.status == 200:
                        return self
            except urllib.error.HTTPError:
                return self  # it answers (e.g. 401 when a token is required)
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()

    # --- small synchronous HTTP helpers (tests may also use aiohttp) ---
    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get_json(self, path: str):
        status, _, body = self.request("GET", path)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def post_json(self, path: str, body) -> tuple[int, object]:
        status, _, raw = self.request("POST", path, body)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def wait_history(self, prompt_id: str, timeout: float = 60.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            h = self.get_json(f"/history/{prompt_id}")
            if prompt_id in h:
                return h[prompt_id]
            time.sleep(0.02)
        raise TimeoutError(f"prompt {prompt_id} did not finish:\n{self.log()[-3000:]}")


@pytest.fixture
def make_server(tmp_path):
    servers: list[Server] = []

    def make(extra_args: list[str] | None = None, base: Path | None = None, port: int | None = None) -> Server:
        s = Server(base or tmp_path / f"base{len(servers)}", extra_args, port)
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server) -> Server:
    return make_server()


def trivial_prompt(color: int = 0, size: int = 64, output: str = "PreviewImage") -> dict:
    out_inputs: dict = {"images": ["1", 0]}
    if output == "SaveImage":
        out_inputs["filename_prefix"] = "ComfyUI"
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                         "color": color}},
            "2": {"class_type": output, "inputs": out_inputs}}
