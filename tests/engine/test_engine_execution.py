"""Execution semantics: order, lazy inputs, lists, expansion, blockers, async, errors, interrupt, progress."""
from __future__ import annotations

import threading
import time

import pytest

from tests.engine.enginekit import NodeCrash, chain_prompt, make_engine, run_prompt

from hearth.engine import DynamicPrompt, Interrupt
from hearth.engine.events import ExecutionBlocked


def const(value):
    return {"class_type": "Const", "inputs": {"value": value}}


def out(source, slot=0, cls="Output"):
    return {"class_type": cls, "inputs": {"value": [source, slot]}}


# -- order ---------------------------------------------------------------------------------

def test_comfyui_pick_order():
    # ComfyUI runs a node feeding an output first (5 -> 6), then walks towards the other output.
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": const(2),
              "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
              "4": out("3"), "5": const(5), "6": out("5")}
    run = run_prompt(engine, prompt)
    assert run.ran == ["5", "6", "2", "1", "3", "4"]
    assert run.outcome.outputs == {"4": {"values": [3]}, "6": {"values": [5]}}


def test_only_outputs_and_their_ancestors_run():
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": out("1"), "3": const(3),
              "4": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": 1}}}
    run = run_prompt(engine, prompt)
    assert sorted(run.ran) == ["1", "2"]


def test_partial_targets_run_only_selected_outputs():
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": out("1"), "3": const(3), "4": out("3")}
    run = run_prompt(engine, prompt, targets=["4"])
    assert run.ran == ["3", "4"]
    assert run.outcome.outputs == {"4": {"values": [3]}}


def test_output_node_with_socket_feeding_another_output():
    engine, log = make_engine()
    prompt = {"1": const(2), "2": {"class_type": "OutputWithResult", "inputs": {"value": ["1", 0]}},
              "3": out("2")}
    run = run_prompt(engine, prompt)
    assert log.count(("OutputWithResult", 2)) == 1
    assert run.outcome.outputs == {"2": {"values": [2]}, "3": {"values": [20]}}


def test_identical_nodes_in_one_prompt_run_once():
    # ComfyUI's signature cache: the second identical output replays the first one's ui.
    engine, log = make_engine()
    prompt = {"1": const(4), "2": out("1"), "3": out("1")}
    run = run_prompt(engine, prompt)
    assert log.count(("Output", 4)) == 1
    assert [e.node for e in run.of_type("executed")] == ["2", "3"]
    assert run.outcome.outputs == {"2": {"values": [4]}, "3": {"values": [4]}}


def test_output_returning_none_and_raw_links_and_variadic_inputs():
    engine, log = make_engine()
    prompt = {"1": const(1), "2": const(2),
              "3": {"class_type": "SilentOutput", "inputs": {"value": ["1", 0]}},
              "4": {"class_type": "RawLink", "inputs": {"link": ["2", 0]}},
              "5": {"class_type": "Variadic", "inputs": {"x": ["1", 0], "y": ["2", 0], "z": 10}},
              "6": out("5")}
    run = run_prompt(engine, prompt)
    assert run.outcome.status == "success"
    assert ("SilentOutput", 1) in log
    assert run.outcome.outputs["4"] == {"link": [["2", 0]]}
    assert run.outcome.outputs["6"] == {"values": [3]}  # undeclared constants are not passed


def test_hidden_inputs():
    engine, log = make_engine()
    prompt = {"7": {"class_type": "HiddenEcho", "inputs": {"value": 1}}}
    extra = {"extra_pnginfo": {"workflow": {"nodes": []}}, "auth_token_comfy_org": "tok",
             "api_key_comfy_org": "key", "client_id": "c"}
    run_prompt(engine, prompt, extra_data=extra)
    (entry,) = [e for e in log if e[0] == "HiddenEcho"]
    _, prompt_seen, pnginfo, unique_id, dynprompt, auth, key = entry
    assert prompt_seen is prompt
    assert pnginfo == {"workflow": {"nodes": []}}
    assert unique_id == "7"
    assert isinstance(dynprompt, DynamicPrompt) and dynprompt.get_node("7") is prompt["7"]
    assert (auth, key) == ("tok", "key")
    log.clear()
    engine.cache_clear()
    run_prompt(engine, prompt)
    assert [e for e in log if e[0] == "HiddenEcho"][0][5:] == (None, None)


