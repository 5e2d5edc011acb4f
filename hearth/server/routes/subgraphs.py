"""/global_subgraphs: subgraph blueprints that custom node packs ship in ``<pack>/subgraphs/*.json``
(asked for by frontends from 1.30.3 on; answered as ComfyUI's subgraph manager does)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web

from hearth.server.http import Routes, hearth, json_error


def _entries(app) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for pack in app.custom_node_packs:
        if not pack.ok or not Path(pack.path).is_dir():
            continue
        folder = Path(pack.path) / "subgraphs"
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.json")):
            if not file.is_file():
                continue
            source = "custom_node"
            key = hashlib.sha256(f"{source}{file}".encode()).hexdigest()
            entries[key] = {"source": source, "name": file.stem, "path": str(file),
                            "info": {"node_pack": pack.name}}
    return entries


async def list_subgraphs(request: web.Request) -> web.Response:
    return web.json_response(_entries(hearth(request)))


async def get_subgraph(request: web.Request) -> web.Response:
    entry = _entries(hearth(request)).get(request.match_info["id"])
    if entry is None:
        return json_error(404, "not_found", "No such subgraph", request.match_info["id"][:100])
    try:
        data = Path(entry["path"]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return json_error(404, "not_found", "Subgraph file cannot be read", type(exc).__name__)
    return web.json_response({**entry, "data": data})


def add_routes(routes: Routes) -> None:
    routes.add("GET", "/global_subgraphs", list_subgraphs)
    routes.add("GET", "/global_subgraphs/{id}", get_subgraph)
