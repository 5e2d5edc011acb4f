"""Users, /userdata, /v2/userdata and /settings against real servers (single- and multi-user).

Hostile requests assert a 4xx status and that nothing outside the user's folder was read into the
response or changed: a sentinel folder sits next to the base directory and links inside the user's
folder point into it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import Server

SECRET = b"TOP-SECRET-SENTINEL"
PREFIXES = ("", "/api")
TEXT_PLAIN = {"Content-Type": "text/plain;charset=UTF-8"}
ID_RE = re.compile(r"^[a-zA-Z0-9_-]+_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if any(rel_dir == s or rel_dir.startswith(s + os.sep) for s in skip):
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel in skip or any(rel.startswith(s + "-") for s in skip if s.endswith(".db")):
                continue
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isfile(full):
                out[rel] = ("file", hashlib.sha256(Path(full).read_bytes()).hexdigest())
            else:
                out[rel] = ("dir",)
    return out


def u(path: str) -> str:
    """A user-file path as the UI sends it: one URL component, '/' as %2F."""
    return quote(path, safe="")


class Env:
    def __init__(self, root: Path, server: Server):
        self.root = root
        self.server = server
        self.base = server.base
        self.outside = root / "outside"
        self.home = self.base / "user" / "default"

    def req(self, method, path, body=None, headers=None):
        return self.server.request(method, path, body, headers)

    def json(self, method, path, body=None, headers=None):
        status, _, raw = self.server.request(method, path, body, headers)
        return status, (json.loads(raw) if raw else None)


def _outside(root: Path) -> Path:
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "dir" / "secret.json").write_bytes(SECRET)
    return outside


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("userdata")
    outside = _outside(root)
    server = Server(root / "base", ["--max-upload-size", "1"]).start()
    e = Env(root, server)
    e.fresh_users = e.json("GET", "/users")
    e.home.mkdir(parents=True, exist_ok=True)
    os.symlink(outside / "secret.txt", e.home / "evil.json")
    os.symlink(outside / "dir", e.home / "evildir")
    os.symlink(outside / "secret.txt", e.home / "comfy.templates.json")
    try:
        yield e
    finally:
        server.stop()


SKIP_WRITABLE = ("base/user/default", "base/server.log", "base/user/hearth.db")


@pytest.fixture(autouse=True)
def guard(request):
    """Nothing outside the user's folder changes in any test; the sentinel stays intact."""
    if "env" not in request.fixturenames:
        yield
        return
    e = request.getfixturevalue("env")
    before = snapshot(e.root, SKIP_WRITABLE)
    yield
    assert (e.outside / "secret.txt").read_bytes() == SECRET
    assert snapshot(e.root, SKIP_WRITABLE) == before


@pytest.fixture
def frozen(env):
    """For hostile requests: the user's own folder must not change either."""
    before = snapshot(env.home)
    yield
    assert snapshot(env.home) == before


# --- users -----------------------------------------------------------------------------------------
def test_users_single_user(env):
    assert env.fresh_users == (200, {"storage": "server", "migrated": False})  # nothing stored yet
    for prefix in PREFIXES:
        assert env.json("GET", prefix + "/users") == (200, {"storage": "server", "migrated": True})


def test_single_user_ignores_comfy_user_header(env):
    for user in ("someone", "", "../../etc", "default"):
        status, _ = env.json("POST", "/settings/header.test", json.dumps(user), {"Comfy-User": user})
        assert status == 200
        assert env.json("GET", "/settings/header.test", headers={"Comfy-User": "x"}) == (200, user)
    assert not (env.base / "user" / "someone").exists()


# --- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", PREFIXES)
def test_settings_roundtrip(env, prefix):
    path = env.home / "comfy.settings.json"
    status, headers, body = env.req("POST", prefix + "/settings/Comfy.InstalledVersion", '"1.27.10"', TEXT_PLAIN)
    assert status == 200 and body == b""
    status, _, body = env.req("POST", prefix + "/settings/Comfy.TutorialCompleted", "true", TEXT_PLAIN)
    assert status == 200 and body == b""
    status, settings = env.json("GET", prefix + "/settings")
    assert status == 200
    assert settings["Comfy.InstalledVersion"] == "1.27.10" and settings["Comfy.TutorialCompleted"] is True
    assert env.json("GET", prefix + "/settings/Comfy.InstalledVersion") == (200, "1.27.10")
    assert env.json("GET", prefix + "/settings/Not.There") == (200, None)
    # merge, not replace
    assert env.req("POST", prefix + "/settings", {"A.B": 1, "Comfy.TutorialCompleted": False})[0] == 200
    status, settings = env.json("GET", prefix + "/settings")
    assert settings["A.B"] == 1 and settings["Comfy.TutorialCompleted"] is False
    assert settings["Comfy.InstalledVersion"] == "1.27.10"
    on_disk = path.read_text()
    assert json.loads(on_disk) == settings and "\n    " in on_disk  # indented like ComfyUI's
    assert not [p for p in env.home.iterdir() if p.name.startswith(".hearth-")]


