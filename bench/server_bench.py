#!/usr/bin/env python3
"""Server benchmark: start a ComfyUI-compatible server as a subprocess and measure it over HTTP.

By default it measures Hearth (``python -m hearth``).  With ``--compare CMD`` it also measures a
second server (e.g. ComfyUI run by another python) and alternates the two, A B A B ..., one fresh
process and one fresh temporary base directory per run, and prints both side by side with the
ratio Hearth / other.

Figures (each run): cold start to the first 200 of GET /system_stats; idle RSS once start-up has
settled; GET /object_info latency and size; trivial-prompt latency (EmptyImage 64x64 ->
PreviewImage, POST /prompt until the websocket reports ``executing`` with node=null); throughput
of distinct trivial prompts posted concurrently; latency of a fully cached resubmission; peak RSS.
The table shows the median over rounds; ``--json FILE`` writes every per-run value too.

Everything talks to 127.0.0.1 only; every wait is bounded; servers are killed (their whole process
group) on exit, on exceptions and on Ctrl-C / SIGTERM.  See bench/README.md.
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
MIB = 1024 * 1024

DEFAULT_SERVER = "{python} -m hearth --listen 127.0.0.1 --port {port} --base-directory {base}"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    digits: int
    target: float | None = None
    higher_is_better: bool = False
    quoted: float | None = None  # ComfyUI on the 2-core machine (quoted, not measured)

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<='} {self.target:g}"

    def verdict(self, value: float | None) -> str:
        if self.target is None:
            return ""
        if value is None:
            return "n/a"
        ok = value >= self.target if self.higher_is_better else value <= self.target
        return "PASS" if ok else "MISS"


FIGURES: list[Figure] = [
    Figure("cold_start_s", "cold start (spawn -> 200 /system_stats)", "s", 2, 1.0, quoted=10.2),
    Figure("idle_rss_mib", "idle RSS, process tree", "MiB", 0, 150, quoted=894),
    Figure("object_info_ms", "GET /object_info, median", "ms", 2, 10, quoted=83.5),
    Figure("object_info_kib", "GET /object_info size", "KiB", 0),
    Figure("prompt_ms", "trivial prompt, sequential median", "ms", 2, 3, quoted=6.9),
    Figure("throughput_pps", "throughput, distinct trivial prompts", "prompts/s", 0, 500,
           higher_is_better=True, quoted=127),
    Figure("cached_ms", "cached resubmission, median", "ms", 2),
    Figure("peak_rss_mib", "peak RSS during the run", "MiB", 0),
]
# Recorded per run and in the JSON; printed in the "details" block, no target.
EXTRA_KEYS = [  # (key, label, digits)
    ("idle_pss_mib", "idle PSS, process tree (MiB)", 1),
    ("object_info_first_ms", "first GET /object_info (ms)", 2),
    ("object_info_nodes", "node classes in /object_info", 0),
    ("first_prompt_ms", "first trivial prompt, incl. lazy imports (ms)", 1),
    ("prompt_p90_ms", "trivial prompt p90 (ms)", 2),
    ("prompt_server_cpu_ms", "server CPU per sequential trivial prompt (ms)", 2),
    ("throughput_post_s", "throughput: time to accept all POSTs (s)", 3),
    ("throughput_total_s", "throughput: first POST -> last done (s)", 3),
    ("throughput_server_cpu_ms", "server CPU per prompt in the throughput burst (ms)", 2),
    ("scratch_file_create_us", "create+write+close of a small file in the base dir's folder (µs)", 0),
    ("processes", "server processes (tree)", 0),
    ("machine_busy_pct", "machine CPU busy in the 1 s before the run (%)", 0),
    ("other_load_cores", "CPU used by other processes during the run (cores)", 2),
]


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Server processes


_LIVE: set["Server"] = set()


def _kill_all_live() -> None:
    for srv in list(_LIVE):
        srv.stop()


atexit.register(_kill_all_live)


def _on_sigterm(signum, frame):  # turn SIGTERM / SIGHUP into the same path as Ctrl-C
    raise KeyboardInterrupt(f"signal {signum}")


def set_nice(n: int) -> None:
    """Set this process's nice value and, with autogroup scheduling (Linux's default for
    desktops), its session's autogroup nice: across sessions only the latter counts."""
    os.setpriority(os.PRIO_PROCESS, 0, n)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(n))
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def check_loopback(argv: list[str]) -> None:
    """Refuse a command that would listen beyond loopback (bare --listen means all interfaces)."""
    for i, a in enumerate(argv):
        if a == "--listen" or a.startswith("--listen="):
            value = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            if not value or value.startswith("-"):
                raise BenchError("server command has a bare --listen (all interfaces); "
                                 "use --listen 127.0.0.1")
            for addr in value.split(","):
                if addr not in ("127.0.0.1", "localhost", "::1") and not addr.startswith("127."):
                    raise BenchError(f"server command listens on {addr!r}; only loopback is allowed")


