"""Which node runs next: a topological dissolve of the graph, as ComfyUI orders it.

Nodes enter ``pending`` in the order of a depth-first walk from each output
(last input explored first), and among the nodes whose inputs are ready the
pick follows ComfyUI's ``ux_friendly_pick_node``: an output or async node
first, then a node feeding an output, then one two steps from an output, else
the earliest pending. A node can return to the pending set with new
dependencies (lazy inputs, expansions) or wait on an external block (async).

ComfyUI rescans every pending node at each step (quadratic on 1,000-node
graphs); here the ready nodes are kept sorted by entry order, with the output
or async ones in a second list, so each pick looks at a handful of nodes.
"""
from __future__ import annotations

import asyncio
import bisect
from typing import Any, Callable

from hearth.engine.graph import DynamicPrompt, NodeInputError, is_link
from hearth.engine.nodeclass import ClassTable


class ExecutionList:
    def __init__(self, dynprompt: DynamicPrompt, classes: ClassTable, is_available: Callable[[str], bool]) -> None:
        self.dynprompt = dynprompt
        self.classes = classes
        self.is_available = is_available
        self.pending: dict[str, int] = {}                           # node -> entry sequence number
        self.block_count: dict[str, int] = {}                        # how many nodes/blocks it waits on
        self.blocking: dict[str, dict[str, dict[Any, bool]]] = {}   # node -> {blocked node: {socket: True}}
        self.external_blocks = 0
        self.staged: str | None = None
        self._seq = 0
        self._node_at: dict[int, str] = {}
        self._ready: list[int] = []           # sequence numbers of ready nodes, sorted
        self._ready_first: list[int] = []     # the ready output/async nodes among them, sorted
        self._urgent: dict[str, bool] = {}
        self._output: dict[str, bool] = {}
        self._unblocked: asyncio.Event | None = None

    # -- node facts ------------------------------------------------------------
    def _info(self, node_id: str):
        try:
            return self.classes.get(self.dynprompt.get_node(node_id).get("class_type"))
        except Exception:
            return None  # reported when the node itself runs

    def is_output(self, node_id: str) -> bool:
        flag = self._output.get(node_id)
        if flag is None:
            info = self._info(node_id)
            flag = self._output[node_id] = bool(info is not None and info.is_output)
        return flag

    def _is_urgent(self, node_id: str) -> bool:
        flag = self._urgent.get(node_id)
        if flag is None:
            info = self._info(node_id)
            flag = self._urgent[node_id] = bool(info is not None and (info.is_output or info.is_async))
        return flag

    # -- ready bookkeeping -------------------------------------------------------
    def _mark_ready(self, node_id: str) -> None:
        seq = self.pending[node_id]
        bisect.insort(self._ready, seq)
        if self._is_urgent(node_id):
            bisect.insort(self._ready_first, seq)

    def _unmark_ready(self, node_id: str) -> None:
        seq = self.pending[node_id]
        _remove_sorted(self._ready, seq)
        _remove_sorted(self._ready_first, seq)

    def _block(self, node_id: str) -> None:
        if self.block_count[node_id] == 0:
            self._unmark_ready(node_id)
        self.block_count[node_id] += 1

    def _unblock(self, node_id: str) -> None:
        self.block_count[node_id] -= 1
        if self.block_count[node_id] == 0 and node_id in self.pending:
            self._mark_ready(node_id)

    # -- building ------------------------------------------------------------------
    def add_node(self, node_id: str, include_lazy: bool = False, subgraph_nodes: set[str] | None = None) -> None:
        """Add a node and (depth first) every non-lazy source it needs that isn't available yet."""
        to_visit = [node_id]
        links: list[tuple[str, Any, str]] = []
        dp = self.dynprompt
        while to_visit:
            current = to_visit.pop()
            if current in self.pending:
                continue
            self._seq += 1
            self.pending[current] = self._seq
            self._node_at[self._seq] = current
            self.block_count[current] = 0
            self.blocking[current] = {}
            self._mark_ready(current)
            inputs = dp.get_node(current).get("inputs")
            if not isinstance(inputs, dict):
                continue
            info = self._info(current)
            lazy = info.lazy_inputs if info is not None else ()
            for name, value in inputs.items():
                if not is_link(value):
                    continue
                source = value[0]
                if subgraph_nodes is not None and source not in subgraph_nodes:
                    continue
                if not dp.has_node(source):
                    continue  # the consumer reports the dangling link when it runs
                if (include_lazy or name not in lazy) and not self.is_available(source):
                    to_visit.append(source)
                    links.append((source, value[1], current))
        for source, socket, target in links:
            self.add_strong_link(source, socket, target)

    def add_strong_link(self, from_node_id: str, from_socket: Any, to_node_id: str) -> None:
        """Make ``to_node_id`` wait for ``from_node_id`` (unless its outputs are already there)."""
        if not self.dynprompt.has_node(from_node_id) or self.is_available(from_node_id):
            return
        self.add_node(from_node_id)
        blocked = self.blocking[from_node_id]
        if to_node_id not in blocked:
            blocked[to_node_id] = {}
            self._block(to_node_id)
        blocked[to_node_id][from_socket] = True

    def make_input_strong_link(self, to_node_id: str, to_input: str) -> None:
        """A lazy input was requested by ``check_lazy_status``: wait for its source."""
        inputs = self.dynprompt.get_node(to_node_id).get("inputs") or {}
        if to_input not in inputs:
            raise NodeInputError(f"Node {to_node_id} says it needs input {to_input}, "
                                 "but there is no input to that node at all")
        value = inputs[to_input]
        if not is_link(value):
            raise NodeInputError(f"Node {to_node_id} says it needs input {to_input}, but that value is a constant")
        self.add_strong_link(value[0], value[1], to_node_id)

    def add_external_block(self, node_id: str) -> Callable[[], None]:
        """Block a pending node until the returned function is called (async node tasks)."""
        self.external_blocks += 1
        self._block(node_id)
        released = False

        def unblock() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.external_blocks -= 1
            self._unblock(node_id)
            if self._unblocked is not None:
                self._unblocked.set()
        return unblock

    # -- running ---------------------------------------------------------------------
    def is_empty(self) -> bool:
        return not self.pending

    def stage(self) -> tuple[str | None, bool]:
        """(node to run, False); (None, False) while only async work is outstanding; (None, True) for a cycle."""
        assert self.staged is None
        if self._ready:
            self.staged = self._pick()
            return self.staged, False
        if self.external_blocks > 0:
            return None, False
        return None, True

    async def wait_unblocked(self, timeout: float) -> None:
        if self._unblocked is None:
            self._unblocked = asyncio.Event()
        try:
            await asyncio.wait_for(self._unblocked.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._unblocked.clear()

    def _pick(self) -> str:
        if self._ready_first:
            return self._node_at[self._ready_first[0]]
        ready = [self._node_at[seq] for seq in self._ready]
        # A node feeding an output (the VAEDecode -> Preview case) …
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                if self.is_output(blocked):
                    return node_id
        # … or one two steps away from an output (VAELoader -> VAEDecode -> Preview).
        for node_id in ready:
            for blocked in self.blocking[node_id]:
                for blocked2 in self.blocking.get(blocked, ()):
                    if self.is_output(blocked2):
                        return node_id
        return ready[0]

    def unstage(self) -> None:
        """The staged node went back to waiting (lazy inputs, expansion, async)."""
        self.staged = None

    def complete(self) -> None:
        node_id = self.staged
        self.staged = None
        if node_id is None or node_id not in self.pending:
            return
        if self.block_count[node_id] == 0:
            self._unmark_ready(node_id)
        del self.pending[node_id]
        for blocked in self.blocking.pop(node_id):
            self._unblock(blocked)

    def nodes_in_cycle(self) -> list[str]:
        """Pending nodes left after repeatedly removing those nothing blocks (the cycle and what hangs off it)."""
        blocked_by: dict[str, set[str]] = {node_id: set() for node_id in self.pending}
        for source, targets in self.blocking.items():
            for target in targets:
                if target in blocked_by:
                    blocked_by[target].add(source)
        free = [n for n, sources in blocked_by.items() if not sources]
        while free:
            for node_id in free:
                del blocked_by[node_id]
            for sources in blocked_by.values():
                sources.difference_update(free)
            free = [n for n, sources in blocked_by.items() if not sources]
        return list(blocked_by)


def _remove_sorted(values: list[int], value: int) -> None:
    index = bisect.bisect_left(values, value)
    if index < len(values) and values[index] == value:
        del values[index]
