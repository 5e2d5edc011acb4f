"""Access: cross-origin requests to a loopback server, the API token off loopback on every route (the
websocket and static files included), constant-time token comparison, and no secret in logs, /queue,
/history, the jobs API, websocket messages or the database."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from unittest import mock

import aiohttp
import pytest

from tests.conftest import Server, free_port
from tests.hardening.conftest import figure, image_prompt, submit

TOKEN = "tok-" + uuid.uuid4().hex


def _concrete(path: str) -> str:
    """An OpenAPI path template with plausible values filled in."""
    values = {"prompt_id": str(uuid.uuid4()), "node_class": "EmptyImage", "job_id": str(uuid.uuid4()),
              "directory_type": "output", "folder_name": "checkpoints", "folder": "checkpoints", "path_index": "0",
              "filename": "x.safetensors", "file": "comfy.settings.json", "dest": "moved.json", "id": "Comfy.Foo",
              "path": "index.html"}
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def all_routes() -> list[tuple[str, str]]:
    from hearth.server.openapi import build_document

    doc = build_document("test")
    routes = [(method.upper(), _concrete(path)) for path, ops in doc["paths"].items() for method in ops]
    # static mounts: the frontend root, templates, embedded docs, a custom node's web folder
    routes += [("GET", "/index.html"), ("GET", "/templates/index.json"), ("GET", "/extensions/accesspack/a.js"),
               ("GET", "/docs/"), ("GET", "/assets/does-not-exist.js"), ("GET", "/")]
    return routes


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("token")
    pack = base / "custom_nodes" / "accesspack"
    (pack / "web").mkdir(parents=True)
    (pack / "__init__.py").write_text('NODE_CLASS_MAPPINGS = {}\nWEB_DIRECTORY = "./web"\n')
    (pack / "web" / "a.js").write_text("// pack script\n")
    server = Server(base, ["--listen", "0.0.0.0", "--api-token", TOKEN], free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def test_token_required_on_every_route(token_server):
    s = token_server
    wrong = "tok-" + uuid.uuid4().hex  # same length as the real one
    checked = 0
    for method, path in all_routes():
        for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Cookie": f"hearth_token={wrong}"},
                        {"Authorization": "Basic Zm9vOmJhcg=="}):
            status, _, raw = s.request(method, path, b"{}" if method in ("POST", "PATCH") else None, headers)
            assert status == 401, (method, path, headers, status, raw[:200])
            checked += 1
        sep = "&" if "?" in path else "?"
        status, _, raw = s.request(method, f"{path}{sep}token={wrong}")
        assert status == 401, (method, path)
        # with the token the route is reached (whatever it answers then)
        status, _, raw = s.request(method, path, b"{}" if method in ("POST", "PATCH") else None,
                                   {"Authorization": f"Bearer {TOKEN}"})
        assert status != 401, (method, path, raw[:200])
    assert s.request("GET", "/extensions/accesspack/a.js", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    figure("access", token_checks=checked)


def test_websocket_needs_the_token(token_server):
    s = token_server

    async def scenario():
        async with aiohttp.ClientSession() as session:
            for url, headers in ((s.ws_url, {}), (f"{s.ws_url}?token=wrong", {}),
                                 (s.ws_url, {"Authorization": "Bearer wrong"}),
                                 (s.ws_url.replace("/ws", "/api/ws"), {})):
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await session.ws_connect(url, headers=headers)
                assert err.value.status == 401
            async with session.ws_connect(f"{s.ws_url}?token={TOKEN}") as ws:
                msg = await ws.receive_json(timeout=10)
                assert msg["type"] == "status"
            async with session.ws_connect(s.ws_url, headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "status"
    asyncio.run(scenario())


def test_browser_sign_in(token_server):
    """A browser gets only a self-contained sign-in page; ?token= sets an HttpOnly SameSite cookie and the
    UI, its API calls and its websocket then work with that cookie."""
    s = token_server
    html = {"Accept": "text/html,application/xhtml+xml"}
    status, headers, raw = s.request("GET", "/", headers=html)
    assert status == 401 and headers["Content-Type"].startswith("text/html")
    assert b"<form" in raw and b"src=" not in raw and b"href=" not in raw  # nothing else to fetch
    assert s.request("GET", "/index.html", headers=html)[0] == 401
    assert s.request("GET", "/templates/index.json", headers=html)[0] == 401

    async def scenario():
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(f"{s.url}/?token={TOKEN}", headers=html, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/"
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            async with session.get(f"{s.url}/", headers=html) as r:
                assert r.status == 200
            async with session.get(f"{s.url}/api/queue") as r:
                assert r.status == 200
            async with session.ws_connect(s.ws_url) as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "status"
    asyncio.run(scenario())


def test_token_comparison_is_constant_time():
    """Both sides are hashed to equal-length digests and compared with hmac.compare_digest."""
    from hearth.server import http

    calls = []
    real = http.hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    async def scenario():
        middleware = http.token_middleware("right-token")

        async def handler(request):
            return aiohttp.web.Response(text="ok")

        from aiohttp.test_utils import make_mocked_request

        for given in ("", "r", "right-toke", "right-token", "x" * 10_000):
            request = make_mocked_request("GET", "/queue", headers={"Authorization": f"Bearer {given}"})
            response = await middleware(request, handler)
            assert (response.status == 200) == (given == "right-token")

    with mock.patch.object(http.hmac, "compare_digest", spy):
        asyncio.run(scenario())
    assert calls and all(a == b == 32 for a, b in calls)


@pytest.fixture(scope="module")
def loopback_server(module_server):
    return module_server("origin", pack=True)


def test_cross_origin_refused_on_loopback(loopback_server):
    s = loopback_server
    host = f"127.0.0.1:{s.port}"
    foreign = ["http://evil.example", "null", "http://127.0.0.1.evil.example", f"http://127.0.0.1:{s.port + 1}",
               f"http://localhost:{free_port()}", f"https://127.0.0.1:{s.port}", "http://[::1]:1",
               "file://", "http://127.0.0.1:notaport", "garbage"]
    body = json.dumps({"prompt": image_prompt(1)}).encode()
    refused = 0
    for origin in foreign:
        for method, path in (("POST", "/prompt"), ("POST", "/api/prompt"), ("GET", "/queue"), ("GET", "/history"),
                             ("POST", "/interrupt"), ("POST", "/upload/image"), ("POST", "/userdata/x.json"),
                             ("GET", "/"), ("GET", "/index.html"), ("GET", "/ws"), ("POST", "/settings")):
            status, _, raw = s.request(method, path, body if method == "POST" else None, {"Origin": origin})
            assert status == 403, (origin, method, path, status)
            refused += 1
    assert s.get_json("/queue")["queue_pending"] == []  # nothing slipped in

    async def ws_refused():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await session.ws_connect(s.ws_url, headers={"Origin": "http://evil.example"})
            assert err.value.status == 403
    asyncio.run(ws_refused())
    # same origin (any loopback spelling of this host and port) and no Origin at all are fine
    for origin in (f"http://{host}", f"http://localhost:{s.port}"):
        headers = {"Origin": origin}
        if "localhost" in origin:
            headers["Host"] = f"localhost:{s.port}"
        assert s.request("GET", "/queue", None, headers)[0] == 200, origin
    assert s.request("GET", "/queue")[0] == 200
    figure("access", origin_refusals=refused)


def test_dns_rebinding_refused_on_loopback(loopback_server):
    """A loopback-only server answers only requests addressed to a loopback name: a rebound DNS name
    (same-origin with itself, so no Origin check can catch it) gets 403, the websocket too."""
    s = loopback_server
    for host in ("evil.example", "127.0.0.1.evil.example", "127.evil.example", "localhost.evil.example",
                 "0x7f000001.example", "10.0.0.1", "[::ffff:10.0.0.1]"):
        for method, path in (("GET", "/queue"), ("POST", "/prompt"), ("GET", "/"), ("GET", "/api/jobs")):
            body = json.dumps({"prompt": image_prompt(2)}).encode() if method == "POST" else None
            status, _, raw = s.request(method, path, body, {"Host": f"{host}:{s.port}"})
            assert status == 403, (host, method, path, status)
            assert json.loads(raw)["error"]["type"] == "forbidden"
    assert s.get_json("/queue")["queue_pending"] == []

    async def ws_refused():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await session.ws_connect(s.ws_url, headers={"Host": f"evil.example:{s.port}"})
            assert err.value.status == 403
    asyncio.run(ws_refused())
    for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", f"app.localhost:{s.port}", f"127.0.0.2:{s.port}",
                 f"[::1]:{s.port}"):
        assert s.request("GET", "/queue", None, {"Host": host})[0] == 200, host


def test_no_secret_in_logs_queue_history_jobs_or_websocket(loopback_server):
    s = loopback_server
    key, auth = "KEY-" + uuid.uuid4().hex, "AUTH-" + uuid.uuid4().hex
    extra = {"api_key_comfy_org": key, "auth_token_comfy_org": auth}

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(s.ws_url) as ws:
                first = await ws.receive_json(timeout=10)
                sid = first["data"]["sid"]
                loop = asyncio.get_running_loop()
                blocker = await loop.run_in_executor(None, lambda: submit(
                    s, image_prompt(3, middle={"class_type": "HardenSleep", "inputs": {"seconds": 1.0}})))
                failing = await loop.run_in_executor(None, lambda: submit(
                    s, image_prompt(4, middle={"class_type": "HardenSecretFail"}), client_id=sid, extra_data=extra))
                passing = await loop.run_in_executor(None, lambda: submit(
                    s, image_prompt(5), client_id=sid, extra_data=extra))
                pending_views = [s.request("GET", p)[2] for p in ("/queue", f"/api/jobs/{failing}", "/api/jobs")]
                frames = []
                deadline = time.time() + 60
                while time.time() < deadline:
                    msg = await ws.receive(timeout=60)
                    frames.append(msg.data if isinstance(msg.data, str) else repr(msg.data))
                    if '"node": null' in frames[-1] and passing in frames[-1]:
                        break
                return failing, passing, blocker, pending_views, frames

    failing, passing, blocker, pending_views, frames = asyncio.run(scenario())
    entry = s.wait_history(failing)
    assert entry["status"]["status_str"] == "error"
    err = entry["status"]["messages"][-1][1]
    assert "<redacted>" in err["exception_message"]  # the node echoed the key; the report does not
    s.wait_history(passing)
    time.sleep(0.3)
    views = pending_views + [s.request("GET", p)[2] for p in
                             ("/history", f"/history/{failing}", "/queue", f"/api/jobs/{failing}", "/api/jobs",
                              "/internal/logs", "/internal/logs/raw")]
    for secret in (key, auth):
        for raw in views:
            assert secret.encode() not in raw
        assert not any(secret in f for f in frames), "a websocket frame carries a secret"
        assert secret.encode() not in (s.base / "user" / "hearth.db").read_bytes()
        assert secret not in s.log(), "the server log carries a secret"
    figure("access", secret_views_checked=len(views) + len(frames) + 2)


def test_api_token_never_logged_or_shown(token_server):
    s = token_server
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, _, raw = s.request("POST", f"/prompt?token={TOKEN}", json.dumps({"prompt": image_prompt(9)}).encode())
    assert status == 200
    pid = json.loads(raw)["prompt_id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        if pid in json.loads(s.request("GET", f"/history/{pid}", None, headers)[2]):
            break
        time.sleep(0.05)
    for path in ("/history", "/queue", "/api/jobs", "/internal/logs", f"/api/jobs/{pid}"):
        assert TOKEN.encode() not in s.request("GET", path, None, headers)[2], path
    assert TOKEN not in s.log()