class Server:
    """One server run: a fresh temp base dir, a free port, its own process group."""

    def __init__(self, label: str, template: str, keep: bool = False, nice: int | None = None,
                 scratch: str | None = None):
        self.label = label
        self.template = template
        self.keep = keep
        self.nice = nice
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix=f"hearth-bench-{label.lower()}-", dir=scratch))
        # ComfyUI's main.py lists <base>/custom_nodes at start-up and keeps its db in <base>/user.
        for sub in ("custom_nodes", "user", "models", "input", "output", "temp"):
            (self.base / sub).mkdir()
        self.log_path = self.base / "server.log"
        argv = shlex.split(template.format(python=shlex.quote(sys.executable), port=self.port,
                                           base=shlex.quote(str(self.base))))
        if "{port}" not in template:
            argv += ["--port", str(self.port)]
        if "{base}" not in template:
            argv += ["--base-directory", str(self.base)]
        try:
            check_loopback(argv)
        except BenchError:
            shutil.rmtree(self.base, ignore_errors=True)
            raise
        self.argv = argv
        self.proc: subprocess.Popen | None = None
        self.ps: psutil.Process | None = None
        self.t_spawn = 0.0
        self._known: dict[int, psutil.Process] = {}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log = open(self.log_path, "wb")
        self.t_spawn = time.perf_counter()
        nice = self.nice
        # The server gets its own session (so its own process group and scheduler autogroup);
        # with --nice it is set in the child before exec, so every thread inherits it.
        self.proc = subprocess.Popen(self.argv, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     preexec_fn=(lambda: set_nice(nice)) if nice is not None else None)
        _LIVE.add(self)
        self.ps = psutil.Process(self.proc.pid)
        self._known[self.proc.pid] = self.ps

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tree(self) -> list[psutil.Process]:
        procs = [self.ps] if self.ps is not None else []
        try:
            procs += self.ps.children(recursive=True) if self.ps is not None else []
        except psutil.Error:
            pass
        for p in procs:
            self._known.setdefault(p.pid, p)
        return procs

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    | " + line for line in lines[-n:])

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in self._known.values():  # children that left the process group
            try:
                if p.is_running():
                    p.kill()
            except psutil.Error:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            self._log.close()
        except Exception:
            pass
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)


def tree_cpu(procs: list[psutil.Process]) -> float:
    """user+system CPU seconds used so far by the processes (and their reaped children)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + getattr(t, "children_user", 0) + getattr(t, "children_system", 0)
        except psutil.Error:
            pass
    return total


def system_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores) since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0) - getattr(t, "guest", 0) - getattr(t, "guest_nice", 0)


def tree_memory(procs: list[psutil.Process], pss: bool = False) -> tuple[float, float | None]:
    """(RSS MiB, PSS MiB or None) summed over the processes; vanished ones count 0."""
    rss = 0
    total_pss: int | None = 0 if pss else None
    for p in procs:
        try:
            if pss:
                info = p.memory_full_info()
                rss += info.rss
                total_pss += getattr(info, "pss", info.rss)
            else:
                rss += p.memory_info().rss
        except psutil.Error:
            pass
    return rss / MIB, (None if total_pss is None else total_pss / MIB)


class PeakSampler(threading.Thread):
    """Samples the server tree's RSS every `interval` s; keeps the maximum."""

    def __init__(self, server: Server, interval: float = 0.05):
        super().__init__(daemon=True, name="rss-sampler")
        self.server = server
        self.interval = interval
        self.peak = 0.0
        self.samples = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        procs = self.server.tree()
        n = 0
        while not self._stop_evt.is_set():
            if n % 20 == 0:  # refreshing the children list walks /proc: not every sample
                procs = self.server.tree()
            rss, _ = tree_memory(procs)
            self.peak = max(self.peak, rss)
            self.samples += 1
            n += 1
            self._stop_evt.wait(self.interval)

    def stop(self) -> float:
        self._stop_evt.set()
        self.join(timeout=5)
        rss, _ = tree_memory(self.server.tree())
        self.peak = max(self.peak, rss)
        return self.peak