def test_current_execution_inside_nodes():
    engine, log = make_engine()
    run_prompt(engine, {"4": {"class_type": "WhoAmI", "inputs": {"value": 1}}, "5": out("4")}, prompt_id="pid")
    assert ("WhoAmI", "pid", "4", "4", "4", 0) in log


# -- lazy inputs ---------------------------------------------------------------------------

def test_lazy_switch_runs_only_the_needed_branch():
    engine, log = make_engine()
    prompt = {"1": const(1), "2": const(2), "3": {"class_type": "Flag", "inputs": {"value": False}},
              "4": {"class_type": "LazySwitch", "inputs": {"condition": ["3", 0], "on_true": ["1", 0],
                                                           "on_false": ["2", 0]}},
              "5": out("4")}
    run = run_prompt(engine, prompt)
    assert "1" not in run.ran and "2" in run.ran
    assert run.outcome.outputs["5"] == {"values": [2]}
    # check_lazy_status ran first with nothing, then again once on_false arrived.
    checks = [e for e in log if e[0] == "check_lazy_status"]
    assert checks == [("check_lazy_status", False, None, None), ("check_lazy_status", False, None, 2)]
    # The lazy node announced itself twice, as ComfyUI does when it comes back.
    assert run.ran.count("4") == 2


@pytest.mark.parametrize("mix, needed, value", [(0.0, {"1"}, 10.0), (1.0, {"2"}, 20.0), (0.5, {"1", "2"}, 15.0)])
def test_lazy_mix(mix, needed, value):
    engine, _ = make_engine()
    prompt = {"1": const(10), "2": const(20),
              "3": {"class_type": "LazyMix", "inputs": {"a": ["1", 0], "b": ["2", 0], "mix": mix}}, "4": out("3")}
    run = run_prompt(engine, prompt)
    assert {n for n in run.ran if n in ("1", "2")} == needed
    assert run.outcome.outputs["4"] == {"values": [value]}


def test_lazy_input_from_cached_node_is_supplied_directly():
    engine, log = make_engine()
    prompt = {"1": const(10), "2": const(20), "9": out("1"),
              "3": {"class_type": "LazyMix", "inputs": {"a": ["1", 0], "b": ["2", 0], "mix": 0.0}}, "4": out("3")}
    run = run_prompt(engine, prompt)
    assert run.ran.count("3") == 1  # "1" was already there: no second round
    assert ("mix_check", 10, None) in log


def test_async_lazy():
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": const(2),
              "3": {"class_type": "AsyncLazy", "inputs": {"use_b": True, "a": ["1", 0], "b": ["2", 0]}},
              "4": out("3")}
    run = run_prompt(engine, prompt)
    assert "1" not in run.ran
    assert run.outcome.outputs["4"] == {"values": [2]}


# -- lists -----------------------------------------------------------------------------------

def test_list_fan_out_and_repeat_last_item():
    engine, log = make_engine()
    prompt = {"1": const(1), "2": const(2), "3": const(3),
              "4": {"class_type": "MakeList", "inputs": {"value1": ["1", 0], "value2": ["2", 0], "value3": ["3", 0]}},
              "5": {"class_type": "Double", "inputs": {"x": ["4", 0]}},
              "6": {"class_type": "ListOutput", "inputs": {"value": ["5", 0]}},
              "7": {"class_type": "Text", "inputs": {"text": "t"}},
              "8": {"class_type": "Pair", "inputs": {"a": ["4", 0], "b": ["7", 0]}},
              "9": {"class_type": "ShowEach", "inputs": {"value": ["8", 0]}}}
    run = run_prompt(engine, prompt)
    assert [e for e in log if e[0] == "Double"] == [("Double", 1), ("Double", 2), ("Double", 3)]
    assert run.outcome.outputs["6"] == {"values": [2, 4, 6]}
    # Pair maps over the longest list; the one-item list repeats its last item.
    # The ui of the three ShowEach calls is merged key by key.
    assert run.outcome.outputs["9"] == {"values": ["1-t", "2-t", "3-t"], "text": ["v=1-t", "v=2-t", "v=3-t"]}


