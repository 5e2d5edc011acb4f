#!/usr/bin/env python
"""Engine overhead: what the engine costs per node, on graphs of trivial nodes.

    python bench/engine_overhead.py                  # Hearth's engine, in-process
    python bench/engine_overhead.py --servers        # and Hearth vs ComfyUI, both as servers, side by side

Graphs (nodes from bench/overhead_nodes.py: a few hundred nanoseconds of Python each):
  chain    Const -> Add -> Add -> ... -> Sink          (each node waits on the previous one)
  fan-out  Const -> n-1 Sink output nodes               (n-1 nodes ready at once)

In-process (Hearth only): Engine.validate and Engine.execute called directly with an emit that counts
and drops events: validate, execute with nothing cached, and execute again fully cached (µs/node).

--servers: both servers started as subprocesses (fresh base directory each, bench/overhead_nodes.py
copied into its custom_nodes/), loopback only. A websocket client stays connected to each (as a UI
does), and each prompt is timed from just before ``POST /prompt`` to the arrival of ``executing`` with
``node: null`` for it: "POST" is the request alone (parse + validate + queue), "cold" the whole prompt
with nothing cached (a fresh constant at the root, so every node runs), "cached" the identical prompt
submitted again at once. Rounds alternate the order (Hearth first, then ComfyUI first, ...) and the
table shows the median per node and the ratio Hearth / ComfyUI (target: <= 0.5). ComfyUI validates
recursively, so a 1,000-node chain fails there with a RecursionError; --compare-chain adds a chain
short enough for it (its per-node cost grows with the length, so the ratio at 1,000 would be larger).
Nothing of ComfyUI is imported or copied: it runs from its own checkout and virtual environment
(see bench/README.md), found at --comfyui / --comfyui-python.
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import copy
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.overhead_nodes import NODE_CLASS_MAPPINGS  # noqa: E402
from hearth.engine import CachePolicy, Engine, Interrupt  # noqa: E402
from hearth.nodes.registry import NodeRegistry  # noqa: E402

NODES_FILE = REPO / "bench" / "overhead_nodes.py"
HOST = "127.0.0.1"
POLL_S = 0.005
MODES = {"bare": "no websocket client; done = GET /history/{id} answers (polled every 5 ms)",
         "ws": "a websocket client attached; done = its `executing` null"}


# -- graphs -------------------------------------------------------------------------------------------

def chain(n: int, value: int = 1) -> dict:
    prompt = {"1": {"class_type": "OverheadConst", "inputs": {"value": value}}}
    for i in range(2, n):
        prompt[str(i)] = {"class_type": "OverheadAdd", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    prompt[str(n)] = {"class_type": "OverheadSink", "inputs": {"value": [str(n - 1), 0]}}
    return prompt


def fan_out(n: int, value: int = 1) -> dict:
    prompt = {"1": {"class_type": "OverheadConst", "inputs": {"value": value}}}
    for i in range(2, n + 1):
        prompt[str(i)] = {"class_type": "OverheadSink", "inputs": {"value": ["1", 0]}}
    return prompt


GRAPHS = {"chain": chain, "fan-out": fan_out}


# -- in-process ---------------------------------------------------------------------------------------

def registry() -> NodeRegistry:
    reg = NodeRegistry()
    reg.register_mappings(NODE_CLASS_MAPPINGS)
    return reg


class EventCounter:
    """An emit that counts and drops events, like a hub that sends each one and forgets it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event) -> None:
        self.count += 1


def measure_in_process(name: str, build, n: int, repeat: int, policy: str) -> None:
    validate_s, cold_s, warm_s, events = [], [], [], 0
    for i in range(repeat):
        engine = Engine(registry(), CachePolicy(kind=policy))
        prompt = build(n)
        start = time.perf_counter()
        result = engine.validate(prompt)
        validate_s.append(time.perf_counter() - start)
        assert result.ok, result.error

        counter = EventCounter()
        start = time.perf_counter()
        outcome = engine.execute(f"cold{i}", copy.deepcopy(prompt), {}, result.outputs, counter, Interrupt())
        cold_s.append(time.perf_counter() - start)
        assert outcome.status == "success", outcome.error
        events = counter.count

        start = time.perf_counter()
        engine.execute(f"warm{i}", copy.deepcopy(prompt), {}, result.outputs, EventCounter(), Interrupt())
        warm_s.append(time.perf_counter() - start)

    def per_node(samples):
        return statistics.median(samples) / n * 1e6

    print(f"{name:8s} n={n:5d}  validate {statistics.median(validate_s) * 1e3:7.2f} ms "
          f"({per_node(validate_s):6.2f} µs/node)   execute {per_node(cold_s):7.2f} µs/node "
          f"({statistics.median(cold_s) * 1e3:7.1f} ms, {events} events)   "
          f"cached re-run {per_node(warm_s):7.2f} µs/node")


