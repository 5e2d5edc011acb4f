"""Caching across prompts: signatures, IS_CHANGED, and each policy."""
from __future__ import annotations

import threading

import pytest

from tests.engine.enginekit import image_prompt, make_engine, run_prompt

from hearth.engine import CachePolicy, Interrupt


def const(value):
    return {"class_type": "Const", "inputs": {"value": value}}


def out(source, slot=0):
    return {"class_type": "Output", "inputs": {"value": [source, slot]}}


def diamond(a=1, b=2):
    """1 -> 3 <- 2, 3 -> 4 (Output); 5 is a sibling branch from 2."""
    return {"1": const(a), "2": const(b), "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
            "4": out("3"), "5": {"class_type": "Double", "inputs": {"x": ["2", 0]}}, "6": out("5")}


def test_policy_validation():
    with pytest.raises(ValueError):
        CachePolicy(kind="bogus")
    assert CachePolicy().kind == "classic"


def test_changed_widget_reruns_only_that_node_and_descendants():
    engine, _ = make_engine()
    run_prompt(engine, diamond())
    run = run_prompt(engine, diamond(a=10))
    assert sorted(run.ran) == ["1", "3", "4"]
    assert run.cached == ["2", "5", "6"]
    assert run.outcome.outputs == {"4": {"values": [12]}, "6": {"values": [4]}}


def test_classic_keeps_only_what_the_last_prompt_used():
    engine, _ = make_engine()
    run_prompt(engine, image_prompt(1))
    assert run_prompt(engine, image_prompt(1)).cached == ["1", "2"]
    run_prompt(engine, image_prompt(2))
    again = run_prompt(engine, image_prompt(1))
    assert again.cached == [] and again.ran == ["1", "2"]


def test_cached_output_nodes_appear_in_outputs_even_when_not_run():
    # ComfyUI's history lists the cached ui of every node of the prompt.
    engine, _ = make_engine()
    prompt = {"1": const(1), "2": out("1"), "3": const(3), "4": out("3")}
    run_prompt(engine, prompt)
    run = run_prompt(engine, prompt, targets=["4"])
    assert run.ran == []
    assert run.outcome.outputs == {"2": {"values": [1]}, "4": {"values": [3]}}


@pytest.mark.parametrize("size, expect_cached", [(100, True), (2, False)])
def test_lru(size, expect_cached):
    engine, _ = make_engine(kind="lru", lru_size=size)
    run_prompt(engine, image_prompt(1))
    run_prompt(engine, image_prompt(2))
    run_prompt(engine, image_prompt(3))
    again = run_prompt(engine, image_prompt(1))
    assert (again.cached == ["1", "2"]) is expect_cached
    # Trimmed when a prompt starts (as ComfyUI), so at most one prompt's entries over the limit.
    assert engine.cache_size <= size + 2


def test_lru_evicts_least_recently_used_generation_first():
    engine, _ = make_engine(kind="lru", lru_size=4)
    run_prompt(engine, image_prompt(1))
    run_prompt(engine, image_prompt(2))
    run_prompt(engine, image_prompt(1))          # prompt 1 used again: now prompt 2 is the oldest
    run_prompt(engine, image_prompt(3))          # 6 entries > 4: evicts the generation of prompt 2
    assert run_prompt(engine, image_prompt(1)).cached == ["1", "2"]
    assert run_prompt(engine, image_prompt(2)).cached == []


def test_none_policy_never_reuses_across_prompts():
    engine, log = make_engine(kind="none")
    run_prompt(engine, image_prompt(1))
    again = run_prompt(engine, image_prompt(1))
    assert again.cached == [] and again.ran == ["1", "2"]
    assert engine.cache_size == 0
    # Identical nodes inside one prompt still run once.
    run = run_prompt(engine, {"1": const(4), "2": out("1"), "3": out("1")})
    assert run.ran == ["1", "2"] and log.count(("Output", 4)) == 1


