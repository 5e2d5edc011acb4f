"""In-process checks of the pieces the hardening fixes rely on: websocket queue coalescing, strict JSON,
request-body limits, secret redaction."""
from __future__ import annotations

import asyncio
import json
import logging

import pytest

from hearth.engine import events as ev
from hearth.server import http, ws
from hearth.store import jsonsafe
from hearth.worker import SecretLogFilter, redact, redact_event


def _client(max_queue: int = 4096) -> ws.Client:
    async def make():
        return ws.Client("sid", ws=None, max_queue=max_queue)  # type: ignore[arg-type]
    return asyncio.run(make())


def _drain(client: ws.Client) -> list:
    out = []
    while (frame := client._pop()) is not None:
        out.append(frame)
    return out


def test_a_client_that_keeps_up_sees_every_frame():
    c = _client()
    for i in range(ws.COALESCE_AFTER - 1):
        c.push(f"p{i}", ("progress", "x", "1"))
    assert _drain(c) == [f"p{i}" for i in range(ws.COALESCE_AFTER - 1)]


def test_a_lagging_client_gets_the_latest_snapshot_in_order():
    c = _client()
    for i in range(ws.COALESCE_AFTER):
        c.push(f"other{i}")
    c.push("p1", ("progress", "x", "1"))
    c.push("executing")
    c.push("p2", ("progress", "x", "1"))
    frames = _drain(c)
    assert "p1" not in frames and frames[-2:] == ["executing", "p2"]  # the newest moved after what preceded it
    assert len(frames) == ws.COALESCE_AFTER + 2


def test_a_flood_of_snapshots_stays_bounded_and_never_drops_the_client():
    c = _client(max_queue=100)
    for i in range(50):
        c.push(f"essential{i}")
    for i in range(100_000):
        c.push(f"state{i}", ("progress_state", "x"))
        c.push(f"progress{i}", ("progress", "x", str(i % 3)))
    assert not c.dropped
    assert len(c.queue) < 4 * 100 and c.live <= 54
    frames = _drain(c)
    assert frames[:50] == [f"essential{i}" for i in range(50)] and "state99999" in frames


def test_unkeyed_overflow_still_drops_a_dead_client():
    c = _client(max_queue=10)
    for i in range(11):
        c.push(f"executed{i}")
    assert c.dropped and c.closed and not c.queue


def test_strict_json():
    assert jsonsafe.dumps({"a": [float("nan"), float("inf"), 1.5]}) == '{"a": [null, null, 1.5]}'
    with pytest.raises(TypeError):
        jsonsafe.dumps({"a": object()})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError):
        jsonsafe.dumps(loop)
    assert json.loads(ws.message("executed", {"x": object(), "y": float("nan")}))["data"]["y"] is None


@pytest.mark.parametrize("value,problem", [
    ({"a": 1}, ""),
    ("\ud800", "surrogate"),
    ({"\udc00": 1}, "surrogate"),
    ([[["x"]]], ""),
])
def test_json_problem(value, problem):
    assert problem in http.json_problem(value) if problem else http.json_problem(value) == ""


def test_json_depth_limit():
    deep: object = 1
    for _ in range(http.MAX_JSON_DEPTH):
        deep = [deep]
    assert http.json_problem(deep) == ""
    assert "deeper" in http.json_problem([deep])


def test_redaction():
    secrets = ["KEY-123"]
    assert redact({"a": ["x KEY-123 y", ("KEY-123",)], "KEY-123": 1}, secrets) == {
        "a": ["x <redacted> y", ["<redacted>"]], "<redacted>": 1}
    event = ev.ExecutionError("p", "1", "N", [], "bad KEY-123", "E", ["tb KEY-123"], {"k": ["KEY-123"]}, [])
    out = redact_event(event, secrets)
    assert "KEY-123" not in json.dumps(out.data())
    f = SecretLogFilter()
    f.secrets = secrets
    try:
        raise RuntimeError("boom KEY-123")
    except RuntimeError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "node said %s", ("KEY-123",), (type(exc), exc,
                                                                                                   exc.__traceback__))
    assert f.filter(record)
    text = logging.Formatter().format(record)
    assert "KEY-123" not in text and "<redacted>" in text and "RuntimeError" in text
