"""ComfyUI's ``server`` module: ``PromptServer.instance`` over the bound App.

    routes            the App's ``custom_routes`` (installed at their path and under /api)
    send_sync / send  messages through the App's websocket hub (engine events while a node runs)
    client_id         the client of the running prompt; ``last_node_id`` the node running now
    prompt_queue      the App's durable queue, seen as ComfyUI's PromptQueue
    add_on_prompt_handler  handlers the App runs on each POST /prompt body
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid  # noqa: F401  (packs use server.uuid)
from typing import Any

from aiohttp import web  # noqa: F401  (packs use server.web)

from hearth.compat import binding
from protocol import BinaryEventTypes  # noqa: F401  (re-exported, as ComfyUI's server does)

log = logging.getLogger("server")


class _PromptServerMeta(type):
    @property
    def instance(cls) -> "PromptServer":
        state = binding.maybe_state()
        if state is None:
            raise AttributeError("PromptServer.instance: no Hearth server is bound")
        if state.prompt_server is None:
            state.prompt_server = cls(_state=state)
        return state.prompt_server


class _Router:
    """Enough of aiohttp's router for packs that add routes to ``PromptServer.instance.app`` directly."""

    frozen = False

    def __init__(self, routes: web.RouteTableDef) -> None:
        self._routes = routes

    def add_static(self, prefix: str, path, **kwargs) -> None:
        self._routes.static(prefix, path, **kwargs)

    def add_route(self, method: str, path: str, handler, **kwargs) -> None:
        self._routes.route(method, path, **kwargs)(handler)

    def add_get(self, path: str, handler, **kwargs) -> None:
        self.add_route("GET", path, handler, **kwargs)

    def add_post(self, path: str, handler, **kwargs) -> None:
        self.add_route("POST", path, handler, **kwargs)

    def add_put(self, path: str, handler, **kwargs) -> None:
        self.add_route("PUT", path, handler, **kwargs)

    def add_patch(self, path: str, handler, **kwargs) -> None:
        self.add_route("PATCH", path, handler, **kwargs)

    def add_delete(self, path: str, handler, **kwargs) -> None:
        self.add_route("DELETE", path, handler, **kwargs)


class _WebApp:
    """``PromptServer.instance.app`` while packs load: what they add joins the App's custom routes."""

    def __init__(self, routes: web.RouteTableDef) -> None:
        self._routes = routes
        self.router = _Router(routes)

    def add_routes(self, route_defs) -> list:
        for route in route_defs:
            if isinstance(route, web.RouteDef):
                self._routes.route(route.method, route.path, **route.kwargs)(route.handler)
            elif isinstance(route, web.StaticDef):
                self._routes.static(route.prefix, route.path, **route.kwargs)
            else:  # another AbstractRouteDef: kept as is, registered by its own register()
                self._routes._items.append(route)
        return []


class _PromptQueue:
    """ComfyUI's PromptQueue as far as packs read it: the running item, the count, and put()."""

    def __init__(self, state: binding.CompatState) -> None:
        self._state = state

    @property
    def currently_running(self) -> dict[int, tuple]:
        current = self._state.app.worker.current
        if current is None:
            return {}
        return {0: (current.number, current.prompt_id, json.loads(current.prompt_json),
                    json.loads(current.extra_data_json), json.loads(current.outputs_json), {})}

    def get_tasks_remaining(self) -> int:
        return self._state.app.queue_remaining()

    def put(self, item) -> None:
        """Queue (number, prompt_id, prompt, extra_data, outputs_to_execute[, sensitive]) as POST /prompt would."""
        number, prompt_id, prompt, extra_data, _outputs = tuple(item)[:5]
        body = {"prompt": prompt, "prompt_id": prompt_id, "extra_data": extra_data or {}, "number": number}
        client_id = (extra_data or {}).get("client_id")
        if client_id:
            body["client_id"] = client_id
        result = self._state.app.submit(body)
        if result.status != 200:
            raise RuntimeError(f"prompt_queue.put: the prompt was rejected: {result.body.get('error')}")