@pytest.mark.parametrize("kind, freed", [("none", True), ("classic", False), ("lru", False)])
def test_none_policy_frees_outputs_once_read(kind, freed):
    engine, log = make_engine(kind=kind, lru_size=10)
    prompt = {"1": {"class_type": "MakeObject", "inputs": {"value": 1}},
              "2": {"class_type": "Touch", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "IsFreed", "inputs": {"value": ["2", 0]}}}
    run_prompt(engine, prompt)
    assert ("freed", [freed]) in log


def test_none_policy_keeps_outputs_still_to_be_read():
    engine, log = make_engine(kind="none")
    prompt = {"1": {"class_type": "MakeObject", "inputs": {"value": 1}},
              "2": {"class_type": "Touch", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "IsFreed", "inputs": {"value": ["2", 0]}},
              "4": {"class_type": "Pair", "inputs": {"a": ["1", 0], "b": "x"}},
              "5": {"class_type": "IsFreed", "inputs": {"value": ["4", 0]}}}
    run = run_prompt(engine, prompt)
    assert run.outcome.status == "success"
    # The first check runs while node 4 still has to read node 1's object.
    assert [e[1] for e in log if e[0] == "freed"] == [[False], [True]]


def test_ram_policy_with_room_keeps_everything():
    engine, _ = make_engine(kind="ram", ram_headroom_gb=0.0)
    run_prompt(engine, image_prompt(1))
    run_prompt(engine, image_prompt(2))
    assert run_prompt(engine, image_prompt(1)).cached == ["1", "2"]


def test_ram_policy_under_pressure_evicts_older_prompts(monkeypatch):
    # A headroom no machine has: everything from earlier prompts is evicted, the current prompt's kept.
    from hearth.engine import cache

    handed_back = []
    monkeypatch.setattr(cache, "return_freed_memory", lambda: handed_back.append(True))
    engine, _ = make_engine(kind="ram", ram_headroom_gb=1e9)
    run_prompt(engine, image_prompt(1))
    run = run_prompt(engine, {"1": const(4), "2": out("1"), "3": out("1")})
    assert run.ran == ["1", "2"]  # in-prompt reuse still works
    # each eviction hands the freed memory back before free RAM is measured again
    assert handed_back
    assert run_prompt(engine, image_prompt(1)).cached == []


def test_is_changed_semantics():
    engine, log = make_engine()

    def prompt(token, value=1):
        return {"1": const(value), "2": {"class_type": "Changed", "inputs": {"value": ["1", 0], "token": token}},
                "3": out("2")}

    run_prompt(engine, prompt("a"))
    assert run_prompt(engine, prompt("a")).cached == ["1", "2", "3"]
    assert run_prompt(engine, prompt("b")).ran == ["2", "3"]
    # IS_CHANGED sees constants only; links are None.
    assert ("IS_CHANGED", None, "b") in log
    # NaN: always re-run (and so is everything downstream).
    run_prompt(engine, prompt("nan"))
    assert run_prompt(engine, prompt("nan")).ran == ["2", "3"]
    # An IS_CHANGED that raises counts as NaN.
    run_prompt(engine, prompt("raise"))
    assert run_prompt(engine, prompt("raise")).ran == ["2", "3"]


def test_not_idempotent_nodes_are_keyed_by_id():
    engine, log = make_engine()
    prompt = {"1": {"class_type": "NotIdempotent", "inputs": {"value": 3}},
              "2": {"class_type": "NotIdempotent", "inputs": {"value": 3}},
              "3": out("1"), "4": out("2")}
    run_prompt(engine, prompt)
    assert log.count(("NotIdempotent", 3)) == 2
    assert run_prompt(engine, prompt).cached == ["1", "2", "3", "4"]


def test_cache_clear():
    engine, _ = make_engine()
    run_prompt(engine, image_prompt(1))
    engine.cache_clear()
    assert engine.cache_size == 0
    assert run_prompt(engine, image_prompt(1)).cached == []


