"""Message sequences against protocol.md §5 (the engine's part: the worker adds status / executing null)."""
from __future__ import annotations

import json

from tests.engine.enginekit import image_prompt, make_engine, run_prompt

PID = "6f2d3916-7a27-4323-a269-7650d36acf68"
IMG = {"images": [{"filename": "ComfyUI_temp_4242_00001_.png", "subfolder": "", "type": "temp"}]}


def _node(node_id, state, value, max_value, pid=PID):
    return {"value": value, "max": max_value, "state": state, "node_id": node_id, "prompt_id": pid,
            "display_node_id": node_id, "parent_node_id": None, "real_node_id": node_id}


def _messages(run):
    """[{type, data}] without timestamps, as JSON would carry them."""
    out = []
    for event in run.events:
        data = json.loads(json.dumps(event.data()))
        data.pop("timestamp", None)
        out.append({"type": event.type, "data": data})
    return out


# protocol.md §5a rows 4–13, verbatim apart from timestamps and the temp file name.
EXPECTED_5A = [
    {"type": "execution_start", "data": {"prompt_id": PID}},
    {"type": "execution_cached", "data": {"nodes": [], "prompt_id": PID}},
    {"type": "progress_state", "data": {"prompt_id": PID, "nodes": {"1": _node("1", "running", 0.0, 1.0)}}},
    {"type": "executing", "data": {"node": "1", "display_node": "1", "prompt_id": PID}},
    {"type": "progress_state", "data": {"prompt_id": PID, "nodes": {"1": _node("1", "finished", 1.0, 1.0)}}},
    {"type": "progress_state", "data": {"prompt_id": PID, "nodes": {"1": _node("1", "finished", 1.0, 1.0),
                                                                     "2": _node("2", "running", 0.0, 1.0)}}},
    {"type": "executing", "data": {"node": "2", "display_node": "2", "prompt_id": PID}},
    {"type": "executed", "data": {"node": "2", "display_node": "2", "output": IMG, "prompt_id": PID}},
    {"type": "progress_state", "data": {"prompt_id": PID, "nodes": {"1": _node("1", "finished", 1.0, 1.0),
                                                                     "2": _node("2", "finished", 1.0, 1.0)}}},
    {"type": "execution_success", "data": {"prompt_id": PID}},
]

# protocol.md §5c rows 3–7.
EXPECTED_5C = [
    {"type": "execution_start", "data": {"prompt_id": PID}},
    {"type": "execution_cached", "data": {"nodes": ["1", "2"], "prompt_id": PID}},
    {"type": "executed", "data": {"node": "2", "display_node": "2", "output": IMG, "prompt_id": PID}},
    {"type": "progress_state", "data": {"prompt_id": PID, "nodes": {"2": _node("2", "finished", 1, 1)}}},
    {"type": "execution_success", "data": {"prompt_id": PID}},
]


def test_5a_successful_prompt_verbatim():
    engine, _ = make_engine()
    run = run_prompt(engine, image_prompt(), PID)
    assert _messages(run) == EXPECTED_5A
    assert run.outcome.status == "success"
    assert run.outcome.outputs == {"2": IMG}
    assert run.outcome.meta == {"2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}}
    # The events the worker records in history: execution_start, execution_cached, execution_success.
    assert [e.type for e in run.events if e.in_history] == ["execution_start", "execution_cached",
                                                           "execution_success"]


def test_5c_fully_cached_resubmission_verbatim():
    engine, log = make_engine()
    run_prompt(engine, image_prompt(), "first")
    log.clear()
    run = run_prompt(engine, image_prompt(), PID)
    assert _messages(run) == EXPECTED_5C
    # Integers, not floats, for the cached node (json would print 1, not 1.0).
    state = run.of_type("progress_state")[0].data()["nodes"]["2"]
    assert type(state["value"]) is int and type(state["max"]) is int
    assert log == []  # nothing ran
    assert run.outcome.outputs == {"2": IMG}
    assert run.outcome.meta["2"]["node_id"] == "2"


def test_5d_identical_to_two_prompts_earlier_reruns_under_classic():
    engine, _ = make_engine()
    run_prompt(engine, image_prompt(4242), "a")
    run_prompt(engine, image_prompt(77), "b")
    run = run_prompt(engine, image_prompt(4242), PID)
    assert _messages(run) == EXPECTED_5A  # §5d is §5a again


def test_5b_runtime_error_sequence_and_fields():
    engine, _ = make_engine()
    prompt = image_prompt(77, output="SaveImage")
    run = run_prompt(engine, prompt, PID)
    assert run.summary() == [
        ("execution_start",), ("execution_cached", ()),
        ("progress_state", (("1", "running"),)), ("executing", "1"),
        ("progress_state", (("1", "finished"),)),
        ("progress_state", (("1", "finished"), ("2", "running"))), ("executing", "2"),
        ("execution_error",),
    ]
    error = run.events[-1].data()
    assert list(error) == ["prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type",
                           "traceback", "current_inputs", "current_outputs", "timestamp"]
    assert error["node_id"] == "2" and error["node_type"] == "SaveImage"
    assert error["executed"] == ["1"]
    assert error["exception_message"] == "**** ERROR: Saving image outside the output folder is not allowed.\n"
    assert error["exception_type"] == "Exception"
    assert isinstance(error["traceback"], list) and all(isinstance(line, str) for line in error["traceback"])
    assert "save_images" in "".join(error["traceback"])
    assert error["current_inputs"]["filename_prefix"] == ["../../../outside_output"]
    assert error["current_inputs"]["extra_pnginfo"] == [None]
    assert error["current_inputs"]["prompt"][0].startswith("{'1': {'class_type': 'EmptyImage'")
    assert error["current_outputs"] == ["1", "2"]
    assert run.outcome.status == "error"
    assert run.outcome.error is run.events[-1]
    assert run.outcome.outputs == {} and run.outcome.meta == {}
    assert [e.type for e in run.events if e.in_history] == ["execution_start", "execution_cached",
                                                           "execution_error"]


def test_event_routing_flags_match_comfyui():
    engine, _ = make_engine()
    run = run_prompt(engine, image_prompt(), PID)
    flags = {e.type: (e.client_only, e.in_history) for e in run.events}
    assert flags["progress_state"] == (False, False)   # also sent when there is no client_id (§5e)
    assert flags["executing"] == (True, False)
    assert flags["executed"] == (True, False)
    assert flags["execution_start"] == (True, True)
