"""Prompt, queue, history, interrupt, free, node info, system facts and the websocket."""
from __future__ import annotations

import os

from aiohttp import web

from hearth.server import openapi
from hearth.server.http import BadRequest, Routes, hearth, json_text, read_json

_MAX_PAGE = 1_000_000


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", details=f"{name}={raw[:50]!r}") from None
    if value < -1 or value > _MAX_PAGE:
        raise BadRequest(f"{name} is out of range", details=f"{name}={value}")
    return value


async def get_prompt(request: web.Request) -> web.Response:
    app = hearth(request)
    return web.json_response({"exec_info": {"queue_remaining": app.queue_remaining()}})


async def post_prompt(request: web.Request) -> web.Response:
    app = hearth(request)
    body = await read_json(request)
    if app.custom_node_packs:  # packs may rewrite prompts (PromptServer.add_on_prompt_handler)
        from hearth.compat import trigger_on_prompt

        body = trigger_on_prompt(app, body)
    result = app.submit(body)
    return web.json_response(result.body, status=result.status)


async def get_queue(request: web.Request) -> web.Response:
    store = hearth(request).store
    max_items = _int_query(request, "max_items", None)
    offset = _int_query(request, "offset", 0) or 0
    running = store.queue_items(running=True)
    pending = store.queue_items(running=False, max_items=max_items, offset=offset)
    text = ('{"queue_running": [' + ", ".join(i.as_item_json() for i in running) + '], "queue_pending": ['
            + ", ".join(i.as_item_json() for i in pending) + "]}")
    return json_text(text)


def _id_list(body: dict) -> list[str]:
    ids = body.get("delete", [])
    if not isinstance(ids, list):
        raise BadRequest("'delete' must be a list of prompt ids")
    return [i for i in ids if isinstance(i, str)]


async def post_queue(request: web.Request) -> web.Response:
    app = hearth(request)
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    changed = False
    if body.get("clear"):
        changed = app.store.clear_pending() > 0
    if "delete" in body:
        ids = _id_list(body)
        changed = bool(app.store.delete_pending(ids)) or changed
    if changed:
        app.hub.broadcast_status()
    return web.Response(status=200)


async def get_history(request: web.Request) -> web.Response:
    store = hearth(request).store
    max_items = _int_query(request, "max_items", None)
    offset = _int_query(request, "offset", -1)
    return json_text(store.history_json(max_items=max_items, offset=-1 if offset is None else offset))


async def get_history_entry(request: web.Request) -> web.Response:
    return json_text(hearth(request).store.history_entry_json(request.match_info["prompt_id"]))


async def post_history(request: web.Request) -> web.Response:
    store = hearth(request).store
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    if body.get("clear"):
        store.clear_history()
    if "delete" in body:
        store.delete_history(_id_list(body))
    return web.Response(status=200)


async def post_interrupt(request: web.Request) -> web.Response:
    app = hearth(request)
    body = await read_json(request, default={})
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    if prompt_id is not None and not isinstance(prompt_id, str):
        raise BadRequest("prompt_id must be a string")
    app.worker.interrupt_prompt(prompt_id)
    return web.Response(status=200)


async def post_free(request: web.Request) -> web.Response:
    app = hearth(request)
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    if body.get("unload_models") or body.get("free_memory"):
        app.request_free(unload_models=bool(body.get("unload_models")), free_memory=bool(body.get("free_memory")))
    return web.Response(status=200)


async def get_object_info(request: web.Request) -> web.Response:
    return json_text(hearth(request).object_info_json())


async def get_object_info_node(request: web.Request) -> web.Response:
    app = hearth(request)
    name = request.match_info["node_class"]
    if name not in app.registry:
        return web.json_response({})
    return web.json_response({name: app.registry.node_info(name)})


async def get_system_stats(request: web.Request) -> web.Response:
    return web.json_response(hearth(request).system_stats())


async def get_features(request: web.Request) -> web.Response:
    return web.json_response(hearth(request).feature_flags())


async def get_embeddings(request: web.Request) -> web.Response:
    names = hearth(request).folders.filenames("embeddings")
    return web.json_response([os.path.splitext(n)[0] for n in names])


async def get_extensions(request: web.Request) -> web.Response:
    return web.json_response(hearth(request).extension_scripts())


async def websocket(request: web.Request) -> web.StreamResponse:
    return await hearth(request).hub.handle(request)


def add_routes(routes: Routes) -> None:
    routes.add("GET", "/ws", websocket)
    routes.add("GET", "/prompt", get_prompt)
    routes.add("POST", "/prompt", post_prompt)
    routes.add("GET", "/queue", get_queue)
    routes.add("POST", "/queue", post_queue)
    routes.add("GET", "/history", get_history)
    routes.add("GET", "/history/{prompt_id}", get_history_entry)
    routes.add("POST", "/history", post_history)
    routes.add("POST", "/interrupt", post_interrupt)
    routes.add("POST", "/free", post_free)
    routes.add("GET", "/object_info", get_object_info)
    routes.add("GET", "/object_info/{node_class}", get_object_info_node)
    routes.add("GET", "/system_stats", get_system_stats)
    routes.add("GET", "/features", get_features)
    routes.add("GET", "/embeddings", get_embeddings)
    routes.add("GET", "/extensions", get_extensions)
    routes.add("GET", "/openapi.json", openapi.serve)  # Hearth's own OpenAPI document

