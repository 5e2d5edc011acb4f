"""The jobs API (ComfyUI's /api/jobs): one view over queue and history with statuses
pending | in_progress | completed | failed | cancelled."""
from __future__ import annotations

import json

from aiohttp import web

from hearth.server.http import BadRequest, Routes, hearth, json_error

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
PREVIEWABLE = ("images", "gifs", "video", "videos", "audio", "animated")
_MAX_PAGE = 2 ** 62


def _outputs_summary(result_json: str | None) -> tuple[int, int, dict | None]:
    if not result_json:
        return 0, 0, None
    try:
        outputs = json.loads(result_json)
    except ValueError:
        return 0, 0, None
    count = previewable = 0
    preview = None
    for node_id, ui in outputs.items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            if not isinstance(items, list):
                continue
            count += len(items)
            if key in PREVIEWABLE:
                for item in items:
                    if isinstance(item, dict) and "filename" in item:
                        previewable += 1
                        if preview is None:
                            preview = {**item, "nodeId": node_id, "mediaType": key}
    return count, previewable, preview


def _execution_error(status_json: str | None) -> dict | None:
    if not status_json:
        return None
    try:
        status = json.loads(status_json)
    except ValueError:
        return None
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            return data
    return None


def _workflow_id(extra_json: str) -> str | None:
    try:
        extra = json.loads(extra_json)
        wid = extra.get("extra_pnginfo", {}).get("workflow", {}).get("id")
    except (ValueError, AttributeError):
        return None
    return wid if isinstance(wid, str) else None


def job_item(row: dict) -> dict:
    count, previewable, preview = _outputs_summary(row["_result"])
    return {
        "id": row["id"], "status": row["status"], "priority": row["priority"],
        "create_time": row["create_time"], "execution_start_time": row["execution_start_time"],
        "execution_end_time": row["execution_end_time"], "execution_error": _execution_error(row["_status"]),
        "outputs_count": count, "previewable_outputs_count": previewable, "preview_output": preview,
        "workflow_id": _workflow_id(row["_extra"]),
    }


async def list_jobs(request: web.Request) -> web.Response:
    store = hearth(request).store
    q = request.query
    wanted = [s.strip() for s in q.get("status", "").split(",") if s.strip()]
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise BadRequest(f"Unknown job status {bad[0]!r}", details=f"statuses: {', '.join(STATUSES)}")
    sort_by = q.get("sort_by", "create_time")
    if sort_by not in ("create_time", "execution_duration"):
        raise BadRequest("sort_by must be create_time or execution_duration")
    order = q.get("sort_order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest("sort_order must be asc or desc")
    try:
        limit = int(q["limit"]) if q.get("limit") else None
        offset = int(q.get("offset") or 0)
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if (limit is not None and limit < 0) or offset < 0:
        raise BadRequest("limit and offset must not be negative")
    # SQLite integers are 64-bit: a larger limit or offset means "all" / "past the end"
    limit = None if limit is not None and limit > _MAX_PAGE else limit
    offset = min(offset, _MAX_PAGE)
    workflow_id = q.get("workflow_id")
    # filtered, sorted and paged by the store: only the page's rows are parsed
    rows, total = store.jobs_page(wanted or None, workflow_id or None, sort_by, order == "desc", limit, offset)
    page = [job_item(r) for r in rows]
    return web.json_response({
        "jobs": page, "total": total,
        "pagination": {"offset": offset, "limit": limit if limit is not None else total, "total": total,
                       "has_more": offset + len(page) < total},
    })


async def get_job(request: web.Request) -> web.Response:
    store = hearth(request).store
    row = store.job_row(request.match_info["job_id"])
    if row is None:
        return json_error(404, "not_found", "Job not found", request.match_info["job_id"][:100])
    item = job_item(row)
    item["outputs"] = json.loads(row["_result"]) if row["_result"] else {}
    item["execution_status"] = json.loads(row["_status"]) if row["_status"] else None
    item["workflow"] = {"prompt": json.loads(row["_prompt"]), "extra_data": json.loads(row["_extra"])}
    return web.json_response(item)


async def cancel_job(request: web.Request) -> web.Response:
    app = hearth(request)
    job_id = request.match_info["job_id"]
    row = app.store.job_row(job_id)
    if row is None:
        return json_error(404, "not_found", "Job not found", job_id[:100])
    if row["status"] == "pending":
        if app.store.cancel_pending(job_id):
            app.hub.broadcast_status()
            return web.json_response({"id": job_id, "status": "cancelled", "cancelled": "pending"})
        row = app.store.job_row(job_id) or row
    if row["status"] == "in_progress":
        app.worker.interrupt_prompt(job_id)
        return web.json_response({"id": job_id, "status": "in_progress", "cancelled": "running"})
    return web.json_response({"id": job_id, "status": row["status"], "cancelled": "terminal"}, status=409)


def add_routes(routes: Routes) -> None:
    # ComfyUI registers these directly under /api only.
    routes.add("GET", "/api/jobs", list_jobs, mirror=False)
    routes.add("GET", "/api/jobs/{job_id}", get_job, mirror=False)
    routes.add("POST", "/api/jobs/{job_id}/cancel", cancel_job, mirror=False)
