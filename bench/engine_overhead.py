#!/usr/bin/env python
"""Engine overhead: validation and execution time per node on graphs of trivial nodes.

    python bench/engine_overhead.py [--nodes 1000] [--repeat 5]

Graphs (all nodes trivial, plain Python ints):
  chain    Const -> Add -> Add -> ... -> Sink          (each node waits on the previous one)
  fan-out  Const -> 999 Sink output nodes               (999 nodes ready at once)

For each: validate (ms, µs/node), execute with an empty cache (µs/node), and
execute again fully cached (µs/node), with an emit that counts and drops events.
Prints Hearth's figures; the side-by-side harness runs ComfyUI on the same graphs.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hearth.engine import CachePolicy, Engine, Interrupt  # noqa: E402
from hearth.nodes.registry import NodeRegistry  # noqa: E402

INT = ("INT", {"default": 0, "min": -(2 ** 62), "max": 2 ** 62})


class Const:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, value):
        return (value,)


class Add:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": INT, "b": INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, a, b):
        return (a + b,)


class Sink:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": INT}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    def run(self, value):
        return {}


def registry() -> NodeRegistry:
    reg = NodeRegistry()
    for cls in (Const, Add, Sink):
        reg.register(cls.__name__, cls)
    return reg


def chain(n: int) -> dict:
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}}}
    for i in range(2, n):
        prompt[str(i)] = {"class_type": "Add", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    prompt[str(n)] = {"class_type": "Sink", "inputs": {"value": [str(n - 1), 0]}}
    return prompt


def fan_out(n: int) -> dict:
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}}}
    for i in range(2, n + 1):
        prompt[str(i)] = {"class_type": "Sink", "inputs": {"value": ["1", 0]}}
    return prompt


class EventCounter:
    """An emit that counts and drops events, like a hub that sends each one and forgets it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event) -> None:
        self.count += 1


def measure(name: str, build, n: int, repeat: int, policy: str) -> None:
    validate_s, cold_s, warm_s, events = [], [], [], 0
    for i in range(repeat):
        engine = Engine(registry(), CachePolicy(kind=policy))
        prompt = build(n)
        start = time.perf_counter()
        result = engine.validate(prompt)
        validate_s.append(time.perf_counter() - start)
        assert result.ok, result.error

        counter = EventCounter()
        start = time.perf_counter()
        outcome = engine.execute(f"cold{i}", copy.deepcopy(prompt), {}, result.outputs, counter, Interrupt())
        cold_s.append(time.perf_counter() - start)
        assert outcome.status == "success", outcome.error
        events = counter.count

        start = time.perf_counter()
        engine.execute(f"warm{i}", copy.deepcopy(prompt), {}, result.outputs, EventCounter(), Interrupt())
        warm_s.append(time.perf_counter() - start)

    def per_node(samples):
        return statistics.median(samples) / n * 1e6

    print(f"{name:8s} n={n:5d}  validate {statistics.median(validate_s) * 1e3:7.2f} ms "
          f"({per_node(validate_s):6.2f} µs/node)   execute {per_node(cold_s):7.2f} µs/node "
          f"({statistics.median(cold_s) * 1e3:7.1f} ms, {events} events)   "
          f"cached re-run {per_node(warm_s):7.2f} µs/node")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--policy", default="classic", choices=["classic", "lru", "none", "ram"])
    args = parser.parse_args()
    print(f"Hearth engine overhead (Python {sys.version.split()[0]}, cache policy {args.policy}; median of "
          f"{args.repeat})")
    measure("chain", chain, args.nodes, args.repeat, args.policy)
    measure("fan-out", fan_out, args.nodes, args.repeat, args.policy)


if __name__ == "__main__":
    main()
