"""The websocket hub's message framing."""
from __future__ import annotations


def test_progress_state_frames_equal_plain_serialisation():
    """The hub's incremental progress_state text must be exactly what json.dumps of the message gives."""
    import json

    from hearth.engine import events as ev
    from hearth.server.ws import Hub, message

    hub = Hub(queue_remaining=lambda: 0, feature_flags=dict)
    entries: dict = {}
    for step, node in enumerate(["1", "2", "1", "3", "é"]):
        entries[node] = {"value": float(step), "max": 1.0, "state": "running", "node_id": node,
                         "prompt_id": "p", "display_node_id": node, "parent_node_id": None, "real_node_id": node}
        event = ev.ProgressState("p", dict(entries))
        assert hub._frame(event) == message(event.type, event.data())
        assert json.loads(hub._frame(event))["data"]["nodes"] == entries
    other = ev.ProgressState("q", {"9": {"value": float("nan"), "max": 1}})
    assert json.loads(hub._frame(other)) == {"type": "progress_state",
                                             "data": {"prompt_id": "q", "nodes": {"9": {"value": None, "max": 1}}}}
