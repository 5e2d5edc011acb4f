"""The graph helpers custom nodes import: is_link, GraphBuilder, DynamicPrompt, ExecutionBlocker."""
from __future__ import annotations

import asyncio
import contextvars

from tests.engine.enginekit import make_engine, run_prompt

from hearth.engine import DynamicPrompt, ExecutionBlocker, GraphBuilder, is_link
from hearth.engine.graph import add_graph_prefix, get_input_info


def test_is_link():
    assert is_link(["1", 0]) and is_link(["a", 1.0])
    for value in (["1"], ["1", 0, 0], [1, 0], ("1", 0), ["1", "0"], "1", None, {"1": 0}):
        assert not is_link(value)


def test_graph_builder_ids_and_editing():
    contextvars.copy_context().run(_builder_ids_and_editing)  # keep the default prefix out of other tests


def _builder_ids_and_editing():
    GraphBuilder.set_default_prefix("9", 2, 0)
    graph = GraphBuilder()
    assert graph.prefix == "9.2.0."
    assert GraphBuilder().prefix == "9.2.1."  # each builder in one call gets the next graph index
    a = graph.node("Const", value=1)
    b = graph.node("Add", a=a.out(0), b=2)
    named = graph.node("Output", id="out", value=b.out(0))
    assert (a.id, b.id, named.id) == ("9.2.0.1", "9.2.0.2", "9.2.0.out")
    assert graph.node("Output", id="out") is named and graph.lookup_node("out") is named
    b.set_override_display_id("5")
    assert graph.finalize()["9.2.0.2"] == {"class_type": "Add", "inputs": {"a": ["9.2.0.1", 0], "b": 2},
                                          "override_display_id": "5"}
    graph.replace_node_output("2", 0, 7)
    assert named.get_input("value") == 7
    graph.replace_node_output("1", 0, None)
    assert "a" not in b.inputs
    b.set_input("b", None)
    assert b.inputs == {}
    graph.remove_node("1")
    assert set(graph.finalize()) == {"9.2.0.2", "9.2.0.out"}
    assert GraphBuilder(prefix="p.").node("Const").id == "p.1"


def test_graph_prefix_is_per_context():
    # Concurrent async nodes must not share the default prefix (a ContextVar, not a class attribute).
    async def node(root):
        GraphBuilder.set_default_prefix(root, 0, 0)
        await asyncio.sleep(0.01)
        return GraphBuilder().prefix

    async def both():
        return await asyncio.gather(asyncio.create_task(node("a")), asyncio.create_task(node("b")))

    assert asyncio.run(both()) == ["a.0.0.", "b.0.0."]


def test_add_graph_prefix():
    graph = {"1": {"class_type": "Const", "inputs": {"value": 1}},
             "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 3}}}
    new_graph, outputs = add_graph_prefix(graph, [["2", 0], 5], "x.")
    assert new_graph == {"x.1": {"class_type": "Const", "inputs": {"value": 1}},
                         "x.2": {"class_type": "Add", "inputs": {"a": ["x.1", 0], "b": 3}}}
    assert outputs == (["x.2", 0], 5)


def test_dynamic_prompt():
    dp = DynamicPrompt({"1": {"class_type": "Const", "inputs": {}}})
    dp.add_ephemeral_node("1.0.0.1", {"class_type": "Add", "inputs": {}}, "1", "1")
    dp.add_ephemeral_node("1.0.0.1.0.0.1", {"class_type": "Add", "inputs": {}}, "1.0.0.1", "1.0.0.1")
    deep = "1.0.0.1.0.0.1"
    assert dp.get_real_node_id(deep) == "1" and dp.get_display_node_id(deep) == "1"
    assert dp.get_parent_node_id(deep) == "1.0.0.1" and dp.get_parent_node_id("1") is None
    assert dp.all_node_ids() == {"1", "1.0.0.1", deep}
    assert dp.has_node(deep) and not dp.has_node("2")


def test_get_input_info():
    class Node:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": ("INT", {"min": 0})}, "optional": {"b": ("FLOAT",)},
                    "hidden": {"u": "UNIQUE_ID"}}

    assert get_input_info(Node, "a") == ("INT", "required", {"min": 0})
    assert get_input_info(Node, "b") == ("FLOAT", "optional", {})
    assert get_input_info(Node, "u") == ("UNIQUE_ID", "hidden", {})
    assert get_input_info(Node, "zzz") == (None, None, None)


def test_execution_blocker_message():
    assert ExecutionBlocker("stop").message == "stop" and ExecutionBlocker(None).message is None


def test_override_display_id_in_messages():
    engine, _ = make_engine()
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "ExpandDisplay", "inputs": {"x": 4, "show_as": "1"}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    run = run_prompt(engine, prompt)
    child = [e for e in run.of_type("executing") if e.node == "2.0.0.1"]
    assert child[0].data()["display_node"] == "1"
    state = run.of_type("progress_state")[-1].data()["nodes"]["2.0.0.1"]
    assert (state["display_node_id"], state["parent_node_id"], state["real_node_id"]) == ("1", "2", "2")
    assert run.outcome.outputs["3"] == {"values": [8]}
