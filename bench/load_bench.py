#!/usr/bin/env python3
"""Load benchmark (the hardening issue's full sizes): 10,000 queued prompts and 200 websocket clients.

Starts ``python -m hearth`` on a free 127.0.0.1 port with a fresh temporary base directory and a tiny
custom node pack (a node that waits for an interrupt, and one that reports progress many times), then:

* queue: holds the worker with the waiting node, posts N prompts (POST rate per tenth, so a slowdown
  shows), measures server RSS and the median latency of paged reads (/queue?max_items=50,
  /history?max_items=50, /api/jobs?limit=50, filtered jobs, /prompt) with the queue empty, full, and
  after the worker drained it into history;
* websockets: C clients connect, a quarter of them never read (tiny receive buffer); prompts without a
  client id broadcast thousands of progress events; each reader owns a prompt; reports when every
  reader saw its prompt finish, messages per reader, whether each got the final progress state, and
  the server's peak RSS.

    python bench/load_bench.py                           # 10,000 prompts, 200 clients
    python bench/load_bench.py --prompts 2000 --clients 50 --json /tmp/load.json

Loopback only; every wait is bounded; the server is stopped on exit. tests/hardening/test_load.py runs
the same checks at CI sizes.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

NODES = '''
import time
from hearth.engine.progress import check_interrupt, report_progress


class LoadBenchWait:
    CATEGORY = "testing"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": ""})}}

    def run(self, value):
        while True:
            check_interrupt()
            time.sleep(0.01)


class LoadBenchChatty:
    CATEGORY = "testing"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": ""}), "steps": ("INT", {"default": 100, "min": 1,
                                                                                        "max": 1000000})}}

    def run(self, value, steps):
        for i in range(steps):
            report_progress(i + 1, steps)
        return (value,)


NODE_CLASS_MAPPINGS = {"LoadBenchWait": LoadBenchWait, "LoadBenchChatty": LoadBenchChatty}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (self.base / "custom_nodes" / "load_bench_nodes.py").write_text(NODES)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(self.base / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hearth", "--listen", "127.0.0.1", "--port",
                                      str(self.port), "--base-directory", str(self.base), "--verbose", "WARNING"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(self.base))
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "server.log").read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/system_stats", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Http:
    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        self.conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data, time.perf_counter() - start

    def json(self, path: str):
        status, data, _ = self.request("GET", path)
        assert status == 200, (path, status, data[:200])
        return json.loads(data)

    def submit(self, prompt: dict, **extra) -> str:
        status, data, _ = self.request("POST", "/prompt", json.dumps({"prompt": prompt, **extra}).encode())
        assert status == 200, data[:300]
        return json.loads(data)["prompt_id"]

    def median_ms(self, path: str, n: int = 9) -> float:
        return statistics.median(self.request("GET", path)[2] for _ in range(n)) * 1000

    def wait_idle(self, timeout: float) -> float:
        start = time.time()
        while self.json("/prompt")["exec_info"]["queue_remaining"]:
            if time.time() - start > timeout:
                raise TimeoutError("queue did not drain")
            time.sleep(0.2)
        return time.time() - start


def text_prompt(i: int) -> dict:
    return {"1": {"class_type": "PrimitiveString", "inputs": {"value": f"load {i}"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


PAGED = ("/queue?max_items=50", "/history?max_items=50", "/api/jobs?limit=50", "/api/jobs?limit=50&status=pending",
         "/api/jobs?limit=50&workflow_id=wf-3", "/prompt")


def bench_queue(server: Server, n: int) -> dict:
    h = Http(server.port)
    h.submit(text_prompt(-1))
    h.wait_idle(60)
    wait = {"1": {"class_type": "LoadBenchWait", "inputs": {"value": "x"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    h.submit(wait)
    time.sleep(0.5)
    empty = {p: h.median_ms(p) for p in PAGED}
    rss0 = rss_mb(server.proc.pid)
    post_ms = []
    start = time.time()
    for i in range(n):
        body = json.dumps({"prompt": text_prompt(i),
                           "extra_data": {"extra_pnginfo": {"workflow": {"id": f"wf-{i % 10}"}}}}).encode()
        status, data, dt = h.request("POST", "/prompt", body)
        assert status == 200, data[:200]
        post_ms.append(dt * 1000)
    post_s = time.time() - start
    full = {p: h.median_ms(p) for p in PAGED}
    rss_full = rss_mb(server.proc.pid)
    h.request("POST", "/interrupt", b"{}")
    drain_s = h.wait_idle(1800)
    drained = {p: h.median_ms(p) for p in PAGED}
    tenth = max(n // 10, 1)
    return {
        "prompts": n, "post_per_s": n / post_s, "drain_per_s": n / drain_s,
        "post_ms_median_by_tenth": [statistics.median(post_ms[i:i + tenth]) for i in range(0, n, tenth)],
        "rss_mb": {"before": rss0, "queued": rss_full, "drained": rss_mb(server.proc.pid)},
        "paged_ms": {p: {"empty": empty[p], "queued": full[p], "drained": drained[p]} for p in PAGED},
    }


def stuck_socket(port: int, client_id: str) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return raw


def bench_websockets(server: Server, clients: int, steps: int, noise_prompts: int) -> dict:
    import aiohttp

    h = Http(server.port)
    stuck_n = clients // 4
    readers_n = clients - stuck_n
    rss0 = rss_mb(server.proc.pid)

    async def scenario() -> dict:
        stuck = [stuck_socket(server.port, f"stuck{i}") for i in range(stuck_n)]
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        counts = [0] * readers_n
        done: dict[str, float] = {}
        final: list[dict] = [{} for _ in range(readers_n)]
        readers = [await session.ws_connect(f"ws://127.0.0.1:{server.port}/ws?clientId=reader{i}")
                   for i in range(readers_n)]

        async def read(i, ws):
            async for msg in ws:
                counts[i] += 1
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data["type"] == "executing" and data["data"].get("node") is None:
                        done[data["data"]["prompt_id"]] = time.time()
                    elif data["type"] == "progress_state":
                        final[i][data["data"]["prompt_id"]] = data["data"]["nodes"]

        tasks = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(readers)]
        loop = asyncio.get_running_loop()
        chatty = {"1": {"class_type": "LoadBenchChatty", "inputs": {"value": "x", "steps": steps}},
                  "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
        noise = []
        for k in range(noise_prompts):
            chatty["1"]["inputs"]["value"] = f"noise {k}"
            noise.append(await loop.run_in_executor(None, h.submit, json.loads(json.dumps(chatty))))
        start = time.time()
        mine = [await loop.run_in_executor(None, lambda i=i: h.submit(text_prompt(10_000 + i),
                                                                      client_id=f"reader{i}"))
                for i in range(0, readers_n, 10)]
        peak = rss_mb(server.proc.pid)
        deadline = time.time() + 600
        while not set(mine) <= set(done) and time.time() < deadline:
            await asyncio.sleep(0.1)
            peak = max(peak, rss_mb(server.proc.pid))
        all_done = max(done.get(p, float("inf")) for p in mine) - start
        await loop.run_in_executor(None, h.wait_idle, 600)
        await asyncio.sleep(1.0)
        complete = sum(all(all(n.get("state") == "finished" for n in f.get(p, {"x": {}}).values()) for p in noise)
                       for f in final)
        for t in tasks:
            t.cancel()
        for ws in readers:
            await ws.close()
        await session.close()
        for s in stuck:
            s.close()
        return {"clients": clients, "never_reading": stuck_n, "broadcast_events": noise_prompts * steps * 2,
                "readers_own_prompts_done_s": all_done, "messages_per_reader": [min(counts), max(counts)],
                "readers_with_final_progress": f"{complete}/{readers_n}",
                "rss_mb": {"before": rss0, "peak": peak, "after": rss_mb(server.proc.pid)}}

    return asyncio.run(scenario())


def render(report: dict) -> str:
    q, w = report["queue"], report["websockets"]
    lines = [f"Hearth load bench ({report['machine']})", "",
             f"queue: {q['prompts']} prompts posted at {q['post_per_s']:.0f}/s, drained at {q['drain_per_s']:.0f}/s",
             "  POST median ms by tenth: " + " ".join(f"{v:.2f}" for v in q["post_ms_median_by_tenth"]),
             "  server RSS MB: before {before:.0f}, queued {queued:.0f}, drained {drained:.0f}".format(**q["rss_mb"]),
             f"  {'paged read':42} {'empty':>8} {'queued':>8} {'drained':>8}  (median ms)"]
    for path, v in q["paged_ms"].items():
        lines.append(f"  {path:42} {v['empty']:8.2f} {v['queued']:8.2f} {v['drained']:8.2f}")
    lines += ["", f"websockets: {w['clients']} clients, {w['never_reading']} never reading, "
                  f"{w['broadcast_events']} broadcast progress events",
              f"  every reader saw its own prompt finish after {w['readers_own_prompts_done_s']:.2f} s",
              f"  messages per reader {w['messages_per_reader'][0]}-{w['messages_per_reader'][1]}, "
              f"final progress state received by {w['readers_with_final_progress']}",
              "  server RSS MB: before {before:.0f}, peak {peak:.0f}, after {after:.0f}".format(**w["rss_mb"])]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--steps", type=int, default=3000, help="progress reports per broadcasting prompt")
    ap.add_argument("--noise-prompts", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the base directory (server.log inside)")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="hearth-load-"))
    server = Server(base).start()
    try:
        import platform

        report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                  "queue": bench_queue(server, args.prompts),
                  "websockets": bench_websockets(server, args.clients, args.steps, args.noise_prompts)}
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