def test_input_is_list_and_output_is_list():
    engine, log = make_engine()
    prompt = {"1": {"class_type": "Range", "inputs": {"count": 4}},
              "2": {"class_type": "ListSum", "inputs": {"values": ["1", 0], "scale": ["1", 1]}},
              "3": out("2")}
    run = run_prompt(engine, prompt)
    assert ("ListSum", [0, 1, 2, 3], [4]) in log
    assert run.outcome.outputs["3"] == {"values": [24]}


def test_empty_list_input_calls_node_once_without_arguments():
    # ComfyUI semantics: all inputs empty -> one call with no arguments at all.
    engine, _ = make_engine()
    prompt = {"1": {"class_type": "Range", "inputs": {"count": 0}},
              "2": {"class_type": "Double", "inputs": {"x": ["1", 0]}}, "3": out("2")}
    run = run_prompt(engine, prompt)
    assert run.outcome.status == "error"
    assert "x" in run.outcome.error.exception_message


# -- expansion --------------------------------------------------------------------------------

def test_expansion_runs_subgraph_with_ephemeral_ids():
    engine, _ = make_engine()
    prompt = {"1": {"class_type": "SumTo", "inputs": {"n": 3}}, "2": out("1")}
    run = run_prompt(engine, prompt)
    assert run.outcome.outputs == {"2": {"values": [6]}}
    assert run.ran == ["1", "1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4", "2"]
    executing = {e.node: e.data()["display_node"] for e in run.of_type("executing")}
    assert executing["1.0.0.4"] == "1"
    final = run.of_type("progress_state")[-1].data()["nodes"]
    assert final["1.0.0.2"]["parent_node_id"] == "1" and final["1.0.0.2"]["real_node_id"] == "1"
    assert final["1.0.0.2"]["display_node_id"] == "1"
    assert all(n["state"] == "finished" for n in final.values())
    # The expanding node finishes after its subgraph.
    finishes = [e for e in run.of_type("progress_state") if e.nodes["1"]["state"] == "finished"]
    assert finishes[0].nodes["1.0.0.4"]["state"] == "finished"


def test_nested_expansion():
    engine, log = make_engine()
    prompt = {"5": {"class_type": "CountDown", "inputs": {"n": 2, "acc": 0}}, "6": out("5")}
    run = run_prompt(engine, prompt)
    assert run.outcome.outputs["6"] == {"values": [3]}
    inner = "5.0.0.2.0.0.2"
    assert ("CountDown", 0, 3, inner) in log
    final = run.of_type("progress_state")[-1].data()["nodes"]
    assert final[inner]["parent_node_id"] == "5.0.0.2"
    assert final[inner]["display_node_id"] == "5" and final[inner]["real_node_id"] == "5"
    executing = [e for e in run.of_type("executing") if e.node == inner]
    assert executing[0].data()["display_node"] == "5"


def test_expansion_with_ephemeral_output_node():
    engine, _ = make_engine()
    prompt = {"3": {"class_type": "ExpandToOutput", "inputs": {"value": 9}}, "4": out("3")}
    run = run_prompt(engine, prompt)
    ephemeral_out = "3.0.0.2"
    executed = {e.node: e.data() for e in run.of_type("executed")}
    assert executed[ephemeral_out]["display_node"] == "3"
    assert run.outcome.outputs[ephemeral_out] == {"values": [9]}
    assert run.outcome.meta[ephemeral_out] == {"node_id": ephemeral_out, "display_node": "3", "parent_node": "3",
                                               "real_node_id": "3"}


