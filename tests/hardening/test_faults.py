"""Faults: kill -9 during runs and during database writes, nodes that raise, hang, block, exhaust memory
or return what JSON cannot carry. Each time the job fails (or is cancelled) cleanly, the next job runs,
and a restart loses no accepted job and no history (SQLite's integrity check passes).

Hearth has no per-node timeout yet (it needs the engine to run nodes somewhere it can abandon them);
a hanging node is ended through interrupt / job cancel, which works for nodes that check for it.
"""
from __future__ import annotations

import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import json

import pytest

from tests.conftest import Server, free_port
from tests.hardening.conftest import (figure, image_prompt, submit, wait_running, worker_alive,
                                      write_hostile_pack)


def text_prompt(tag: str, size: int = 0) -> dict:
    """A prompt that runs without torch: PrimitiveString -> PreviewAny."""
    return {"1": {"class_type": "PrimitiveString", "inputs": {"value": tag + "x" * size}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def integrity(db_path) -> tuple[str, int, int]:
    con = sqlite3.connect(str(db_path))
    try:
        check = con.execute("PRAGMA integrity_check").fetchone()[0]
        queued = con.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
        history = con.execute("SELECT COUNT(*) FROM history").fetchone()[0]
    finally:
        con.close()
    return check, queued, history


def _post(url: str, body: dict, timeout: float = 10) -> str | None:
    req = urllib.request.Request(url + "/prompt", data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())["prompt_id"]
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return None  # in flight when the server died: the client saw no answer


def test_kill9_during_runs_and_writes_loses_nothing(tmp_path):
    """Kill -9 while clients post prompts (queue writes) and the worker finishes them (history writes)."""
    base = tmp_path / "durable"
    port = free_port()
    accepted: list[str] = []
    cycles, in_flight, rng = 6, 0, random.Random(7)
    finished_before: set[str] = set()
    server = None
    try:
        for cycle in range(cycles):
            server = Server(base, ["--verbose", "WARNING"], port).start()
            # nothing accepted before any kill is lost: each is still queued or in history (queue read
            # first: prompts only move from the queue to history, so none slips between the two reads)
            queue = server.get_json("/queue")
            history = server.get_json("/history")
            known = set(history) | {i[1] for i in queue["queue_running"] + queue["queue_pending"]}
            missing = [p for p in accepted if p not in known]
            assert not missing, f"cycle {cycle}: accepted prompts lost: {missing[:5]}"
            assert finished_before <= set(history), f"cycle {cycle}: history lost"
            finished_before = set(history)
            stop = threading.Event()
            lock = threading.Lock()

            def client(n: int) -> None:
                nonlocal in_flight
                i = 0
                while not stop.is_set():
                    size = 2_000_000 if (i % 7 == 3) else 0  # big rows make a write last longer
                    pid = _post(server.url, {"prompt": text_prompt(f"c{cycle}-{n}-{i}-", size)})
                    with lock:
                        if pid:
                            accepted.append(pid)
                        else:
                            in_flight += 1
                    i += 1

            threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.4 + rng.random() * 0.8)
            server.kill9()
            stop.set()
            for t in threads:
                t.join(15)
            check, _, _ = integrity(base / "user" / "hearth.db")
            assert check == "ok", f"cycle {cycle}: integrity_check says {check}"
        # a final restart drains everything that was accepted
        server = Server(base, ["--verbose", "WARNING"], port).start()
        deadline = time.time() + 120
        while time.time() < deadline:
            q = server.get_json("/queue")
            if not q["queue_running"] and not q["queue_pending"]:
                break
            time.sleep(0.1)
        history = server.get_json("/history")
        missing = [p for p in accepted if p not in history]
        assert not missing, f"accepted prompts lost: {missing[:5]} of {len(accepted)}"
        statuses = [history[p]["status"]["status_str"] for p in accepted]
        # only a prompt that was running at a kill may be an error (reported as stopped by the server)
        errors = [p for p in accepted if history[p]["status"]["status_str"] == "error"]
        for p in errors:
            assert "server stopped" in history[p]["status"]["messages"][-1][1]["exception_message"]
        assert len(errors) <= cycles
        server.stop()
        check, queued, hist_rows = integrity(base / "user" / "hearth.db")
        assert check == "ok" and queued == 0 and hist_rows >= len(accepted)
        figure("faults", kill9_cycles=cycles, kill9_accepted_jobs=len(accepted), kill9_jobs_lost=0,
               kill9_requests_in_flight=in_flight, kill9_running_marked_failed=len(errors),
               kill9_succeeded=statuses.count("success"))
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="module")
def srv(module_server):
    return module_server("faults", pack=True)


def _last_message(server, pid: str) -> tuple[str, dict, dict]:
    entry = server.wait_history(pid, 60)
    kind, data = entry["status"]["messages"][-1]
    return kind, data, entry


def test_node_that_raises(srv):
    pid = submit(srv, image_prompt(1, middle={"class_type": "HardenRaise"}))
    kind, data, entry = _last_message(srv, pid)
    assert kind == "execution_error" and entry["status"]["status_str"] == "error"
    assert data["node_type"] == "HardenRaise" and "always fails" in data["exception_message"]
    assert srv.get_json(f"/api/jobs/{pid}")["status"] == "failed"
    worker_alive(srv, 0x100001)
    figure("faults", node_raised_survived=1)


