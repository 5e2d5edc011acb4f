"""The context node classes see while Hearth runs them.

ComfyUI's node protocol has no place to pass the server in: ``INPUT_TYPES`` is a
classmethod with no arguments and nodes read folders through ``folder_paths``.
Rather than module-level globals, the App binds a ``NodeContext`` to the threads
and tasks it owns (the HTTP loop and the execution worker) through a ContextVar;
nodes ask ``current()`` for it.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from hearth.config import Config
    from hearth.paths import Folders
    from hearth.nodes.registry import NodeRegistry


@dataclass
class NodeContext:
    config: "Config"
    folders: "Folders"
    registry: "NodeRegistry"
    # Services that later layers attach (model manager, server facade for custom nodes …).
    services: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[NodeContext | None] = ContextVar("hearth_node_context", default=None)


def current() -> NodeContext:
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("no Hearth node context is bound to this thread")
    return ctx


def maybe_current() -> NodeContext | None:
    return _current.get()


def bind(ctx: NodeContext) -> None:
    """Bind for the rest of this thread/task (used once at thread start)."""
    _current.set(ctx)


@contextlib.contextmanager
def using(ctx: NodeContext) -> Iterator[NodeContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
