"""A small real-websocket test client (aiohttp) that records every frame."""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp


class WSRecorder:
    def __init__(self, url: str, client_id: str | None = None, feature_flags: dict | None = None):
        self.url = url + (f"?clientId={client_id}" if client_id else "")
        self.feature_flags = feature_flags
        self.messages: list[dict] = []
        self.binary: list[bytes] = []
        self.session: aiohttp.ClientSession | None = None
        self.ws = None
        self._reader: asyncio.Task | None = None
        self.closed = asyncio.Event()

    async def __aenter__(self) -> "WSRecorder":
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url)
        if self.feature_flags is not None:
            await self.ws.send_str(json.dumps({"type": "feature_flags", "data": self.feature_flags}))
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.binary.append(msg.data)
        self.closed.set()

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        if self._reader:
            self._reader.cancel()
        await self.session.close()

    @property
    def sid(self) -> str | None:
        for m in self.messages:
            if m["type"] == "status" and "sid" in m["data"]:
                return m["data"]["sid"]
        return None

    async def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        deadline = time.time() + timeout
        seen = 0
        while time.time() < deadline:
            while seen < len(self.messages):
                m = self.messages[seen]
                seen += 1
                if predicate(m):
                    return m
            await asyncio.sleep(0.005)
        raise TimeoutError(f"no matching message; got {[m['type'] for m in self.messages]}")

    async def wait_done(self, prompt_id: str, timeout: float = 30.0) -> dict:
        return await self.wait_for(lambda m: m["type"] == "executing" and m["data"].get("node") is None
                                   and m["data"].get("prompt_id") == prompt_id, timeout)

    def for_prompt(self, prompt_id: str) -> list[dict]:
        return [m for m in self.messages if m["data"].get("prompt_id") == prompt_id or m["type"] == "status"]


def summarize(messages: list[dict]) -> list[tuple]:
    """(type, key detail) per message, to compare with protocol.md's tables."""
    out = []
    for m in messages:
        t, d = m["type"], m["data"]
        if t == "status":
            out.append((t, d["status"]["exec_info"]["queue_remaining"]))
        elif t == "executing":
            out.append((t, d.get("node")))
        elif t == "execution_cached":
            out.append((t, tuple(d["nodes"])))
        elif t == "progress_state":
            out.append((t, tuple(sorted((k, v["state"]) for k, v in d["nodes"].items()))))
        elif t == "executed":
            out.append((t, d["node"]))
        else:
            out.append((t,))
    return out