def test_setting_values_of_every_json_type(env):
    for i, value in enumerate([None, 0, -1.5, "", "text", [], [1, {"a": None}], {"nested": {"x": [True]}}]):
        key = f"Value.{i}"
        headers = {"Content-Type": "application/json"}
        assert env.req("POST", f"/api/settings/{key}", json.dumps(value), headers)[0] == 200
        assert env.json("GET", f"/api/settings/{key}") == (200, value)


def test_setting_ids_are_keys_not_paths(env):
    for key in ("a/b", "../../escape", "..\\escape", "/etc/passwd", "C:x", "x" * 300):
        assert env.req("POST", f"/settings/{u(key)}", "1", TEXT_PLAIN)[0] == 200
        assert env.json("GET", f"/settings/{u(key)}") == (200, 1)
    assert not list(env.root.rglob("*escape*"))


@pytest.mark.parametrize("path,body", [
    ("/settings", "[1, 2]"),
    ("/settings", "\"a string\""),
    ("/settings", "null"),
    ("/settings", "not json"),
    ("/settings", ""),
    ("/settings/Some.Id", ""),
    ("/settings/Some.Id", "{broken"),
    ("/settings/Some.Id", "\xff"),
])
def test_settings_bad_bodies(env, path, body):
    settings_file = env.home / "comfy.settings.json"
    before = settings_file.read_bytes() if settings_file.exists() else None
    for prefix in PREFIXES:
        status, _, _ = env.req("POST", prefix + path, body.encode("latin-1"), TEXT_PLAIN)
        assert status == 400, (path, body)
    after = settings_file.read_bytes() if settings_file.exists() else None
    assert after == before


def test_corrupt_settings_file_reads_as_empty(env):
    path = env.home / "comfy.settings.json"
    backup = env.home / "comfy.settings.json.corrupt"
    saved = path.read_bytes() if path.exists() else None
    try:
        for corrupt in (b"{not json", b"[1, 2, 3]", b"\xff\xfe", b""):
            path.write_bytes(corrupt)
            assert env.json("GET", "/settings") == (200, {})
            assert env.json("GET", "/settings/anything") == (200, None)
            assert env.req("POST", "/settings/Recovered", "1", TEXT_PLAIN)[0] == 200
            assert json.loads(path.read_text()) == {"Recovered": 1}
            if corrupt:
                assert backup.read_bytes() == corrupt  # the unreadable file is kept aside
    finally:
        backup.unlink(missing_ok=True)
        if saved is not None:
            path.write_bytes(saved)


# --- user files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", PREFIXES)
def test_userdata_write_read(env, prefix):
    name = f"workflows/wr{prefix.strip('/')}.json"
    body = json.dumps({"nodes": [], "links": []})
    status, info = env.json("POST", f"{prefix}/userdata/{u(name)}?overwrite=false&full_info=true", body, TEXT_PLAIN)
    assert status == 200
    assert set(info) == {"path", "size", "modified", "created"}
    assert info["path"] == name and info["size"] == len(body)
    assert abs(info["modified"] - os.path.getmtime(env.home / name)) < 1e-3
    status, headers, raw = env.req("POST", f"{prefix}/userdata/{u(name)}?overwrite=false&full_info=true", "{}")
    assert status == 409 and raw == b"File already exists"
    assert (env.home / name).read_text() == body
    assert env.json("POST", f"{prefix}/userdata/{u(name)}?overwrite=true", '{"v": 2}') == (200, name)
    assert env.json("POST", f"{prefix}/userdata/{u(name)}", '{"v": 3}') == (200, name)  # overwrite defaults on
    status, headers, raw = env.req("GET", f"{prefix}/userdata/{u(name)}")
    assert status == 200 and raw == b'{"v": 3}'
    assert headers["Content-Type"].startswith("application/json")
    assert not [p for p in (env.home / "workflows").iterdir() if p.name.startswith(".hearth-")]


