"""The aiohttp application: route registration with ComfyUI's /api mirror, middleware, helpers.

Every API route is registered at its bare path and under ``/api`` (ComfyUI clients use both);
``/internal/*`` is registered once, as ComfyUI does. Route modules expose ``add_routes(routes)``.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from hearth.app import App

log = logging.getLogger(__name__)

APP: web.AppKey["App"] = web.AppKey("hearth_app")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def hearth(request: web.Request) -> "App":
    return request.app[APP]


# --- errors and bodies ---------------------------------------------------------------------------
def error_object(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def json_error(status: int, type_: str, message: str, details: str = "", extra_info: dict | None = None,
               node_errors: dict | None = None) -> web.Response:
    """A ComfyUI-shaped error body: {"error": {type, message, details, extra_info}, "node_errors": {}}."""
    body = {"error": error_object(type_, message, details, extra_info), "node_errors": node_errors or {}}
    return web.json_response(body, status=status)


class BadRequest(Exception):
    """Raised by helpers; the error middleware turns it into a ComfyUI-shaped 4xx."""

    def __init__(self, message: str, status: int = 400, type_: str = "invalid_request", details: str = ""):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.details = details


async def read_json(request: web.Request, *, default: Any = ...) -> Any:
    """Parse the body as JSON whatever the Content-Type says (the UI sends text/plain, scripts form-encoded)."""
    raw = await request.read()
    if not raw.strip():
        if default is not ...:
            return default
        raise BadRequest("Request body is empty", type_="invalid_json")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Request body is not valid JSON", type_="invalid_json", details=str(exc)[:300]) from None
    except RecursionError:
        raise BadRequest("Request body is not valid JSON", type_="invalid_json",
                         details=f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    problem = json_problem(value, check_surrogates=_SURROGATE_ESCAPE.search(raw) is not None)
    if problem:
        raise BadRequest("Request body is not valid JSON", type_="invalid_json", details=problem)
    return value


# Deeper JSON than this is refused: everything downstream (validation, storage, json.dumps) recurses
# per level, and no ComfyUI workflow comes close.
MAX_JSON_DEPTH = 200
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_problem(value: Any, check_surrogates: bool = True) -> str:
    """Why a parsed JSON value is unsafe to process ('' if it is fine): too deep, or a string holding a
    lone UTF-16 surrogate (valid JSON text, but no UTF-8 encoding exists for it, so storing or
    answering it would fail later)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            for key, child in item.items():
                if check_surrogates and not _utf8_ok(key):
                    return "a key holds an unpaired UTF-16 surrogate"
                if isinstance(child, (dict, list)) or (check_surrogates and isinstance(child, str)):
                    stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            for child in item:
                if isinstance(child, (dict, list)) or (check_surrogates and isinstance(child, str)):
                    stack.append((child, depth + 1))
        elif isinstance(item, str) and not _utf8_ok(item):
            return "a string holds an unpaired UTF-16 surrogate"
    return ""


def _reject_constant(name: str):
    # NaN and ±Infinity are not JSON (browsers and most parsers refuse them); Python's parser takes them
    raise ValueError(f"{name} is not a JSON value")


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_text(text: str, status: int = 200) -> web.Response:
    """A response from JSON we already serialised (history/queue are assembled as text)."""
    return web.Response(text=text, status=status, content_type="application/json")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- route table -------------------------------------------------------------------------------
