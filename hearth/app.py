"""App: builds and owns the store, engine, node registry, worker and websocket hub.

One App per server process (tests may run several in one process: nothing here is global).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import os
import secrets
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth import __version__
from hearth.config import Config
from hearth.engine import CachePolicy, Engine
from hearth.engine import events as ev
from hearth.nodes import context as node_context
from hearth.nodes.registry import NodeRegistry
from hearth.paths import Folders
from hearth.store.sqlite import Store, open_store
from hearth.worker import Worker, split_secrets

log = logging.getLogger(__name__)

COMFYUI_COMPAT_VERSION = "0.3.64"
UUID_LOWER_HEX = "0123456789abcdef-"
# The longest the worker's events wait before the loop sends them (see App._to_loop).
EVENT_WINDOW_S = 0.005


class LogBuffer(logging.Handler):
    """Keeps recent log lines for /internal/logs and pushes new ones to subscribed websockets."""

    def __init__(self, capacity: int = 1000):
        super().__init__()
        self.entries: deque[dict[str, str]] = deque(maxlen=capacity)
        self.on_entry = None  # set by the App once the loop runs

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {"t": _dt.datetime.fromtimestamp(record.created).isoformat(), "m": self.format(record) + "\n"}
        except Exception:
            return
        self.entries.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)


@dataclass
class SubmitResult:
    status: int
    body: dict[str, Any]


class App:
    def __init__(self, config: Config):
        self.config = config
        self.folders = Folders.from_config(config)
        self.folders.create()
        self.folders.clear_temp()
        self.api_token: str | None = None
        if not config.loopback_only:
            self.api_token = config.api_token or secrets.token_urlsafe(24)
        self.logs = LogBuffer()
        self.registry = NodeRegistry()
        self.custom_node_packs: list = []
        self._object_info_cache: dict[str, str] = {}
        self._object_info_signature: tuple | None = None
        from aiohttp import web

        # Routes custom nodes add (ComfyUI's PromptServer.instance.routes); mirrored under /api too.
        self.custom_routes = web.RouteTableDef()
        self.node_context = node_context.NodeContext(config=config, folders=self.folders, registry=self.registry)
        from hearth.runtime.memory import ModelManager  # no torch import until a model loads

        self.node_context.services["model_manager"] = ModelManager(config)
        from hearth.server.ws import Hub

        # Before the nodes load: packs may send messages while importing.
        self.hub = Hub(queue_remaining=self.queue_remaining, feature_flags=self.feature_flags)
        self._load_nodes()
        cache = config.cache
        self.engine = Engine(self.registry, CachePolicy(kind=cache.kind, lru_size=cache.lru_size,
                                                        ram_headroom_gb=cache.ram_headroom_gb))
        self.store: Store = open_store(config.database_url, self.folders.user, config.history_max_items)
        self.store.recover()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._outbox: deque = deque()
        self._drain_armed = False
        self._drain_timer: asyncio.TimerHandle | None = None
        self.event_window_s = EVENT_WINDOW_S
        self.worker = Worker(self.store, self.engine, self._publish_threadsafe, self._queue_changed_threadsafe,
                             self.node_context, flush=self.flush_to_loop)

    def _load_nodes(self) -> None:
        from hearth.nodes.builtin import register_builtin_nodes

        register_builtin_nodes(self.registry)
        cfg = self.config
        if cfg.disable_all_custom_nodes and not cfg.whitelist_custom_nodes:
            log.info("custom nodes disabled (--disable-all-custom-nodes)")
            return
        from hearth.compat import install_compat
        from hearth.nodes.custom import load_custom_nodes

        install_compat(self)
        whitelist = cfg.whitelist_custom_nodes if cfg.disable_all_custom_nodes else None
        with node_context.using(self.node_context):
            self.custom_node_packs = load_custom_nodes(self.folders.custom_nodes, self.registry, whitelist)

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Called on the HTTP loop once it runs."""
        self.loop = asyncio.get_running_loop()
        node_context.bind(self.node_context)
        self.logs.on_entry = self._log_entry_threadsafe
        self.worker.start()

    async def stop(self) -> None:
        self.logs.on_entry = None
        await asyncio.get_running_loop().run_in_executor(None, self.worker.stop)
        await self.hub.close_all()
        self.store.close()

    # --- thread hops -------------------------------------------------------------------------------
    def _to_loop(self, fn, *args) -> None:
        """Run fn(*args) on the HTTP loop, in call order, within event_window_s (or at the next flush).

        Each wake-up of the loop while the worker runs costs a pair of GIL hand-offs and a pass through
        asyncio; a trivial prompt emits a dozen events in a few hundred µs. So the first call arms one
        timer on the loop, and ``flush_to_loop`` (the worker calls it when a prompt ends) delivers at
        once: by design a prompt's events cost two wake-ups, and none waits longer than the window."""
        if self.loop is None or self.loop.is_closed():
            return
        self._outbox.append((fn, args))  # before reading the flag: see _drain_outbox
        if not self._drain_armed:
            self._drain_armed = True
            self._wake_loop(self._arm_drain)

    def on_loop(self, fn, *args) -> None:
        """Run fn(*args) on the HTTP loop after everything queued before it (the hub is not thread-safe):
        at once when called on the loop (the outbox drained first), through the outbox from other threads,
        and at once while the server is still starting (no client can be connected yet)."""
        if self.loop is None:
            fn(*args)
        elif self._on_loop_thread():
            self._drain_outbox()
            fn(*args)
        else:
            self._to_loop(fn, *args)

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def flush_to_loop(self) -> None:
        """Deliver everything queued by _to_loop now (from any thread)."""
        if self._outbox:
            self._wake_loop(self._drain_outbox)

    def _wake_loop(self, callback) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _arm_drain(self) -> None:
        # Even when the outbox was emptied meanwhile (a flush, or a drain that popped the call that armed
        # it): only a drain clears the flag, so skipping the timer would strand every later call.
        if self._drain_timer is None:
            self._drain_timer = self.loop.call_later(self.event_window_s, self._drain_outbox)

    def _drain_outbox(self) -> None:
        """On the loop. Clearing the flag before popping means a call that finds it clear has appended
        first, so its item is either popped here or arms a new drain."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        self._drain_armed = False
        outbox = self._outbox
        while outbox:
            fn, args = outbox.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("delivering %s failed", getattr(fn, "__name__", fn))

    def _publish_threadsafe(self, event: ev.Event, client_id: str | None) -> None:
        self._to_loop(self.hub.publish, event, client_id)

    def _queue_changed_threadsafe(self) -> None:
        # The count is taken now, on the worker thread: by the time the loop sends it the queue may
        # have moved on, and each status message must describe the change that caused it.
        self._to_loop(self.hub.broadcast_status, self.queue_remaining())

    def _log_entry_threadsafe(self, entry: dict) -> None:
        if self.hub.log_subscribers:
            self._to_loop(self._send_log_entry, entry)

    def _send_log_entry(self, entry: dict) -> None:
        for sid in list(self.hub.log_subscribers):
            self.hub.send_json("logs", {"entries": [entry], "size": None}, sid)

    # --- queue facts ------------------------------------------------------------------------------
    def queue_remaining(self) -> int:
        if not hasattr(self, "worker"):  # still starting: custom node packs are importing
            return 0
        return self.store.pending_count + (1 if self.worker.current is not None else 0)

    def feature_flags(self) -> dict:
        return {"supports_preview_metadata": True, "max_upload_size": self.config.max_upload_size}

    def object_info_json(self) -> str:
        """GET /object_info. Built-in nodes' entries only change with the files their lists show, so
        their JSON is kept until a listed folder changes; custom nodes' entries are built every time
        (their INPUT_TYPES may read anything)."""
        signature = self.folders.listing_signature()
        if signature != self._object_info_signature:
            self._object_info_cache.clear()
            self._object_info_signature = signature
        parts = []
        for name in self.registry.names():
            text = self._object_info_cache.get(name)
            if text is None:
                entry = self.registry.entry(name)
                try:
                    text = json.dumps(name) + ": " + json.dumps(self.registry.node_info(name), ensure_ascii=False)
                except Exception:  # one broken custom node must not break the UI's node list
                    log.exception("object_info failed for node %s", name)
                    continue
                if entry is not None and not entry.python_module.startswith("custom_nodes"):
                    self._object_info_cache[name] = text
            parts.append(text)
        return "{" + ", ".join(parts) + "}"

    def web_extensions(self) -> dict[str, "os.PathLike"]:
        """Custom node packs' WEB_DIRECTORY folders, served under /extensions/<pack>/."""
        return {p.name: p.web_directory for p in self.custom_node_packs if p.ok and p.web_directory}

    def extension_scripts(self) -> list[str]:
        """GET /extensions: the frontend's own scripts plus every .js of custom nodes' web folders."""
        from urllib.parse import quote

        from hearth.server.routes.frontend import frontend_root

        scripts: list[str] = []
        root = frontend_root(self)
        if root is not None and (root / "extensions").is_dir():
            scripts += sorted("/" + p.relative_to(root).as_posix() for p in (root / "extensions").rglob("*.js"))
        for name, directory in self.web_extensions().items():
            scripts += sorted(f"/extensions/{quote(name)}/{p.relative_to(directory).as_posix()}"
                              for p in Path(directory).rglob("*.js"))
        return scripts

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        """POST /free: drop cached node outputs and ask the model runtime to unload (between prompts)."""
        if free_memory:
            self.engine.cache_clear()
        manager = self.node_context.services.get("model_manager")
        if manager is not None and unload_models:
            manager.unload_all()
        elif manager is not None and free_memory:
            manager.release_freed()

    def system_stats(self) -> dict:
        import platform
        import sys
        from importlib import metadata

        import psutil

        def version(dist: str) -> str:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                return ""

        vm = psutil.virtual_memory()
        devices = [{"name": "cpu", "type": "cpu", "index": None, "vram_total": vm.total, "vram_free": vm.available,
                    "torch_vram_total": 0, "torch_vram_free": 0}]
        manager = self.node_context.services.get("model_manager")
        # Asking torch about devices would import it (~2 s, ~200 MiB): only once a model node has.
        if manager is not None and "torch" in sys.modules:
            devices = manager.device_stats()
        return {"system": {
            "os": os.name, "ram_total": vm.total, "ram_free": vm.available,
            "comfyui_version": COMFYUI_COMPAT_VERSION, "hearth_version": __version__,
            "required_frontend_version": version("comfyui-frontend-package"),
            "installed_templates_version": version("comfyui-workflow-templates"),
            "required_templates_version": version("comfyui-workflow-templates"),
            "python_version": sys.version, "pytorch_version": version("torch"), "embedded_python": False,
            "argv": ["main.py", *self.config.argv], "platform": platform.system().lower()},
            "devices": devices}

    # --- submit -----------------------------------------------------------------------------------
    def submit(self, body: Any) -> SubmitResult:
        """POST /prompt: validate, then queue durably. Rejected prompts consume no number."""
        def bad(type_: str, message: str, details: str = "") -> SubmitResult:
            return SubmitResult(400, {"error": {"type": type_, "message": message, "details": details,
                                                "extra_info": {}}, "node_errors": {}})

        if not isinstance(body, dict):
            return bad("invalid_prompt", "Request body must be a JSON object")
        if "prompt" not in body:
            return bad("no_prompt", "No prompt provided", "No prompt provided")
        prompt = body["prompt"]
        if not isinstance(prompt, dict):
            return bad("invalid_prompt", "The prompt must be a JSON object mapping node ids to nodes")
        prompt_id = body.get("prompt_id")
        if prompt_id is None:
            prompt_id = str(uuid.uuid4())
        elif not _is_canonical_uuid(prompt_id):
            return bad("invalid_prompt", "prompt_id must be a lowercase canonical UUID",
                       f"prompt_id: {str(prompt_id)[:100]!r}")
        elif self.store.exists(prompt_id):
            return bad("invalid_prompt", "A prompt with this prompt_id already exists", prompt_id)
        number = body.get("number")
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, (int, float, str)):
                return bad("invalid_prompt", "number must be a number")
            try:
                number = float(number)
            except (ValueError, OverflowError):  # OverflowError: an int beyond float range
                return bad("invalid_prompt", "number must be a number", str(number)[:100])
            if number != number or number in (float("inf"), float("-inf")):
                return bad("invalid_prompt", "number must be finite")
        extra_data = body.get("extra_data", {})
        if extra_data is None:
            extra_data = {}
        if not isinstance(extra_data, dict):
            return bad("invalid_prompt", "extra_data must be a JSON object")
        client_id = body.get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            return bad("invalid_prompt", "client_id must be a string")
        if client_id:
            extra_data = {**extra_data, "client_id": client_id}
        targets = body.get("partial_execution_targets")
        if targets is not None:
            if not isinstance(targets, list) or not all(isinstance(t, (str, int)) for t in targets):
                return bad("invalid_prompt", "partial_execution_targets must be a list of node ids")
            targets = [str(t) for t in targets]

        result = self.engine.validate(prompt, targets)
        if not result.ok:
            return SubmitResult(400, {"error": result.error, "node_errors": result.node_errors})
        storable, secret = split_secrets(extra_data)
        try:
            prompt_json = _dumps(prompt)
            extra_json = _dumps(storable)
        except (TypeError, ValueError) as exc:
            return bad("invalid_prompt", "The prompt cannot be stored", str(exc))
        if secret:
            self.worker.secrets[prompt_id] = secret
        number = self.store.enqueue(prompt_id, prompt_json, extra_json, _dumps(result.outputs), client_id or None,
                                    number=number, front=bool(body.get("front")))
        # Before waking the worker, so this status precedes its own; after the worker's events still
        # waiting in the outbox, which were emitted first. A node may queue prompts too (compat
        # prompt_queue.put), from the worker's thread.
        self.on_loop(self.hub.broadcast_status, self.queue_remaining())
        self.worker.wake()
        number_out: int | float = int(number) if number == int(number) and body.get("number") is None else number
        return SubmitResult(200, {"prompt_id": prompt_id, "number": number_out, "node_errors": result.node_errors})


def _is_canonical_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)
