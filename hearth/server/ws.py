"""The websocket hub: one socket per client id, events routed as ComfyUI routes them.

Each client has a bounded send queue drained by its own task, so a slow or dead client never
delays execution or the other clients. While a client is behind, snapshot messages (progress,
progress_state, previews, status) replace their own older unsent copies (COALESCE_AFTER), so a burst
of progress cannot fill a queue; when a queue still overflows its client is disconnected (it will
reconnect with the same clientId and get a fresh ``status``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid
from collections import deque
from typing import Any, Callable

from aiohttp import WSMsgType, web

from hearth.engine import events as ev
from hearth.store import jsonsafe

log = logging.getLogger(__name__)

BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_FORMAT_CODES = {"JPEG": 1, "PNG": 2}


# Once this many frames wait for a client, a newer progress/progress_state/preview/status frame replaces
# the older one with the same key still waiting (it is dropped, the new one goes to the end): those are
# snapshots, so only intermediate states are lost. A client that keeps up sees every frame.
COALESCE_AFTER = 32
Key = tuple

# Frames waiting for a client are written together: one socket write per burst instead of one per
# message (a trivial prompt sends ~14 messages, mostly within a millisecond). Above this many bytes
# unsent in the transport the pump waits, so a slow reader's backlog stays in the coalescing queue.
WRITE_BATCH = 64
TRANSPORT_HIGH_WATER = 256 * 1024


def ws_frame(payload: str | bytes) -> bytes:
    """One unmasked, uncompressed, final websocket frame (RFC 6455 §5.2), as a server sends it."""
    if isinstance(payload, str):
        data, first = payload.encode(), 0x81
    else:
        data, first = payload, 0x82
    n = len(data)
    if n < 126:
        return struct.pack(">BB", first, n) + data
    if n < 65536:
        return struct.pack(">BBH", first, 126, n) + data
    return struct.pack(">BBQ", first, 127, n) + data


class Client:
    def __init__(self, sid: str, ws: web.WebSocketResponse, max_queue: int, transport=None):
        self.sid = sid
        self.ws = ws
        # Set when frames may be written straight to the socket: the socket negotiated no compression.
        self.transport = transport
        # entries are [frame, key, live]; superseded entries stay in place, dead, until compacted or popped
        self.queue: deque[list] = deque()
        self.waiting: dict[Key, list] = {}  # key -> its live entry in the queue
        self.live = 0
        self.max_queue = max_queue
        self.wakeup = asyncio.Event()
        self.supports_preview_metadata = False
        self.closed = False
        self.dropped = False

    def push(self, frame: str | bytes, key: Key | None = None) -> None:
        if self.closed:
            return
        if key is not None:
            older = self.waiting.get(key)
            if older is not None and self.live >= COALESCE_AFTER:
                older[2] = False
                self.live -= 1
                if len(self.queue) > 2 * self.live + COALESCE_AFTER:
                    self.queue = deque(e for e in self.queue if e[2])  # drop the dead entries
        if self.live >= self.max_queue:
            # Too slow to keep up even with coalescing: cut it loose rather than buffer without bound.
            self.dropped = True
            self.closed = True
            self.queue.clear()
            self.waiting.clear()
            self.wakeup.set()
            return
        entry = [frame, key, True]
        self.queue.append(entry)
        self.live += 1
        if key is not None:
            self.waiting[key] = entry
        self.wakeup.set()

    def _pop(self) -> str | bytes | None:
        while self.queue:
            entry = self.queue.popleft()
            if not entry[2]:
                continue
            self.live -= 1
            if entry[1] is not None and self.waiting.get(entry[1]) is entry:
                del self.waiting[entry[1]]
            return entry[0]
        return None

    async def pump(self) -> None:
        try:
            while not self.closed:
                await self.wakeup.wait()
                self.wakeup.clear()
                while not self.closed:
                    transport = self.transport
                    if transport is None:
                        frame = self._pop()
                        if frame is None:
                            break
                        if isinstance(frame, bytes):
                            await self.ws.send_bytes(frame)
                        else:
                            await self.ws.send_str(frame)
                        continue
                    if transport.is_closing() or self.ws.closed:
                        return
                    if transport.get_write_buffer_size() > TRANSPORT_HIGH_WATER:
                        await asyncio.sleep(0.005)
                        continue
                    frames = []
                    while len(frames) < WRITE_BATCH:
                        frame = self._pop()
                        if frame is None:
                            break
                        frames.append(ws_frame(frame))
                    if not frames:
                        break
                    transport.write(b"".join(frames))
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            if self.dropped and not self.ws.closed:
                await self.ws.close(code=1013, message=b"client too slow")


def message(type_: str, data: Any) -> str:
    # strict JSON (NaN -> null) that never fails: a node's odd ui value must not stop the message
    return jsonsafe.dumps({"type": type_, "data": data}, ensure_ascii=False, default=_unserializable)


def _unserializable(value: Any) -> str:
    return f"<{type(value).__name__} is not JSON-serializable>"


class Hub:
    def __init__(self, queue_remaining: Callable[[], int], feature_flags: Callable[[], dict],
                 max_queue: int = 4096):
        self.clients: dict[str, Client] = {}
        self._progress_prompt: str | None = None
        self._progress_pieces: dict[str, tuple[dict, str]] = {}
        self._queue_remaining = queue_remaining
        self._feature_flags = feature_flags
        self._max_queue = max_queue
        self.log_subscribers: set[str] = set()
        # The client id that owns the running prompt, and its last `executing` node (resent on reconnect).
        self.running_client: str | None = None
        self.last_executing: str | None = None

    # --- connections ---------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # No permessage-deflate: the messages are small, compressing each costs more CPU than it saves,
        # and uncompressed frames can be written in batches (see Client.pump).
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        old = self.clients.get(sid)
        if old is not None:  # a reconnect with the same clientId replaces the old socket
            old.closed = True
            old.wakeup.set()
            await old.ws.close(code=1000, message=b"replaced by a new connection")
        client = Client(sid, ws, self._max_queue, transport=request.transport)
        self.clients[sid] = client
        pump = asyncio.create_task(client.pump())
        client.push(message("status", {"status": self.status_payload(), "sid": sid}))
        if self.running_client == sid and self.last_executing:
            client.push(self.last_executing)
        first = True
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_client_text(client, msg.data, first)
                    first = False
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            client.closed = True
            client.wakeup.set()
            if self.clients.get(sid) is client:
                del self.clients[sid]
                self.log_subscribers.discard(sid)
            pump.cancel()
        return ws

    def _on_client_text(self, client: Client, text: str, first: bool) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("type") == "feature_flags" and first:
            data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
            client.supports_preview_metadata = bool(data.get("supports_preview_metadata"))
            client.push(message("feature_flags", self._feature_flags()))

    async def close_all(self) -> None:
        for client in list(self.clients.values()):
            client.closed = True
            client.wakeup.set()
            try:
                await client.ws.close(code=1001, message=b"server shutdown")
            except Exception:
                pass

    # --- sending -------------------------------------------------------------------------------
    def status_payload(self, remaining: int | None = None) -> dict:
        if remaining is None:
            remaining = self._queue_remaining()
        return {"exec_info": {"queue_remaining": remaining}}

    def broadcast_status(self, remaining: int | None = None) -> None:
        if self.clients:
            self.send_to(None, message("status", {"status": self.status_payload(remaining)}), key=("status",))

    def send_to(self, sid: str | None, frame: str | bytes, key: Key | None = None) -> None:
        """sid None = every socket (ComfyUI's send_sync with sid=None). ``key``: see COALESCE_AFTER."""
        if sid is None:
            for client in list(self.clients.values()):
                client.push(frame, key)
        else:
            client = self.clients.get(sid)
            if client is not None:
                client.push(frame, key)

    def send_json(self, type_: str, data: Any, sid: str | None) -> None:
        self.send_to(sid, message(type_, data))

    def publish(self, event: ev.Event, client_id: str | None) -> None:
        """Route one engine event for a prompt owned by ``client_id`` (None: posted without one)."""
        if isinstance(event, ev.CustomMessage):
            self.send_json(event.event_type, event.payload, event.sid)
            return
        if not self.clients:
            if isinstance(event, ev.Executing):
                self.last_executing = None
            return
        if isinstance(event, ev.PreviewImage):
            self._send_preview(event, client_id)
            return
        if isinstance(event, ev.ProgressText):
            node = event.node_id.encode()
            frame = struct.pack(">II", BINARY_TEXT, len(node)) + node + event.text.encode()
            self.send_to(client_id, frame)
            return
        key = _snapshot_key(event)
        if client_id is None:
            if event.client_only and not event.broadcast_without_client:
                return
            self.send_to(None, self._frame(event), key)
            return
        frame = self._frame(event)
        if isinstance(event, ev.Executing):
            self.running_client = client_id
            self.last_executing = frame if event.node is not None else None
        self.send_to(client_id, frame, key)

    def _frame(self, event: ev.Event) -> str:
        if isinstance(event, ev.ProgressState):
            return self._progress_state_frame(event)
        return message(event.type, event.data())

    def _progress_state_frame(self, event: ev.ProgressState) -> str:
        """The same text as message(), built from per-node pieces serialised once: each progress_state
        carries every node seen so far, so re-serialising all of them made a 1,000-node prompt cost
        ~165 MB of JSON encoding. The engine gives a changed node a fresh entry dict, so identity
        tells whether a cached piece is still right (the cache holds the entry, so its id is not reused)."""
        if self._progress_prompt != event.prompt_id:
            self._progress_pieces.clear()
            self._progress_prompt = event.prompt_id
        pieces = self._progress_pieces
        parts = []
        for node_id, entry in event.nodes.items():
            cached = pieces.get(node_id)
            if cached is None or cached[0] is not entry:
                text = (jsonsafe.dumps(node_id, ensure_ascii=False) + ": "
                        + jsonsafe.dumps(entry, ensure_ascii=False, default=_unserializable))
                cached = pieces[node_id] = (entry, text)
            parts.append(cached[1])
        return ('{"type": "progress_state", "data": {"prompt_id": '
                + jsonsafe.dumps(event.prompt_id, ensure_ascii=False) + ', "nodes": {' + ", ".join(parts) + "}}}")

    def _send_preview(self, event: ev.PreviewImage, client_id: str | None) -> None:
        targets = list(self.clients.values()) if client_id is None else [self.clients.get(client_id)]
        key = ("preview", event.prompt_id, event.node_id)
        plain = None
        with_meta = None
        for client in targets:
            if client is None:
                continue
            if client.supports_preview_metadata:
                if with_meta is None:
                    meta = json.dumps(event.data()).encode()
                    with_meta = (struct.pack(">II", BINARY_PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta
                                 + event.image)
                client.push(with_meta, key)
            else:
                if plain is None:
                    plain = struct.pack(">II", BINARY_PREVIEW_IMAGE,
                                        IMAGE_FORMAT_CODES.get(event.image_format, 1)) + event.image
                client.push(plain, key)


def _snapshot_key(event: ev.Event) -> Key | None:
    """Events that each carry a whole state (a newer one makes an older one moot), keyed by what they describe."""
    if isinstance(event, ev.ProgressState):
        return ("progress_state", event.prompt_id)
    if isinstance(event, ev.Progress):
        return ("progress", event.prompt_id, event.node)
    return None
