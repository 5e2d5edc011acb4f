"""The engine's semantics end to end: a custom node pack in a real server, driven over HTTP and a real websocket.

tests/engine/ drives the Engine object directly; here the same node kit (tests/engine/enginekit.py, loaded
as the custom node pack tests/e2e/engine_pack/) runs inside ``python -m hearth`` and every assertion is
about what a client sees: ``executing`` (which nodes ran, in order), ``execution_cached``, ``executed``,
``progress``/``progress_state``, binary frames, ``/history`` and the 400 bodies of ``POST /prompt``. The
pack also sends each entry of the kit's log as a ``kit_log`` message, in order with the engine's own.

Servers (module scope, started together): one per cache policy, each with the pack in custom_nodes/.
"""
from __future__ import annotations

import asyncio
import io
import json
import shutil
import struct
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.e2e.wsclient import WSRecorder, summarize

PACK = Path(__file__).resolve().parent / "engine_pack"

# name -> extra flags; each gets its own server (a cache policy is a per-process setting).
POLICIES = {
    "classic": ["--cache-classic"],
    "lru": ["--cache-lru", "4"],
    "none": ["--cache-none"],
    "ram": ["--cache-ram", "0.001"],            # headroom always there: keeps everything
    "ram_pressure": ["--cache-ram", "1000000"],  # headroom no machine has: evicts older prompts at once
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    def start(name: str) -> Server:
        base = tmp_path_factory.mktemp(f"engine_{name}")
        shutil.copytree(PACK, base / "custom_nodes" / PACK.name, ignore=shutil.ignore_patterns("__pycache__"))
        return Server(base, POLICIES[name])

    created = {name: start(name) for name in POLICIES}
    try:
        with ThreadPoolExecutor(len(created)) as pool:
            for future in [pool.submit(s.start, 60.0) for s in created.values()]:
                future.result()
        yield created
    finally:
        with ThreadPoolExecutor(len(created)) as pool:
            list(pool.map(Server.stop, created.values()))


@pytest.fixture(scope="module")
def classic(servers) -> Server:
    return servers["classic"]


# -- prompt building -------------------------------------------------------------------------------------

def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def const(value) -> dict:
    return node("Const", value=value)


def out(source: str, slot: int = 0, cls: str = "Output") -> dict:
    return node(cls, value=[source, slot])


# -- a websocket client that submits prompts and sorts what comes back ----------------------------------------

@dataclass
class Run:
    """Everything one prompt produced, from just before POST /prompt to ``executing`` null."""

    prompt_id: str
    messages: list[dict]          # every text message, kit_log included
    binary: list[bytes]
    history: dict

    @property
    def engine(self) -> list[dict]:
        """The server's own messages (kit_log left out), for comparison with protocol.md §5."""
        return [m for m in self.messages if m["type"] != "kit_log"]

    @property
    def summary(self) -> list[tuple]:
        return summarize(self.engine)

    @property
    def types(self) -> list[str]:
        return [m["type"] for m in self.engine]

    def of_type(self, type_: str) -> list[dict]:
        return [m["data"] for m in self.messages if m["type"] == type_ and m["data"].get("prompt_id") == self.prompt_id]

    @property
    def ran(self) -> list[str]:
        """Nodes that sent ``executing`` (started running, not cached), in order; null left out."""
        return [d["node"] for d in self.of_type("executing") if d["node"] is not None]

    @property
    def cached(self) -> list[str]:
        (data,) = self.of_type("execution_cached")
        return data["nodes"]

    @property
    def executed(self) -> dict[str, dict]:
        return {d["node"]: d["output"] for d in self.of_type("executed")}

    @property
    def log(self) -> list[list]:
        """The kit's log entries written while this prompt ran."""
        return [d["entry"] for d in self.of_type("kit_log")]

    def logged(self, kind: str, node: str | None = None) -> list[list]:
        """Log entries of one kind (and written by one node, when given)."""
        return [d["entry"] for d in self.of_type("kit_log")
                if d["entry"][0] == kind and (node is None or d["node"] == node)]

    @property
    def status(self) -> str:
        return self.history["status"]["status_str"]

    @property
    def outputs(self) -> dict:
        return self.history["outputs"]

    def final_states(self) -> dict[str, dict]:
        return self.of_type("progress_state")[-1]["nodes"]


@dataclass
class Client:
    server: Server
    ws: WSRecorder
    posted: list[dict] = field(default_factory=list)

    async def submit(self, prompt: dict, timeout: float = 30.0, allow_node_errors: bool = False, **extra) -> Run:
        """POST the prompt under this client's id (``extra``: more body fields) and wait for it to finish."""
        before, before_binary = len(self.ws.messages), len(self.ws.binary)
        status, body = await post(self.server, {"prompt": prompt, "client_id": self.ws.sid, **extra})
        assert status == 200, body
        assert allow_node_errors or body["node_errors"] == {}, body
        self.posted.append(body)
        pid = body["prompt_id"]
        await self.ws.wait_done(pid, timeout)
        history = self.server.get_json(f"/history/{pid}")[pid]
        return Run(pid, self.ws.messages[before:], self.ws.binary[before_binary:], history)

    async def start(self, prompt: dict, **extra) -> str:
        status, body = await post(self.server, {"prompt": prompt, "client_id": self.ws.sid, **extra})
        assert status == 200, body
        return body["prompt_id"]

    async def finish(self, prompt_id: str, before: int, before_binary: int = 0, timeout: float = 30.0) -> Run:
        await self.ws.wait_done(prompt_id, timeout)
        history = self.server.get_json(f"/history/{prompt_id}")[prompt_id]
        return Run(prompt_id, self.ws.messages[before:], self.ws.binary[before_binary:], history)


async def post(server: Server, body: dict, path: str = "/prompt") -> tuple[int, Any]:
    # The synchronous helper in a thread, so the websocket reader keeps reading meanwhile.
    return await asyncio.to_thread(server.post_json, path, body)


async def connect(server: Server, **kwargs) -> tuple[WSRecorder, Client]:
    ws = WSRecorder(server.ws_url, **kwargs)
    await ws.__aenter__()
    await ws.wait_for(lambda m: m["type"] == "status")
    if kwargs.get("feature_flags") is not None:
        await ws.wait_for(lambda m: m["type"] == "feature_flags")
    return ws, Client(server, ws)


def scenario(server: Server, body, **kwargs):
    """Run ``body(client)`` with a fresh websocket client on ``server``, its cache emptied first (POST /free),
    so that no test depends on what an earlier one left cached."""
    free_cache(server)

    async def main():
        ws, client = await connect(server, **kwargs)
        try:
            await body(client)
        finally:
            await ws.__aexit__(None, None, None)
    asyncio.run(main())


async def wait_after(ws: WSRecorder, start: int, predicate, timeout: float = 30.0) -> dict:
    """The first message at index >= start matching ``predicate``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for m in ws.messages[start:]:
            if predicate(m):
                return m
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no matching message after #{start}: {[m['type'] for m in ws.messages[start:]]}")


def free_cache(server: Server) -> None:
    assert server.post_json("/free", {"free_memory": True})[0] == 200


def unique() -> int:
    """A fresh constant, so that nothing left in a shared server's cache matches."""
    return uuid.uuid4().int % 900 + 50


# ---------------------------------------------------------------------------------------------------------
# The pack and the §5 sequences
# ---------------------------------------------------------------------------------------------------------

def test_pack_loads_beside_the_builtin_nodes(classic):
    info = classic.get_json("/object_info")
    assert info["LazySwitch"]["python_module"] == "custom_nodes.engine_pack"
    assert info["LazySwitch"]["input"]["required"]["on_true"] == ["*", {"lazy": True}]
    assert info["MakeList"]["output_is_list"] == [True]
    assert info["Rendezvous"]["category"] == "testing" and info["Output"]["output_node"] is True
    # Names the server already had keep the server's nodes; a class whose INPUT_TYPES raises is left out.
    assert info["EmptyImage"]["python_module"] == "nodes" and info["PreviewImage"]["python_module"] == "nodes"
    assert "BrokenInputTypes" not in info and "Previewer" in info


def test_protocol_sequences_with_pack_nodes(classic):
    """protocol.md §5a–5d with the kit's nodes, and the order nodes ran in (their kit_log entries)."""
    value = unique()

    async def body(client: Client):
        prompt = {"1": const(value), "2": out("1")}
        # 5a: everything runs.
        first = await client.submit(prompt)
        assert first.summary == [
            ("status", 1), ("status", 1), ("execution_start",), ("execution_cached", ()),
            ("progress_state", (("1", "running"),)), ("executing", "1"), ("progress_state", (("1", "finished"),)),
            ("progress_state", (("1", "finished"), ("2", "running"))), ("executing", "2"), ("executed", "2"),
            ("progress_state", (("1", "finished"), ("2", "finished"))), ("execution_success",), ("status", 0),
            ("executing", None)]
        # Each node's code ran between its `executing` and its `finished` state.
        order = [(m["type"], m["data"]["entry"][0] if m["type"] == "kit_log" else m["data"]["node"])
                 for m in first.messages if m["type"] in ("executing", "kit_log")]
        assert order == [("executing", "1"), ("kit_log", "Const"), ("executing", "2"), ("kit_log", "Output"),
                         ("executing", None)]
        assert first.log == [["Const", value], ["Output", value]]
        assert first.executed == {"2": {"values": [value]}}
        executing = first.of_type("executing")[0]
        assert executing == {"node": "1", "display_node": "1", "prompt_id": first.prompt_id}
        assert first.history["outputs"] == {"2": {"values": [value]}}
        assert first.history["meta"] == {"2": {"node_id": "2", "display_node": "2", "parent_node": None,
                                               "real_node_id": "2"}}
        assert first.history["prompt"][4] == ["2"]
        assert [m[0] for m in first.history["status"]["messages"]] == [
            "execution_start", "execution_cached", "execution_success"]

        # 5c: the identical prompt again is fully cached; the output node replays its ui.
        again = await client.submit(prompt)
        assert again.summary == [
            ("status", 1), ("status", 1), ("execution_start",), ("execution_cached", ("1", "2")), ("executed", "2"),
            ("progress_state", (("2", "finished"),)), ("execution_success",), ("status", 0), ("executing", None)]
        assert again.log == [] and again.executed == {"2": {"values": [value]}}
        assert again.outputs == {"2": {"values": [value]}}
        assert again.history["status"]["messages"][1][1]["nodes"] == ["1", "2"]

        # 5d: under the classic policy a prompt in between evicts it: all of it runs again.
        await client.submit({"1": const(value + 1), "2": out("1")})
        third = await client.submit(prompt)
        assert third.cached == [] and third.ran == ["1", "2"] and third.log == first.log

        # Only the changed node and what follows it re-run.
        chain = {"1": const(value), "2": node("Add", a=["1", 0], b=1), "3": node("Add", a=["2", 0], b=1),
                 "4": out("3")}
        await client.submit(chain)
        chain["3"]["inputs"]["b"] = 5
        changed = await client.submit(chain)
        assert changed.cached == ["1", "2"] and changed.ran == ["3", "4"]
        assert changed.outputs == {"4": {"values": [value + 6]}}

        # POST /free drops the cache: the same prompt runs again.
        free_cache(client.server)
        freed = await client.submit(chain)
        assert freed.cached == [] and freed.ran == ["1", "2", "3", "4"]

        # 5b: a node that raises.
        failing = {"1": const(value + 7), "2": node("Fail", value=["1", 0], kind="custom")}
        failed = await client.submit(failing)
        assert [t[0] for t in failed.summary] == [
            "status", "status", "execution_start", "execution_cached", "progress_state", "executing",
            "progress_state", "progress_state", "executing", "execution_error", "status", "executing"]
        (error,) = failed.of_type("execution_error")
        assert set(error) == {"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type",
                              "traceback", "current_inputs", "current_outputs", "timestamp"}
        assert (error["node_id"], error["node_type"], error["executed"]) == ("2", "Fail", ["1"])
        assert error["exception_message"] == "custom boom\n"
        assert error["exception_type"] == "tests.engine.enginekit.CustomError"
        assert error["current_inputs"] == {"value": [value + 7], "kind": ["custom"]}
        assert error["current_outputs"] == ["1", "2"]
        assert any("custom boom" in line or "run" in line for line in error["traceback"])
        assert failed.status == "error" and failed.history["status"]["completed"] is False
        assert failed.outputs == {}
        assert failed.history["status"]["messages"][-1][0] == "execution_error"
        # The worker goes on; the failed node's upstream stayed cached.
        failing["2"]["inputs"]["kind"] = "ok"
        fixed = await client.submit(failing)
        assert fixed.status == "success" and fixed.cached == ["1"] and fixed.ran == ["2"]

        # 5e: a prompt posted without client_id: this socket sees only status and progress_state.
        before = len(client.ws.messages)
        status, body = await post(client.server, {"prompt": {"1": const(value + 9), "2": out("1")}})
        assert status == 200
        client.server.wait_history(body["prompt_id"])
        await wait_after(client.ws, before, lambda m: m["type"] == "status"
                         and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
        await asyncio.sleep(0.1)
        seen = [m for m in client.ws.messages[before:] if m["type"] != "kit_log"]
        assert summarize(seen) == [
            ("status", 1), ("status", 1), ("progress_state", (("1", "running"),)),
            ("progress_state", (("1", "finished"),)), ("progress_state", (("1", "finished"), ("2", "running"))),
            ("progress_state", (("1", "finished"), ("2", "finished"))), ("status", 0)]

    scenario(classic, body)


def test_execution_order_and_only_what_outputs_need(classic):
    v = unique()

    async def body(client: Client):
        prompt = {"1": const(v), "2": const(v + 1), "3": node("Add", a=["1", 0], b=["2", 0]), "4": out("3"),
                  "5": const(v + 2), "6": out("5"),
                  # not needed by any output: never runs
                  "7": const(v + 3), "8": node("Double", x=["7", 0])}
        run = await client.submit(prompt)
        # ComfyUI's pick order: the output whose inputs are ready first, then towards the other output.
        assert run.ran == ["5", "6", "2", "1", "3", "4"]
        assert [e[0] for e in run.log] == ["Const", "Output", "Const", "Const", "Add", "Output"]
        assert run.outputs == {"4": {"values": [2 * v + 1]}, "6": {"values": [v + 2]}}
        assert sorted(run.history["prompt"][4]) == ["4", "6"]

        # Hidden inputs reach the node (UNIQUE_ID, EXTRA_PNGINFO from extra_data).
        hidden = await client.submit({"h7": node("HiddenEcho", value=v)},
                                     extra_data={"extra_pnginfo": {"workflow": {"v": v}}})
        assert hidden.outputs == {"h7": {"unique_id": ["h7"]}}
        (entry,) = hidden.logged("HiddenEcho")
        assert entry[2] == {"workflow": {"v": v}} and entry[3] == "h7"

    scenario(classic, body)


# ---------------------------------------------------------------------------------------------------------
# Lazy inputs, lists, expansion, blockers
# ---------------------------------------------------------------------------------------------------------

def test_lazy_inputs(classic):
    v = unique()

    async def body(client: Client):
        switch = {"1": const(v), "2": const(v + 1), "3": node("Flag", value=False),
                  "4": node("LazySwitch", condition=["3", 0], on_true=["1", 0], on_false=["2", 0]), "5": out("4")}
        run = await client.submit(switch)
        assert "1" not in run.ran and "2" in run.ran
        assert run.outputs == {"5": {"values": [v + 1]}}
        # check_lazy_status first saw nothing, asked for on_false, and saw it on its second call; the lazy
        # node announced itself each time, as ComfyUI's does when it comes back.
        assert run.logged("check_lazy_status") == [["check_lazy_status", False, None, None],
                                                   ["check_lazy_status", False, None, v + 1]]
        assert run.ran == ["3", "4", "2", "4", "5"]

        # Three mixes: at 0 only a is evaluated, at 1 only b, in between both.
        mixes = {"a0": const(v + 10), "b0": const(v + 20), "a1": const(v + 11), "b1": const(v + 21),
                 "ah": const(v + 12), "bh": const(v + 22),
                 "m0": node("LazyMix", a=["a0", 0], b=["b0", 0], mix=0.0),
                 "m1": node("LazyMix", a=["a1", 0], b=["b1", 0], mix=1.0),
                 "mh": node("LazyMix", a=["ah", 0], b=["bh", 0], mix=0.5),
                 "o0": out("m0"), "o1": out("m1"), "oh": out("mh")}
        run = await client.submit(mixes)
        assert {n for n in run.ran if n[0] in "ab"} == {"a0", "b1", "ah", "bh"}
        assert run.outputs == {"o0": {"values": [float(v + 10)]}, "o1": {"values": [float(v + 21)]},
                               "oh": {"values": [v + 17.0]}}

        # Now the first mix needs b: only b0 and the mix (and its output) run; a0 comes from the cache
        # and is handed over directly, so check_lazy_status is called once with it.
        mixes["m0"]["inputs"]["mix"] = 1.0
        run = await client.submit(mixes)
        assert "a0" in run.cached and "a0" not in run.ran
        assert sorted(run.ran) == ["b0", "m0", "m0", "o0"]
        assert run.outputs["o0"] == {"values": [float(v + 20)]}

        # Async check_lazy_status.
        run = await client.submit({"1": const(v + 30), "2": const(v + 31),
                                   "3": node("AsyncLazy", use_b=True, a=["1", 0], b=["2", 0]), "4": out("3")})
        assert "1" not in run.ran and run.outputs == {"4": {"values": [v + 31]}}

    scenario(classic, body)


def test_list_mapping(classic):
    v = unique()

    async def body(client: Client):
        prompt = {
            # OUTPUT_IS_LIST fans out: Double runs once per item (one `executing`, three calls).
            "1": const(v), "2": const(v + 1), "3": const(v + 2),
            "4": node("MakeList", value1=["1", 0], value2=["2", 0], value3=["3", 0]),
            "5": node("Double", x=["4", 0]), "6": node("ListOutput", value=["5", 0]),
            # the one-item input repeats its last item; an output node's ui is merged over its calls
            "7": node("Text", text=f"t{v}"), "8": node("Pair", a=["4", 0], b=["7", 0]),
            "9": node("ShowEach", value=["8", 0]),
            # INPUT_IS_LIST receives whole lists
            "10": node("Range", count=4), "11": node("ListSum", values=["10", 0], scale=["10", 1]),
            "12": out("11"),
            # expansion per list item, mixed with literal results
            "13": node("MixedExpand", x=["4", 0]), "14": node("ListOutput", value=["13", 0]),
            # a blocker on some items blocks only those
            "15": node("IsEven", x=["10", 0]),
            "16": node("Blocker", value=["10", 0], block=["15", 0], message=""),
            "17": node("ShowEach", value=["16", 0]),
        }
        run = await client.submit(prompt)
        assert run.status == "success"
        assert run.logged("Double", node="5") == [["Double", v], ["Double", v + 1], ["Double", v + 2]]
        assert run.ran.count("5") == 1
        assert run.outputs["6"] == {"values": [2 * v, 2 * v + 2, 2 * v + 4]}
        assert run.outputs["9"] == {"values": [f"{v + i}-t{v}" for i in range(3)],
                                    "text": [f"v={v + i}-t{v}" for i in range(3)]}
        assert run.logged("ListSum") == [["ListSum", [0, 1, 2, 3], [4]]]
        assert run.outputs["12"] == {"values": [24]}
        odd = [x for x in (v, v + 1, v + 2)]
        assert run.outputs["14"] == {"values": [2 * x if x % 2 else x for x in odd]}
        # The expanded items' nodes carry the call index in their ids.
        expanded = {n for n in run.ran if n.startswith("13.")}
        assert expanded == {f"13.{i}.0.1" for i, x in enumerate(odd) if x % 2}
        assert run.outputs["17"] == {"values": [1, 3], "text": ["v=1", "v=3"]}

    scenario(classic, body)


def test_node_expansion(classic):
    v = unique()

    async def body(client: Client):
        prompt = {"1": node("SumTo", n=3), "2": out("1"),
                  "5": node("CountDown", n=2, acc=v), "6": out("5"),
                  "3": node("ExpandToOutput", value=v), "4": out("3"),
                  "7": const(v), "8": node("ExpandDisplay", x=["7", 0], show_as="7"), "9": out("8")}
        run = await client.submit(prompt)
        assert run.status == "success"
        assert run.outputs["2"] == {"values": [6]} and run.outputs["6"] == {"values": [v + 3]}
        assert run.outputs["4"] == {"values": [v]} and run.outputs["9"] == {"values": [2 * v]}

        # The subgraph's nodes run between the expanding node and its consumer, under ids derived from it.
        sum_nodes = [n for n in run.ran if n == "1" or n.startswith("1.")]
        assert sum_nodes == ["1", "1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4"]
        assert run.ran.index("1.0.0.4") < run.ran.index("2")
        display = {d["node"]: d["display_node"] for d in run.of_type("executing") if d["node"]}
        assert display["1.0.0.4"] == "1" and display["1"] == "1"
        states = run.final_states()
        assert {k: states["1.0.0.2"][k] for k in ("display_node_id", "parent_node_id", "real_node_id")} == {
            "display_node_id": "1", "parent_node_id": "1", "real_node_id": "1"}
        assert all(s["state"] == "finished" for s in states.values())
        # The expanding node finishes only once its subgraph has.
        first_finish = next(m["nodes"] for m in run.of_type("progress_state")
                            if m["nodes"].get("1", {}).get("state") == "finished")
        assert first_finish["1.0.0.4"]["state"] == "finished"

        # Nested: CountDown expands into a CountDown that expands again.
        inner = "5.0.0.2.0.0.2"
        assert [e[1:] for e in run.logged("CountDown")] == [[2, v, "5"], [1, v + 2, "5.0.0.2"], [0, v + 3, inner]]
        assert states[inner]["parent_node_id"] == "5.0.0.2"
        assert states[inner]["display_node_id"] == "5" and states[inner]["real_node_id"] == "5"
        assert display[inner] == "5"

        # An output node created by an expansion: `executed` and history under its own id, shown as its parent.
        ephemeral = "3.0.0.2"
        executed = {d["node"]: d for d in run.of_type("executed")}
        assert executed[ephemeral]["display_node"] == "3" and executed[ephemeral]["output"] == {"values": [v]}
        assert run.outputs[ephemeral] == {"values": [v]}
        assert run.history["meta"][ephemeral] == {"node_id": ephemeral, "display_node": "3", "parent_node": "3",
                                                  "real_node_id": "3"}
        assert run.history["meta"]["4"] == {"node_id": "4", "display_node": "4", "parent_node": None,
                                            "real_node_id": "4"}
        # override_display_id: the inner Double is shown as node "7".
        assert display["8.0.0.1"] == "7"

        # Resubmitted: the expanding nodes are cached, nothing runs.
        again = await client.submit(prompt)
        assert again.ran == [] and set(again.cached) == set(prompt)
        assert {k: again.outputs[k] for k in ("2", "4", "6", "9")} == {k: run.outputs[k] for k in ("2", "4", "6", "9")}

        # Growing the expansion reuses the unchanged part of the subgraph.
        grown = await client.submit({**prompt, "1": node("SumTo", n=4)})
        assert grown.outputs["2"] == {"values": [10]}
        assert grown.logged("Add") == [["Add", 6, 4]]
        assert "1.0.0.5" in grown.ran and "1.0.0.2" not in grown.ran

        # override_display_id naming each other or the node itself: each is shown as itself (no endless walk).
        loop = await client.submit({"1": node("ExpandDisplayLoop", x=v), "2": out("1")}, timeout=10)
        assert loop.outputs == {"2": {"values": [8 * v]}}
        shown = {d["node"]: d["display_node"] for d in loop.of_type("executing") if d["node"]}
        assert shown == {"1": "1", "1.0.0.1": "1.0.0.1", "1.0.0.2": "1.0.0.2", "1.0.0.3": "1.0.0.3", "2": "2"}

        # Expansion errors blame the expanding node.
        cycle = await client.submit({"1": node("ExpandCycle", x=v), "2": out("1")})
        (error,) = cycle.of_type("execution_error")
        assert (error["node_id"], error["node_type"], error["exception_type"], error["exception_message"]) == (
            "1", "ExpandCycle", "graph.DependencyCycleError", "Dependency cycle detected")
        dup = await client.submit({"1": const(v), "2": node("ExpandDuplicate", x=["1", 0]), "3": out("2")})
        (error,) = dup.of_type("execution_error")
        assert error["node_id"] == "2" and error["exception_type"].endswith("DuplicateNodeError")

    scenario(classic, body)


def test_execution_blocker(classic):
    v = unique()

    async def body(client: Client):
        # Silent blocker: the output never runs, no `executed`, the prompt succeeds.
        silent = await client.submit({"1": const(v), "2": node("Blocker", value=["1", 0], block=True, message=""),
                                      "3": out("2")})
        assert silent.status == "success" and silent.types[-3:] == ["execution_success", "status", "executing"]
        assert "3" not in silent.executed and silent.outputs == {} and silent.logged("Output") == []
        assert "execution_error" not in silent.types

        # With a message: one execution_error naming the blocked node (not recorded in history), other outputs
        # still run, and the prompt succeeds.
        loud = await client.submit({"1": const(v), "2": node("Blocker", value=["1", 0], block=True, message="no way"),
                                    "3": out("2"), "4": const(v + 1), "5": out("4")})
        (blocked,) = loud.of_type("execution_error")
        assert blocked == {"prompt_id": loud.prompt_id, "node_id": "3", "node_type": "Output",
                           "executed": blocked["executed"], "exception_message": "Execution Blocked: no way",
                           "exception_type": "ExecutionBlocked", "traceback": [], "current_inputs": [],
                           "current_outputs": []}
        assert loud.status == "success" and loud.outputs == {"5": {"values": [v + 1]}}
        assert [m[0] for m in loud.history["status"]["messages"]] == ["execution_start", "execution_cached",
                                                                      "execution_success"]
        # Unblocked, the same graph flows through.
        flowing = await client.submit({"1": const(v), "2": node("Blocker", value=["1", 0], block=False, message=""),
                                       "3": out("2")})
        assert flowing.outputs == {"3": {"values": [v]}}

    scenario(classic, body)


# ---------------------------------------------------------------------------------------------------------
# Async nodes, IS_CHANGED, interrupt, progress and previews
# ---------------------------------------------------------------------------------------------------------

def test_async_nodes_run_concurrently(classic):
    v = unique()

    async def body(client: Client):
        # Each Rendezvous waits for the other's event: both finish only if they run at the same time.
        prompt = {"1": const(v),
                  "a": node("Rendezvous", value=["1", 0], me="a", partner="b", timeout=10.0),
                  "b": node("Rendezvous", value=["1", 0], me="b", partner="a", timeout=10.0),
                  "oa": out("a"), "ob": out("b")}
        run = await client.submit(prompt)
        assert run.status == "success", run.of_type("execution_error")
        assert run.outputs == {"oa": {"values": [f"{v}:a"]}, "ob": {"values": [f"{v}:b"]}}
        kinds = [e[0] for e in run.log if e[0].startswith("rendezvous")]
        assert kinds == ["rendezvous_arrived", "rendezvous_arrived", "rendezvous_met", "rendezvous_met"]
        # Each announced itself once even though it left the run and came back.
        assert run.ran.count("a") == 1 and run.ran.count("b") == 1

        # Three sleepers: all start before any ends.
        sleepers = {"1": const(v)}
        for i in range(3):
            sleepers[f"s{i}"] = node("AsyncSleep", value=["1", 0], seconds=0.5 + i / 1000)
            sleepers[f"o{i}"] = out(f"s{i}")
        run = await client.submit(sleepers)
        kinds = [e[0] for e in run.log if e[0].startswith("sleep")]
        assert kinds == ["sleep_start"] * 3 + ["sleep_end"] * 3
        assert run.outputs == {f"o{i}": {"values": [v]} for i in range(3)}

        # A failing async node fails the prompt (its sleeping sibling is cancelled).
        failing = await client.submit({"1": const(v + 1), "2": node("AsyncFail", value=["1", 0]), "3": out("2"),
                                       "4": node("AsyncSleep", value=["1", 0], seconds=5.0), "5": out("4")})
        (error,) = failing.of_type("execution_error")
        assert (error["node_id"], error["exception_type"], error["exception_message"]) == (
            "2", "ValueError", "async boom\n")
        assert failing.logged("sleep_end") == []

    scenario(classic, body)


def test_is_changed(classic, tmp_path):
    v = unique()
    path = tmp_path / "input.txt"
    path.write_text("one")

    async def body(client: Client):
        prompt = {"1": node("ReadFile", path=str(path)), "2": out("1")}
        first = await client.submit(prompt)
        assert first.ran == ["1", "2"] and first.outputs == {"2": {"values": ["one"]}}
        same = await client.submit(prompt)
        assert same.cached == ["1", "2"] and same.ran == []
        # Same inputs, different IS_CHANGED: the node and everything after it run again.
        path.write_text("two")
        edited = await client.submit(prompt)
        assert edited.cached == [] and edited.ran == ["1", "2"] and edited.outputs == {"2": {"values": ["two"]}}

        def changed(token):
            return {"1": const(v), "2": node("Changed", value=["1", 0], token=token), "3": out("2")}

        await client.submit(changed("a"))
        cached = await client.submit(changed("a"))
        assert cached.cached == ["1", "2", "3"]
        # IS_CHANGED is asked on every prompt, cached or not, with constants only (links are None).
        assert cached.logged("IS_CHANGED") == [["IS_CHANGED", None, "a"]]
        # NaN means always run again (and everything downstream); an IS_CHANGED that raises counts as NaN.
        for token in ("nan", "raise"):
            await client.submit(changed(token))
            again = await client.submit(changed(token))
            assert again.cached == ["1"] and again.ran == ["2", "3"], token
            assert again.status == "success"

        # Node instances persist per node id while the node stays in the prompt.
        counts = [(await client.submit({"s": node("Stateful", value=v)})).outputs for _ in range(2)]
        assert counts == [{"s": {"calls": [1]}}, {"s": {"calls": [2]}}]

    scenario(classic, body)


def test_interrupt_mid_node(classic):
    v = unique()

    async def body(client: Client):
        prompt = {"1": node("FloatConst", value=0.02), "2": node("Slow", steps=2000, interrupt_at=-1, delay=["1", 0]),
                  "3": out("2")}
        before = len(client.ws.messages)
        pid = await client.start(prompt)
        await client.ws.wait_for(lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == pid)
        assert (await post(client.server, {}, "/interrupt"))[0] == 200
        run = await client.finish(pid, before, timeout=10)
        assert run.types[-3:] == ["execution_interrupted", "status", "executing"]
        (event,) = run.of_type("execution_interrupted")
        assert {k: event[k] for k in ("node_id", "node_type", "executed")} == {
            "node_id": "2", "node_type": "Slow", "executed": ["1"]}
        steps = run.logged("Slow")
        assert 1 <= len(steps) < 2000  # stopped inside the node
        assert run.status == "error" and run.history["status"]["completed"] is False
        assert run.history["status"]["messages"][-1][0] == "execution_interrupted"
        assert "execution_error" not in run.types and run.outputs == {}

        # The interrupt does not leak into the next prompt; what ran before the interrupt is cached.
        prompt["2"]["inputs"]["steps"] = 3
        after = await client.submit(prompt)
        assert after.status == "success" and after.cached == ["1"] and after.outputs == {"3": {"values": [3]}}

        # Interrupting an async node that is waiting.
        before = len(client.ws.messages)
        pid = await client.start({"1": const(v), "2": node("AsyncSleep", value=["1", 0], seconds=5.0),
                                  "3": out("2")})
        await client.ws.wait_for(lambda m: m["type"] == "kit_log" and m["data"]["prompt_id"] == pid
                                 and m["data"]["entry"][0] == "sleep_start")
        assert (await post(client.server, {"prompt_id": pid}, "/interrupt"))[0] == 200
        run = await client.finish(pid, before, timeout=5)
        (event,) = run.of_type("execution_interrupted")
        assert event["node_id"] == "2" and run.logged("sleep_end") == []

    scenario(classic, body)


def parse_frame(frame: bytes) -> tuple[int, Any]:
    (kind,) = struct.unpack(">I", frame[:4])
    if kind == 1:
        (fmt,) = struct.unpack(">I", frame[4:8])
        return kind, ({1: "JPEG", 2: "PNG"}[fmt], frame[8:])
    if kind == 3:
        (length,) = struct.unpack(">I", frame[4:8])
        return kind, (frame[8:8 + length].decode(), frame[8 + length:].decode())
    if kind == 4:
        (length,) = struct.unpack(">I", frame[4:8])
        return kind, (json.loads(frame[8:8 + length]), frame[8 + length:])
    raise AssertionError(f"unknown binary frame type {kind}")


def test_progress_previews_and_text(classic):
    v = unique()

    async def body(plain: Client):
        meta_ws, meta = await connect(classic, feature_flags={"supports_preview_metadata": True})
        try:
            # 5f: the feature-flag handshake answers with the server's flags.
            (flags,) = [m["data"] for m in meta_ws.messages if m["type"] == "feature_flags"]
            assert flags == {"supports_preview_metadata": True, "max_upload_size": 104857600}
            # progress + progress_state while a node reports steps
            run = await plain.submit({"1": node("Slow", steps=3, interrupt_at=-1, delay=0.0), "2": out("1")})
            assert [(d["node"], d["value"], d["max"]) for d in run.of_type("progress")] == [
                ("1", 1, 3), ("1", 2, 3), ("1", 3, 3)]
            states = [d["nodes"]["1"] for d in run.of_type("progress_state") if "1" in d["nodes"]][:5]
            assert [(s["state"], s["value"], s["max"]) for s in states] == [
                ("running", 0.0, 1.0), ("running", 1, 3), ("running", 2, 3), ("running", 3, 3), ("finished", 3, 3)]

            # A client without feature flags: previews as type 1 (format + image), text as type 3.
            meta_binary = len(meta_ws.binary)
            run = await plain.submit({"1": node("Previewer", value=v)})
            frames = [parse_frame(f) for f in run.binary]
            assert [k for k, _ in frames] == [1, 3, 1]
            assert frames[0][1] == ("JPEG", b"\xff\xd8fakejpeg")
            assert frames[1][1] == ("1", "halfway")
            fmt, png = frames[2][1]
            assert fmt == "PNG" and png.startswith(b"\x89PNG")
            from PIL import Image

            assert Image.open(io.BytesIO(png)).size == (16, 8)
            assert [(d["value"], d["max"]) for d in run.of_type("progress")] == [(1, 2), (2, 2)]
            assert run.outputs == {"1": {"values": [v]}}
            # They went to the prompt's client only.
            assert len(meta_ws.binary) == meta_binary

            # A client that advertised supports_preview_metadata: type 4 with the node's ids; from an
            # expanded node, its display and parent ids.
            run = await meta.submit({"9": node("ExpandPreviewer", value=v)})
            frames = [parse_frame(f) for f in run.binary]
            assert [k for k, _ in frames] == [4, 3, 4]
            info, jpeg = frames[0][1]
            assert jpeg == b"\xff\xd8fakejpeg"
            assert info == {"node_id": "9.0.0.1", "prompt_id": run.prompt_id, "display_node_id": "9",
                            "parent_node_id": "9", "real_node_id": "9", "image_type": "image/jpeg"}
            info, png = frames[2][1]
            assert info["image_type"] == "image/png" and png.startswith(b"\x89PNG")
            assert frames[1][1] == ("9.0.0.1", "halfway")
            assert run.outputs == {"9.0.0.1": {"values": [v]}}
            assert run.history["meta"]["9.0.0.1"]["parent_node"] == "9"
        finally:
            await meta_ws.__aexit__(None, None, None)

    scenario(classic, body)


# ---------------------------------------------------------------------------------------------------------
# Partial targets and validation
# ---------------------------------------------------------------------------------------------------------

def test_partial_execution_targets(classic):
    v = unique()

    async def body(client: Client):
        prompt = {"1": const(v), "2": out("1"), "3": const(v + 1), "4": out("3")}
        run = await client.submit(prompt, partial_execution_targets=["4"])
        assert run.ran == ["3", "4"] and run.outputs == {"4": {"values": [v + 1]}}
        assert run.history["prompt"][4] == ["4"]
        # The whole prompt afterwards: the target's part is cached, the rest runs.
        run = await client.submit(prompt)
        assert run.cached == ["3", "4"] and run.ran == ["1", "2"]
        assert run.outputs == {"2": {"values": [v]}, "4": {"values": [v + 1]}}
        # A target that is not an output of the prompt selects nothing.
        status, body = await post(client.server, {"prompt": prompt, "partial_execution_targets": ["1"]})
        assert (status, body["error"]["type"]) == (400, "prompt_no_outputs")

    scenario(classic, body)


def test_validation_errors(classic):
    """Each error type of POST /prompt: status 400 and ComfyUI's body shape, per node and per prompt."""
    def post_prompt(prompt):
        return classic.post_json("/prompt", {"prompt": prompt})

    def failing(prompt, node_id, dependent_outputs) -> list[dict]:
        status, body = post_prompt(prompt)
        assert status == 400, body
        assert body["error"]["type"] == "prompt_outputs_failed_validation"
        assert body["error"]["message"] == "Prompt outputs failed validation"
        assert body["node_errors"][node_id]["dependent_outputs"] == dependent_outputs
        assert body["node_errors"][node_id]["class_type"] == prompt[node_id]["class_type"]
        return body["node_errors"][node_id]["errors"]

    def short(errors: list[dict]) -> list[tuple]:
        return [(e["type"], e["message"], e["details"]) for e in errors]

    # Whole-prompt errors.
    assert post_prompt({"1": node("NoSuchNodeXYZ")}) == (400, {"error": {
        "type": "invalid_prompt", "message": "Cannot execute because node NoSuchNodeXYZ does not exist.",
        "details": "Node ID '#1'", "extra_info": {}}, "node_errors": {}})
    status, body = post_prompt({"1": {"inputs": {}}})
    assert (status, body["error"]["type"], body["error"]["details"]) == (400, "invalid_prompt", "Node ID '#1'")
    assert post_prompt({"1": const(1), "2": node("Double", x=["1", 0])}) == (400, {"error": {
        "type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}},
        "node_errors": {}})
    assert classic.post_json("/prompt", {"client_id": "x"})[1]["error"]["type"] == "no_prompt"

    # Per-node errors, with the outputs they make fail.
    assert failing({"1": node("Add", a=1), "2": out("1")}, "1", ["2"]) == [{
        "type": "required_input_missing", "message": "Required input is missing", "details": "b",
        "extra_info": {"input_name": "b"}}]
    assert short(failing({"1": node("Add", a="x", b=1), "2": out("1")}, "1", ["2"])) == [(
        "invalid_input_type", "Failed to convert an input value to a INT value",
        "a, x, invalid literal for int() with base 10: 'x'")]
    int_config = ["INT", {"default": 0, "min": -1000, "max": 1000}]
    assert failing({"1": const(-5000), "2": out("1")}, "1", ["2"]) == [{
        "type": "value_smaller_than_min", "message": "Value -5000 smaller than min of -1000", "details": "value",
        "extra_info": {"input_name": "value", "input_config": int_config, "received_value": -5000}}]
    assert failing({"1": const(5000), "2": out("1")}, "1", ["2"]) == [{
        "type": "value_bigger_than_max", "message": "Value 5000 bigger than max of 1000", "details": "value",
        "extra_info": {"input_name": "value", "input_config": int_config, "received_value": 5000}}]
    choice = {"1": node("Choice", pick="z", big="m1", mode="x"), "2": out("1")}
    assert failing(choice, "1", ["2"]) == [{
        "type": "value_not_in_list", "message": "Value not in list", "details": "pick: 'z' not in ['a', 'b', 'c']",
        "extra_info": {"input_name": "pick", "input_config": [["a", "b", "c"], {}], "received_value": "z"}}]
    choice["1"]["inputs"].update(pick="a", big="nope")
    (error,) = failing(choice, "1", ["2"])
    assert error["details"] == "big: 'nope' not in (list of length 25)" and error["extra_info"]["input_config"] is None
    choice["1"]["inputs"].update(big="m1", mode="q")
    assert short(failing(choice, "1", ["2"]))[0][2] == "mode: 'q' not in ['x', 'y']"
    (error,) = failing({"1": const(1), "2": node("NeedsImage", image=["1", 0])}, "2", ["2"])
    assert (error["type"], error["message"], error["details"]) == (
        "return_type_mismatch", "Return type mismatch between linked nodes",
        "image, received_type(INT) mismatch input_type(IMAGE)")
    assert error["extra_info"]["received_type"] == "INT" and error["extra_info"]["linked_node"] == ["1", 0]
    for bad_link in (["1"], ["1", 3], ["1", "0"]):
        (error,) = failing({"1": const(1), "2": node("Output", value=bad_link)}, "2", ["2"])
        assert (error["type"], error["details"]) == ("bad_linked_input", "value"), bad_link
    (error,) = failing({"2": out("99")}, "2", ["2"])
    assert (error["type"], error["details"], error["extra_info"]["exception_type"]) == (
        "exception_during_validation", "'99'", "KeyError")

    # VALIDATE_INPUTS: a message, False, async, **kwargs (every input is its), and input_types (instead of
    # the link type check).
    custom = ("custom_validation_failed", "Custom validation failed for node")
    for value, details in ((13, "value - unlucky number"), (14, "value")):
        assert failing({"1": node("Validated", value=value, other=0), "2": out("1")}, "1", ["2"]) == [{
            "type": custom[0], "message": custom[1], "details": details, "extra_info": {"input_name": "value"}}]
    assert short(failing({"1": node("AsyncValidated", value=7), "2": out("1")}, "1", ["2"])) == [
        (*custom, "value - seven is async-invalid")]
    assert short(failing({"1": node("KwargsValidated", a=3.0, b=4.0), "2": out("1")}, "1", ["2"])) == [
        (*custom, "a - sum too big"), (*custom, "b - sum too big")]
    assert short(failing({"1": node("Text", text="x"), "2": node("TypeChecked", value=["1", 0]), "3": out("2")},
                         "2", ["3"])) == [(*custom, "input_types - value must be a number, got STRING")]
    # ...and the inputs it validates skip the built-in checks: 1000 > max 10 is accepted.
    status, body = post_prompt({"1": node("Validated", value=1000, other=0), "2": out("1")})
    assert status == 200 and body["node_errors"] == {}, body

    # Node code that raises while validating, reached through a link: "inner", blaming that node.
    (error,) = failing({"1": node("Validated", value=15, other=0), "2": out("1")}, "1", ["2"])
    assert (error["type"], error["message"], error["details"]) == (
        "exception_during_inner_validation", "Exception when validating inner node", "validator exploded")
    assert error["extra_info"]["input_name"] == "value" and error["extra_info"]["linked_node"] == ["1", 0]
    assert error["extra_info"]["exception_type"] == "RuntimeError"
    (error,) = failing({"1": node("BrokenInputTypes"), "2": out("1")}, "1", ["2"])
    assert (error["type"], error["details"]) == ("exception_during_inner_validation", "INPUT_TYPES is broken")

    # A cycle.
    status, body = post_prompt({"1": node("Add", a=["2", 0], b=1), "2": node("Add", a=["1", 0], b=1), "3": out("2")})
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation"
    assert {e["type"] for n in ("1", "2") for e in body["node_errors"][n]["errors"]} == {"dependency_cycle"}

    # One output invalid, another fine: 200 with the errors, and only the valid output runs.
    v = unique()

    async def body(client: Client):
        prompt = {"1": const(v), "2": out("1"), "3": node("Add", a=["1", 0]), "4": out("3")}
        run = await client.submit(prompt, allow_node_errors=True)
        errors = client.posted[-1]["node_errors"]
        assert list(errors) == ["3"] and errors["3"]["dependent_outputs"] == ["4"]
        assert errors["3"]["errors"][0]["type"] == "required_input_missing"
        assert run.ran == ["1", "2"] and run.history["prompt"][4] == ["2"]

    scenario(classic, body)


# ---------------------------------------------------------------------------------------------------------
# Cache policies, one server each (--cache-classic is covered above)
# ---------------------------------------------------------------------------------------------------------

def pair(value: int) -> dict:
    return {"1": const(value), "2": out("1")}


def test_cache_lru(servers):
    server = servers["lru"]  # --cache-lru 4: two prompts of two nodes fit

    async def body(client: Client):
        await client.submit(pair(1))
        await client.submit(pair(2))
        # Unlike classic, a prompt from two prompts back is still cached.
        back = await client.submit(pair(1))
        assert back.cached == ["1", "2"] and back.ran == []
        # Many prompts later it has been evicted (least recently used first).
        for value in range(3, 9):
            await client.submit(pair(value))
        evicted = await client.submit(pair(1))
        assert evicted.cached == [] and evicted.ran == ["1", "2"]
        # The latest prompt before it survives.
        assert (await client.submit(pair(8))).cached == ["1", "2"]

    scenario(server, body)


def test_cache_none(servers):
    server = servers["none"]

    async def body(client: Client):
        prompt = {"1": const(5), "2": const(5), "3": node("Add", a=["1", 0], b=["2", 0]), "4": out("3"),
                  "5": out("3")}
        for _ in range(2):
            run = await client.submit(prompt)
            # Nothing is reused across prompts...
            assert run.cached == []
            # ...but identical nodes of one prompt share one run: one Const, one Output call.
            assert run.logged("Const") == [["Const", 5]] and run.logged("Output") == [["Output", 10]]
            assert run.outputs == {"4": {"values": [10]}, "5": {"values": [10]}}
            # (the Const that did not run gets ComfyUI's `executed` with no output, as a cached node does)
            assert {k: o for k, o in run.executed.items() if o is not None} == {"4": {"values": [10]},
                                                                                 "5": {"values": [10]}}
            assert sorted(run.ran) in (["1", "3", "4"], ["2", "3", "4"], ["1", "3", "5"], ["2", "3", "5"])
        # Expansions and lazy inputs work with outputs freed as soon as they are read.
        run = await client.submit({"1": node("SumTo", n=4), "2": out("1"),
                                   "3": const(1), "4": const(2), "5": node("LazyMix", a=["3", 0], b=["4", 0], mix=0.5),
                                   "6": out("5")})
        assert run.outputs == {"2": {"values": [10]}, "6": {"values": [1.5]}}

    scenario(server, body)


def test_cache_ram(servers):
    roomy, pressed = servers["ram"], servers["ram_pressure"]

    async def with_room(client: Client):
        # Free RAM above the headroom: nothing is evicted, an older prompt is still cached.
        await client.submit(pair(1))
        await client.submit(pair(2))
        back = await client.submit(pair(1))
        assert back.cached == ["1", "2"]

    async def under_pressure(client: Client):
        # Below the headroom: earlier prompts' entries go; the current prompt's are kept.
        await client.submit(pair(1))
        same = await client.submit(pair(1))
        assert same.cached == ["1", "2"]
        run = await client.submit({"1": const(4), "2": out("1"), "3": out("1")})
        assert run.cached == [] and run.ran == ["1", "2"]  # in-prompt reuse still works
        back = await client.submit(pair(1))
        assert back.cached == [] and back.ran == ["1", "2"]

    scenario(roomy, with_room)
    scenario(pressed, under_pressure)