@dataclass
class Routes:
    """Collects routes; ``mirror`` ones are also registered under /api (ComfyUI's add_routes)."""

    entries: list[tuple[str, str, Handler, bool]] = field(default_factory=list)

    def add(self, method: str, path: str, handler: Handler, mirror: bool = True) -> None:
        self.entries.append((method, path, handler, mirror))

    def get(self, path: str, mirror: bool = True):
        return self._decorator("GET", path, mirror)

    def post(self, path: str, mirror: bool = True):
        return self._decorator("POST", path, mirror)

    def delete(self, path: str, mirror: bool = True):
        return self._decorator("DELETE", path, mirror)

    def patch(self, path: str, mirror: bool = True):
        return self._decorator("PATCH", path, mirror)

    def _decorator(self, method: str, path: str, mirror: bool):
        def wrap(handler: Handler) -> Handler:
            self.add(method, path, handler, mirror)
            return handler
        return wrap

    def install(self, app: web.Application) -> None:
        for method, path, handler, mirror in self.entries:
            paths = [path, "/api" + path] if mirror else [path]
            for p in paths:
                if method == "GET":  # GET routes answer HEAD too, as aiohttp's add_get does
                    app.router.add_get(p, handler)
                else:
                    app.router.add_route(method, p, handler)


# --- middleware --------------------------------------------------------------------------------
def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_name(host: str) -> bool:
    """A Host name that can only mean this machine: a loopback IP literal, localhost or *.localhost
    (RFC 6761; browsers resolve those themselves). "127.evil.example" is a DNS name, not loopback."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(literal).is_loopback
    except ValueError:
        return False


# OS errors that only a client-chosen path causes (a name or path too long, a link loop, a file
# used as a folder): answered 404, not 500.
_CLIENT_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EINVAL})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_error(exc.status, exc.type, str(exc), exc.details)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_error(413, "request_too_large", "Request body is larger than the server accepts",
                          exc.text or "")
    except web.HTTPException:
        raise
    except OSError as exc:
        if exc.errno not in _CLIENT_PATH_ERRNOS:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return json_error(500, "server_error", "Internal server error", type(exc).__name__)
        # a requested path the OS cannot even look up (aiohttp's static handlers raise these): no such file
        return json_error(404, "not_found", "No such file", errno.errorcode.get(exc.errno or 0, ""))
    except Exception as exc:  # a bug in Hearth: log it, answer JSON, keep serving
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "server_error", "Internal server error", type(exc).__name__)


def origin_middleware(cors_origin: str | None, loopback_only: bool = False):
    """Refuse cross-site requests to a loopback-bound server (drive-by POSTs) and, on a server that only
    listens on loopback, requests addressed to any other host name: a page on attacker.example whose
    name is re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with itself, so only its Host tells."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if cors_origin is not None:
            if request.method == "OPTIONS":
                response: web.StreamResponse = web.Response()
            else:
                response = await handler(request)
            response.headers["Access-Control-Allow-Origin"] = cors_origin
            response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS, PATCH"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, Comfy-User"
            response.headers["Access-Control-Allow-Credentials"] = "true"
            return response
        host = _host_name(request.headers.get("Host", ""))
        if loopback_only and host and not is_loopback_name(host):
            return json_error(403, "forbidden", "This server only answers requests addressed to a loopback name "
                              "(127.0.0.1, [::1], localhost)", f"Host: {host[:200]}")
        origin = request.headers.get("Origin")
        if origin is not None and is_loopback_name(host):
            if origin == "null":
                return json_error(403, "forbidden", "Cross-origin request refused", "Origin: null")
            if _origin_of(origin) != _request_origin(request):
                # another host, or the same host on another port (another local app): another origin
                return json_error(403, "forbidden", "Cross-origin request refused", f"Origin: {origin[:200]}")
        return await handler(request)

    return middleware


