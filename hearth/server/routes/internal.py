"""/internal/logs*: the server log for the UI's report dialog and terminal panel (no /api mirror)."""
from __future__ import annotations

from aiohttp import web

from hearth.server.http import BadRequest, Routes, hearth, read_json


async def get_logs(request: web.Request) -> web.Response:
    entries = hearth(request).logs.entries
    return web.json_response("".join(f"{e['t']} - {e['m']}" for e in list(entries)))


async def get_logs_raw(request: web.Request) -> web.Response:
    entries = list(hearth(request).logs.entries)
    return web.json_response({"entries": entries, "size": {"cols": 80, "rows": 24}})


async def subscribe_logs(request: web.Request) -> web.Response:
    app = hearth(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("clientId"), str):
        raise BadRequest("Body must be {\"clientId\": <sid>, \"enabled\": bool}")
    sid = body["clientId"]
    if body.get("enabled"):
        app.hub.log_subscribers.add(sid)
    else:
        app.hub.log_subscribers.discard(sid)
    return web.Response(status=200)


def add_routes(routes: Routes) -> None:
    routes.add("GET", "/internal/logs", get_logs, mirror=False)
    routes.add("GET", "/internal/logs/raw", get_logs_raw, mirror=False)
    routes.add("PATCH", "/internal/logs/subscribe", subscribe_logs, mirror=False)