# -- servers ------------------------------------------------------------------------------------------

_RUNNING: list["ServerProcess"] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server started in its own process group, with its own fresh base directory."""

    def __init__(self, label: str, argv_for, env: dict | None = None, start_timeout: float = 300.0):
        self.label = label
        self.port = _free_port()
        self.base = Path(tempfile.mkdtemp(prefix=f"overhead_{label.lower()}_"))
        for sub in ("custom_nodes", "models", "input", "output", "temp", "user"):
            (self.base / sub).mkdir()
        shutil.copy(NODES_FILE, self.base / "custom_nodes" / NODES_FILE.name)
        self.argv = argv_for(self.port, self.base)
        self.env = env
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.log = None
        self.start_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> "ServerProcess":
        self.log = open(self.base / "server.log", "wb")
        started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.base, env=self.env,
                                     start_new_session=True)
        _RUNNING.append(self)
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode}; see {self.base}/server.log")
            try:
                with urllib.request.urlopen(f"{self.url}/object_info/OverheadSink", timeout=2) as r:
                    if "OverheadSink" in json.loads(r.read()):
                        self.start_seconds = time.perf_counter() - started
                        return self
                    raise RuntimeError(f"{self.label} did not load {NODES_FILE.name}; see {self.base}/server.log")
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not answer within {self.start_timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.log is not None:
            self.log.close()
        if self in _RUNNING:
            _RUNNING.remove(self)
        shutil.rmtree(self.base, ignore_errors=True)


def _stop_all(*_args) -> None:
    for server in list(_RUNNING):
        server.stop()


class PromptFailed(Exception):
    pass


@dataclass
class Connection:
    """A client of one server. Mode "ws": a websocket client (as a UI), prompts posted under its client id,
    the end of each found without decoding the big frames. Mode "bare": no websocket anywhere, prompts
    posted without client id, the end found by polling /history/{id} every POLL_S."""

    server: ServerProcess
    mode: str = "ws"
    session: object = None
    ws: object = None
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    waiters: dict = field(default_factory=dict)
    reader: asyncio.Task | None = None

    async def open(self) -> "Connection":
        import aiohttp

        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        if self.mode == "ws":
            self.ws = await self.session.ws_connect(f"ws://{HOST}:{self.server.port}/ws?clientId={self.client_id}",
                                                    max_msg_size=0, heartbeat=None)
            self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        import aiohttp

        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            head = msg.data[:40]
            # progress_state frames of a 1,000-node prompt are hundreds of kB: only small ones are decoded.
            if '"executing"' in head or '"execution_error"' in head or '"execution_interrupted"' in head:
                data = json.loads(msg.data)
                body = data.get("data") or {}
                waiter = self.waiters.get(body.get("prompt_id"))
                if waiter is None or waiter.done():
                    continue
                if data["type"] == "executing" and body.get("node") is None:
                    waiter.set_result(time.perf_counter())
                elif data["type"] != "executing":
                    waiter.set_exception(PromptFailed(f"{data['type']}: {body.get('exception_message', '')}"))

    async def run(self, payload: bytes, timeout: float) -> tuple[float, float]:
        """POST a prompt (already JSON); (seconds until the POST answered, seconds until it finished)."""
        start = time.perf_counter()
        async with self.session.post(f"{self.server.url}/prompt", data=payload,
                                     headers={"Content-Type": "application/json"}) as response:
            text = await response.text()
            posted = time.perf_counter()
            if response.status != 200:
                raise PromptFailed(_describe_rejection(response.status, text))
        prompt_id = json.loads(text)["prompt_id"]
        if self.mode == "bare":
            return posted - start, await self._poll_history(prompt_id, start, timeout)
        waiter = self.waiters.setdefault(prompt_id, asyncio.get_running_loop().create_future())
        try:
            done = await asyncio.wait_for(waiter, timeout)
        finally:
            self.waiters.pop(prompt_id, None)
        return posted - start, done - start

    async def _poll_history(self, prompt_id: str, start: float, timeout: float) -> float:
        deadline = start + timeout
        while time.perf_counter() < deadline:
            async with self.session.get(f"{self.server.url}/history/{prompt_id}") as response:
                entry = (await response.json()).get(prompt_id)
            if entry is not None:
                done = time.perf_counter()
                status = entry.get("status", {})
                if status.get("status_str") != "success":
                    messages = status.get("messages") or [["?", {}]]
                    raise PromptFailed(f"{messages[-1][0]}: {messages[-1][1].get('exception_message', '')}")
                return done - start
            await asyncio.sleep(POLL_S)
        raise asyncio.TimeoutError

    def body(self, prompt: dict) -> bytes:
        if self.mode == "bare":
            return json.dumps({"prompt": prompt}).encode()
        return json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
        if self.session is not None:
            await self.session.close()


def _describe_rejection(status: int, text: str) -> str:
    try:
        body = json.loads(text)
        errors = [e for node in body.get("node_errors", {}).values() for e in node.get("errors", [])]
        if errors:
            first = errors[0]
            exc = first.get("extra_info", {}).get("exception_type")
            return f"HTTP {status}, {first['type']}" + (f" ({exc}: {first['details']})" if exc else "")
        return f"HTTP {status}, {body.get('error', {}).get('type')}"
    except (ValueError, AttributeError, KeyError):
        return f"HTTP {status}"


@dataclass
class Samples:
    post: list = field(default_factory=list)
    cold: list = field(default_factory=list)
    cached: list = field(default_factory=list)
    failure: str | None = None


_counter = [1000]


def _fresh() -> int:
    """A root constant never used before: nothing of the new prompt is in any cache."""
    _counter[0] += 1
    return _counter[0]


async def compare_servers(servers: list[ServerProcess], graphs: list[tuple[str, int]], rounds: int,
                          timeout: float, mode: str) -> dict:
    connections = [await Connection(s, mode).open() for s in servers]
    results = {(g, n, s.label): Samples() for g, n in graphs for s in servers}
    try:
        # Warm-up: first prompts pay for lazy imports and code paths seen once.
        for conn in connections:
            for _ in range(3):
                await conn.run(conn.body(chain(10, _fresh())), timeout)
        for r in range(rounds):
            order = connections if r % 2 == 0 else connections[::-1]
            for graph, n in graphs:
                for conn in order:
                    samples = results[(graph, n, conn.server.label)]
                    if samples.failure:
                        continue
                    body = conn.body(GRAPHS[graph](n, _fresh()))
                    try:
                        post_s, cold_s = await conn.run(body, timeout)
                        _, cached_s = await conn.run(body, timeout)
                    except (PromptFailed, asyncio.TimeoutError) as ex:
                        samples.failure = str(ex) or f"no answer within {timeout:.0f}s"
                        continue
                    samples.post.append(post_s)
                    samples.cold.append(cold_s)
                    samples.cached.append(cached_s)
                    print(f"  {mode:4s} round {r + 1}/{rounds} {graph:7s} n={n:5d} {conn.server.label:8s} "
                          f"POST {post_s * 1e3:8.1f} ms  cold {cold_s * 1e3:9.1f} ms  cached {cached_s * 1e3:8.1f} ms",
                          flush=True)
    finally:
        for conn in connections:
            await conn.close()
    return results


def print_comparison(results: dict, servers: list[ServerProcess], graphs: list[tuple[str, int]], rounds: int,
                     mode: str) -> None:
    a, b = servers[0].label, servers[1].label if len(servers) > 1 else None
    print()
    print(f"[{mode}] {MODES[mode]}")
    print(f"µs per node of the graph, median of {rounds}; post = POST /prompt alone, cold/cached = POST to done")
    header = f"{'graph':8s} {'n':>5s}  {'figure':7s} {a + ' µs/node':>16s}"
    if b:
        header += f" {b + ' µs/node':>17s} {'ratio ' + a[0] + '/' + b[0]:>10s}"
    print(header)
    for graph, n in graphs:
        for figure in ("post", "cold", "cached"):
            row = f"{graph:8s} {n:5d}  {figure:7s}"
            values = []
            for server in servers:
                samples = results[(graph, n, server.label)]
                series = getattr(samples, figure)
                if samples.failure or not series:
                    values.append(None)
                    row += f" {'failed':>16s}" if server.label == a else f" {'failed':>17s}"
                else:
                    value = statistics.median(series) / n * 1e6
                    values.append(value)
                    row += f" {value:16.2f}" if server.label == a else f" {value:17.2f}"
            if b:
                row += f" {values[0] / values[1]:10.3f}" if None not in values and values[1] else f" {'-':>10s}"
            print(row)
    for graph, n in graphs:
        for server in servers:
            failure = results[(graph, n, server.label)].failure
            if failure:
                print(f"  {server.label} {graph} n={n}: {failure}")


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"Python {sys.version.split()[0]}")


def run_servers(args) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    servers = [ServerProcess("Hearth", lambda port, base: [
        sys.executable, "-m", "hearth", "--listen", HOST, "--port", str(port), "--base-directory", str(base)], env)]
    comfy_main = Path(args.comfyui) / "main.py"
    if args.comfyui and comfy_main.is_file() and Path(args.comfyui_python).is_file():
        comfy_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        servers.append(ServerProcess("ComfyUI", lambda port, base: [
            args.comfyui_python, str(comfy_main), "--cpu", "--listen", HOST, "--port", str(port),
            "--base-directory", str(base), "--database-url", f"sqlite:///{base}/user/comfyui.db",
            "--disable-auto-launch"], comfy_env))
    else:
        print(f"ComfyUI not found at {args.comfyui} (python {args.comfyui_python}): Hearth's server alone.")
    graphs = [("fan-out", args.nodes), ("chain", args.nodes)]
    if args.compare_chain and args.compare_chain != args.nodes:
        graphs.append(("chain", args.compare_chain))
    results = {}
    try:
        for server in servers:
            server.start()
            print(f"{server.label} ready in {server.start_seconds:.1f} s (port {server.port})", flush=True)
        for mode in args.modes:
            results[mode] = asyncio.run(compare_servers(servers, graphs, args.rounds, args.prompt_timeout, mode))
    finally:
        _stop_all()
    for mode in args.modes:
        print_comparison(results[mode], servers, graphs, args.rounds, mode)
    print(f"machine after: {machine_line()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="in-process runs (median)")
    parser.add_argument("--policy", default="classic", choices=["classic", "lru", "none", "ram"])
    parser.add_argument("--servers", action="store_true", help="also run Hearth and ComfyUI as servers, side by side")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process figures")
    parser.add_argument("--rounds", type=int, default=5, help="server rounds (median)")
    parser.add_argument("--compare-chain", type=int, default=200,
                        help="an extra chain length ComfyUI can validate (0: none)")
    parser.add_argument("--comfyui", default="/work/comfyui/ComfyUI", help="ComfyUI checkout (has main.py)")
    parser.add_argument("--comfyui-python", default="/work/comfyui/venv/bin/python")
    parser.add_argument("--prompt-timeout", type=float, default=600.0, help="seconds per prompt")
    parser.add_argument("--modes", nargs="+", default=["bare", "ws"], choices=list(MODES),
                        help="bare: no websocket client; ws: a websocket client attached")
    args = parser.parse_args()

    print(f"machine: {machine_line()}")
    if not args.no_in_process:
        print(f"Hearth engine in-process (cache policy {args.policy}; median of {args.repeat})")
        measure_in_process("chain", chain, args.nodes, args.repeat, args.policy)
        measure_in_process("fan-out", fan_out, args.nodes, args.repeat, args.policy)
    if args.servers:
        atexit.register(_stop_all)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: sys.exit(1))
        print()
        print(f"Servers over HTTP + websocket, {args.rounds} rounds alternating the order")
        run_servers(args)


if __name__ == "__main__":
    main()
