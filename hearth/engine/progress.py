"""What a running node can ask of the engine: progress, previews, text, interrupt.

Nodes take no extra arguments for this; the engine binds the node being run to
a ContextVar (``current_execution()``) around every call, including inside the
asyncio tasks of async nodes. Compatibility layers (``comfy.utils.ProgressBar``,
``PromptServer.instance.send_sync``, ``last_node_id``) build on the same calls.
"""
from __future__ import annotations

import io
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hearth.engine.events import Emit, Event, PreviewImage, Progress, ProgressState, ProgressText

if TYPE_CHECKING:
    from hearth.engine.graph import DynamicPrompt


class Interrupt:
    """A thread-safe flag the server sets to stop the running prompt."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()


class ProcessingInterrupted(InterruptedError):
    """Raised inside a node (by ``check_interrupt``/``report_progress``) when the prompt was interrupted."""

    def __init__(self, message: str = "Processing interrupted") -> None:
        super().__init__(message)


class ProgressTracker:
    """Per-prompt node states, published as ``progress_state`` events.

    Each node's entry is a fresh dict whenever it changes, and an event gets a
    shallow copy of the outer dict: the snapshots already handed to ``emit``
    never change under the consumer, and no entry is rebuilt needlessly.
    """

    def __init__(self, prompt_id: str, dynprompt: "DynamicPrompt", emit: Emit) -> None:
        self.prompt_id = prompt_id
        self.dynprompt = dynprompt
        self.emit = emit
        self._entries: dict[str, dict[str, Any]] = {}

    def _publish(self, node_id: str, state: str, value: Any, max_value: Any) -> None:
        previous = self._entries.get(node_id)
        if previous is not None:
            display, parent, real = previous["display_node_id"], previous["parent_node_id"], previous["real_node_id"]
        else:
            dp = self.dynprompt
            display, parent, real = (dp.get_display_node_id(node_id), dp.get_parent_node_id(node_id),
                                     dp.get_real_node_id(node_id))
        # Key order as ComfyUI sends it.
        self._entries[node_id] = {"value": value, "max": max_value, "state": state, "node_id": node_id,
                                  "prompt_id": self.prompt_id, "display_node_id": display,
                                  "parent_node_id": parent, "real_node_id": real}
        self.emit(ProgressState(self.prompt_id, dict(self._entries)))

    def start(self, node_id: str) -> None:
        self._publish(node_id, "running", 0.0, 1.0)

    def update(self, node_id: str, value: Any, max_value: Any) -> None:
        self._publish(node_id, "running", value, max_value)

    def finish(self, node_id: str) -> None:
        # A node never seen before (a cached output node) finishes at the
        # integer 1/1 ComfyUI reports; otherwise value jumps to its own max.
        previous = self._entries.get(node_id)
        max_value = previous["max"] if previous is not None else 1
        self._publish(node_id, "finished", max_value, max_value)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return dict(self._entries)


@dataclass(frozen=True, slots=True)
class RunState:
    """What every node call of one prompt shares."""

    prompt_id: str
    emit: Emit
    interrupt: Interrupt
    tracker: ProgressTracker


@dataclass(frozen=True, slots=True)
class NodeExecution:
    """The node whose code is running now (see ``current_execution()``)."""

    prompt_id: str
    node_id: str
    display_node_id: str
    parent_node_id: str | None
    real_node_id: str
    list_index: int | None
    run: RunState

    @property
    def unique_id(self) -> str:
        return self.node_id

    @property
    def emit(self) -> Emit:
        return self.run.emit

    @property
    def interrupt(self) -> Interrupt:
        return self.run.interrupt


_current: ContextVar[NodeExecution | None] = ContextVar("hearth_current_execution", default=None)


def current_execution() -> NodeExecution | None:
    """The node being executed in this thread/task, or None outside node code."""
    return _current.get()


def bind(execution: NodeExecution | None):
    """Bind ``execution`` as current; returns the token for ``unbind`` (engine use)."""
    return _current.set(execution)


def unbind(token) -> None:
    _current.reset(token)


def check_interrupt() -> None:
    """Raise ProcessingInterrupted if the running prompt was interrupted; long nodes call this often."""
    execution = _current.get()
    if execution is not None and execution.run.interrupt.is_set():
        raise ProcessingInterrupted()


def report_progress(value: float, max: float, preview: Any = None, node_id: str | None = None) -> None:
    """Report a node's progress (``progress`` + ``progress_state``), optionally with a preview.

    ``preview`` is ``(format, image, max_size)`` with format "JPEG"/"PNG" and
    image a PIL image or already-encoded bytes. Also an interrupt point, like
    ComfyUI's progress hook. Does nothing outside node code.
    """
    execution = _current.get()
    if execution is None:
        return
    check_interrupt()
    run = execution.run
    node_id = node_id or execution.node_id
    run.tracker.update(node_id, value, max)
    if preview is not None:
        event = _preview_event(run, node_id, preview)
        if event is not None:
            run.emit(event)
    run.emit(Progress(run.prompt_id, node_id, value, max))


def send_text(node_id: str | None, text: str) -> None:
    """Show free text under a node in the UI (binary text frame)."""
    execution = _current.get()
    if execution is None:
        return
    execution.run.emit(ProgressText(execution.prompt_id, node_id or execution.node_id, str(text)))


def emit_event(event: Event) -> bool:
    """Emit any event on behalf of the running node; False when no prompt is running here."""
    execution = _current.get()
    if execution is None:
        return False
    execution.run.emit(event)
    return True


def _preview_event(run: RunState, node_id: str, preview: Any) -> PreviewImage | None:
    try:
        image_format, image, max_size = (tuple(preview) + (None, None, None))[:3]
    except TypeError:
        return None
    image_format = "PNG" if str(image_format).upper() == "PNG" else "JPEG"
    data = encode_preview(image_format, image, max_size)
    if data is None:
        return None
    dp = run.tracker.dynprompt
    return PreviewImage(run.prompt_id, node_id, image_format, data,
                        display_node_id=dp.get_display_node_id(node_id),
                        parent_node_id=dp.get_parent_node_id(node_id),
                        real_node_id=dp.get_real_node_id(node_id))


def encode_preview(image_format: str, image: Any, max_size: int | None) -> bytes | None:
    """Encode a preview image (PIL) to JPEG/PNG bytes, shrunk to fit ``max_size``."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if not hasattr(image, "save"):
        return None
    if max_size:
        from PIL import Image, ImageOps  # only nodes with previews pay for PIL

        image = ImageOps.contain(image, (int(max_size), int(max_size)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if image_format == "JPEG" and getattr(image, "mode", "RGB") not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(buffer, format=image_format, quality=95, compress_level=1)
    return buffer.getvalue()