def test_userdata_binary_and_empty_bodies(env):
    blob = bytes(range(256)) * 10
    assert env.json("POST", f"/userdata/{u('blobs/b.bin')}", blob)[0] == 200
    assert env.req("GET", f"/userdata/{u('blobs/b.bin')}")[2] == blob
    assert env.json("POST", f"/userdata/{u('blobs/empty.txt')}", b"")[0] == 200
    assert env.req("GET", f"/userdata/{u('blobs/empty.txt')}")[:3:2] == (200, b"")


def test_userdata_active_content_is_not_rendered_inline(env):
    env.json("POST", f"/userdata/{u('x/page.html')}", b"<script>alert(1)</script>")
    status, headers, _ = env.req("GET", f"/userdata/{u('x/page.html')}")
    assert status == 200
    assert "text/html" not in headers["Content-Type"]
    assert headers["Content-Disposition"].startswith("attachment")
    assert headers["X-Content-Type-Options"] == "nosniff"
    env.json("POST", "/userdata/user.css", b"body { color: red }")
    status, headers, _ = env.req("GET", "/api/userdata/user.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")  # loaded by <link> in index.html


def test_userdata_missing_files_are_404(env, frozen):
    for prefix in PREFIXES:
        for name in ("nope.json", "workflows/.index.json", "comfy.templates.missing.json", "deep/er/x.json"):
            assert env.req("GET", f"{prefix}/userdata/{u(name)}")[0] == 404
        assert env.req("DELETE", f"{prefix}/userdata/nope.json")[0] == 404
        assert env.req("POST", f"{prefix}/userdata/nope.json/move/other.json")[0] == 404
    assert not (env.home / "deep").exists()  # reading does not create folders


def _make_tree(env):
    tree = {"lst/a.json": b"1", "lst/b.json": b"22", "lst/sub/c.json": b"333", "lst/.index.json": b"{}",
            "lst/.hidden/d.json": b"4"}
    for name, data in tree.items():
        assert env.json("POST", f"/userdata/{u(name)}", data)[0] == 200
    return tree


@pytest.mark.parametrize("prefix", PREFIXES)
def test_userdata_listing_shapes(env, prefix):
    _make_tree(env)
    q = f"{prefix}/userdata?dir=lst"
    assert env.json("GET", q) == (200, ["a.json", "b.json"])
    assert env.json("GET", q + "&recurse=true") == (200, ["a.json", "b.json", "sub/c.json"])
    assert env.json("GET", q + "&recurse=true&split=true") == (
        200, [["a.json", "a.json"], ["b.json", "b.json"], ["sub/c.json", "sub", "c.json"]])
    status, full = env.json("GET", q + "&recurse=true&split=false&full_info=true")
    assert status == 200
    assert [f["path"] for f in full] == ["a.json", "b.json", "sub/c.json"]
    assert [f["size"] for f in full] == [1, 2, 3]
    assert all(set(f) == {"path", "size", "modified", "created"} for f in full)
    assert env.json("GET", f"{prefix}/userdata?dir={u('lst/')}&recurse=true") == (
        200, ["a.json", "b.json", "sub/c.json"])
    # the hidden bookmark file is not listed but is readable
    assert env.req("GET", f"{prefix}/userdata/{u('lst/.index.json')}")[0] == 200


def test_userdata_listing_errors(env, frozen):
    for prefix in PREFIXES:
        status, _, raw = env.req("GET", f"{prefix}/userdata?dir=workflows_absent&recurse=true")
        assert status == 404 and raw == b"Directory not found"
        assert env.req("GET", f"{prefix}/userdata")[0] == 400
        assert env.req("GET", f"{prefix}/userdata?dir=")[0] == 400
        assert env.req("GET", f"{prefix}/userdata?dir=subgraphs%2F&recurse=true&full_info=true")[0] == 404
    assert not (env.home / "workflows_absent").exists()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_userdata_v2_listing(env, prefix):
    _make_tree(env)
    status, items = env.json("GET", f"{prefix}/v2/userdata?path=lst")
    assert status == 200
    kinds = [i["type"] for i in items]
    assert kinds == sorted(kinds, key=lambda k: k != "directory")  # directories first
    by_path = {i["path"]: i for i in items}
    assert by_path["lst/sub"] == {"name": "sub", "path": "lst/sub", "type": "directory"}
    a = by_path["lst/a.json"]
    assert a["name"] == "a.json" and a["type"] == "file" and a["size"] == 1 and isinstance(a["modified"], float)
    assert "lst/sub/c.json" in by_path
    status, everything = env.json("GET", f"{prefix}/v2/userdata")
    assert status == 200 and "lst/a.json" in {i["path"] for i in everything}
    # links leaving the user's folder are not listed
    assert not any(i["path"] in ("evil.json", "evildir", "comfy.templates.json") for i in everything)
    status, _, raw = env.req("GET", f"{prefix}/v2/userdata?path=nope")
    assert status == 404
    assert env.req("GET", f"{prefix}/v2/userdata?path={u('lst/a.json')}")[0] == 400


