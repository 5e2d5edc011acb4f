"""Static web roots: the ComfyUI frontend, workflow templates, node docs, custom nodes' web folders.

Registered last: the frontend root is a catch-all prefix. No directory listings; aiohttp's static
handler refuses paths that resolve outside each root (symlinks are not followed out).
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from aiohttp import web

from hearth.server.http import Routes, hearth

log = logging.getLogger(__name__)


def package_dir(module: str, sub: str) -> Path | None:
    """<site-packages>/<module>/<sub> without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / sub
    return path if path.is_dir() else None


def frontend_root(app) -> Path | None:
    root = app.config.front_end_root
    if root is not None:
        return root if root.is_dir() else None
    return package_dir("comfyui_frontend_package", "static")


async def index(request: web.Request) -> web.StreamResponse:
    root = frontend_root(hearth(request))
    if root is None or not (root / "index.html").is_file():
        return web.Response(text="Hearth is running. The web frontend package (comfyui-frontend-package) "
                                 "is not installed.", content_type="text/plain")
    response = web.FileResponse(root / "index.html")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Pragma"] = "no-cache"
    response.headers["Expires"] = "0"
    return response


def add_routes(routes: Routes) -> None:
    routes.add("GET", "/", index, mirror=False)


def install_static(web_app: web.Application, app) -> None:
    """Mounts in ComfyUI's order: custom nodes' web dirs, templates, docs, then the frontend root."""
    for name, directory in app.web_extensions().items():
        web_app.router.add_static(f"/extensions/{name}", directory, follow_symlinks=False)
    templates = package_dir("comfyui_workflow_templates", "templates")
    if templates is not None:
        web_app.router.add_static("/templates", templates, follow_symlinks=False)
    docs = package_dir("comfyui_embedded_docs", "docs")
    if docs is not None:
        web_app.router.add_static("/docs", docs, follow_symlinks=False)
    root = frontend_root(app)
    if root is not None:
        log.info("web root: %s", root)
        web_app.router.add_static("/", root, follow_symlinks=False)