def test_expansion_per_list_item_mixed_with_literals():
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": const(2), "3": const(3),
              "4": {"class_type": "MakeList", "inputs": {"value1": ["1", 0], "value2": ["2", 0], "value3": ["3", 0]}},
              "5": {"class_type": "MixedExpand", "inputs": {"x": ["4", 0]}},
              "6": {"class_type": "ListOutput", "inputs": {"value": ["5", 0]}}}
    run = run_prompt(engine, prompt)
    assert run.outcome.outputs["6"] == {"values": [2, 2, 6]}
    assert {"5.0.0.1", "5.2.0.1"} <= set(run.ran)  # call index in the ids


def test_dynamic_cycle_blames_expanding_node():
    engine, _ = make_engine()
    run = run_prompt(engine, {"8": {"class_type": "ExpandCycle", "inputs": {"x": 1}}, "9": out("8")})
    error = run.outcome.error
    assert run.outcome.status == "error"
    assert error.node_id == "8" and error.node_type == "ExpandCycle"
    assert error.exception_type == "graph.DependencyCycleError"
    assert error.exception_message == "Dependency cycle detected"


def test_duplicate_expansion_id_is_an_error():
    engine, _ = make_engine()
    run = run_prompt(engine, {"1": const(1), "2": {"class_type": "ExpandDuplicate", "inputs": {"x": ["1", 0]}},
                              "3": out("2")})
    assert run.outcome.error.exception_type.endswith("DuplicateNodeError")
    assert run.outcome.error.node_id == "2"


# -- blockers ----------------------------------------------------------------------------------

def test_silent_blocker_stops_output():
    engine, log = make_engine()
    prompt = {"1": const(1), "2": {"class_type": "Blocker", "inputs": {"value": ["1", 0], "block": True,
                                                                       "message": ""}},
              "3": out("2")}
    run = run_prompt(engine, prompt)
    assert run.outcome.status == "success"
    assert not [e for e in log if e[0] == "Output"]
    assert run.of_type("executed") == [] and run.outcome.outputs == {}
    assert run.types[-1] == "execution_success"


def test_blocker_with_message_reports_error_and_continues():
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": {"class_type": "Blocker", "inputs": {"value": ["1", 0], "block": True,
                                                                       "message": "no way"}},
              "3": out("2"), "4": const(4), "5": out("4")}
    run = run_prompt(engine, prompt)
    (blocked,) = [e for e in run.events if isinstance(e, ExecutionBlocked)]
    data = blocked.data()
    assert blocked.type == "execution_error" and not blocked.in_history
    assert data == {"prompt_id": "p1", "node_id": "3", "node_type": "Output", "executed": data["executed"],
                    "exception_message": "Execution Blocked: no way", "exception_type": "ExecutionBlocked",
                    "traceback": [], "current_inputs": [], "current_outputs": []}
    assert run.outcome.status == "success" and run.types[-1] == "execution_success"
    assert run.outcome.outputs == {"5": {"values": [4]}}


def test_blocker_inside_a_list_blocks_only_that_item():
    engine, _ = make_engine()
    prompt = {"1": {"class_type": "Range", "inputs": {"count": 4}},
              "2": {"class_type": "IsEven", "inputs": {"x": ["1", 0]}},
              "3": {"class_type": "Blocker", "inputs": {"value": ["1", 0], "block": ["2", 0], "message": ""}},
              "4": {"class_type": "ShowEach", "inputs": {"value": ["3", 0]}}}
    run = run_prompt(engine, prompt)
    assert run.outcome.outputs["4"]["values"] == [1, 3]


# -- async ----------------------------------------------------------------------------------------