def test_userdata_move(env):
    for prefix in PREFIXES:
        src, dst = f"mv{prefix.strip('/')}/one.json", f"mv{prefix.strip('/')}/renamed/two.json"
        env.json("POST", f"/userdata/{u(src)}", b"payload")
        assert env.json("POST", f"{prefix}/userdata/{u(src)}/move/{u(dst)}?overwrite=false") == (200, dst)
        assert not (env.home / src).exists() and (env.home / dst).read_bytes() == b"payload"
        env.json("POST", f"/userdata/{u(src)}", b"second")
        status, _, raw = env.req("POST", f"{prefix}/userdata/{u(src)}/move/{u(dst)}?overwrite=false")
        assert status == 409 and raw == b"File already exists"
        assert (env.home / src).read_bytes() == b"second"
        status, info = env.json("POST", f"{prefix}/userdata/{u(src)}/move/{u(dst)}?full_info=true")
        assert status == 200 and info["path"] == dst and info["size"] == len(b"second")
        assert (env.home / dst).read_bytes() == b"second" and not (env.home / src).exists()


def test_userdata_delete(env):
    for prefix in PREFIXES:
        name = f"del{prefix.strip('/')}/x.json"
        env.json("POST", f"/userdata/{u(name)}", b"x")
        status, _, raw = env.req("DELETE", f"{prefix}/userdata/{u(name)}")
        assert status == 204 and raw == b""
        assert not (env.home / name).exists()
        assert env.req("GET", f"{prefix}/userdata/{u(name)}")[0] == 404
        assert env.req("DELETE", f"{prefix}/userdata/{u(name)}")[0] == 404
        # a folder is not a file
        assert env.req("DELETE", f"{prefix}/userdata/del{prefix.strip('/')}")[0] == 400
        assert (env.home / f"del{prefix.strip('/')}").is_dir()


def test_userdata_folder_names_are_not_files(env, frozen):
    env.home.joinpath("afolder").mkdir(exist_ok=True)
    try:
        before = snapshot(env.home)
        assert env.req("POST", "/userdata/afolder", b"x")[0] == 400
        assert env.req("GET", "/userdata/afolder")[0] == 404
        assert env.req("POST", f"/userdata/{u('afolder/')}", b"x")[0] == 400
        assert env.req("POST", "/userdata/%2E", b"x")[0] == 400
        assert snapshot(env.home) == before
    finally:
        env.home.joinpath("afolder").rmdir()