def test_cache_clear_during_a_prompt_is_deferred():
    engine, _ = make_engine()
    run_prompt(engine, image_prompt(1))
    started = threading.Event()
    release = threading.Event()

    def emit(event):
        if event.type == "executing" and event.node == "2":
            started.set()
            release.wait(5)

    prompt = {"1": const(1), "2": {"class_type": "Slow", "inputs": {"steps": 1, "interrupt_at": -1, "delay": 0.0}},
              "3": out("2"), "4": out("1")}
    worker = threading.Thread(target=engine.execute, args=("p", prompt, {}, ["4", "3"], emit, Interrupt()))
    worker.start()
    assert started.wait(5)
    engine.cache_clear()            # must not disturb the running prompt
    assert engine.cache_size > 0
    release.set()
    worker.join(5)
    assert engine.cache_size == 0   # applied once the prompt finished


def test_expansions_are_cached_across_prompts():
    engine, log = make_engine()
    prompt = {"1": {"class_type": "SumTo", "inputs": {"n": 3}}, "2": out("1")}
    run_prompt(engine, prompt)
    again = run_prompt(engine, prompt)
    assert again.cached == ["1", "2"] and again.ran == []
    # Grow the expansion: the unchanged part of the subgraph is reused.
    log.clear()
    bigger = {"1": {"class_type": "SumTo", "inputs": {"n": 4}}, "2": out("1")}
    run = run_prompt(engine, bigger)
    assert run.outcome.outputs["2"] == {"values": [10]}
    assert [e for e in log if e[0] == "Add"] == [("Add", 6, 4)]
    assert "1.0.0.2" not in run.ran and "1.0.0.5" in run.ran


def test_failed_node_keeps_upstream_cached():
    engine, _ = make_engine()
    failing = {"1": const(1), "2": {"class_type": "Fail", "inputs": {"value": ["1", 0], "kind": "value"}}}
    run_prompt(engine, failing)
    fixed = {"1": const(1), "2": {"class_type": "Fail", "inputs": {"value": ["1", 0], "kind": "ok"}}}
    run = run_prompt(engine, fixed)
    assert run.cached == ["1"] and run.ran == ["2"] and run.outcome.status == "success"


def test_unhashable_constants_are_never_cached():
    # Expansions may carry Python objects as constants: such nodes always re-run.
    from hearth.engine.cache import Signatures
    from hearth.engine.graph import DynamicPrompt
    from hearth.engine.nodeclass import ClassTable

    engine, _ = make_engine()
    dp = DynamicPrompt({"1": {"class_type": "Const", "inputs": {"value": object()}},
                        "2": {"class_type": "Double", "inputs": {"x": ["1", 0]}},
                        "3": {"class_type": "Const", "inputs": {"value": 1}}})
    sigs = Signatures(dp, ClassTable(engine.registry), lambda node_id: (True, False))
    assert sigs.get("1") is None and sigs.get("2") is None
    assert isinstance(sigs.get("3"), bytes)


def test_signatures_depend_on_structure_not_ids():
    from hearth.engine.cache import Signatures
    from hearth.engine.graph import DynamicPrompt
    from hearth.engine.nodeclass import ClassTable

    engine, _ = make_engine()
    a = DynamicPrompt({"1": const(1), "2": {"class_type": "Double", "inputs": {"x": ["1", 0]}}})
    b = DynamicPrompt({"x": const(1), "y": {"class_type": "Double", "inputs": {"x": ["x", 0]}}})
    c = DynamicPrompt({"x": const(2), "y": {"class_type": "Double", "inputs": {"x": ["x", 0]}}})

    def sig(dp, node_id):
        return Signatures(dp, ClassTable(engine.registry), lambda n: (True, False)).get(node_id)
    assert sig(a, "2") == sig(b, "y") != sig(c, "y")