class PromptServer(metaclass=_PromptServerMeta):
    """The facade custom nodes know as ``PromptServer.instance``; one per App."""

    def __init__(self, loop=None, _state: binding.CompatState | None = None) -> None:
        if _state is None:
            raise RuntimeError("Hearth creates the PromptServer itself; use PromptServer.instance")
        self._state = _state
        self.supports = ["custom_nodes_from_web"]
        self.app = _WebApp(_state.app.custom_routes)
        self.prompt_queue = _PromptQueue(_state)
        self.number = 0

    # --- what packs read -------------------------------------------------------------------------
    @property
    def routes(self) -> web.RouteTableDef:
        return self._state.app.custom_routes

    @property
    def loop(self):
        loop = self._state.app.loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        return loop

    @property
    def client_id(self) -> str | None:
        current = self._state.app.worker.current
        return current.client_id if current is not None else None

    @property
    def last_node_id(self) -> str | None:
        running = self._state.app.engine.running_node
        return running.display_node_id if running is not None else None

    @property
    def web_root(self) -> str | None:
        from hearth.server.routes.frontend import frontend_root

        root = frontend_root(self._state.app)
        return str(root) if root is not None else None

    def get_queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self._state.app.queue_remaining()}}

    # --- prompt handlers -------------------------------------------------------------------------
    def add_on_prompt_handler(self, handler) -> None:
        self._state.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data):
        from hearth.compat import trigger_on_prompt

        return trigger_on_prompt(self._state.app, json_data)

    # --- sending ---------------------------------------------------------------------------------
    def _hub(self):
        """The App's websocket hub, or None while the App is still being built (no client yet)."""
        return getattr(self._state.app, "hub", None)

    def _on_loop(self, fn, *args) -> None:
        self._state.app.on_loop(fn, *args)

    def send_sync(self, event, data, sid=None) -> None:
        if isinstance(event, int):
            frame = self._binary_frame(event, data)
            hub = self._hub()
            if frame is not None and hub is not None:
                self._on_loop(hub.send_to, sid, frame)
            return
        from hearth.engine import events
        from hearth.engine.progress import emit_event

        # Inside a node the message joins the engine's event stream (so it keeps its place among
        # `executing`/`executed`); elsewhere it goes straight to the hub.
        if not emit_event(events.CustomMessage(event, data, sid)):
            hub = self._hub()
            if hub is not None:  # None only while the server starts: nobody could receive it yet
                self._on_loop(hub.send_json, event, data, sid)

    def _binary_frame(self, event: int, data: Any) -> bytes | None:
        from hearth.engine.progress import encode_preview

        if event == BinaryEventTypes.UNENCODED_PREVIEW_IMAGE:
            image_format, image, max_size = (tuple(data) + (None, None, None))[:3]
            image_format = "PNG" if str(image_format).upper() == "PNG" else "JPEG"
            encoded = encode_preview(image_format, image, max_size)
            if encoded is None:
                return None
            return struct.pack(">II", BinaryEventTypes.PREVIEW_IMAGE, 2 if image_format == "PNG" else 1) + encoded
        if event == BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA:
            preview, metadata = data
            image_format, image, max_size = (tuple(preview) + (None, None, None))[:3]
            image_format = "PNG" if str(image_format).upper() == "PNG" else "JPEG"
            encoded = encode_preview(image_format, image, max_size)
            if encoded is None:
                return None
            meta = dict(metadata or {})
            meta["image_type"] = "image/png" if image_format == "PNG" else "image/jpeg"
            meta_bytes = json.dumps(meta).encode()
            return struct.pack(">II", event, len(meta_bytes)) + meta_bytes + encoded
        if isinstance(data, (bytes, bytearray, memoryview)):
            return struct.pack(">I", event) + bytes(data)
        raise TypeError(f"send_sync: binary event {event} needs bytes, not {type(data).__name__}")

    async def send(self, event, data, sid=None) -> None:
        self.send_sync(event, data, sid)

    async def send_json(self, event, data, sid=None) -> None:
        self.send_sync(event, data, sid)

    async def send_bytes(self, event, data, sid=None) -> None:
        self.send_sync(event, data, sid)

    def encode_bytes(self, event: int, data: bytes) -> bytearray:
        if not isinstance(event, int):
            raise RuntimeError(f"Binary event types must be integers, got {event}")
        return bytearray(struct.pack(">I", event) + bytes(data))

    def send_progress_text(self, text, node_id, sid=None) -> None:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        from hearth.engine.progress import current_execution, send_text

        if current_execution() is not None:
            send_text(str(node_id), text)
            return
        node = str(node_id).encode()
        self.send_sync(BinaryEventTypes.TEXT, struct.pack(">I", len(node)) + node + text.encode(), sid)

    def queue_updated(self) -> None:
        hub = self._hub()
        if hub is not None:
            self._on_loop(hub.broadcast_status)
