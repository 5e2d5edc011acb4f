"""Typed events the engine emits while it runs a prompt.

The engine knows nothing about websockets or HTTP. It calls ``emit(event)`` with
one of these; the worker records the history-bearing ones in the store and the
websocket hub turns each into ComfyUI's ``{"type": ..., "data": ...}`` message
(or a binary frame) for the right client.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Event:
    """Base class. ``type`` is ComfyUI's message name; ``data()`` its payload."""

    type: ClassVar[str] = ""
    # Messages ComfyUI appends to history `status.messages`.
    in_history: ClassVar[bool] = False
    # Sent to every socket when the prompt has no client_id (otherwise to nobody).
    broadcast_without_client: ClassVar[bool] = False
    # Sent only when the prompt has a client_id (to that socket).
    client_only: ClassVar[bool] = True

    def data(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ExecutionStart(Event):
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)
    type: ClassVar[str] = "execution_start"
    in_history: ClassVar[bool] = True

    def data(self):
        return {"prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class ExecutionCached(Event):
    prompt_id: str
    nodes: list[str]
    timestamp: int = field(default_factory=now_ms)
    type: ClassVar[str] = "execution_cached"
    in_history: ClassVar[bool] = True

    def data(self):
        return {"nodes": list(self.nodes), "prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class Executing(Event):
    """A node starts running. ``node=None`` (end of prompt) is sent by the worker, not the engine."""

    prompt_id: str
    node: str | None
    display_node: str | None = None
    type: ClassVar[str] = "executing"

    def data(self):
        if self.node is None:
            return {"node": None, "prompt_id": self.prompt_id}
        return {"node": self.node, "display_node": self.display_node or self.node, "prompt_id": self.prompt_id}


@dataclass(frozen=True, slots=True)
class Executed(Event):
    prompt_id: str
    node: str
    output: dict[str, Any]
    display_node: str | None = None
    merge: bool = False
    type: ClassVar[str] = "executed"

    def data(self):
        d = {"node": self.node, "display_node": self.display_node or self.node, "output": self.output,
             "prompt_id": self.prompt_id}
        if self.merge:
            d["merge"] = True
        return d


@dataclass(frozen=True, slots=True)
class Progress(Event):
    prompt_id: str
    node: str
    value: float
    max: float
    type: ClassVar[str] = "progress"
    client_only: ClassVar[bool] = False

    def data(self):
        return {"value": self.value, "max": self.max, "prompt_id": self.prompt_id, "node": self.node}


@dataclass(frozen=True, slots=True)
class ProgressState(Event):
    """``nodes``: {node_id: {value, max, state, node_id, prompt_id, display_node_id, parent_node_id, real_node_id}}."""

    prompt_id: str
    nodes: dict[str, dict[str, Any]]
    type: ClassVar[str] = "progress_state"
    client_only: ClassVar[bool] = False

    def data(self):
        return {"prompt_id": self.prompt_id, "nodes": self.nodes}


@dataclass(frozen=True, slots=True)
class ExecutionSuccess(Event):
    prompt_id: str
    timestamp: int = field(default_factory=now_ms)
    type: ClassVar[str] = "execution_success"
    in_history: ClassVar[bool] = True

    def data(self):
        return {"prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class ExecutionError(Event):
    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    exception_message: str
    exception_type: str
    traceback: list[str]
    current_inputs: dict[str, Any]
    current_outputs: list[str]
    timestamp: int = field(default_factory=now_ms)
    type: ClassVar[str] = "execution_error"
    in_history: ClassVar[bool] = True

    def data(self):
        return {"prompt_id": self.prompt_id, "node_id": self.node_id, "node_type": self.node_type,
                "executed": list(self.executed), "exception_message": self.exception_message,
                "exception_type": self.exception_type, "traceback": list(self.traceback),
                "current_inputs": self.current_inputs, "current_outputs": list(self.current_outputs),
                "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class ExecutionInterrupted(Event):
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: list[str]
    timestamp: int = field(default_factory=now_ms)
    type: ClassVar[str] = "execution_interrupted"
    in_history: ClassVar[bool] = True
    broadcast_without_client: ClassVar[bool] = True

    def data(self):
        return {"prompt_id": self.prompt_id, "node_id": self.node_id, "node_type": self.node_type,
                "executed": list(self.executed), "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class PreviewImage(Event):
    """A preview during a node's run; becomes binary frame 1 or 4 (with metadata)."""

    prompt_id: str
    node_id: str
    image_format: str  # "JPEG" or "PNG"
    image: bytes
    display_node_id: str | None = None
    parent_node_id: str | None = None
    real_node_id: str | None = None
    type: ClassVar[str] = "preview"
    client_only: ClassVar[bool] = False

    def data(self):
        return {"node_id": self.node_id, "prompt_id": self.prompt_id,
                "display_node_id": self.display_node_id or self.node_id,
                "parent_node_id": self.parent_node_id, "real_node_id": self.real_node_id or self.node_id,
                "image_type": "image/jpeg" if self.image_format == "JPEG" else "image/png"}


@dataclass(frozen=True, slots=True)
class ProgressText(Event):
    """Free text a node shows under itself; becomes binary frame 3."""

    prompt_id: str
    node_id: str
    text: str
    type: ClassVar[str] = "progress_text"
    client_only: ClassVar[bool] = False

    def data(self):
        return {"node_id": self.node_id, "text": self.text, "prompt_id": self.prompt_id}


@dataclass(frozen=True, slots=True)
class CustomMessage(Event):
    """A message a node sends itself (custom nodes' ``PromptServer.instance.send_sync``)."""

    event_type: str
    payload: Any
    sid: str | None = None
    type: ClassVar[str] = "custom"
    client_only: ClassVar[bool] = False

    def data(self):
        return self.payload


Emit = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class ExecutionBlocked(ExecutionError):
    """An ``ExecutionBlocker`` with a message stopped a node; the prompt goes on.

    Sent as ``execution_error`` like ComfyUI, but (also like ComfyUI) without a
    timestamp, not recorded in history, and routed like progress (to every
    socket when the prompt has no client). Don't treat it as the prompt failing.
    """

    in_history: ClassVar[bool] = False
    client_only: ClassVar[bool] = False

    def data(self):
        d = ExecutionError.data(self)
        d.pop("timestamp", None)
        return d