def test_hanging_node_ended_by_interrupt_and_cancel(srv):
    for how in ("interrupt", "interrupt-by-id", "cancel"):
        pid = submit(srv, image_prompt(2, middle={"class_type": "HardenHang"}))
        queued = submit(srv, image_prompt(3))  # waits behind the hang
        wait_running(srv, pid)
        time.sleep(0.3)
        start = time.time()
        assert srv.get_json("/queue")["queue_running"][0][1] == pid  # the server answers while a node hangs
        assert time.time() - start < 1
        if how == "interrupt":
            assert srv.request("POST", "/interrupt")[0] == 200
        elif how == "interrupt-by-id":
            assert srv.post_json("/interrupt", {"prompt_id": pid})[0] == 200
        else:
            status, body = srv.post_json(f"/api/jobs/{pid}/cancel", {})
            assert status == 200 and body["cancelled"] == "running"
        kind, data, entry = _last_message(srv, pid)
        assert kind == "execution_interrupted" and data["node_type"] == "HardenHang", (how, kind)
        assert time.time() - start < 5
        assert srv.get_json(f"/api/jobs/{pid}")["status"] == "cancelled"
        assert srv.wait_history(queued)["status"]["status_str"] == "success"  # the next job ran
    figure("faults", node_hung_survived=3)


def test_node_that_blocks_without_checking_interrupt(srv):
    """A node that ignores interrupt runs to its end; the prompt then stops before the next node."""
    pid = submit(srv, image_prompt(4, middle={"class_type": "HardenBlockingSleep", "inputs": {"seconds": 2.0}}))
    wait_running(srv, pid)
    time.sleep(0.3)
    assert srv.request("POST", "/interrupt")[0] == 200
    kind, data, entry = _last_message(srv, pid)
    assert kind == "execution_interrupted"
    worker_alive(srv, 0x100004)
    figure("faults", node_blocked_survived=1)


def test_node_that_exhausts_memory(srv):
    """The node allocates until the (per-call capped) address space runs out: MemoryError, clean failure."""
    pid = submit(srv, image_prompt(5, middle={"class_type": "HardenExhaustMemory", "inputs": {"headroom_mb": 768}}))
    # while the address space is exhausted, every thread's allocations fail, so a request that arrives in
    # that window may be dropped: poll patiently
    deadline, entry, dropped = time.time() + 60, None, 0
    while time.time() < deadline:
        try:
            history = srv.get_json(f"/history/{pid}")
        except (OSError, AssertionError):
            dropped += 1
            time.sleep(0.1)
            continue
        if pid in history:
            entry = history[pid]
            break
        time.sleep(0.05)
    assert entry is not None, srv.log()[-3000:]
    kind, data = entry["status"]["messages"][-1]
    assert kind == "execution_error" and data["exception_type"].endswith("MemoryError"), data["exception_type"]
    assert srv.proc.poll() is None
    assert srv.get_json("/system_stats")
    worker_alive(srv, 0x100005)
    figure("faults", node_oom_survived=1, requests_dropped_while_out_of_memory=dropped)


def test_node_whose_ui_json_cannot_carry(srv):
    """An output node returning an object in its ui: the prompt fails cleanly instead of sticking in the queue;
    NaN becomes null (strict JSON for browsers)."""
    prompt = image_prompt(6)
    prompt["9"] = {"class_type": "HardenBadUi", "inputs": {"image": ["1", 0], "kind": "object"}}
    pid = submit(srv, prompt)
    kind, data, entry = _last_message(srv, pid)
    assert entry["status"]["status_str"] == "error" and kind == "execution_error"
    assert "cannot be stored" in data["exception_message"]
    assert srv.get_json("/queue") == {"queue_running": [], "queue_pending": []}
    prompt["9"]["inputs"]["kind"] = "nan"
    pid = submit(srv, prompt)
    entry = srv.wait_history(pid)
    raw = srv.request("GET", f"/history/{pid}")[2]
    assert b"NaN" not in raw
    assert entry["outputs"]["9"]["value"] == [None]
    worker_alive(srv, 0x100006)
    figure("faults", node_bad_output_survived=2)


def test_backtracking_regex_does_not_freeze_the_server(srv):
    """A catastrophically backtracking pattern from the prompt ('a'*40+'b' against '(a+)+$': hours with
    Python's re, which holds the GIL) ends within the node's time limit and the server keeps answering."""
    info = srv.get_json("/object_info")
    if "RegexMatch" not in info:
        pytest.skip("RegexMatch is not registered")
    prompt = {"1": {"class_type": "RegexMatch", "inputs": {"string": "a" * 40 + "b", "regex_pattern": "(a+)+$",
                                                            "case_insensitive": False, "multiline": False,
                                                            "dotall": False}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    stalls: list[float] = []
    stop = threading.Event()

    def ping() -> None:
        while not stop.is_set():
            start = time.time()
            srv.request("GET", "/system_stats")
            stalls.append(time.time() - start)
            time.sleep(0.02)

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    start = time.time()
    try:
        pid = submit(srv, prompt)
        entry = srv.wait_history(pid, 30)
    finally:
        stop.set()
        pinger.join(30)
    elapsed = time.time() - start
    figure("faults", regex_backtracking_run_s=round(elapsed, 2), regex_backtracking_http_stall_s=round(max(stalls), 2))
    assert entry["status"]["completed"] in (True, False) and elapsed < 20
    assert max(stalls) < 0.5, f"the server stopped answering for {max(stalls):.2f} s while a regex ran"
    worker_alive(srv, 0x100007)


def test_no_per_node_timeout_exists_yet(srv):
    """Documents the gap: nothing ends a node that neither returns nor checks for interrupt."""
    pytest.skip("a per-node timeout needs an engine change (hearth/engine): run node functions where they can be "
                "abandoned (a worker subprocess per prompt, killed and restarted on timeout) and report "
                "execution_error 'node timed out'; until then a node that ignores interrupt blocks the queue")
