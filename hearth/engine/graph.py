"""Graph vocabulary shared by the engine and by nodes.

Custom nodes import these names (through the ``comfy_execution.graph`` and
``comfy_execution.graph_utils`` compatibility modules), so the public names and
method signatures follow ComfyUI's: ``is_link``, ``ExecutionBlocker``,
``GraphBuilder``, ``DynamicPrompt`` and ``get_input_info``.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterable


class DependencyCycleError(Exception):
    """The graph (possibly after an expansion) contains a cycle."""


class NodeInputError(Exception):
    """A node asked for an input that is not a link (``check_lazy_status``)."""


class NodeNotFoundError(Exception):
    """A node id that is neither in the prompt nor in an expansion."""


class DuplicateNodeError(Exception):
    """An expansion tried to add a node id that already exists."""


def is_link(value: Any) -> bool:
    """A link is ``[source_node_id: str, output_index: int|float]``, exactly."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], (int, float)))


class ExecutionBlocker:
    """Return this (as an output value) to stop everything downstream of it.

    ``message=None`` blocks silently; a message is reported to the client as an
    ``execution_error`` (the prompt still finishes). Nodes receiving a blocker
    as an input are not run; their outputs become blockers too, so blocking
    spreads down to (and stops) the output nodes.
    """

    def __init__(self, message: str | None):
        self.message = message

    def __repr__(self) -> str:
        return f"ExecutionBlocker({self.message!r})"


# ---------------------------------------------------------------------------
# GraphBuilder: the helper nodes use to build the graph they expand into.
# ---------------------------------------------------------------------------

@dataclass
class _PrefixState:
    root: str = ""
    call_index: int = 0
    graph_index: int = 0


# The engine sets this before each node call so that GraphBuilder() without an
# explicit prefix yields ComfyUI's deterministic ids "<node>.<call>.<graph>.".
# A ContextVar (not a class attribute) so concurrent async nodes don't clash.
_prefix_state: ContextVar[_PrefixState | None] = ContextVar("hearth_graph_prefix", default=None)


class GraphNode:
    """One node of a GraphBuilder graph (ComfyUI calls it ``Node``)."""

    def __init__(self, id: str, class_type: str, inputs: dict[str, Any]):
        self.id = id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id: str | None = None

    def out(self, index: int) -> list:
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def set_override_display_id(self, override_display_id: str) -> None:
        self.override_display_id = override_display_id

    def serialize(self) -> dict[str, Any]:
        data: dict[str, Any] = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            data["override_display_id"] = self.override_display_id
        return data


Node = GraphNode  # the name custom nodes import from graph_utils


class GraphBuilder:
    """Builds a prompt fragment (API format) for a node expansion.

    Ids get a prefix so that expansions are unique and deterministic: by
    default "<expanding node id>.<call index>.<graph index>." as ComfyUI does,
    which also lets the cache recognise the same expansion across prompts.
    """

    def __init__(self, prefix: str | None = None):
        self.prefix = GraphBuilder.alloc_prefix() if prefix is None else prefix
        self.nodes: dict[str, GraphNode] = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        _prefix_state.set(_PrefixState(str(prefix_root), call_index, graph_index))

    @classmethod
    def alloc_prefix(cls, root: str | None = None, call_index: int | None = None,
                     graph_index: int | None = None) -> str:
        state = _prefix_state.get()
        if state is None:
            state = _PrefixState()
            _prefix_state.set(state)
        root = state.root if root is None else root
        call_index = state.call_index if call_index is None else call_index
        graph_index = state.graph_index if graph_index is None else graph_index
        # Every allocation moves the counter on, so two builders in one call differ.
        state.graph_index += 1
        return f"{root}.{call_index}.{graph_index}."

    def node(self, class_type: str, id: str | None = None, **kwargs: Any) -> GraphNode:
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        full_id = self.prefix + id
        existing = self.nodes.get(full_id)
        if existing is not None:
            return existing
        node = GraphNode(full_id, class_type, kwargs)
        self.nodes[full_id] = node
        return node

    def lookup_node(self, id: str) -> GraphNode | None:
        return self.nodes.get(self.prefix + id)

    def finalize(self) -> dict[str, dict[str, Any]]:
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}

    def replace_node_output(self, node_id: str, index: int, new_value: Any) -> None:
        """Point every link to ``node_id``'s output ``index`` at ``new_value`` (None removes the input)."""
        full_id = self.prefix + node_id
        for node in self.nodes.values():
            for key, value in list(node.inputs.items()):
                if is_link(value) and value[0] == full_id and value[1] == index:
                    if new_value is None:
                        del node.inputs[key]
                    else:
                        node.inputs[key] = new_value

    def remove_node(self, id: str) -> None:
        del self.nodes[self.prefix + id]


