"""Random DAGs of Const/Add/Output nodes: results, run-once, caching and minimal re-runs."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.enginekit import make_engine, run_prompt


@st.composite
def dags(draw):
    count = draw(st.integers(2, 14))
    prompt: dict = {}
    for i in range(count):
        node_id = str(i)
        earlier = [str(j) for j in range(i) if prompt[str(j)]["class_type"] != "Output"]
        kind = draw(st.sampled_from(["Const", "Add", "Output"]) if earlier else st.just("Const"))
        if kind == "Const":
            prompt[node_id] = {"class_type": "Const", "inputs": {"value": draw(st.integers(-5, 5))}}
        elif kind == "Add":
            def operand():
                return draw(st.one_of(st.integers(-5, 5), st.sampled_from(earlier).map(lambda s: [s, 0])))
            prompt[node_id] = {"class_type": "Add", "inputs": {"a": operand(), "b": operand()}}
        else:
            prompt[node_id] = {"class_type": "Output", "inputs": {"value": [draw(st.sampled_from(earlier)), 0]}}
    if not any(n["class_type"] == "Output" for n in prompt.values()):
        prompt[str(count)] = {"class_type": "Output", "inputs": {"value": [str(count - 1), 0]}}
    return prompt


def evaluate(prompt, node_id, memo):
    if node_id not in memo:
        inputs = prompt[node_id]["inputs"]

        def value(v):
            return evaluate(prompt, v[0], memo) if isinstance(v, list) else v
        kind = prompt[node_id]["class_type"]
        if kind in ("Const", "Output"):
            memo[node_id] = value(inputs["value"])
        else:
            memo[node_id] = value(inputs["a"]) + value(inputs["b"])
    return memo[node_id]


def ancestors(prompt, node_id, seen=None):
    seen = set() if seen is None else seen
    for v in prompt[node_id]["inputs"].values():
        if isinstance(v, list) and v[0] not in seen:
            seen.add(v[0])
            ancestors(prompt, v[0], seen)
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(), st.integers(0, 100))
def test_random_dags(prompt, pick):
    engine, _ = make_engine()
    outputs = [n for n, node in prompt.items() if node["class_type"] == "Output"]
    run = run_prompt(engine, prompt)
    memo: dict = {}
    assert run.outcome.outputs == {o: {"values": [evaluate(prompt, o, memo)]} for o in outputs}
    needed = set(outputs).union(*(ancestors(prompt, o) for o in outputs))
    assert set(run.ran) <= needed and len(run.ran) == len(set(run.ran))
    # Every node ran before the nodes reading it.
    order = {n: i for i, n in enumerate(run.ran)}
    for node_id in run.ran:
        for source in ancestors(prompt, node_id):
            assert source not in order or order[source] < order[node_id]

    again = run_prompt(engine, prompt, prompt_id="again")
    assert again.ran == [] and again.outcome.outputs == run.outcome.outputs

    consts = [n for n, node in prompt.items() if node["class_type"] == "Const"]
    changed = consts[pick % len(consts)]
    prompt[changed]["inputs"]["value"] += 100
    third = run_prompt(engine, prompt, prompt_id="third")
    memo = {}
    assert third.outcome.outputs == {o: {"values": [evaluate(prompt, o, memo)]} for o in outputs}
    descendants = {n for n in prompt if changed in ancestors(prompt, n)} | {changed}
    assert set(third.ran) <= descendants
