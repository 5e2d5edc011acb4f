"""Users, per-user files (/userdata, /v2/userdata) and settings, as ComfyUI's user manager serves them.

Each user's files live in ``<user dir>/<user id>/``. Single-user mode always uses ``default`` (the
``Comfy-User`` header is ignored); with ``--multi-user`` the header names a user from
``<user dir>/users.json``. Every file name goes through ``check_name``/``safe_join`` against the user's
folder before anything is read or written.

Error bodies are short texts here, as ComfyUI's (the UI shows them or maps 404 to "none").
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from hearth.paths import PathError, check_name, is_inside, safe_join
from hearth.server.http import Routes, hearth, read_json
from hearth.server.routes.files import atomic_write, file_response

log = logging.getLogger(__name__)

DEFAULT_USER = "default"
USERS_FILE = "users.json"
SETTINGS_FILE = "comfy.settings.json"
MAX_USERNAME = 256


class Refused(Exception):
    """Answered as a text response with ``status``."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status
        self.text = text


def _handler(fn: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    @functools.wraps(fn)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except Refused as exc:
            return web.Response(status=exc.status, text=exc.text)
        except PathError as exc:
            return web.Response(status=exc.status, text=f"Invalid path: {exc}")
    return wrapped


# --- users -----------------------------------------------------------------------------------------
def _user_dir(request: web.Request) -> Path:
    return hearth(request).folders.user


def _valid_user_id(user_id: Any) -> bool:
    if not isinstance(user_id, str) or user_id in ("", ".", ".."):
        return False
    try:
        check_name(user_id, allow_slash=False)
    except PathError:
        return False
    return not any(ord(ch) < 0x20 for ch in user_id)


def _read_users_file(user_dir: Path) -> dict[str, str]:
    path = user_dir / USERS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("users file %s is unreadable (%s); treating it as empty", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("users file %s is not a JSON object; treating it as empty", path)
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _users(request: web.Request) -> dict[str, str]:
    if hearth(request).config.multi_user:
        return _read_users_file(_user_dir(request))
    return {DEFAULT_USER: DEFAULT_USER}


def _request_user(request: web.Request, unknown_status: int) -> str:
    """The user a request acts for; an unknown or unsafe id is refused with ``unknown_status``."""
    if not hearth(request).config.multi_user:
        return DEFAULT_USER
    user = request.headers.get("Comfy-User", DEFAULT_USER)
    if not _valid_user_id(user) or user not in _users(request):
        raise Refused(unknown_status, "Unknown user")
    return user


def _user_root(request: web.Request, unknown_status: int = 403) -> Path:
    """The user's folder, resolved (it may not exist yet)."""
    user = _request_user(request, unknown_status)
    root = safe_join(_user_dir(request), user, status=403)
    if root == Path(os.path.realpath(_user_dir(request))):
        raise Refused(403, "Unknown user")
    return root


def _resolve(root: Path, rel: str) -> Path:
    """A path inside the user's folder; PathError (400 malformed, 403 outside) otherwise."""
    if not rel:
        raise PathError("file name is empty")
    check_name(rel)
    return safe_join(root, rel, status=403)


async def get_users(request: web.Request) -> web.Response:
    if hearth(request).config.multi_user:
        return web.json_response({"storage": "server", "users": _users(request)})
    migrated = (_user_dir(request) / DEFAULT_USER).exists()
    return web.json_response({"storage": "server", "migrated": migrated})


async def post_users(request: web.Request) -> web.Response:
    body = await read_json(request)
    username = body.get("username") if isinstance(body, dict) else None
    if not isinstance(username, str) or not username.strip():
        return web.json_response({"error": "username not provided"}, status=400)
    username = username.strip()
    if len(username) > MAX_USERNAME:
        return web.json_response({"error": f"username is longer than {MAX_USERNAME} characters"}, status=400)
    user_dir = _user_dir(request)
    users = _read_users_file(user_dir)
    if not hearth(request).config.multi_user:
        users = {DEFAULT_USER: DEFAULT_USER, **users}
    if username in users.values():
        return web.json_response({"error": "Duplicate username."}, status=400)
    user_id = re.sub(r"[^a-zA-Z0-9_-]+", "-", username)[:100] + "_" + str(uuid.uuid4())
    users[user_id] = username
    user_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(user_dir / USERS_FILE, json.dumps(users, ensure_ascii=False).encode("utf-8"))
    return web.json_response(user_id)


# --- listings --------------------------------------------------------------------------------------
def _flag(request: web.Request, name: str, default: str = "") -> bool:
    return request.query.get(name, default).lower() == "true"


def _file_info(path: Path, relative_to: Path) -> dict:
    st = path.stat()
    return {"path": os.path.relpath(path, relative_to).replace(os.sep, "/"), "size": st.st_size,
            "modified": st.st_mtime, "created": st.st_ctime}


def _list_files(directory: Path, user_root: Path, recurse: bool) -> list[Path]:
    """Regular files under directory, hidden names skipped (ComfyUI's glob), links leaving the user's folder
    skipped; linked folders are not followed."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and is_inside(user_root, full):
                out.append(Path(full))
        if not recurse:
            break
    return out


@_handler
async def list_userdata(request: web.Request) -> web.Response:
    directory = request.query.get("dir", "")
    if not directory:
        raise Refused(400, "Directory not provided")
    root = _user_root(request)
    path = _resolve(root, directory)
    if not path.is_dir():
        raise Refused(404, "Directory not found")
    recurse = _flag(request, "recurse")
    full_info = _flag(request, "full_info")
    split = _flag(request, "split")
    files = await asyncio.to_thread(_list_files, path, root, recurse)
    results: list[Any] = []
    for f in files:
        if full_info:
            try:
                results.append(_file_info(f, path))
            except OSError:
                continue
            continue
        rel = os.path.relpath(f, path).replace(os.sep, "/")
        results.append([rel, *rel.split("/")] if split else rel)
    return web.json_response(results)


def _walk_v2(target: Path, user_root: Path) -> list[dict]:
    results: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(target):
        kept = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if not is_inside(user_root, full):
                continue
            kept.append(d)
            results.append({"name": d, "path": os.path.relpath(full, user_root).replace(os.sep, "/"),
                            "type": "directory"})
        dirnames[:] = kept
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if not is_inside(user_root, full):
                continue
            entry: dict[str, Any] = {"name": name, "path": os.path.relpath(full, user_root).replace(os.sep, "/"),
                                     "type": "file"}
            try:
                st = os.stat(full)
                entry["size"] = st.st_size
                entry["modified"] = st.st_mtime
            except OSError:
                pass
            results.append(entry)
    results.sort(key=lambda e: (e["type"] != "directory", e["name"].lower(), e["path"]))
    return results


@_handler
async def list_userdata_v2(request: web.Request) -> web.Response:
    root = _user_root(request)
    rel = request.query.get("path", "")
    target = _resolve(root, rel) if rel else root
    if not target.exists():
        if target == root:
            return web.json_response([])
        raise Refused(404, "Requested path not found")
    if not target.is_dir():
        raise Refused(400, "Requested path is not a directory")
    return web.json_response(await asyncio.to_thread(_walk_v2, target, root))


# --- files -----------------------------------------------------------------------------------------
def _query_overwrite(request: web.Request) -> bool:
    return request.query.get("overwrite", "true") != "false"


def _answer_path(path: Path, root: Path, full_info: bool) -> web.Response:
    if full_info:
        return web.json_response(_file_info(path, root))
    return web.json_response(os.path.relpath(path, root).replace(os.sep, "/"))


@_handler
async def get_userdata(request: web.Request) -> web.StreamResponse:
    root = _user_root(request)
    path = _resolve(root, request.match_info["file"])
    if not path.is_file():
        raise Refused(404, "File not found")
    return file_response(path, path.name, **_userdata_type(path.name))


def _userdata_type(name: str) -> dict:
    """User files the UI loads as resources keep their type (user.css as a stylesheet, JSON); anything
    that could run script in our origin is sent as an attachment (files.served_type)."""
    if name.lower().endswith(".css"):
        return {"content_type": "text/css", "attachment": False}
    return {}


def _write_user_file(path: Path, data: bytes, overwrite: bool) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, data, overwrite=overwrite)


@_handler
async def post_userdata(request: web.Request) -> web.Response:
    root = _user_root(request)
    path = _resolve(root, request.match_info["file"])
    overwrite = _query_overwrite(request)
    full_info = _flag(request, "full_info", "false")
    if path == root or path.is_dir():
        raise Refused(400, "A folder has this name")
    if not overwrite and os.path.lexists(path):
        raise Refused(409, "File already exists")
    body = await request.read()
    try:
        written = await asyncio.to_thread(_write_user_file, path, body, overwrite)
    except OSError as exc:
        log.warning("cannot save user file %s: %s", path, exc)
        raise Refused(400, "Invalid filename") from None
    if not written:
        raise Refused(409, "File already exists")
    if not is_inside(root, path):  # a folder on the way was swapped for a link while writing
        raise Refused(403, "Invalid path")
    return _answer_path(path, root, full_info)


@_handler
async def delete_userdata(request: web.Request) -> web.Response:
    root = _user_root(request)
    path = _resolve(root, request.match_info["file"])
    if not os.path.lexists(path):
        raise Refused(404, "File not found")
    if path == root or path.is_dir():
        raise Refused(400, "Not a file")
    os.remove(path)
    return web.Response(status=204)


def _move(source: Path, dest: Path, overwrite: bool) -> bool:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        os.replace(source, dest)
        return True
    try:
        os.link(source, dest)  # atomic create-if-absent
    except FileExistsError:
        return False
    except OSError:
        if os.path.lexists(dest):
            return False
        shutil.move(source, dest)
        return True
    os.unlink(source)
    return True


@_handler
async def move_userdata(request: web.Request) -> web.Response:
    root = _user_root(request)
    source = _resolve(root, request.match_info["file"])
    dest = _resolve(root, request.match_info["dest"])
    if not source.is_file():
        raise Refused(404, "File not found")
    if dest == root or dest.is_dir():
        raise Refused(400, "A folder has this name")
    overwrite = _query_overwrite(request)
    full_info = _flag(request, "full_info", "false")
    if source != dest:
        if not overwrite and os.path.lexists(dest):
            raise Refused(409, "File already exists")
        log.info("moving user file %s -> %s", source, dest)
        try:
            moved = await asyncio.to_thread(_move, source, dest, overwrite)
        except OSError as exc:
            log.warning("cannot move user file %s -> %s: %s", source, dest, exc)
            raise Refused(400, "Invalid filename") from None
        if not moved:
            raise Refused(409, "File already exists")
    return _answer_path(dest, root, full_info)


# --- settings --------------------------------------------------------------------------------------
def _settings_path(request: web.Request) -> Path:
    root = _user_root(request, unknown_status=401)  # the UI reads 401 as "unknown user"
    return safe_join(root, SETTINGS_FILE, status=403)


def _load_settings(path: Path) -> tuple[dict, bool]:
    """(settings, file is sound). A corrupt or non-object file reads as {} with a warning."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, True
    except OSError as exc:
        log.warning("cannot read settings file %s: %s; using empty settings", path, exc)
        return {}, False
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("settings file %s is corrupt (%s); using empty settings", path, exc)
        return {}, False
    if not isinstance(data, dict):
        log.warning("settings file %s is not a JSON object; using empty settings", path)
        return {}, False
    return data, True


def _save_settings(path: Path, settings: dict, previous_sound: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not previous_sound and path.is_file():
        backup = path.with_name(path.name + ".corrupt")
        log.warning("keeping the unreadable settings file as %s", backup)
        try:
            os.replace(path, backup)
        except OSError:
            pass
    atomic_write(path, json.dumps(settings, indent=4, ensure_ascii=False).encode("utf-8"))


@_handler
async def get_settings(request: web.Request) -> web.Response:
    settings, _ = _load_settings(_settings_path(request))
    return web.json_response(settings)


@_handler
async def get_setting(request: web.Request) -> web.Response:
    settings, _ = _load_settings(_settings_path(request))
    return web.json_response(settings.get(request.match_info["id"]))


@_handler
async def post_settings(request: web.Request) -> web.Response:
    path = _settings_path(request)
    new = await read_json(request)
    if not isinstance(new, dict):
        raise Refused(400, "Settings must be a JSON object")
    # no await between load and save: concurrent posts cannot lose each other's keys
    settings, sound = _load_settings(path)
    _save_settings(path, {**settings, **new}, sound)
    return web.Response(status=200)


@_handler
async def post_setting(request: web.Request) -> web.Response:
    path = _settings_path(request)
    setting_id = request.match_info["id"]
    value = await read_json(request)
    settings, sound = _load_settings(path)
    settings[setting_id] = value
    _save_settings(path, settings, sound)
    return web.Response(status=200)


def add_routes(routes: Routes) -> None:
    routes.add("GET", "/users", get_users)
    routes.add("POST", "/users", post_users)
    routes.add("GET", "/userdata", list_userdata)
    routes.add("GET", "/v2/userdata", list_userdata_v2)
    routes.add("GET", "/userdata/{file}", get_userdata)
    routes.add("POST", "/userdata/{file}", post_userdata)
    routes.add("DELETE", "/userdata/{file}", delete_userdata)
    routes.add("POST", "/userdata/{file}/move/{dest}", move_userdata)
    routes.add("GET", "/settings", get_settings)
    routes.add("GET", "/settings/{id}", get_setting)
    routes.add("POST", "/settings", post_settings)
    routes.add("POST", "/settings/{id}", post_setting)