def test_async_nodes_run_concurrently():
    engine, log = make_engine()
    prompt = {"1": const(1)}
    for i in range(3):
        prompt[f"s{i}"] = {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0], "seconds": 0.3}}
        prompt[f"o{i}"] = out(f"s{i}")
    run = run_prompt(engine, prompt)
    assert run.outcome.status == "success"
    kinds = [e[0] for e in log if e[0].startswith("sleep")]
    assert kinds[:3] == ["sleep_start"] * 3  # all started before any finished: they overlapped
    assert run.outcome.outputs == {f"o{i}": {"values": [1]} for i in range(3)}
    assert run.ran.count("s0") == 1  # `executing` once even though it left and came back


def test_async_node_without_suspension_and_dependencies():
    engine, _ = make_engine()
    prompt = {"1": {"class_type": "AsyncQuick", "inputs": {"value": 1}},
              "2": {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0], "seconds": 0.01}},
              "3": {"class_type": "Double", "inputs": {"x": ["2", 0]}}, "4": out("3")}
    run = run_prompt(engine, prompt)
    assert run.outcome.outputs["4"] == {"values": [4]}


def test_async_error():
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": {"class_type": "AsyncFail", "inputs": {"value": ["1", 0]}}, "3": out("2"),
              "4": {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0], "seconds": 2.0}}, "5": out("4")}
    start = time.perf_counter()
    run = run_prompt(engine, prompt)
    assert time.perf_counter() - start < 1.5  # the sleeping sibling was cancelled
    assert run.outcome.status == "error"
    assert run.outcome.error.node_id == "2"
    assert run.outcome.error.exception_message == "async boom\n"
    assert run.outcome.error.exception_type == "ValueError"
    # The engine is fine afterwards.
    assert run_prompt(engine, {"1": const(1), "2": out("1")}).outcome.status == "success"


# -- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, exception_type, message", [
    ("value", "ValueError", "boom\n"),
    ("custom", "tests.engine.enginekit.CustomError", "custom boom\n"),
    ("base", "tests.engine.enginekit.NodeCrash", "crashed hard\n"),
])
def test_node_exceptions_become_execution_error(kind, exception_type, message):
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": {"class_type": "Fail", "inputs": {"value": ["1", 0], "kind": kind}}}
    run = run_prompt(engine, prompt)
    error = run.outcome.error
    assert run.outcome.status == "error" and run.types[-1] == "execution_error"
    assert (error.node_id, error.node_type) == ("2", "Fail")
    assert error.exception_type == exception_type
    assert error.exception_message == message
    assert error.executed == ["1"]
    assert error.current_inputs == {"value": [1], "kind": [kind]}
    assert error.current_outputs == ["1", "2"]
    assert any("Fail" in line or "run" in line for line in error.traceback)
    # The next prompt runs normally, and the failed node's upstream stays cached.
    again = run_prompt(engine, prompt)
    assert again.cached == ["1"] and again.ran == ["2"]


def test_keyboard_interrupt_propagates():
    engine, _ = make_engine()
    with pytest.raises(KeyboardInterrupt):
        run_prompt(engine, {"1": const(1), "2": {"class_type": "Fail", "inputs": {"value": ["1", 0],
                                                                                 "kind": "keyboard"}}})
    assert run_prompt(engine, {"1": const(1), "2": out("1")}).outcome.status == "success"


def test_current_inputs_are_short_summaries():
    engine, _ = make_engine()
    prompt = {"1": {"class_type": "MakeTensor", "inputs": {"value": 1}},
              "2": {"class_type": "Fail", "inputs": {"value": ["1", 0], "extra": ["1", 1], "kind": "value"}}}
    error = run_prompt(engine, prompt).outcome.error
    assert error.current_inputs["value"] == ["FakeTensor(shape=[1, 64, 64, 3], dtype=float32)"]
    (extra,) = error.current_inputs["extra"]
    assert extra.startswith("yyy") and len(extra) <= 301


