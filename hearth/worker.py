"""The local worker: claims the next prompt from the store, runs it on the engine, records the result.

It runs on its own thread (node functions block for seconds or minutes). Everything it tells the
outside goes through two callbacks the App supplies — ``publish(event, client_id)`` and
``queue_changed()`` — which hop onto the HTTP loop. A worker on another machine (Ray, later) is
another implementation of the same claim → execute → finish cycle against the same store.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
from typing import Callable

from hearth.engine import Engine, Interrupt
from hearth.engine import events as ev
from hearth.nodes import context as node_context
from hearth.store.sqlite import QueuedPrompt, Store

log = logging.getLogger(__name__)

# extra_data keys that carry credentials: used for the run, never stored or shown.
SECRET_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

Publish = Callable[[ev.Event, "str | None"], None]


class Worker:
    def __init__(self, store: Store, engine: Engine, publish: Publish, queue_changed: Callable[[], None],
                 node_ctx: node_context.NodeContext, flush: Callable[[], None]):
        self.store = store
        self.engine = engine
        self._publish = publish
        self._queue_changed = queue_changed
        self._flush = flush  # deliver what publish/queue_changed queued, now (at the end of each prompt)
        self._node_ctx = node_ctx
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.interrupt = Interrupt()
        self.current: QueuedPrompt | None = None
        self.secrets: dict[str, dict] = {}
        self.idle = threading.Event()
        self.idle.set()
        self._log_filter = SecretLogFilter()

    def start(self) -> None:
        for handler in logging.getLogger().handlers:  # node errors are logged; credentials must not be
            handler.addFilter(self._log_filter)
        self._thread = threading.Thread(target=self._run, name="hearth-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self.interrupt.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._log_filter)

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def interrupt_prompt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is ``prompt_id`` when one is given)."""
        current = self.current
        if current is None:
            return False
        if prompt_id is not None and current.prompt_id != prompt_id:
            return False
        self.interrupt.set()
        return True

    # --- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        node_context.bind(self._node_ctx)
        while True:
            with self._wake:
                while not self._stopping and self.store.pending_count <= 0:
                    self.idle.set()
                    self._wake.wait(timeout=1.0)
                if self._stopping:
                    return
            self.idle.clear()
            try:
                item = self.store.claim_next()
            except Exception:
                log.exception("could not claim the next prompt")
                continue
            if item is None:
                continue
            self.current = item
            self._queue_changed()
            try:
                self._execute(item)
            except Exception:  # the engine reports node failures itself; this is a bug in Hearth
                log.exception("prompt %s failed outside any node", item.prompt_id)
            finally:
                self.current = None

    def _execute(self, item: QueuedPrompt) -> None:
        client_id = item.client_id
        messages: list = []
        publish = self._publish

        secret = self.secrets.pop(item.prompt_id, {})
        hidden = [v for v in secret.values() if isinstance(v, str) and len(v) >= 4]

        def emit(event: ev.Event) -> None:
            if hidden:
                event = redact_event(event, hidden)
            if event.in_history:
                messages.append([event.type, event.data()])
            publish(event, client_id)

        extra_data = item.extra_data
        extra_data.update(secret)
        self.interrupt.clear()
        outcome = None
        self._log_filter.secrets = hidden
        try:
            outcome = self.engine.execute(item.prompt_id, item.prompt, extra_data, item.outputs_to_execute, emit,
                                          self.interrupt)
        except Exception as exc:
            log.exception("engine failure on prompt %s", item.prompt_id)
            emit(ev.ExecutionError(item.prompt_id, node_id=None, node_type=None, executed=[],  # type: ignore[arg-type]
                                   exception_message=str(exc), exception_type=type(exc).__name__, traceback=[],
                                   current_inputs={}, current_outputs=[]))
        finally:
            self._log_filter.secrets = []
        status = outcome.status if outcome is not None else "error"
        job_status = {"success": "completed", "error": "failed", "interrupted": "cancelled"}[status]
        outputs = outcome.outputs if outcome and status == "success" else {}
        if hidden:
            outputs = redact(outputs, hidden)
        try:
            self.store.finish(item, status_str="success" if status == "success" else "error",
                              completed=status == "success", messages=messages, outputs=outputs,
                              meta=outcome.meta if outcome and status == "success" else {}, job_status=job_status)
        except (TypeError, ValueError) as exc:
            # A node's ui held something JSON cannot carry: the prompt still leaves the queue, as failed.
            log.error("prompt %s: its results cannot be stored: %s", item.prompt_id, exc)
            failure = ev.ExecutionError(item.prompt_id, node_id=None, node_type=None,  # type: ignore[arg-type]
                                        executed=[], exception_message=f"The results cannot be stored: {exc}",
                                        exception_type=type(exc).__name__, traceback=[], current_inputs={},
                                        current_outputs=[])
            kept = [m for m in messages if m[0] != "execution_success"]
            self.store.finish(item, status_str="error", completed=False,
                              messages=kept + [[failure.type, failure.data()]], outputs={}, meta={},
                              job_status="failed")
            publish(failure, client_id)
        self.current = None
        self._queue_changed()
        publish(ev.Executing(item.prompt_id, None), client_id)
        self._flush()


def redact(value, secrets: list[str]):
    """``value`` with every occurrence of a secret string replaced (strings inside lists and dicts too)."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "<redacted>")
        return value
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets) for v in value]
    return value


def redact_event(event: ev.Event, secrets: list[str]) -> ev.Event:
    """Credentials reach nodes as hidden inputs; an error report (current_inputs, message, traceback) or a
    node's ui must not carry them into history or onto websockets."""
    if isinstance(event, ev.ExecutionError):
        return dataclasses.replace(event, exception_message=redact(event.exception_message, secrets),
                                   traceback=redact(event.traceback, secrets),
                                   current_inputs=redact(event.current_inputs, secrets))
    if isinstance(event, ev.Executed):
        return dataclasses.replace(event, output=redact(event.output, secrets))
    return event


class SecretLogFilter(logging.Filter):
    """Redacts the running prompt's credentials from log records (a node's error message may echo them)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if any(s in message or (record.exc_text and s in record.exc_text) for s in secrets):
            record.msg, record.args = redact(message, secrets), None
            record.exc_info = None  # the formatted (and redacted) text stays in exc_text
            if record.exc_text:
                record.exc_text = redact(record.exc_text, secrets)
        return True


def split_secrets(extra_data: dict) -> tuple[dict, dict]:
    """Separate credential keys from extra_data: (storable, secrets)."""
    storable = {k: v for k, v in extra_data.items() if k not in SECRET_KEYS}
    secrets = {k: v for k, v in extra_data.items() if k in SECRET_KEYS}
    return storable, secrets


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