HOSTILE = [
    "../secret.txt",
    "../../../outside/secret.txt",
    "../../../../outside/secret.txt",
    "workflows/../../../outside/secret.txt",
    "..",
    "../default/x.json",
    "..\\..\\outside\\secret.txt",
    "/etc/passwd",
    "/tmp/escape.json",
    "~/escape.json",
    "C:escape.json",
    "C:\\escape.json",
    "a\x00b.json",
    "\x00",
    "x" * 300 + ".json",
    "/".join(["d" * 100] * 45),
    "evil.json",
    "comfy.templates.json",
    "evildir/secret.json",
    "evildir/escape.json",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_userdata_hostile_names(env, frozen, name):
    enc = u(name)
    for prefix in PREFIXES:
        checks = [
            ("GET", f"{prefix}/userdata/{enc}", None),
            ("POST", f"{prefix}/userdata/{enc}?overwrite=true", b"escape"),
            ("POST", f"{prefix}/userdata/{enc}?overwrite=false&full_info=true", b"escape"),
            ("DELETE", f"{prefix}/userdata/{enc}", None),
            ("POST", f"{prefix}/userdata/{enc}/move/moved.json", None),
            ("POST", f"{prefix}/userdata/{u('lst/a.json')}/move/{enc}", None),
            ("GET", f"{prefix}/userdata?dir={enc}&recurse=true&full_info=true", None),
            ("GET", f"{prefix}/v2/userdata?path={enc}", None),
        ]
        for method, path, body in checks:
            status, _, raw = env.req(method, path, body)
            assert 400 <= status < 500, (method, path[:120], status)
            assert SECRET not in raw
    assert not list(env.root.rglob("*escape*"))
    assert not (env.root / "moved.json").exists()


@pytest.mark.parametrize("raw_path", [
    "/userdata/..%2F..%2F..%2Foutside%2Fsecret.txt",
    "/userdata/%2e%2e%2f%2e%2e%2f%2e%2e%2foutside%2fsecret.txt",
    "/userdata/%2E%2E%2Fsecret.txt",
    "/userdata/..%5C..%5Csecret.txt",
    "/userdata/%2Fetc%2Fpasswd",
    "/userdata/a%00b",
    "/userdata/..",
    "/userdata/../../../outside/secret.txt",
    "/api/userdata/..%2f..%2f..%2foutside%2fsecret.txt",
    "/userdata?dir=..%2F..&recurse=true",
    "/userdata?dir=%2e%2e",
    "/userdata?dir=%2F",
    "/userdata?dir=evildir",
    "/v2/userdata?path=..",
    "/v2/userdata?path=%2Fetc",
    "/v2/userdata?path=evildir",
])
def test_userdata_hostile_raw_urls(env, frozen, raw_path):
    status, _, raw = env.req("GET", raw_path)
    assert 400 <= status < 500, (raw_path, status)
    assert SECRET not in raw


def test_userdata_links_leaving_are_refused_with_403(env, frozen):
    assert env.req("GET", "/userdata/evil.json")[0] == 403
    assert env.req("GET", "/api/userdata/comfy.templates.json")[0] == 403
    assert env.req("POST", "/userdata/evil.json", b"overwrite")[0] == 403
    assert env.req("DELETE", "/userdata/evil.json")[0] == 403
    assert env.req("POST", f"/userdata/{u('evildir/new.json')}", b"x")[0] == 403
    assert env.req("GET", "/userdata?dir=evildir")[0] == 403
    assert os.path.islink(env.home / "evil.json")


def test_userdata_body_limit(env, frozen):
    try:
        status, _, _ = env.req("POST", "/userdata/big.bin", b"\0" * (1024 * 1024 + 4096))
    except (ConnectionError, OSError):
        return
    assert status == 413


# --- multi-user ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiuser")
    _outside(root)
    server = Server(root / "base", ["--multi-user"]).start()
    try:
        yield Env(root, server)
    finally:
        server.stop()


@pytest.fixture
def multi_guard(multi):
    before = snapshot(multi.root, ("base/user", "base/server.log"))
    yield multi
    assert (multi.outside / "secret.txt").read_bytes() == SECRET
    assert snapshot(multi.root, ("base/user", "base/server.log")) == before


def _add_user(m: Env, name: str) -> str:
    status, user_id = m.json("POST", "/users", {"username": name})
    assert status == 200, user_id
    return user_id


def test_multi_user_users(multi_guard):
    m = multi_guard
    status, users = m.json("GET", "/users")
    assert status == 200 and users["storage"] == "server" and isinstance(users["users"], dict)
    alice = _add_user(m, "alice")
    assert ID_RE.match(alice) and alice.startswith("alice_")
    for prefix in PREFIXES:
        status, users = m.json("GET", prefix + "/users")
        assert users["users"][alice] == "alice"
        assert m.json("POST", prefix + "/users", {"username": "alice"}) == (400, {"error": "Duplicate username."})
        assert m.json("POST", prefix + "/users", {"username": "  alice "})[0] == 400
    odd = _add_user(m, "Jo Doe/../ü")
    assert ID_RE.match(odd) and "/" not in odd and ".." not in odd
    assert json.loads((m.base / "user" / "users.json").read_text())[odd] == "Jo Doe/../ü"


@pytest.mark.parametrize("body", [{}, {"username": ""}, {"username": "   "}, {"username": 5},
                                  {"username": None}, [], "not json", {"username": "x" * 1000}])
def test_multi_user_bad_signups(multi_guard, body):
    users_file = multi_guard.base / "user" / "users.json"
    before = users_file.read_bytes() if users_file.exists() else None
    status, _, _ = multi_guard.req("POST", "/users", body if not isinstance(body, str) else body.encode())
    assert status == 400
    assert (users_file.read_bytes() if users_file.exists() else None) == before


def test_multi_user_isolation(multi_guard):
    m = multi_guard
    alice, bob = _add_user(m, "iso-alice"), _add_user(m, "iso-bob")
    ha, hb = {"Comfy-User": alice}, {"Comfy-User": bob}
    assert m.req("POST", "/settings/Color", '"red"', ha)[0] == 200
    assert m.json("GET", "/settings", headers=ha) == (200, {"Color": "red"})
    assert m.json("GET", "/settings", headers=hb) == (200, {})
    assert json.loads((m.base / "user" / alice / "comfy.settings.json").read_text()) == {"Color": "red"}
    assert m.json("POST", f"/userdata/{u('workflows/mine.json')}", b"{}", ha) == (200, "workflows/mine.json")
    assert (m.base / "user" / alice / "workflows" / "mine.json").exists()
    assert m.req("GET", f"/userdata/{u('workflows/mine.json')}", headers=hb)[0] == 404
    assert m.req("GET", f"/userdata/{u('../' + alice + '/workflows/mine.json')}", headers=hb)[0] == 400
    assert m.json("GET", "/userdata?dir=workflows", headers=ha) == (200, ["mine.json"])
    assert m.req("GET", "/userdata?dir=workflows", headers=hb)[0] == 404
    assert m.json("GET", "/v2/userdata", headers=hb) == (200, [])  # a new user's folder may not exist yet


@pytest.mark.parametrize("header", [None, "", "nobody", "default", "../default", "..", ".", "users.json",
                                    "a/b", "%2e%2e"])
def test_multi_user_unknown_users_refused(multi_guard, header):
    m = multi_guard
    headers = {} if header is None else {"Comfy-User": header}
    before = snapshot(m.base / "user", ("hearth.db",))
    for prefix in PREFIXES:
        assert m.req("GET", prefix + "/settings", headers=headers)[0] == 401
        assert m.req("GET", prefix + "/settings/x", headers=headers)[0] == 401
        assert m.req("POST", prefix + "/settings/x", "1", headers)[0] == 401
        assert m.req("POST", prefix + "/settings", "{}", headers)[0] == 401
        assert m.req("GET", prefix + "/userdata/x.json", headers=headers)[0] == 403
        assert m.req("POST", prefix + "/userdata/x.json", b"x", headers)[0] == 403
        assert m.req("DELETE", prefix + "/userdata/x.json", headers=headers)[0] == 403
        assert m.req("POST", prefix + "/userdata/x.json/move/y.json", headers=headers)[0] == 403
        assert m.req("GET", prefix + "/userdata?dir=workflows", headers=headers)[0] == 403
        assert m.req("GET", prefix + "/v2/userdata", headers=headers)[0] == 403
    assert snapshot(m.base / "user", ("hearth.db",)) == before


def test_multi_user_hostile_ids_in_users_file(multi_guard):
    """An edited users.json with ids that are paths: those users are refused, nothing is written."""
    m = multi_guard
    users_file = m.base / "user" / "users.json"
    saved = users_file.read_bytes() if users_file.exists() else None
    hostile = {"../escape": "a", "..": "b", ".": "c", "x/../../escape": "d", "/tmp/escape": "e", "C:escape": "f"}
    users_file.write_text(json.dumps({**json.loads(saved or b"{}"), **hostile}))
    try:
        before = snapshot(m.base / "user", ("hearth.db",))
        for user in hostile:
            h = {"Comfy-User": user}
            assert m.req("POST", "/settings/x", "1", h)[0] == 401
            assert m.req("POST", "/userdata/escape.json", b"x", h)[0] == 403
            assert m.req("GET", "/v2/userdata", headers=h)[0] == 403
        assert snapshot(m.base / "user", ("hearth.db",)) == before
        assert not list(m.root.rglob("*escape*"))
    finally:
        if saved is None:
            users_file.unlink()
        else:
            users_file.write_bytes(saved)


def test_multi_user_corrupt_users_file(multi_guard):
    m = multi_guard
    users_file = m.base / "user" / "users.json"
    saved = users_file.read_bytes() if users_file.exists() else None
    try:
        users_file.write_bytes(b"{corrupt")
        assert m.json("GET", "/users") == (200, {"storage": "server", "users": {}})
        new = _add_user(m, "after-corruption")
        assert json.loads(users_file.read_text()) == {new: "after-corruption"}
    finally:
        if saved is None:
            users_file.unlink(missing_ok=True)
        else:
            users_file.write_bytes(saved)
