"""End-to-end: the real server on a free port, real HTTP and a real websocket client."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, Server, trivial_prompt
from tests.e2e.wsclient import WSRecorder, summarize

SLOW_NODES = '''
import time
from hearth.engine.progress import check_interrupt, report_progress


class HearthTestSleep:
    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "seconds": ("FLOAT", {"default": 1.0, "min": 0, "max": 600})}}

    def run(self, image, seconds):
        end = time.time() + seconds
        steps = max(int(seconds / 0.02), 1)
        for i in range(steps):
            check_interrupt()
            time.sleep(max(min(0.02, end - time.time()), 0))
            report_progress(i + 1, steps)
        return (image,)


NODE_CLASS_MAPPINGS = {"HearthTestSleep": HearthTestSleep}
'''


def slow_prompt(seconds: float, color: int = 0, output: str = "PreviewImage") -> dict:
    p = trivial_prompt(color, 8, output)
    p["3"] = {"class_type": "HearthTestSleep", "inputs": {"image": ["1", 0], "seconds": seconds}}
    p["2"]["inputs"]["images"] = ["3", 0]
    return p


@pytest.fixture
def slow_server(make_server, tmp_path) -> Server:
    base = tmp_path / "slowbase"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "hearth_test_nodes.py").write_text(SLOW_NODES)
    return make_server(base=base)


def run(coro):
    return asyncio.run(coro)


def post_prompt(server: Server, prompt: dict, **extra) -> dict:
    status, body = server.post_json("/prompt", {"prompt": prompt, **extra})
    assert status == 200, body
    return body


# --- routes ------------------------------------------------------------------------------------------
GET_ROUTES = ["/prompt", "/queue", "/history", "/object_info", "/object_info/EmptyImage", "/system_stats",
              "/features", "/embeddings", "/extensions", "/models", "/models/checkpoints", "/users", "/settings",
              "/i18n", "/workflow_templates", "/experiment/models", "/experiment/models/checkpoints",
              "/v2/userdata?path=", "/history/" + str(uuid.uuid4())]


def test_every_get_route_answers_bare_and_under_api(server):
    for path in GET_ROUTES:
        for prefix in ("", "/api"):
            status, headers, body = server.request("GET", prefix + path)
            assert status == 200, (prefix + path, status, body[:300])
            json.loads(body)
    for path in ("/internal/logs", "/internal/logs/raw", "/internal/folder_paths", "/internal/files/output"):
        assert server.request("GET", path)[0] == 200, path
        assert server.request("GET", "/api" + path)[0] == 404, path
    assert server.request("GET", "/does/not/exist")[0] == 404
    assert server.request("GET", "/api/does/not/exist")[0] == 404
    assert server.request("GET", "/ws")[0] == 400  # no Upgrade header


def test_fresh_base_directory_gets_its_folders(server):
    for d in ("models/checkpoints", "input", "output", "temp", "user", "custom_nodes"):
        assert (server.base / d).is_dir(), d


def test_object_info_shapes(server):
    info = server.get_json("/object_info")
    e = info["EmptyImage"]
    assert e["input"]["required"]["width"] == ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}]
    assert e["input_order"] == {"required": ["width", "height", "batch_size", "color"]}
    assert e["output"] == ["IMAGE"] and e["output_is_list"] == [False] and e["output_name"] == ["IMAGE"]
    assert e["python_module"] == "nodes" and e["category"] == "image" and e["output_node"] is False
    assert info["PreviewImage"]["output_node"] is True
    assert info["PreviewImage"]["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    assert server.get_json("/object_info/NoSuchNode") == {}
    assert list(server.get_json("/object_info/SaveImage")) == ["SaveImage"]


def test_system_stats_and_features(server):
    stats = server.get_json("/system_stats")
    assert stats["system"]["comfyui_version"] and stats["system"]["ram_total"] > 0
    assert stats["devices"][0]["type"] in ("cpu", "cuda")
    assert server.get_json("/features") == {"supports_preview_metadata": True, "max_upload_size": 104857600}


# --- POST /prompt validation (protocol.md §4, verbatim bodies) ---------------------------------------
def test_validation_error_bodies_match_comfyui(server):
    def post(prompt):
        return server.post_json("/prompt", {"prompt": prompt})

    status, body = post({"1": {"class_type": "NoSuchNodeXYZ", "inputs": {}}})
    assert status == 400
    assert body == {"error": {"type": "invalid_prompt",
                              "message": "Cannot execute because node NoSuchNodeXYZ does not exist.",
                              "details": "Node ID '#1'", "extra_info": {}}, "node_errors": {}}

    p = trivial_prompt()
    del p["1"]["inputs"]["width"]
    status, body = post(p)
    assert status == 400
    assert body == {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                              "details": "", "extra_info": {}},
                    "node_errors": {"1": {"errors": [{"type": "required_input_missing",
                                                      "message": "Required input is missing", "details": "width",
                                                      "extra_info": {"input_name": "width"}}],
                                          "dependent_outputs": ["2"], "class_type": "EmptyImage"}}}

    p = trivial_prompt()
    p["1"]["inputs"]["width"] = 0
    status, body = post(p)
    assert status == 400
    assert body["node_errors"]["1"]["errors"] == [{
        "type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1", "details": "width",
        "extra_info": {"input_name": "width",
                       "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                       "received_value": 0}}]

    p = trivial_prompt()
    p["1"]["inputs"]["width"] = "abc"
    status, body = post(p)
    assert status == 400
    err = body["node_errors"]["1"]["errors"][0]
    assert err["type"] == "invalid_input_type"
    assert err["message"] == "Failed to convert an input value to a INT value"
    assert err["details"] == "width, abc, invalid literal for int() with base 10: 'abc'"

    status, body = post({"1": {"class_type": "LoadImage", "inputs": {"image": "does_not_exist.png"}},
                         "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert status == 400
    assert body["node_errors"]["1"]["errors"] == [{
        "type": "custom_validation_failed", "message": "Custom validation failed for node",
        "details": "image - Invalid image file: does_not_exist.png", "extra_info": {"input_name": "image"}}]

    no_outputs = {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                            "extra_info": {}}, "node_errors": {}}
    assert post({}) == (400, no_outputs)
    assert post({"1": trivial_prompt()["1"]}) == (400, no_outputs)

    status, body = server.post_json("/prompt", {"client_id": "x"})
    assert (status, body) == (400, {"error": {"type": "no_prompt", "message": "No prompt provided",
                                              "details": "No prompt provided", "extra_info": {}},
                                    "node_errors": {}})

    # ComfyUI leaks a KeyError traceback here; we keep the shape without the traceback.
    p = trivial_prompt()
    p["2"]["inputs"]["images"] = ["99", 0]
    status, body = post(p)
    assert status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["2"]["class_type"] == "PreviewImage"
    assert "Traceback" not in json.dumps(body)


def test_malformed_bodies_get_json_400_not_500(server):
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2", b"null", b"42", b'"x"', b"[]"):
        status, headers, body = server.request("POST", "/prompt", raw)
        assert status == 400, (raw, status, body)
        parsed = json.loads(body)
        assert set(parsed) == {"error", "node_errors"} and set(parsed["error"]) >= {"type", "message"}
    for body in ({"prompt": []}, {"prompt": "x"}, {"prompt": {"1": 5}}, {"prompt": {"1": {"class_type": 5}}},
                 {"prompt": trivial_prompt(), "prompt_id": "not-a-uuid"},
                 {"prompt": trivial_prompt(), "number": "abc"}, {"prompt": trivial_prompt(), "extra_data": []},
                 {"prompt": trivial_prompt(), "client_id": 5},
                 {"prompt": trivial_prompt(), "partial_execution_targets": "2"}):
        status, parsed = server.post_json("/prompt", body)
        assert status == 400, (body, status, parsed)
        assert "error" in parsed and "node_errors" in parsed
    # rejected prompts consume no queue number (ComfyUI's do)
    first = post_prompt(server, trivial_prompt(1))
    assert first["number"] == 0
    assert post_prompt(server, trivial_prompt(2))["number"] == 1


def test_form_encoded_and_text_plain_bodies_parse_as_json(server):
    body = json.dumps({"prompt": trivial_prompt(3)})
    for ctype in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": ctype} if ctype else {}
        status, _, raw = server.request("POST", "/api/prompt", body, headers)
        assert status == 200, raw


def test_client_prompt_id_and_duplicates(server):
    pid = str(uuid.uuid4())
    assert post_prompt(server, trivial_prompt(4), prompt_id=pid)["prompt_id"] == pid
    status, body = server.post_json("/prompt", {"prompt": trivial_prompt(5), "prompt_id": pid})
    assert status == 400
    server.wait_history(pid)
    status, body = server.post_json("/prompt", {"prompt": trivial_prompt(5), "prompt_id": pid.upper()})
    assert status == 400


# --- websocket sequences (protocol.md §5) -------------------------------------------------------------
def test_ws_sequences_success_cached_and_two_back(server):
    async def scenario():
        async with WSRecorder(server.ws_url) as ws:
            await ws.wait_for(lambda m: m["type"] == "status")
            assert ws.messages[0]["data"]["status"] == {"exec_info": {"queue_remaining": 0}}
            sid = ws.sid
            assert sid and len(sid) == 32

            async def submit(prompt):
                before = len(ws.messages)
                pid = post_prompt(server, prompt, client_id=sid)["prompt_id"]
                await ws.wait_done(pid)
                return pid, ws.messages[before:]

            pid, msgs = await submit(trivial_prompt(4242))
            assert summarize(msgs) == [
                ("status", 1), ("status", 1), ("execution_start",), ("execution_cached", ()),
                ("progress_state", (("1", "running"),)), ("executing", "1"),
                ("progress_state", (("1", "finished"),)),
                ("progress_state", (("1", "finished"), ("2", "running"))), ("executing", "2"), ("executed", "2"),
                ("progress_state", (("1", "finished"), ("2", "finished"))), ("execution_success",), ("status", 0),
                ("executing", None)]
            executed = next(m for m in msgs if m["type"] == "executed")["data"]
            assert executed["display_node"] == "2" and executed["prompt_id"] == pid
            image = executed["output"]["images"][0]
            assert image["type"] == "temp" and image["subfolder"] == ""
            assert image["filename"].startswith("ComfyUI_temp_") and image["filename"].endswith("_00001_.png")
            first_state = next(m for m in msgs if m["type"] == "progress_state")["data"]["nodes"]["1"]
            assert first_state == {"value": 0.0, "max": 1.0, "state": "running", "node_id": "1", "prompt_id": pid,
                                   "display_node_id": "1", "parent_node_id": None, "real_node_id": "1"}

            # identical prompt right after: fully cached (5c)
            pid2, msgs = await submit(trivial_prompt(4242))
            assert summarize(msgs) == [
                ("status", 1), ("status", 1), ("execution_start",), ("execution_cached", ("1", "2")),
                ("executed", "2"), ("progress_state", (("2", "finished"),)), ("execution_success",), ("status", 0),
                ("executing", None)]
            again = next(m for m in msgs if m["type"] == "executed")["data"]["output"]
            assert again == executed["output"]
            state = next(m for m in msgs if m["type"] == "progress_state")["data"]["nodes"]["2"]
            assert state["value"] == 1 and isinstance(state["value"], int)

            # a different prompt, then the first again: classic cache re-runs everything (5d)
            await submit(trivial_prompt(1))
            _, msgs = await submit(trivial_prompt(4242))
            assert ("execution_cached", ()) in summarize(msgs)
            assert ("executing", "1") in summarize(msgs)

            hist = server.get_json(f"/history/{pid}")[pid]
            assert hist["prompt"][1] == pid and hist["prompt"][3] == {"client_id": sid}
            assert hist["prompt"][4] == ["2"]
            assert hist["status"]["status_str"] == "success" and hist["status"]["completed"] is True
            assert [m[0] for m in hist["status"]["messages"]] == ["execution_start", "execution_cached",
                                                                  "execution_success"]
            assert hist["outputs"] == {"2": executed["output"]}
            assert hist["meta"] == {"2": {"node_id": "2", "display_node": "2", "parent_node": None,
                                          "real_node_id": "2"}}
    run(scenario())


def test_ws_runtime_error_sequence_and_history(server):
    async def scenario():
        async with WSRecorder(server.ws_url) as ws:
            await ws.wait_for(lambda m: m["type"] == "status")
            p = trivial_prompt(77, output="SaveImage")
            p["2"]["inputs"]["filename_prefix"] = "../../../outside_output"
            before = len(ws.messages)
            pid = post_prompt(server, p, client_id=ws.sid)["prompt_id"]
            await ws.wait_done(pid)
            msgs = ws.messages[before:]
            assert [t[0] for t in summarize(msgs)] == [
                "status", "status", "execution_start", "execution_cached", "progress_state", "executing",
                "progress_state", "progress_state", "executing", "execution_error", "status", "executing"]
            err = next(m for m in msgs if m["type"] == "execution_error")["data"]
            assert err["node_id"] == "2" and err["node_type"] == "SaveImage" and err["executed"] == ["1"]
            assert set(err) == {"prompt_id", "node_id", "node_type", "executed", "exception_message",
                                "exception_type", "traceback", "current_inputs", "current_outputs", "timestamp"}
            assert "outside" in err["exception_message"]
            assert len(json.dumps(err["current_inputs"])) < 4000  # summaries, not tensor reprs
            hist = server.get_json(f"/history/{pid}")[pid]
            assert hist["status"]["status_str"] == "error" and hist["status"]["completed"] is False
            assert hist["outputs"] == {}
            assert hist["status"]["messages"][-1][0] == "execution_error"
    run(scenario())
    assert not list(server.base.parent.glob("outside_output*"))
    assert not list(server.base.glob("outside_output*"))


def test_prompt_without_client_id_is_seen_only_as_progress_and_status(server):
    async def scenario():
        async with WSRecorder(server.ws_url) as ws:
            await ws.wait_for(lambda m: m["type"] == "status")
            before = len(ws.messages)
            pid = post_prompt(server, trivial_prompt(5151))["prompt_id"]
            server.wait_history(pid)
            await ws.wait_for(lambda m: m["type"] == "status" and
                              m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
            await asyncio.sleep(0.1)
            types = [m["type"] for m in ws.messages[before:]]
            assert set(types) == {"status", "progress_state"}, types
            assert types.count("progress_state") == 4
    run(scenario())


def test_feature_flags_handshake_and_reconnect(server):
    async def scenario():
        async with WSRecorder(server.ws_url, feature_flags={"supports_preview_metadata": True}) as ws:
            msg = await ws.wait_for(lambda m: m["type"] == "feature_flags")
            assert msg["data"] == {"supports_preview_metadata": True, "max_upload_size": 104857600}
            sid = ws.sid
            # reconnect with the same clientId replaces the old socket
            async with WSRecorder(server.ws_url, client_id=sid) as ws2:
                await ws2.wait_for(lambda m: m["type"] == "status")
                assert ws2.sid == sid
                await asyncio.wait_for(ws.closed.wait(), 5)
                pid = post_prompt(server, trivial_prompt(6), client_id=sid)["prompt_id"]
                await ws2.wait_done(pid)
    run(scenario())


def test_slow_client_does_not_delay_others(server):
    """A socket that never reads: execution and other clients carry on."""
    async def scenario():
        raw = socket.create_connection(("127.0.0.1", server.port))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        raw.sendall((f"GET /ws?clientId=stuck HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                    .encode())
        try:
            async with WSRecorder(server.ws_url) as ws:
                await ws.wait_for(lambda m: m["type"] == "status")
                start = time.time()
                pids = [post_prompt(server, trivial_prompt(1000 + i), client_id="stuck")["prompt_id"]
                        for i in range(150)]
                mine = post_prompt(server, trivial_prompt(7), client_id=ws.sid)["prompt_id"]
                await ws.wait_done(mine, timeout=60)
                assert time.time() - start < 60
                assert all(server.get_json(f"/history/{p}") for p in pids[-3:])
        finally:
            raw.close()
    run(scenario())
    assert server.get_json("/system_stats")


# --- queue, history, interrupt, jobs ----------------------------------------------------------------
def test_queue_front_number_delete_and_history_pagination(slow_server):
    s = slow_server
    blocker = post_prompt(s, slow_prompt(1.5, 1))["prompt_id"]
    time.sleep(0.2)
    a = post_prompt(s, trivial_prompt(10))
    b = post_prompt(s, trivial_prompt(11))
    c = post_prompt(s, trivial_prompt(12), front=True)
    d = post_prompt(s, trivial_prompt(13), number=0.5)
    gone = post_prompt(s, trivial_prompt(14))
    q = s.get_json("/queue")
    assert [item[1] for item in q["queue_running"]] == [blocker]
    pending = [item[1] for item in q["queue_pending"]]
    assert pending == [c["prompt_id"], d["prompt_id"], a["prompt_id"], b["prompt_id"], gone["prompt_id"]]
    assert c["number"] < 0 and d["number"] == 0.5
    assert len(q["queue_pending"][0]) == 5
    assert s.get_json("/queue?max_items=2&offset=1")["queue_pending"][0][1] == d["prompt_id"]
    assert s.get_json("/prompt") == {"exec_info": {"queue_remaining": 6}}
    status, _ = s.post_json("/queue", {"delete": [gone["prompt_id"]]})
    assert status == 200
    for p in (a, b, c, d):
        s.wait_history(p["prompt_id"])
    order = list(s.get_json("/history"))
    assert order == [blocker, c["prompt_id"], d["prompt_id"], a["prompt_id"], b["prompt_id"]]
    assert list(s.get_json("/history?max_items=2")) == order[-2:]
    assert list(s.get_json("/history?max_items=2&offset=1")) == order[1:3]
    assert s.get_json(f"/history/{gone['prompt_id']}") == {}
    assert s.request("GET", "/history?max_items=abc")[0] == 400
    s.post_json("/history", {"delete": [order[0]]})
    assert order[0] not in s.get_json("/history")
    s.post_json("/history", {"clear": True})
    assert s.get_json("/history") == {}


def test_interrupt_only_the_named_prompt(slow_server):
    s = slow_server

    async def scenario():
        async with WSRecorder(s.ws_url) as ws:
            await ws.wait_for(lambda m: m["type"] == "status")
            pid = post_prompt(s, slow_prompt(3, 2), client_id=ws.sid)["prompt_id"]
            await ws.wait_for(lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == pid)
            assert s.post_json("/interrupt", {"prompt_id": str(uuid.uuid4())})[0] == 200
            await asyncio.sleep(0.3)
            assert s.get_json(f"/history/{pid}") == {}
            assert s.post_json("/api/interrupt", {"prompt_id": pid})[0] == 200
            await ws.wait_done(pid, timeout=5)
            msg = next(m for m in ws.messages if m["type"] == "execution_interrupted")["data"]
            assert msg["node_id"] == "3" and msg["node_type"] == "HearthTestSleep" and msg["executed"] == ["1"]
            hist = s.get_json(f"/history/{pid}")[pid]
            assert hist["status"]["status_str"] == "error"
            assert hist["status"]["messages"][-1][0] == "execution_interrupted"
            # a bare interrupt (no body) stops whatever runs
            pid2 = post_prompt(s, slow_prompt(3, 3), client_id=ws.sid)["prompt_id"]
            await ws.wait_for(lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == pid2)
            assert s.request("POST", "/interrupt")[0] == 200
            await ws.wait_done(pid2, timeout=5)
    run(scenario())


def test_jobs_api(slow_server):
    s = slow_server
    running = post_prompt(s, slow_prompt(3, 4))["prompt_id"]
    time.sleep(0.3)
    pending = post_prompt(s, trivial_prompt(20))["prompt_id"]
    cancel_me = post_prompt(s, trivial_prompt(21))["prompt_id"]
    job = s.get_json(f"/api/jobs/{pending}")
    assert job["status"] == "pending" and job["workflow"]["prompt"]["1"]["class_type"] == "EmptyImage"
    assert s.get_json(f"/api/jobs/{running}")["status"] == "in_progress"
    assert s.request("GET", f"/api/jobs/{uuid.uuid4()}")[0] == 404
    assert s.post_json(f"/api/jobs/{cancel_me}/cancel", {})[0] == 200
    assert s.get_json(f"/api/jobs/{cancel_me}")["status"] == "cancelled"
    assert s.post_json(f"/api/jobs/{running}/cancel", {})[0] == 200
    s.wait_history(pending)
    assert s.get_json(f"/api/jobs/{running}")["status"] == "cancelled"
    done = s.get_json(f"/api/jobs/{pending}")
    assert done["status"] == "completed" and done["outputs_count"] == 1
    assert done["preview_output"]["filename"].endswith(".png")
    bad = post_prompt(s, {**trivial_prompt(22, output="SaveImage"),
                          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                                      "filename_prefix": "../x"}}})["prompt_id"]
    s.wait_history(bad)
    failed = s.get_json(f"/api/jobs/{bad}")
    assert failed["status"] == "failed" and failed["execution_error"]["node_id"] == "2"
    listing = s.get_json("/api/jobs")
    assert listing["pagination"]["total"] == 4 and len(listing["jobs"]) == 4
    assert [j["id"] for j in s.get_json("/api/jobs?status=cancelled&sort_order=asc")["jobs"]] == [running,
                                                                                                 cancel_me]
    page = s.get_json("/api/jobs?limit=1&offset=1&sort_order=asc")
    assert len(page["jobs"]) == 1 and page["pagination"]["has_more"] is True
    assert page["jobs"][0]["id"] == pending
    assert s.request("GET", "/api/jobs?status=bogus")[0] == 400
    assert s.request("GET", "/api/jobs?limit=x")[0] == 400
    assert s.post_json(f"/api/jobs/{pending}/cancel", {})[0] == 409
    assert s.request("GET", "/jobs")[0] == 404  # registered under /api only, as ComfyUI


# --- durability ------------------------------------------------------------------------------------
def test_restart_after_kill9_keeps_pending_fails_running_keeps_history(make_server, tmp_path):
    base = tmp_path / "durable"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "hearth_test_nodes.py").write_text(SLOW_NODES)
    s = make_server(base=base)
    done = post_prompt(s, trivial_prompt(30))["prompt_id"]
    s.wait_history(done)
    running = post_prompt(s, slow_prompt(30, 31))["prompt_id"]
    deadline = time.time() + 10
    while not s.get_json("/queue")["queue_running"] and time.time() < deadline:
        time.sleep(0.05)
    pending = [post_prompt(s, trivial_prompt(40 + i))["prompt_id"] for i in range(4)]
    pending.insert(0, post_prompt(s, trivial_prompt(39), front=True)["prompt_id"])
    s.kill9()

    s2 = make_server(base=base, port=s.port)
    for pid in pending:
        s2.wait_history(pid)
    history = s2.get_json("/history")
    order = list(history)
    assert order[0] == done and order[1] == running
    assert order[2:] == pending
    failed = history[running]
    assert failed["status"]["status_str"] == "error" and failed["status"]["completed"] is False
    err = failed["status"]["messages"][-1]
    assert err[0] == "execution_error" and "server stopped" in err[1]["exception_message"]
    assert history[done]["status"]["status_str"] == "success"
    assert all(history[p]["status"]["status_str"] == "success" for p in pending)
    assert s2.get_json(f"/api/jobs/{running}")["status"] == "failed"
    # numbers keep counting after the restart
    assert post_prompt(s2, trivial_prompt(50))["number"] > max(history[p]["prompt"][0] for p in pending)


def test_history_retention_is_bounded(make_server):
    s = make_server(["--history-max-items", "3"])
    pids = [post_prompt(s, trivial_prompt(60 + i))["prompt_id"] for i in range(5)]
    for p in pids:
        s.wait_history(p) if p == pids[-1] else None
    assert list(s.get_json("/history")) == pids[-3:]


# --- safety ----------------------------------------------------------------------------------------
def test_cross_origin_requests_are_refused_on_loopback(server):
    body = json.dumps({"prompt": trivial_prompt(70)})
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        status, _, raw = server.request("POST", "/prompt", body, {"Origin": origin})
        assert status == 403, origin
        assert json.loads(raw)["error"]["type"] == "forbidden"
    assert server.get_json("/queue")["queue_pending"] == []
    same = {"Origin": f"http://127.0.0.1:{server.port}"}
    assert server.request("POST", "/prompt", body, same)[0] == 200
    assert server.request("GET", "/queue")[0] == 200  # no Origin: scripts and curl


def test_cors_header_flag_allows_cross_origin(make_server):
    s = make_server(["--enable-cors-header", "http://ui.example"])
    status, headers, _ = s.request("GET", "/queue", headers={"Origin": "http://ui.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://ui.example"
    assert s.request("OPTIONS", "/prompt", headers={"Origin": "http://ui.example"})[0] == 200


def test_token_required_off_loopback(make_server):
    s = make_server(["--listen", "0.0.0.0", "--api-token", "s3cret-token"])
    assert s.request("GET", "/queue")[0] == 401
    assert s.request("GET", "/queue", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert s.request("GET", "/queue", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
    assert s.request("GET", "/queue?token=s3cret-token")[0] == 200
    assert "s3cret-token" not in s.log()


def test_body_over_max_upload_size_is_413(make_server):
    s = make_server(["--max-upload-size", "1"])
    status, _, raw = s.request("POST", "/prompt", b"x" * (2 * 1024 * 1024))
    assert status == 413
    assert json.loads(raw)["error"]["type"] == "request_too_large"
    assert s.get_json("/queue")


def test_secrets_never_stored_or_shown(server):
    pid = post_prompt(server, trivial_prompt(80), extra_data={"api_key_comfy_org": "KEY-123",
                                                              "auth_token_comfy_org": "TOK-456"})["prompt_id"]
    server.wait_history(pid)
    for path in ("/history", f"/history/{pid}", "/queue", f"/api/jobs/{pid}"):
        _, _, raw = server.request("GET", path)
        assert b"KEY-123" not in raw and b"TOK-456" not in raw
    db = (server.base / "user" / "hearth.db").read_bytes()
    assert b"KEY-123" not in db


# --- command line -----------------------------------------------------------------------------------
def hearth_cmd(*args, cwd=None, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "hearth", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def test_unknown_flag_is_a_clear_error(tmp_path):
    r = hearth_cmd("--no-such-flag", cwd=tmp_path)
    assert r.returncode == 2 and "--no-such-flag" in r.stderr


def test_comfyui_flags_are_accepted(make_server, tmp_path):
    yaml_file = tmp_path / "extra.yaml"
    (tmp_path / "shared_models" / "loras").mkdir(parents=True)
    (tmp_path / "shared_models" / "loras" / "a.safetensors").write_bytes(b"x")
    yaml_file.write_text("mine:\n  base_path: shared_models\n  loras: loras\n")
    s = make_server(["--cpu", "--cache-lru", "10", "--preview-method", "auto", "--disable-metadata",
                     "--fp16-vae", "--use-pytorch-cross-attention", "--verbose", "WARNING",
                     "--extra-model-paths-config", str(yaml_file), "--output-directory", str(tmp_path / "outs"),
                     "--dont-print-server"])
    assert s.get_json("/models/loras") == ["a.safetensors"]
    pid = post_prompt(s, trivial_prompt(90, output="SaveImage"))["prompt_id"]
    s.wait_history(pid)
    assert (tmp_path / "outs" / "ComfyUI_00001_.png").is_file()


def test_hearth_run_executes_a_workflow_file(tmp_path):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(trivial_prompt(0x336699, output="SaveImage")))
    out = tmp_path / "out"
    r = hearth_cmd("run", str(wf), "--output-directory", str(out), "--base-directory", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    saved = out / "ComfyUI_00001_.png"
    assert saved.is_file() and str(saved) in r.stdout
    from PIL import Image
    assert Image.open(saved).getpixel((0, 0)) == (0x33, 0x66, 0x99)

    bad = trivial_prompt(1, output="SaveImage")
    bad["2"]["inputs"]["filename_prefix"] = "../../escape"
    wf.write_text(json.dumps(bad))
    r = hearth_cmd("run", str(wf), "--base-directory", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "SaveImage" in r.stderr
    wf.write_text("{broken")
    assert hearth_cmd("run", str(wf), cwd=tmp_path).returncode == 2
    wf.write_text(json.dumps({"nodes": [], "links": []}))
    r = hearth_cmd("run", str(wf), cwd=tmp_path)
    assert r.returncode == 2 and "UI-format" in r.stderr


def test_saved_png_carries_prompt_and_workflow(server):
    workflow = {"nodes": [], "links": [], "version": 0.4}
    pid = post_prompt(server, trivial_prompt(91, output="SaveImage"),
                      extra_data={"extra_pnginfo": {"workflow": workflow}})["prompt_id"]
    h = server.wait_history(pid)
    name = h["outputs"]["2"]["images"][0]["filename"]
    from PIL import Image
    img = Image.open(server.base / "output" / name)
    assert json.loads(img.text["workflow"]) == workflow
    assert json.loads(img.text["prompt"])["1"]["class_type"] == "EmptyImage"


def test_broken_custom_node_pack_does_not_stop_the_server(make_server, tmp_path):
    base = tmp_path / "cn"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "broken_pack.py").write_text("raise RuntimeError('boom at import')\n")
    (base / "custom_nodes" / "hearth_test_nodes.py").write_text(SLOW_NODES)
    s = make_server(base=base)
    assert "HearthTestSleep" in s.get_json("/object_info")
    assert "boom at import" in s.log()


def test_object_info_lists_files_dropped_in_without_restart(server):
    def choices(node, inp):
        return server.get_json(f"/object_info")[node]["input"]["required"][inp][0]

    assert choices("LoadImage", "image") == []
    from PIL import Image
    Image.new("RGB", (4, 4)).save(server.base / "input" / "dropped.png")
    assert choices("LoadImage", "image") == ["dropped.png"]
    sub = server.base / "models" / "checkpoints" / "nested"
    sub.mkdir()
    assert choices("CheckpointLoaderSimple", "ckpt_name") == []
    (sub / "new.safetensors").write_bytes(b"x")
    assert choices("CheckpointLoaderSimple", "ckpt_name") == ["nested/new.safetensors"]


def test_global_subgraphs_from_custom_node_packs(make_server, tmp_path):
    base = tmp_path / "sg"
    pack = base / "custom_nodes" / "blueprint_pack"
    (pack / "subgraphs").mkdir(parents=True)
    (pack / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (pack / "subgraphs" / "upscale_twice.json").write_text('{"nodes": [], "links": []}')
    s = make_server(base=base)
    listing = s.get_json("/api/global_subgraphs")
    [(key, entry)] = listing.items()
    assert entry["name"] == "upscale_twice" and entry["info"] == {"node_pack": "blueprint_pack"}
    detail = s.get_json(f"/global_subgraphs/{key}")
    assert detail["data"] == '{"nodes": [], "links": []}'
    assert s.request("GET", "/api/global_subgraphs/nope")[0] == 404


def test_torch_is_not_loaded_until_a_node_needs_it(server):
    """Start-up, /system_stats and /object_info must not import torch (the design's lazy imports)."""
    for path in ("/system_stats", "/object_info", "/api/system_stats", "/queue", "/embeddings"):
        server.get_json(path)
    maps = Path(f"/proc/{server.proc.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc here")
    assert "libtorch" not in maps.read_text()
    pid = post_prompt(server, trivial_prompt(5))["prompt_id"]  # EmptyImage makes a tensor: now it loads
    server.wait_history(pid)
    assert "libtorch" in maps.read_text()