def add_graph_prefix(graph: dict[str, Any], outputs: Iterable[Any], prefix: str) -> tuple[dict, tuple]:
    """Prefix every node id of ``graph`` (and links to them, in the graph and in ``outputs``)."""
    new_graph: dict[str, Any] = {}
    for node_id, node_info in graph.items():
        inputs = {}
        for name, value in node_info.get("inputs", {}).items():
            inputs[name] = [prefix + value[0], value[1]] if is_link(value) else value
        new_graph[prefix + node_id] = {"class_type": node_info["class_type"], "inputs": inputs}
    new_outputs = tuple([prefix + o[0], o[1]] if is_link(o) else o for o in outputs)
    return new_graph, new_outputs


# ---------------------------------------------------------------------------
# DynamicPrompt: the prompt plus the nodes expansions added while it runs.
# ---------------------------------------------------------------------------

class DynamicPrompt:
    """The prompt being executed, including ephemeral (expanded) nodes.

    Nodes receive it through the ``DYNPROMPT`` hidden input; the method names
    are ComfyUI's because custom nodes call them.
    """

    def __init__(self, original_prompt: dict[str, Any]):
        self.original_prompt = original_prompt
        self.ephemeral_prompt: dict[str, Any] = {}
        self.ephemeral_parents: dict[str, str] = {}
        self.ephemeral_display: dict[str, str] = {}

    def get_node(self, node_id: str) -> dict[str, Any]:
        node = self.ephemeral_prompt.get(node_id)
        if node is None:
            node = self.original_prompt.get(node_id)
            if node is None:
                raise NodeNotFoundError(f"Node {node_id} not found")
        return node

    def has_node(self, node_id: str) -> bool:
        return node_id in self.ephemeral_prompt or node_id in self.original_prompt

    def add_ephemeral_node(self, node_id: str, node_info: dict[str, Any], parent_id: str, display_id: str) -> None:
        self.ephemeral_prompt[node_id] = node_info
        self.ephemeral_parents[node_id] = parent_id
        self.ephemeral_display[node_id] = display_id

    def get_real_node_id(self, node_id: str) -> str:
        """The prompt node an ephemeral node descends from (itself for prompt nodes)."""
        while node_id in self.ephemeral_parents:
            node_id = self.ephemeral_parents[node_id]
        return node_id

    def get_parent_node_id(self, node_id: str) -> str | None:
        return self.ephemeral_parents.get(node_id)

    def get_display_node_id(self, node_id: str) -> str:
        display = self.ephemeral_display
        if node_id not in display:
            return node_id
        # override_display_id comes from node code: one naming its own node, or two naming each
        # other, must not hang the worker (ComfyUI's loop never ends there). Stop at the repeat.
        seen = {node_id}
        node_id = display[node_id]
        while node_id in display and node_id not in seen:
            seen.add(node_id)
            node_id = display[node_id]
        return node_id

    def all_node_ids(self) -> set[str]:
        return set(self.original_prompt) | set(self.ephemeral_prompt)

    def get_original_prompt(self) -> dict[str, Any]:
        return self.original_prompt


def get_input_info(class_def: type, input_name: str, valid_inputs: dict | None = None
                   ) -> tuple[Any, str, dict] | tuple[None, None, None]:
    """``(input_type, category, options)`` of a declared input, or ``(None, None, None)``.

    ``category`` is "required", "optional" or "hidden"; options is the dict
    after the type in the INPUT_TYPES tuple ({} when there is none).
    """
    if valid_inputs is None:
        valid_inputs = class_def.INPUT_TYPES()
    for category in ("required", "optional", "hidden"):
        section = valid_inputs.get(category)
        if isinstance(section, dict) and input_name in section:
            return split_input_spec(section[input_name], category)
    return None, None, None


def split_input_spec(spec: Any, category: str) -> tuple[Any, str, dict]:
    """Split an INPUT_TYPES entry into (type, category, options), tolerating odd shapes."""
    if isinstance(spec, (tuple, list)) and spec:
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        return spec[0], category, options
    # Hidden inputs are plain strings ("PROMPT"); anything else has no options.
    return spec, category, {}