# --------------------------------------------------------------------------------------------
# Client


def file_create_cost_us(folder: Path, n: int = 200) -> float:
    """Median cost of creating, writing and closing a small new file in ``folder``: every trivial
    prompt saves a PNG into the server's temp folder, and on the benchmark machine's ext4 a new file
    cost 44-870 µs depending on the folder and the moment (24 µs on tmpfs), so the figure is recorded
    with each run."""
    probe = Path(tempfile.mkdtemp(prefix="create-probe-", dir=folder))
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            with open(probe / f"{i}.png", "wb") as f:
                f.write(b"\0" * 400)
            times.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return statistics.median(times) * 1e6


def trivial_prompt(color: int, size: int = 64) -> dict:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


class Client:
    """HTTP + one websocket; the websocket reader timestamps each prompt's end as it arrives."""

    def __init__(self, server: Server, session: aiohttp.ClientSession, prompt_timeout: float):
        self.server = server
        self.session = session
        self.prompt_timeout = prompt_timeout
        self.client_id = uuid.uuid4().hex
        self.done: dict[str, tuple[float, str | None]] = {}
        self.waiters: dict[str, asyncio.Future] = {}
        self.ws_missed = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    async def connect(self) -> None:
        ws_timeout = aiohttp.ClientWSTimeout(ws_close=5) if hasattr(aiohttp, "ClientWSTimeout") else 5.0
        self.ws = await self.session.ws_connect(f"{self.server.url}/ws?clientId={self.client_id}",
                                                timeout=ws_timeout, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader], timeout=5)  # never swallows our own cancellation
        if self.ws is not None and not self.ws.closed:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:
                pass

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue  # binary previews etc.
            t = time.perf_counter()
            try:
                d = json.loads(msg.data)
            except ValueError:
                continue
            typ = d.get("type")
            data = d.get("data") or {}
            if not isinstance(data, dict):
                continue
            pid = data.get("prompt_id")
            if not pid:
                continue
            if typ == "executing" and data.get("node") is None:
                self._finish(pid, t, None)
            elif typ == "execution_error":
                self._finish(pid, t, f"{data.get('exception_type')}: {data.get('exception_message')}")
            elif typ == "execution_interrupted":
                self._finish(pid, t, "interrupted")

    def _finish(self, pid: str, t: float, err: str | None) -> None:
        if pid in self.done:
            return
        self.done[pid] = (t, err)
        fut = self.waiters.pop(pid, None)
        if fut is not None and not fut.done():
            fut.set_result((t, err))

    async def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        async with self.session.get(self.server.url + path,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.read()

    async def post_prompt(self, prompt: dict) -> str:
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": str(uuid.uuid4())}
        async with self.session.post(self.server.url + "/prompt", json=body,
                                     timeout=aiohttp.ClientTimeout(total=self.prompt_timeout)) as r:
            raw = await r.read()
            if r.status != 200:
                raise BenchError(f"POST /prompt -> {r.status}: {raw[:400].decode(errors='replace')}")
        pid = json.loads(raw).get("prompt_id")
        if not pid:
            raise BenchError(f"POST /prompt answered without prompt_id: {raw[:200]!r}")
        return pid

    async def wait_done(self, pid: str) -> float:
        """perf_counter() time at which `pid` ended; raises on an execution error or time-out."""
        if pid not in self.done:
            fut = asyncio.get_running_loop().create_future()
            self.waiters[pid] = fut
            try:
                await asyncio.wait_for(fut, self.prompt_timeout)
            except asyncio.TimeoutError:
                self.waiters.pop(pid, None)
                # The websocket may have missed it: ask /history before giving up.
                status, raw = await self.get(f"/history/{pid}")
                if status == 200 and pid in json.loads(raw or b"{}"):
                    self.ws_missed += 1
                    self.done[pid] = (time.perf_counter(), None)
                else:
                    raise BenchError(f"prompt {pid} did not finish within {self.prompt_timeout}s")
        t, err = self.done[pid]
        if err:
            raise BenchError(f"prompt {pid} failed: {err}")
        return t

    async def run_one(self, prompt: dict) -> float:
        """Latency (s) of one prompt: before POST -> its `executing` node=null arrives."""
        t0 = time.perf_counter()
        pid = await self.post_prompt(prompt)
        return await self.wait_done(pid) - t0


# --------------------------------------------------------------------------------------------
# One run of one server


async def wait_ready(server: Server, timeout: float) -> tuple[float, dict]:
    deadline = server.t_spawn + timeout
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s:
        while True:
            try:
                async with s.get(server.url + "/system_stats",
                                 timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status == 200:
                        t = time.perf_counter()
                        try:
                            stats = json.loads(await r.read())
                        except ValueError:
                            stats = {}
                        return t - server.t_spawn, stats
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            rc = server.exited()
            if rc is not None:
                raise BenchError(f"{server.label} exited with code {rc} before it was ready; "
                                 f"log tail:\n{server.log_tail()}")
            if time.perf_counter() > deadline:
                raise BenchError(f"{server.label} not ready after {timeout:g}s; log tail:\n"
                                 f"{server.log_tail()}")
            await asyncio.sleep(0.01)


async def settle_rss(server: Server, min_wait: float, max_wait: float) -> tuple[float, float | None, int]:
    """Wait `min_wait` s, then until RSS moves < 2 MiB over 2 s (at most `max_wait` s in all)."""
    t0 = time.perf_counter()
    await asyncio.sleep(min_wait)
    history: list[float] = []
    while True:
        rss, _ = tree_memory(server.tree())
        history.append(rss)
        window = history[-5:]
        if len(window) == 5 and max(window) - min(window) < 2:
            break
        if time.perf_counter() - t0 > max_wait:
            break
        await asyncio.sleep(0.5)
    procs = server.tree()
    rss, pss = tree_memory(procs, pss=True)
    return rss, pss, len(procs)


def _quiet(fut: asyncio.Future) -> asyncio.Future:
    """Mark the future's exception as seen, so an interrupted run prints no 'never retrieved'."""
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut


class Colors:
    """Distinct EmptyImage colours, so nothing is served from the cache unless meant to be."""

    def __init__(self):
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return (self.n * 2654435761) % 16777216  # distinct for the first 2**24 calls


async def run_once(label: str, template: str, args, deadline: float) -> dict:
    """Start one server, measure every figure, stop it. Returns {key: value, ...}."""
    server = Server(label, template, keep=args.keep, nice=args.nice, scratch=args.scratch)
    res: dict[str, Any] = {"port": server.port, "argv": server.argv,
                           "scratch_file_create_us": file_create_cost_us(server.base.parent)}
    sampler: PeakSampler | None = None

    def check_time(phase: str):
        if time.perf_counter() > deadline:
            raise BenchError(f"overall time limit (--max-minutes) reached before {phase}")
        if server.exited() is not None:
            raise BenchError(f"{label} exited (code {server.exited()}) before {phase}; log tail:\n"
                             f"{server.log_tail()}")

    me = psutil.Process()
    sys0, me0, t_run0 = system_busy_s(), me.cpu_times(), time.perf_counter()
    try:
        server.start()
        print(f"  {label}: pid {server.proc.pid}, port {server.port}, base {server.base}",
              file=sys.stderr, flush=True)
        res["cold_start_s"], stats = await wait_ready(server, args.start_timeout)
        sysinfo = stats.get("system", {}) if isinstance(stats, dict) else {}
        res["server_info"] = {k: sysinfo.get(k) for k in
                              ("comfyui_version", "hearth_version", "python_version",
                               "pytorch_version") if sysinfo.get(k) is not None}
        sampler = PeakSampler(server)
        sampler.start()

        check_time("idle RSS")
        rss, pss, nproc = await settle_rss(server, args.settle, args.settle_max)
        res["idle_rss_mib"], res["idle_pss_mib"], res["processes"] = rss, pss, nproc

        connector = aiohttp.TCPConnector(limit=args.concurrency + 4)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = Client(server, session, args.prompt_timeout)

            # /object_info: the first GET is the warm-up (recorded apart), then N timed.
            check_time("/object_info")
            t0 = time.perf_counter()
            status, body = await client.get("/object_info", timeout=120)
            res["object_info_first_ms"] = (time.perf_counter() - t0) * 1e3
            if status != 200:
                raise BenchError(f"GET /object_info -> {status}")
            try:
                res["object_info_nodes"] = len(json.loads(body))
            except ValueError:
                raise BenchError("GET /object_info did not return JSON")
            times, size = [], len(body)
            for _ in range(args.object_info_n):
                t0 = time.perf_counter()
                status, body = await client.get("/object_info", timeout=120)
                times.append(time.perf_counter() - t0)
                if status != 200:
                    raise BenchError(f"GET /object_info -> {status}")
                size = len(body)
            res["object_info_ms"] = statistics.median(times) * 1e3
            res["object_info_kib"] = size / 1024

            await client.connect()
            colors = Colors()

            # Warm-up prompts (the first one is recorded apart), then sequential latency.
            check_time("trivial prompts")
            for i in range(args.warmup_prompts):
                lat = await client.run_one(trivial_prompt(colors.next()))
                if i == 0:
                    res["first_prompt_ms"] = lat * 1e3
            lats = []
            procs = server.tree()
            cpu0 = tree_cpu(procs)
            for _ in range(args.latency_prompts):
                lats.append(await client.run_one(trivial_prompt(colors.next())))
                check_time("the end of the trivial prompts")
            res["prompt_server_cpu_ms"] = (tree_cpu(procs) - cpu0) / len(lats) * 1e3
            lats.sort()
            res["prompt_ms"] = statistics.median(lats) * 1e3
            res["prompt_p90_ms"] = lats[min(len(lats) - 1, int(0.9 * len(lats)))] * 1e3

            # Fully cached resubmission: the same prompt twice in a row, the second timed.
            check_time("cached resubmission")
            cached = []
            for _ in range(args.cached_pairs):
                p = trivial_prompt(colors.next())
                await client.run_one(p)
                cached.append(await client.run_one(p))
            res["cached_ms"] = statistics.median(cached) * 1e3

            # Throughput: N distinct prompts, `concurrency` POSTs in flight, until the last ends.
            check_time("throughput")
            prompts = [trivial_prompt(colors.next()) for _ in range(args.throughput_prompts)]
            sem = asyncio.Semaphore(args.concurrency)

            async def post(p):
                async with sem:
                    return await client.post_prompt(p)

            procs = server.tree()
            cpu0 = tree_cpu(procs)
            t0 = time.perf_counter()
            pids = await asyncio.wait_for(_quiet(asyncio.gather(*(post(p) for p in prompts))),
                                          args.throughput_timeout)
            res["throughput_post_s"] = time.perf_counter() - t0
            ends = await asyncio.wait_for(_quiet(asyncio.gather(*(client.wait_done(p) for p in pids))),
                                          args.throughput_timeout)
            total = max(ends) - t0
            res["throughput_total_s"] = total
            res["throughput_pps"] = len(pids) / total
            res["throughput_server_cpu_ms"] = (tree_cpu(procs) - cpu0) / len(pids) * 1e3
            res["ws_missed"] = client.ws_missed
            await client.close()
        server_cpu = tree_cpu(server.tree())
        me1 = me.cpu_times()
        own = (me1.user + me1.system) - (me0.user + me0.system)
        # CPU used during this run by processes that are neither the benchmark nor its server.
        res["other_load_cores"] = max(0.0, system_busy_s() - sys0 - own - server_cpu) / (
            time.perf_counter() - t_run0)
        res["peak_rss_mib"] = sampler.stop()
        res["rss_samples"] = sampler.samples
        sampler = None
    finally:
        if sampler is not None:
            sampler.stop()
        server.stop()
    return res


# --------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict:
    info = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gib": round(psutil.virtual_memory().total / 1024 ** 3, 1),
        "platform": platform.platform(),
        "bench_python": sys.version.split()[0],
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def median_of(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def render(report: dict) -> str:
    servers = report["servers"]
    a = servers[0]
    b = servers[1] if len(servers) > 1 else None
    out = []
    m = report["machine"]
    out.append(f"machine: {m.get('cpu', '?')}, nproc={m['nproc']}, usable cpus={m['usable_cpus']}, "
               f"RAM {m['mem_total_gib']} GiB")
    out.append(f"load average (1, 5, 15 min) before: {m.get('loadavg_before')}, after: {m.get('loadavg')}"
               " (the benchmark itself adds about 1-2; a higher value before means other load)")
    for s in servers:
        ok = sum(1 for r in s["runs"] if "error" not in r)
        info = next((r.get("server_info") for r in s["runs"] if r.get("server_info")), {}) or {}
        shown = ", ".join(f"{k}={v.split()[0] if k == 'python_version' else v}"
                          for k, v in info.items())
        out.append(f"{s['label']}: {ok}/{len(s['runs'])} runs ok; {shown}")
        out.append(f"  cmd: {s['command']}")
    c = report["config"]
    out.append(f"nice={c['nice']}; rounds={c['rounds']} ({'alternating ' + ' '.join(x['label'] for x in servers) if b else 'one server'}); "
               f"object_info x{c['object_info_n']}; {c['latency_prompts']} sequential prompts; "
               f"{c['cached_pairs']} cached pairs; {c['throughput_prompts']} prompts with "
               f"{c['concurrency']} POSTs in flight; base dirs under {c.get('scratch') or tempfile.gettempdir()}")
    out.append("")

    other_label = b["label"] if b else "ComfyUI (quoted, 2-core)"
    headers = ["figure", "unit", "target", a["label"], other_label, "ratio", "verdict"]
    rows = []
    for f in FIGURES:
        av = a["median"].get(f.key)
        bv = b["median"].get(f.key) if b else f.quoted
        ratio = (av / bv) if (av is not None and bv) else None
        rows.append([f.label, f.unit, f.target_text(), fmt(av, f.digits),
                     fmt(bv, f.digits) if bv is not None else "-",
                     f"{ratio:.3f}" if ratio is not None else "-", f.verdict(av)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    aligns = ["<", "<", "<", ">", ">", ">", "<"]

    def line(cells):
        return "  ".join(f"{c:{al}{w}}" for c, w, al in zip(cells, widths, aligns)).rstrip()

    out.append(line(headers))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in rows)
    out.append(f"(medians over rounds; ratio = {a['label']} / {other_label}; "
               f"verdict is {a['label']} against the target)")
    noisy = [f"{s['label']} round {i + 1} ({r['other_load_cores']:.2f} cores)"
             for s in servers for i, r in enumerate(s["runs"])
             if isinstance(r.get("other_load_cores"), float) and r["other_load_cores"] > 0.25]
    if noisy:
        out.append("WARNING: other processes used CPU during " + ", ".join(noisy)
                   + f" of {m['nproc']} cores: those figures may be skewed")
    out.append("")

    out.append("details (median over rounds; per-run values in brackets):")
    for key, label, digits in [(f.key, f"{f.label} ({f.unit})", f.digits + 1) for f in FIGURES] + EXTRA_KEYS:
        parts = []
        for s in servers:
            per = [r.get(key) for r in s["runs"]]
            med = median_of(s["runs"], key)
            parts.append(f"{s['label']} {fmt(med, digits)} ["
                         + ", ".join(fmt(v, digits) if isinstance(v, (int, float)) else "-" for v in per)
                         + "]")
        out.append(f"  {label}: " + "; ".join(parts))
    errors = [(s["label"], i, r["error"]) for s in servers for i, r in enumerate(s["runs"])
              if "error" in r]
    if errors:
        out.append("")
        out.append("errors:")
        for lab, i, err in errors:
            out.append(f"  {lab} round {i + 1}: {err}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark Hearth (and optionally a second ComfyUI-compatible server) over HTTP.",
        epilog="Commands are shell-like templates: {python} (this interpreter), {port} and {base} "
               "(a fresh temp base directory) are filled in per run; --port/--base-directory are "
               "appended when the template lacks them.")
    p.add_argument("--server", default=DEFAULT_SERVER, help="command of the measured server "
                   f"(default: {DEFAULT_SERVER!r})")
    p.add_argument("--label", default="Hearth", help="name of the measured server (default Hearth)")
    p.add_argument("--compare", default=None, metavar="CMD",
                   help="command of a second server, run alternately with the first")
    p.add_argument("--compare-label", default=None, help="name of the second server "
                   "(default: ComfyUI if its command mentions comfy, else 'other')")
    p.add_argument("--rounds", type=int, default=3, help="runs of each server (default 3)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--object-info-n", type=int, default=20)
    p.add_argument("--warmup-prompts", type=int, default=3)
    p.add_argument("--latency-prompts", type=int, default=50)
    p.add_argument("--cached-pairs", type=int, default=10)
    p.add_argument("--throughput-prompts", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8, help="POSTs in flight (default 8)")
    p.add_argument("--start-timeout", type=float, default=180, help="seconds to wait for ready")
    p.add_argument("--settle", type=float, default=2.0, help="min seconds before idle RSS")
    p.add_argument("--settle-max", type=float, default=20.0, help="max seconds before idle RSS")
    p.add_argument("--prompt-timeout", type=float, default=60)
    p.add_argument("--throughput-timeout", type=float, default=300)
    p.add_argument("--max-minutes", type=float, default=45, help="overall time limit")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="before each run, wait up to S seconds for the machine's CPU use to drop "
                        "below 15%% (other load skews every figure); default 0: only record it")
    p.add_argument("--nice", type=int, default=None, metavar="N",
                   help="run the benchmark and its servers at this nice value (negative needs "
                        "root): on a shared machine, -10 keeps other load from skewing the figures")
    p.add_argument("--keep", action="store_true", help="keep the temp base dirs (and server.log)")
    p.add_argument("--scratch", default=None, metavar="DIR",
                   help="folder for the servers' fresh base dirs (default: the system temp folder); "
                        "each run records what creating a small file there costs")
    args = p.parse_args(argv)
    for name in ("rounds", "object_info_n", "latency_prompts", "cached_pairs",
                 "throughput_prompts", "concurrency"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
        if getattr(args, name) > 100_000:
            p.error(f"--{name.replace('_', '-')} is too large")
    if args.warmup_prompts < 1:
        p.error("--warmup-prompts must be >= 1")
    if args.scratch is not None and not os.path.isdir(args.scratch):
        p.error(f"--scratch {args.scratch!r} is not a folder")
    if args.compare and not args.compare_label:
        args.compare_label = "ComfyUI" if "comfy" in args.compare.lower() else "other"
    return args


async def machine_busy(wait_idle: float, deadline: float) -> float:
    """System-wide CPU % over 1 s with no server of ours running (other people's load).

    With wait_idle > 0, keep sampling up to that many seconds until it is below 15 %."""
    give_up = min(deadline, time.perf_counter() + wait_idle)
    while True:
        psutil.cpu_percent(None)
        await asyncio.sleep(1.0)
        busy = psutil.cpu_percent(None)
        if busy < 15 or time.perf_counter() >= give_up:
            return busy


async def bench(args) -> dict:
    servers = [{"label": args.label, "command": args.server, "runs": []}]
    if args.compare:
        servers.append({"label": args.compare_label, "command": args.compare, "runs": []})
    if len({s["label"] for s in servers}) != len(servers):
        raise SystemExit("the two servers need different labels (--label / --compare-label)")
    for s in servers:  # refuse a non-loopback command before starting anything
        try:
            check_loopback(shlex.split(s["command"].format(python="python", port=0, base="base")))
        except (BenchError, KeyError, IndexError, ValueError) as exc:
            raise SystemExit(f"server_bench: bad command for {s['label']}: {exc}")
    deadline = time.perf_counter() + args.max_minutes * 60
    load_before = machine_info().get("loadavg")
    for rnd in range(args.rounds):
        for s in servers:
            if time.perf_counter() > deadline:
                s["runs"].append({"error": "skipped: overall time limit reached"})
                continue
            busy = await machine_busy(args.wait_idle, deadline)
            print(f"[round {rnd + 1}/{args.rounds}] {s['label']} (machine busy {busy:.0f}% before) ...",
                  file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                res = await run_once(s["label"], s["command"], args, deadline)
            except BenchError as exc:
                res = {"error": str(exc)}
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                res = {"error": f"{type(exc).__name__}: {exc}"}
            res["wall_s"] = time.perf_counter() - t0
            res["machine_busy_pct"] = busy
            s["runs"].append(res)
            if "error" in res:
                print(f"  error: {res['error']}", file=sys.stderr, flush=True)
            else:
                print("  " + ", ".join(f"{f.key}={fmt(res.get(f.key), f.digits)}" for f in FIGURES),
                      file=sys.stderr, flush=True)
            await asyncio.sleep(0.5)
    keys = [f.key for f in FIGURES] + [k for k, _, _ in EXTRA_KEYS]
    for s in servers:
        s["median"] = {k: median_of(s["runs"], k) for k in keys}
    machine = machine_info()
    machine["loadavg_before"] = load_before
    report: dict[str, Any] = {
        "machine": machine,
        "config": {k: getattr(args, k) for k in
                   ("nice", "wait_idle", "scratch", "rounds", "object_info_n", "warmup_prompts", "latency_prompts", "cached_pairs",
                    "throughput_prompts", "concurrency", "settle", "settle_max")},
        "servers": servers,
        "figures": [{"key": f.key, "label": f.label, "unit": f.unit, "target": f.target,
                     "higher_is_better": f.higher_is_better, "comfyui_quoted": f.quoted}
                    for f in FIGURES],
    }
    a = servers[0]
    report["verdicts"] = {f.key: f.verdict(a["median"].get(f.key)) for f in FIGURES if f.target}
    if len(servers) > 1:
        b = servers[1]
        report["ratios"] = {f.key: (a["median"][f.key] / b["median"][f.key])
                            if a["median"].get(f.key) is not None and b["median"].get(f.key)
                            else None for f in FIGURES}
    return report


def _rerun_in_own_session(argv: list[str]) -> int:
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv], start_new_session=True)

    def forward(signum, frame):  # Ctrl-C reaches only our process group: pass it on
        try:
            child.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.nice is not None:
        if os.getsid(0) != os.getpid():
            # Autogroup nice acts on a whole session: rerun in a session of our own so that the
            # shell that started us keeps its priority.
            return _rerun_in_own_session(sys.argv[1:] if argv is None else list(argv))
        try:
            set_nice(args.nice)
        except OSError as exc:
            print(f"server_bench: cannot set nice {args.nice}: {exc}", file=sys.stderr)
            return 2
    # Ctrl-C, SIGTERM and SIGHUP all raise KeyboardInterrupt at once (asyncio's own SIGINT
    # handling only cancels the main task, which a library may swallow).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_sigterm)
    try:
        report = asyncio.run(bench(args))
    except KeyboardInterrupt:
        _kill_all_live()
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        _kill_all_live()
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"\nJSON written to {args.json}")
    a_runs = report["servers"][0]["runs"]
    return 0 if any("error" not in r for r in a_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
