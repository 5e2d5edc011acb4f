"""A custom node pack that puts the engine tests' node kit into a real server.

tests/e2e/test_engine_server.py copies this folder into ``<base>/custom_nodes/``; the server
imports it like any third-party pack (the repository is on its PYTHONPATH). It exposes every node of
``tests.engine.enginekit.make_registry`` except the three the server already has under the same
names (EmptyImage, PreviewImage, SaveImage: the real ones stay), plus a few nodes the engine tests
do not need but an end-to-end test does:

  Rendezvous      async; finishes only if its partner runs at the same time (timing-free proof that
                  async nodes overlap)
  ReadFile        IS_CHANGED is the file's content: the same inputs re-run when the file changed
  ExpandPreviewer an output node that expands into the kit's Previewer (previews from an
                  ephemeral node carry its display/parent ids)
  ExpandDisplayLoop  expands into nodes whose override_display_id form a loop

The kit's nodes report some of what they do only by appending to a log list. Here that list also
sends each entry to every websocket as a ``kit_log`` message
``{"prompt_id", "node", "entry"}`` (through the engine's own CustomMessage event), so the tests see,
in order with the engine's messages, e.g. every check_lazy_status and IS_CHANGED call and its
arguments.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hearth.engine import GraphBuilder, current_execution
from hearth.engine.events import CustomMessage
from hearth.engine.progress import emit_event
from tests.engine.enginekit import make_registry

# The server's built-in nodes of the same name stay (the §5 sequences use the real ones).
SHADOWED = ("EmptyImage", "PreviewImage", "SaveImage")
LOG_LIMIT = 2000


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: jsonable(v) for k, v in value.items()}
    return repr(value)[:200]


class WebsocketLog(list):
    """The kit's log: kept (bounded) in memory as the kit expects, and sent as ``kit_log`` messages."""

    def append(self, entry: Any) -> None:
        super().append(entry)
        if len(self) > LOG_LIMIT:
            del self[: len(self) - LOG_LIMIT]
        execution = current_execution()
        if execution is not None:  # outside node code (validation) there is no prompt to attach it to
            emit_event(CustomMessage("kit_log", {"prompt_id": execution.prompt_id, "node": execution.node_id,
                                                 "entry": jsonable(entry)}))


LOG = WebsocketLog()
_kit = make_registry(LOG)

# prompt id -> name -> asyncio.Event (each prompt runs in its own event loop)
_RENDEZVOUS: dict[str, dict[str, asyncio.Event]] = {}


class Rendezvous:
    """Async: sets its own event, then waits (bounded) for its partner's. Two of them waiting for each
    other both finish only if the engine runs them at the same time; run one after the other, the first
    times out and the prompt fails."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",), "me": ("STRING", {"default": "a"}),
                             "partner": ("STRING", {"default": "b"}),
                             "timeout": ("FLOAT", {"default": 10.0, "min": 0.0, "max": 60.0})}}

    RETURN_TYPES = ("*",)
    FUNCTION = "run"
    CATEGORY = "testing"

    async def run(self, value, me, partner, timeout):
        events = _RENDEZVOUS.setdefault(current_execution().prompt_id, {})
        events.setdefault(me, asyncio.Event()).set()
        LOG.append(("rendezvous_arrived", me))
        try:
            await asyncio.wait_for(events.setdefault(partner, asyncio.Event()).wait(), timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(f"{me}: {partner} did not run while {me} was waiting") from None
        LOG.append(("rendezvous_met", me))
        return (f"{value}:{me}",)


class ReadFile:
    """Returns a text file's content; IS_CHANGED is that content, so an edit re-runs it (and what follows)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "testing"

    @classmethod
    def IS_CHANGED(cls, path):
        return Path(path).read_text()

    def run(self, path):
        text = Path(path).read_text()
        LOG.append(("ReadFile", text))
        return (text,)


class ExpandPreviewer:
    """Output node that expands into the kit's Previewer (an ephemeral output node)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -1000, "max": 1000})}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    def run(self, value):
        graph = GraphBuilder()
        graph.node("Previewer", value=value)
        return {"expand": graph.finalize()}


class ExpandDisplayLoop:
    """Expands into three Doubles whose override_display_id name each other (first <-> second) or the
    node itself (third): ids a node may choose, which must not hang the engine."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"default": 0, "min": -1000, "max": 1000})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, x):
        graph = GraphBuilder()
        first = graph.node("Double", x=x)
        second = graph.node("Double", x=first.out(0))
        third = graph.node("Double", x=second.out(0))
        first.set_override_display_id(second.id)
        second.set_override_display_id(first.id)
        third.set_override_display_id(third.id)
        return {"result": (third.out(0),), "expand": graph.finalize()}


NODE_CLASS_MAPPINGS = {name: _kit.get(name) for name in _kit.names() if name not in SHADOWED}
NODE_CLASS_MAPPINGS.update(Rendezvous=Rendezvous, ReadFile=ReadFile, ExpandPreviewer=ExpandPreviewer,
                           ExpandDisplayLoop=ExpandDisplayLoop)