_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_of(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header; None if it is malformed."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)


def _request_origin(request: web.Request) -> tuple[str, str, int] | None:
    """(scheme, host, port) the client addressed, from the Host header."""
    return _origin_of(f"{request.scheme}://{request.headers.get('Host', '')}")


TOKEN_COOKIE = "hearth_token"
_SIGN_IN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hearth: sign in</title>
<meta name="viewport" content="width=device-width,initial-scale=1"></head>
<body style="font-family:sans-serif;max-width:28em;margin:4em auto">
<h1>Hearth</h1><p>This server needs its API token (shown in the server's log when it started, or the one
given with <code>--api-token</code>).</p>
<form method="get"><input type="password" name="token" autofocus required placeholder="API token"
style="width:100%;padding:.5em"><p><button type="submit">Sign in</button></p></form></body></html>"""


def token_middleware(token: str):
    """Off loopback every request needs the API token: ``Authorization: Bearer``, ``?token=`` or the cookie
    a browser gets by signing in. Compared in constant time (digests of equal length). Without a token a
    browser navigation gets a self-contained sign-in page (nothing else is served), anything else a 401."""
    expected = hashlib.sha256(token.encode()).digest()

    def valid(given: str) -> bool:
        digest = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(digest, expected)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        query_token = request.query.get("token")
        if auth.lower().startswith("bearer "):
            ok = valid(auth[7:].strip())
        elif query_token is not None:
            ok = valid(query_token)
        else:
            ok = valid(request.cookies.get(TOKEN_COOKIE, "")) if TOKEN_COOKIE in request.cookies else False
        if not ok:
            if request.method == "GET" and "text/html" in request.headers.get("Accept", "") \
                    and "Upgrade" not in request.headers:
                return web.Response(status=401, text=_SIGN_IN_PAGE, content_type="text/html",
                                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
            return json_error(401, "unauthorized", "A valid API token is required",
                              "send 'Authorization: Bearer <token>' or ?token=<token>")
        if query_token is not None and request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            # a browser signing in: keep the token in an HttpOnly same-site cookie and drop it from the URL
            query = request.rel_url.query.copy()
            query.popall("token")
            response = web.Response(status=303, headers={"Location": str(request.rel_url.with_query(query)),
                                                         "Cache-Control": "no-store"})
            response.set_cookie(TOKEN_COOKIE, query_token, httponly=True, samesite="Strict", path="/",
                                secure=request.secure)
            return response
        return await handler(request)

    return middleware


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif", ".svg",
                    ".ico", ".avif")


@web.middleware
async def cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ComfyUI's cache headers: scripts and index files revalidate, images cache for a day."""
    response = await handler(request)
    path = request.path
    if path.endswith((".js", ".css")) or path.rsplit("/", 1)[-1].startswith("index") and path.endswith(".json"):
        response.headers.setdefault("Cache-Control", "no-cache")
    elif path.lower().endswith(IMAGE_EXTENSIONS):
        if response.status == 404:
            response.headers.setdefault("Cache-Control", "public, max-age=3600")
        elif response.status == 200:
            response.headers.setdefault("Cache-Control", "public, max-age=86400")
    return response


def install_custom_routes(web_app: web.Application, app: "App") -> None:
    """Routes custom node packs registered on PromptServer.instance.routes, at path and under /api."""
    for route in app.custom_routes:
        if isinstance(route, web.RouteDef):
            for path in (route.path, "/api" + route.path):
                try:
                    web_app.router.add_route(route.method, path, route.handler, **route.kwargs)
                except (RuntimeError, ValueError) as exc:
                    log.error("custom route %s %s not added: %s", route.method, path, exc)
        elif isinstance(route, web.StaticDef):
            try:
                web_app.router.add_static(route.prefix, route.path, follow_symlinks=False)
            except (RuntimeError, ValueError) as exc:
                log.error("custom static route %s not added: %s", route.prefix, exc)


def create_web_app(app: "App") -> web.Application:
    from hearth.server.routes import ROUTE_MODULES

    cfg = app.config
    middlewares = [error_middleware, origin_middleware(cfg.cors_origin, cfg.loopback_only)]
    if app.api_token:
        middlewares.insert(0, token_middleware(app.api_token))
    middlewares.append(cache_middleware)
    web_app = web.Application(middlewares=middlewares, client_max_size=cfg.max_upload_size)
    web_app[APP] = app
    routes = Routes()
    for module in ROUTE_MODULES:
        module.add_routes(routes)
    routes.install(web_app)
    install_custom_routes(web_app, app)
    from hearth.server.routes import frontend

    frontend.install_static(web_app, app)
    return web_app