def test_ndarray_and_long_repr_summaries():
    np = pytest.importorskip("numpy")
    from hearth.engine.nodeclass import summarize_value

    assert summarize_value(np.zeros((1, 64, 64, 3), dtype=np.float32)) == "ndarray(shape=[1, 64, 64, 3], dtype=float32)"
    assert len(summarize_value({"k": "v" * 10_000})) <= 301
    assert summarize_value(None) is None and summarize_value(2.5) == 2.5


def test_unvalidated_prompt_with_dangling_link_fails_cleanly():
    engine, _ = make_engine()
    prompt = {"1": {"class_type": "Double", "inputs": {"x": ["404", 0]}}, "2": out("1")}
    run = run_prompt(engine, prompt, outputs=["2", "ghost"])
    assert run.outcome.status == "error"
    assert run.outcome.error.node_id == "1"
    assert "404" in run.outcome.error.exception_message


def test_unknown_class_at_runtime_is_an_error_not_a_crash():
    engine, _ = make_engine()
    run = run_prompt(engine, {"1": {"class_type": "Nope", "inputs": {}}, "2": out("1")}, outputs=["2"])
    assert run.outcome.status == "error" and run.outcome.error.node_id == "1"


# -- interrupt ---------------------------------------------------------------------------------------

def test_interrupt_inside_a_long_node():
    engine, log = make_engine()
    prompt = {"1": const(1), "2": {"class_type": "Slow", "inputs": {"steps": 10, "interrupt_at": 3, "delay": 0.0}},
              "3": out("2")}
    run = run_prompt(engine, prompt)
    assert run.outcome.status == "interrupted"
    event = run.outcome.error
    assert event.type == "execution_interrupted" and event.in_history
    assert event.data()["node_id"] == "2" and event.data()["node_type"] == "Slow"
    assert [e for e in log if e[0] == "Slow"] == [("Slow", 0), ("Slow", 1), ("Slow", 2)]
    assert run.types[-1] == "execution_interrupted"
    # A new prompt is not affected by the old interrupt.
    assert run_prompt(engine, {"1": const(1), "2": out("1")}).outcome.status == "success"


def test_interrupt_between_nodes():
    engine, _ = make_engine()
    interrupt = Interrupt()
    events = []

    def emit(event):
        events.append(event)
        if event.type == "executing" and event.node == "2":
            interrupt.set()

    prompt = chain_prompt(5)
    outcome = engine.execute("p", prompt, {}, ["5"], emit, interrupt)
    assert outcome.status == "interrupted"
    assert outcome.error.node_id == "2"
    assert outcome.error.executed == ["1"]
    assert [e.type for e in events][-2:] == ["executing", "execution_interrupted"]


def test_interrupt_from_another_thread():
    engine, _ = make_engine()
    interrupt = Interrupt()
    prompt = {"1": {"class_type": "Slow", "inputs": {"steps": 200, "interrupt_at": -1, "delay": 0.01}},
              "2": out("1")}
    threading.Timer(0.15, interrupt.set).start()
    start = time.perf_counter()
    run = run_prompt(engine, prompt, interrupt=interrupt)
    assert run.outcome.status == "interrupted"
    assert time.perf_counter() - start < 1.0


def test_interrupt_while_async_nodes_run():
    engine, _ = make_engine()
    interrupt = Interrupt()
    events = []

    def emit(event):
        events.append(event)
        if event.type == "executing" and event.node == "2":
            interrupt.set()

    prompt = {"1": const(1), "2": {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0], "seconds": 3.0}},
              "3": out("2")}
    start = time.perf_counter()
    outcome = engine.execute("p", prompt, {}, ["3"], emit, interrupt)
    assert time.perf_counter() - start < 1.0
    assert outcome.status == "interrupted" and outcome.error.node_id == "2"


# -- progress ------------------------------------------------------------------------------------------

def test_progress_preview_and_text():
    engine, _ = make_engine()
    run = run_prompt(engine, {"1": {"class_type": "Previewer", "inputs": {"value": 1}}}, prompt_id="pp")
    rows = [(e.type, e.data().get("value"), e.data().get("max")) for e in run.events
            if e.type in ("progress", "preview", "progress_text")]
    assert rows == [("preview", None, None), ("progress", 1, 2), ("progress_text", None, None),
                    ("preview", None, None), ("progress", 2, 2)]
    states = [e.data()["nodes"]["1"] for e in run.of_type("progress_state")]
    assert [(s["state"], s["value"], s["max"]) for s in states] == [
        ("running", 0.0, 1.0), ("running", 1, 2), ("running", 2, 2), ("finished", 2, 2)]
    jpeg, png = run.of_type("preview")
    assert jpeg.image == b"\xff\xd8fakejpeg" and jpeg.image_format == "JPEG"
    assert jpeg.data() == {"node_id": "1", "prompt_id": "pp", "display_node_id": "1", "parent_node_id": None,
                           "real_node_id": "1", "image_type": "image/jpeg"}
    assert png.image.startswith(b"\x89PNG")
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(png.image)).size == (16, 8)
    (text,) = run.of_type("progress_text")
    assert text.data() == {"node_id": "1", "text": "halfway", "prompt_id": "pp"}


def test_progress_calls_outside_nodes_are_harmless():
    from hearth.engine import check_interrupt, current_execution, report_progress, send_text

    assert current_execution() is None
    report_progress(1, 2)
    send_text(None, "x")
    check_interrupt()


def test_progress_state_snapshots_are_not_mutated_later():
    engine, _ = make_engine()
    run = run_prompt(engine, chain_prompt(4))
    first = run.of_type("progress_state")[0].data()["nodes"]
    assert list(first) == ["1"] and first["1"]["state"] == "running"


# -- node instances -------------------------------------------------------------------------------------

def test_node_instances_are_kept_per_node_id():
    engine, log = make_engine()
    prompt = {"1": {"class_type": "Stateful", "inputs": {"value": 1}}}
    first = run_prompt(engine, prompt).outcome.outputs
    second = run_prompt(engine, prompt).outcome.outputs
    assert first == {"1": {"calls": [1]}} and second == {"1": {"calls": [2]}}
    ids = {e[1] for e in log if e[0] == "Stateful"}
    assert len(ids) == 1
    # Another node id gets its own instance; the old one is dropped with its node.
    third = run_prompt(engine, {"2": {"class_type": "Stateful", "inputs": {"value": 1}}}).outcome.outputs
    assert third == {"2": {"calls": [1]}}
    fourth = run_prompt(engine, prompt).outcome.outputs
    assert fourth == {"1": {"calls": [1]}}


# -- scale --------------------------------------------------------------------------------------------

def test_thousand_node_chain_and_fan_out():
    engine, _ = make_engine()
    run = run_prompt(engine, chain_prompt(1000))
    assert run.outcome.outputs == {"1000": {"values": [999]}}
    assert len(run.ran) == 1000
    fan = {"1": const(1)}
    for i in range(2, 1001):
        fan[str(i)] = out("1")
    run = run_prompt(engine, fan)
    assert run.outcome.status == "success" and len(run.outcome.outputs) == 999


def test_engine_survives_deep_recursion_limits():
    # 3,000 nodes: no recursion anywhere in validation, signatures or scheduling.
    engine, _ = make_engine()
    prompt = chain_prompt(3000)
    assert engine.validate(prompt).ok
    run = run_prompt(engine, prompt)
    assert run.outcome.outputs == {"3000": {"values": [2999]}}


def test_base_exception_node_then_engine_continues():
    engine, _ = make_engine()
    bad = run_prompt(engine, {"1": const(1), "2": {"class_type": "Fail", "inputs": {"value": ["1", 0],
                                                                                    "kind": "base"}}})
    assert bad.outcome.status == "error"
    assert issubclass(NodeCrash, BaseException)
    assert run_prompt(engine, {"1": const(2), "2": out("1")}).outcome.outputs == {"2": {"values": [2]}}
