"""Files: /view, image and mask uploads, model lists, previews and metadata, /internal folder listings.

Every name that arrives in a request goes through ``check_name``/``safe_join`` (hearth.paths) before the
disk is touched: a name that could leave its folder is refused (400 for a malformed name, 403 for a path
that resolves outside), and nothing is read or written for it.

Where ComfyUI answers 500 for bad input (unknown upload type, a non-image given to ``preview``, a bogus
``path_index``, ``/internal/files/output`` before the folder exists) Hearth answers 4xx or an empty list.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import mimetypes
import os
import struct
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hearth.paths import DIRECTORY_TYPES, MODEL_EXTENSIONS, PathError, check_name, is_inside, safe_join
from hearth.server.http import BadRequest, Routes, hearth

# --- serving files safely --------------------------------------------------------------------------
# Types a browser may render inline from our origin without running script.
_INLINE_PREFIXES = ("image/", "video/", "audio/")
_INLINE_EXACT = frozenset({"text/plain", "application/json"})
# Inline-looking types that can carry script: served as attachments, never rendered in our origin.
_SCRIPTABLE_IMAGES = frozenset({"image/svg+xml"})
_FALLBACK_TYPE = "application/octet-stream"


def _ascii_filename(name: str) -> str:
    """The file name for a quoted header parameter: no quotes, backslashes, control or non-ASCII chars."""
    out = []
    for ch in name:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F or ord(ch) > 0x7E:
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def content_disposition(filename: str, attachment: bool) -> str:
    """ComfyUI sends ``filename="…"`` (inline); attachments add the disposition type."""
    safe = _ascii_filename(filename)
    value = f'filename="{safe}"'
    if safe != filename:
        value += "; filename*=UTF-8''" + quote(filename, safe="")
    return ("attachment; " + value) if attachment else value


def served_type(filename: str) -> tuple[str, bool]:
    """(Content-Type, as attachment) for a stored file: anything that could run script is not inline."""
    guessed = mimetypes.guess_type(filename)[0]
    if guessed is None:
        return _FALLBACK_TYPE, True
    if guessed in _SCRIPTABLE_IMAGES:
        return guessed, True  # keeps <img src> working; a navigation downloads it
    if guessed.startswith(_INLINE_PREFIXES) or guessed in _INLINE_EXACT:
        return guessed, False
    # text/html, application/xhtml+xml, JS, CSS, XML and everything else
    return _FALLBACK_TYPE, True


class _PlainFileResponse(web.FileResponse):
    """A FileResponse that serves exactly the file it was given.

    aiohttp's FileResponse substitutes a ``<file>.gz``/``.br`` sibling when the client accepts that
    encoding, which would serve a different (possibly uploaded) file than the one we resolved.
    """

    def _get_file_path_stat_encoding(self, accept_encoding: str):  # type: ignore[override]
        return super()._get_file_path_stat_encoding("")


def file_response(path: Path, filename: str, content_type: str | None = None,
                  attachment: bool | None = None) -> web.StreamResponse:
    """Serve a resolved file with its type, a Content-Disposition and ``nosniff``."""
    guessed, guessed_attachment = served_type(filename)
    ctype = content_type or guessed
    as_attachment = guessed_attachment if attachment is None else attachment
    headers = {
        "Content-Type": ctype,
        "Content-Disposition": content_disposition(filename, as_attachment),
        "X-Content-Type-Options": "nosniff",
    }
    return _PlainFileResponse(path, headers=headers)


def _bytes_response(body: bytes, content_type: str, filename: str) -> web.Response:
    return web.Response(body=body, content_type=content_type, headers={
        "Content-Disposition": content_disposition(filename, False),
        "X-Content-Type-Options": "nosniff",
    })


# --- writing files ---------------------------------------------------------------------------------
def _write_temp(directory: Path, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".hearth-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes, *, overwrite: bool = True) -> bool:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    With ``overwrite=False`` the file is created only if nothing is there (returns False otherwise),
    without a window in which another writer's file could be replaced.
    """
    tmp = _write_temp(path.parent, data)
    try:
        if overwrite:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic create-if-absent
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links
            if os.path.lexists(path):
                return False
            os.replace(tmp, path)
        return True
    finally:
        _unlink_quietly(tmp)


# --- request helpers -------------------------------------------------------------------------------
def _path_error(exc: PathError) -> BadRequest:
    return BadRequest(str(exc), status=exc.status, type_="invalid_path")


def _leaf_name(name: Any) -> str:
    """A single file name (no folders) that is safe to create."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise BadRequest("Invalid file name", type_="invalid_path", details=repr(name)[:300])
    try:
        check_name(name, allow_slash=False)
    except PathError as exc:
        raise _path_error(exc) from None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise BadRequest("File name contains control characters", type_="invalid_path")
    return name


def _checked_subfolder(subfolder: Any, status: int) -> str:
    """A subfolder value: empty, or relative names without '..'. A bad one is answered with ``status``."""
    if subfolder is None:
        return ""
    if not isinstance(subfolder, str):
        raise BadRequest("subfolder must be a string", status=400, type_="invalid_path")
    if not subfolder:
        return ""
    try:
        check_name(subfolder)
    except PathError as exc:
        raise BadRequest(f"subfolder: {exc}", status=status, type_="invalid_path") from None
    return subfolder


def _split_annotation(name: str) -> tuple[str, str | None]:
    """``'x.png [input]'`` -> ``('x.png', 'input')``, as ComfyUI's annotated file names."""
    for kind in DIRECTORY_TYPES:
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, None


def _directory(request: web.Request, kind: Any) -> Path:
    folder = hearth(request).folders.directory(kind) if isinstance(kind, str) else None
    if folder is None:
        raise BadRequest("Invalid type: expected one of output, input, temp", type_="invalid_type",
                          details=repr(kind)[:100])
    return folder


def _pil():
    from PIL import Image  # Pillow loads on first use

    return Image


# The largest image the HTTP routes decode (previews, channels, masks, model covers): Pillow's own
# default limit. Pillow's global MAX_IMAGE_PIXELS can be raised by nodes (LoadImage raises it for
# 16384² inputs) and Pillow only refuses at twice it, so the routes check the size themselves.
MAX_DECODE_PIXELS = 89_478_485


def open_image(source):
    """``Image.open`` that refuses, from the header alone, an image larger than MAX_DECODE_PIXELS."""
    img = _pil().open(source)
    if img.width * img.height > MAX_DECODE_PIXELS:
        size = f"{img.width}x{img.height}"
        img.close()
        raise ValueError(f"the image is {size} pixels, more than the {MAX_DECODE_PIXELS} this server decodes")
    return img


# --- /view -----------------------------------------------------------------------------------------
def _render_view(path: Path, preview: str | None, channel: str) -> tuple[bytes, str]:
    """Re-encode an image for /view's ``preview`` / ``channel`` options. Raises ValueError if not an image.

    ``channel`` is the query value ('' when absent); a preview with an alpha channel asked for is webp.
    """
    Image = _pil()
    try:
        with open_image(path) as img:
            img.load()
            if preview is not None:
                parts = preview.split(";")
                fmt = parts[0] if parts[0] in ("webp", "jpeg") else "webp"
                if "a" in channel:
                    fmt = "webp"
                quality = int(parts[-1]) if parts[-1].isdigit() else 90
                quality = max(1, min(quality, 100))
                if fmt == "jpeg" or channel == "rgb":
                    img = img.convert("RGB")
                elif img.mode not in ("RGB", "RGBA"):
                    img = img.convert("RGBA" if _has_alpha(img) else "RGB")
                buffer = io.BytesIO()
                img.save(buffer, format=fmt.upper(), quality=quality)
                return buffer.getvalue(), f"image/{fmt}"
            if channel == "rgb":
                out = img.convert("RGB")
            else:  # "a": the alpha as an RGBA image over black
                alpha = img.convert("RGBA").getchannel("A") if _has_alpha(img) else Image.new("L", img.size, 255)
                out = Image.new("RGBA", img.size, (0, 0, 0, 0))
                out.putalpha(alpha)
            buffer = io.BytesIO()
            out.save(buffer, format="PNG")
            return buffer.getvalue(), "image/png"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(str(exc)) from exc


def _has_alpha(img) -> bool:
    return "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info)


async def view(request: web.Request) -> web.StreamResponse:
    query = request.query
    if "filename" not in query:
        raise BadRequest("No such file", status=404, type_="not_found")
    name, annotated = _split_annotation(query["filename"])
    if not name:
        raise BadRequest("filename is empty", type_="invalid_path")
    try:
        check_name(name)
    except PathError as exc:
        raise _path_error(exc) from None
    basename = name.rsplit("/", 1)[-1]  # ComfyUI serves the base name of a name with folders
    if basename in ("", ".", ".."):
        raise BadRequest("Invalid file name", type_="invalid_path")
    root = _directory(request, annotated or query.get("type", "output"))
    subfolder = _checked_subfolder(query.get("subfolder", ""), status=403)
    try:
        path = safe_join(root, subfolder, basename, status=403)
    except PathError as exc:
        raise _path_error(exc) from None
    if not path.is_file():
        raise BadRequest("No such file", status=404, type_="not_found")

    channel = query.get("channel", "")
    if channel not in ("rgba", "rgb", "a", ""):
        raise BadRequest("channel must be rgb, a or rgba", type_="invalid_channel", details=channel[:50])
    preview = query.get("preview")
    if preview is not None or channel in ("rgb", "a"):
        try:
            body, ctype = await asyncio.to_thread(_render_view, path, preview, channel)
        except ValueError as exc:
            raise BadRequest("The file is not an image that can be converted", type_="invalid_image",
                              details=str(exc)[:300]) from None
        return _bytes_response(body, ctype, basename)
    return file_response(path, basename)


# --- uploads ---------------------------------------------------------------------------------------
async def _read_form(request: web.Request):
    try:
        return await request.post()
    except web.HTTPException:
        raise  # 413 from the body limit
    except (ValueError, AssertionError, UnicodeDecodeError, LookupError, RuntimeError, HttpProcessingError) as exc:
        # a malformed part header (HttpProcessingError), an unknown charset (LookupError) or
        # Content-Transfer-Encoding (RuntimeError): the client's fault, not ours
        raise BadRequest("Malformed multipart form", type_="invalid_form", details=str(exc)[:300]) from None


def _form_text(form, key: str, default: str = "") -> str:
    value = form.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"Form field '{key}' must be text", type_="invalid_form")
    return value


async def _image_part(form) -> tuple[str, bytes]:
    """The ``image`` file part: its checked name and its bytes (aiohttp spooled it to a temporary file)."""
    part = form.get("image")
    if part is None or not hasattr(part, "file") or not getattr(part, "filename", None):
        raise BadRequest("The form has no 'image' file part", type_="invalid_form")
    name = _leaf_name(part.filename)

    def read() -> bytes:
        part.file.seek(0)
        return part.file.read()

    return name, await asyncio.to_thread(read)


def _same_contents(path: Path, data: bytes, digest: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.digest() == digest
    except OSError:
        return False


_MAX_RENAMES = 10000


def store_upload(root: Path, subfolder: str, name: str, data: bytes, overwrite: bool) -> str:
    """Save an upload under root/subfolder with ComfyUI's naming; returns the name used.

    Same name and same bytes -> the existing name (nothing written); same name, other bytes ->
    ``name (1).ext``, ``(2)``…; ``overwrite`` replaces. Raises BadRequest for anything unsafe.
    """
    try:
        folder = safe_join(root, subfolder, status=403) if subfolder else safe_join(root, status=403)
        os.makedirs(folder, exist_ok=True)
        if not is_inside(root, folder):  # a symlink swapped in while creating it
            raise PathError("path is outside its folder", 403)
    except PathError as exc:
        raise _path_error(exc) from None
    except OSError as exc:
        raise BadRequest("Cannot create the upload folder", type_="invalid_path", details=str(exc)) from None

    stem, ext = os.path.splitext(name)
    digest = hashlib.sha256(data).digest()
    for i in range(_MAX_RENAMES):
        candidate = name if i == 0 else f"{stem} ({i}){ext}"
        if len(candidate.encode("utf-8", "surrogatepass")) > 255:
            raise BadRequest("File name is too long", type_="invalid_path")
        target = folder / candidate
        occupied = os.path.lexists(target)
        inside = not occupied or is_inside(folder, target)
        try:
            if overwrite:
                if not inside:
                    raise BadRequest("path is outside its folder", status=403, type_="invalid_path")
                if target.is_dir():
                    raise BadRequest("A folder has this name", type_="invalid_path", details=candidate)
                atomic_write(target, data, overwrite=True)
                return candidate
            if occupied:
                # only a regular file inside the folder is ever read for the comparison
                if inside and target.is_file() and _same_contents(target, data, digest):
                    return candidate
                continue
            if atomic_write(target, data, overwrite=False):
                return candidate
        except OSError as exc:
            raise BadRequest("Cannot write the file", type_="invalid_path", details=str(exc)[:300]) from None
    raise BadRequest("Too many files with this name", status=409, type_="conflict")


async def upload_image(request: web.Request) -> web.Response:
    form = await _read_form(request)
    name, data = await _image_part(form)
    kind = _form_text(form, "type") or "input"
    root = _directory(request, kind)
    subfolder = _checked_subfolder(_form_text(form, "subfolder"), status=400)
    overwrite = _form_text(form, "overwrite") in ("true", "1")
    used = await asyncio.to_thread(store_upload, root, subfolder, name, data, overwrite)
    return web.json_response({"name": used, "subfolder": subfolder, "type": kind})


def _compose_mask(original: Path, mask_bytes: bytes) -> bytes:
    """The original image with the mask's alpha as its alpha, as PNG keeping the original's text chunks."""
    Image = _pil()
    from PIL.PngImagePlugin import PngInfo

    try:
        with open_image(original) as orig:
            info = PngInfo()
            for key, value in (getattr(orig, "text", None) or {}).items():
                info.add_text(key, value)
            rgba = orig.convert("RGBA")
        with open_image(io.BytesIO(mask_bytes)) as mask:
            alpha = mask.convert("RGBA").getchannel("A")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRequest("The original or the mask is not a readable image", type_="invalid_image",
                         details=str(exc)[:300]) from None
    if alpha.size != rgba.size:
        raise BadRequest("The mask's size differs from the original's", type_="invalid_image",
                         details=f"mask {alpha.size[0]}x{alpha.size[1]}, original {rgba.size[0]}x{rgba.size[1]}")
    rgba.putalpha(alpha)
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG", compress_level=4, pnginfo=info)
    return buffer.getvalue()


async def upload_mask(request: web.Request) -> web.Response:
    form = await _read_form(request)
    name, mask_bytes = await _image_part(form)
    kind = _form_text(form, "type") or "input"
    root = _directory(request, kind)
    subfolder = _checked_subfolder(_form_text(form, "subfolder"), status=400)
    overwrite = _form_text(form, "overwrite") in ("true", "1")

    raw_ref = _form_text(form, "original_ref")
    try:
        ref = json.loads(raw_ref)
    except ValueError:
        raise BadRequest("original_ref must be JSON {filename, subfolder, type}", type_="invalid_form") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str) or not ref["filename"]:
        raise BadRequest("original_ref must be JSON {filename, subfolder, type}", type_="invalid_form")
    ref_name, annotated = _split_annotation(ref["filename"])
    try:
        check_name(ref_name)
    except PathError as exc:
        raise _path_error(exc) from None
    ref_root = _directory(request, annotated or ref.get("type", "output"))
    ref_sub = _checked_subfolder(ref.get("subfolder", ""), status=403)
    try:
        original = safe_join(ref_root, ref_sub, ref_name, status=403)
    except PathError as exc:
        raise _path_error(exc) from None
    if not original.is_file():
        raise BadRequest("The original image does not exist", status=404, type_="not_found")

    composed = await asyncio.to_thread(_compose_mask, original, mask_bytes)
    used = await asyncio.to_thread(store_upload, root, subfolder, name, composed, overwrite)
    return web.json_response({"name": used, "subfolder": subfolder, "type": kind})


# --- model folders ---------------------------------------------------------------------------------
def folder_paths(request: web.Request) -> dict[str, list[Path]]:
    """ComfyUI's folder_names_and_paths order, custom_nodes included (after upscale_models)."""
    folders = hearth(request).folders
    out: dict[str, list[Path]] = {}
    for name, folder in folders.model_folders.items():
        out[name] = list(folder.paths)
        if name == "upscale_models":
            out["custom_nodes"] = list(folders.custom_nodes)
    out.setdefault("custom_nodes", list(folders.custom_nodes))
    return out


def _scan(root: Path, extensions: frozenset[str] | None, skip_hidden: bool) -> list[tuple[str, os.stat_result]]:
    """Files under root (relative '/' names, stat), following links that stay inside, each folder once."""
    if not root.is_dir():
        return []
    root_real = os.path.realpath(root)
    seen: set[tuple[int, int]] = set()
    out: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames.clear()
            continue
        if (st.st_dev, st.st_ino) in seen or not is_inside(root_real, dirpath):
            dirnames.clear()  # a link loop, or a link leaving the folder
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and not (skip_hidden and d.startswith(".")))
        rel_dir = os.path.relpath(dirpath, root)
        for fname in sorted(filenames):
            if skip_hidden and fname.startswith("."):
                continue
            if extensions is not None and os.path.splitext(fname)[1].lower() not in extensions:
                continue
            full = os.path.join(dirpath, fname)
            if not is_inside(root_real, full):
                continue
            try:
                fst = os.stat(full)
            except OSError:
                continue
            rel = fname if rel_dir == "." else os.path.join(rel_dir, fname)
            out.append((rel.replace(os.sep, "/"), fst))
    return out


async def list_model_types(request: web.Request) -> web.Response:
    return web.json_response(list(folder_paths(request)))


async def list_models(request: web.Request) -> web.Response:
    name = request.match_info["folder"]
    paths = folder_paths(request)
    if name not in paths:
        raise BadRequest("Unknown model folder", status=404, type_="not_found", details=name[:100])
    if name == "custom_nodes":
        files: dict[str, None] = {}
        for root in paths[name]:
            for rel, _ in await asyncio.to_thread(_scan, root, None, False):
                files.setdefault(rel, None)
        return web.json_response(sorted(files))
    return web.json_response(await asyncio.to_thread(hearth(request).folders.filenames, name))


async def experiment_models(request: web.Request) -> web.Response:
    return web.json_response([{"name": name, "folders": [str(p) for p in paths]}
                              for name, paths in folder_paths(request).items()
                              if name not in ("configs", "custom_nodes")])


def _model_file_list(paths: list[Path]) -> list[dict]:
    out = []
    for index, root in enumerate(paths):
        for rel, st in _scan(root, MODEL_EXTENSIONS, skip_hidden=True):
            out.append({"name": rel, "pathIndex": index, "modified": st.st_mtime, "created": st.st_ctime,
                        "size": st.st_size})
    return out


async def experiment_model_files(request: web.Request) -> web.Response:
    name = request.match_info["folder"]
    paths = folder_paths(request)
    if name not in paths:
        raise BadRequest("Unknown model folder", status=404, type_="not_found", details=name[:100])
    return web.json_response(await asyncio.to_thread(_model_file_list, paths[name]))


PREVIEW_EXTENSIONS = (".webp", ".png", ".jpg", ".jpeg", ".gif", ".bmp")
SAFETENSORS_HEADER_MAX = 8 * 1024 * 1024


def read_safetensors_header(path: Path, max_size: int = SAFETENSORS_HEADER_MAX) -> dict | None:
    """The JSON header of a .safetensors file, reading only its length prefix and the header itself.

    None when the file is not a readable safetensors file (short, a length beyond ``max_size`` or the
    file's size, or a header that is not a JSON object).
    """
    try:
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) != 8:
                return None
            (length,) = struct.unpack("<Q", prefix)
            if length < 2 or length > max_size or length > os.fstat(f.fileno()).st_size - 8:
                return None
            raw = f.read(length)
    except OSError:
        return None
    if len(raw) != length:
        return None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return header if isinstance(header, dict) else None


def _preview_webp(root: Path, filename: str) -> bytes | None:
    """A preview next to the model (``name.png``, ``name.preview.jpg``…) or embedded cover, as WEBP."""
    Image = _pil()
    stem = os.path.splitext(filename)[0]
    sources: list[Any] = []
    for suffix in ("", ".preview"):
        for ext in PREVIEW_EXTENSIONS:
            try:
                candidate = safe_join(root, stem + suffix + ext)
            except PathError:
                continue  # a link leaving the folder is not a preview
            if candidate.is_file():
                sources.append(candidate)
    try:
        model = safe_join(root, stem + ".safetensors")
    except PathError:
        model = None
    if model is not None and model.is_file():
        header = read_safetensors_header(model) or {}
        meta = header.get("__metadata__")
        covers = meta.get("ssmd_cover_images") if isinstance(meta, dict) else None
        if isinstance(covers, str):
            try:
                decoded = json.loads(covers)
            except ValueError:
                decoded = []
            for item in decoded if isinstance(decoded, list) else []:
                if isinstance(item, str):
                    try:
                        sources.append(io.BytesIO(base64.b64decode(item, validate=False)))
                    except ValueError:
                        continue
    for source in sources:
        try:
            with open_image(source) as img:
                if img.mode not in ("RGB", "RGBA"):
                    img = img.convert("RGBA" if _has_alpha(img) else "RGB")
                buffer = io.BytesIO()
                img.save(buffer, format="WEBP")
                return buffer.getvalue()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
    return None


async def experiment_model_preview(request: web.Request) -> web.Response:
    name = request.match_info["folder"]
    paths = folder_paths(request)
    if name not in paths:
        raise BadRequest("Unknown model folder", status=404, type_="not_found", details=name[:100])
    raw_index = request.match_info["path_index"]
    if not raw_index.isdigit() or len(raw_index) > 6:
        raise BadRequest("path_index must be a non-negative integer", type_="invalid_path",
                          details=raw_index[:50])
    index = int(raw_index)
    if index >= len(paths[name]):
        raise BadRequest("No such model path", status=404, type_="not_found")
    filename = request.match_info["filename"]
    if not filename or filename in (".", ".."):
        raise BadRequest("Invalid file name", type_="invalid_path")
    try:
        check_name(filename)
        safe_join(paths[name][index], filename, status=403)
    except PathError as exc:
        raise _path_error(exc) from None
    body = await asyncio.to_thread(_preview_webp, paths[name][index], filename)
    if body is None:
        raise BadRequest("No preview for this model", status=404, type_="not_found")
    return web.Response(body=body, content_type="image/webp")


async def view_metadata(request: web.Request) -> web.Response:
    folders = hearth(request).folders
    name = request.match_info["folder_name"]
    filename = request.query.get("filename")
    if filename is None or not filename.endswith(".safetensors"):
        raise BadRequest("filename must name a .safetensors file", status=404, type_="not_found")
    try:
        check_name(filename)
    except PathError as exc:
        raise _path_error(exc) from None
    if folders.folder(name) is None:
        raise BadRequest("Unknown model folder", status=404, type_="not_found", details=name[:100])
    path = await asyncio.to_thread(folders.full_path, name, filename)
    if path is None or not path.is_file():
        raise BadRequest("No such model", status=404, type_="not_found")
    header = await asyncio.to_thread(read_safetensors_header, path)
    if header is None or not isinstance(header.get("__metadata__"), dict):
        raise BadRequest("The file has no readable metadata", status=404, type_="not_found")
    return web.json_response(header["__metadata__"])


# --- /internal -------------------------------------------------------------------------------------
async def internal_folder_paths(request: web.Request) -> web.Response:
    return web.json_response({name: [str(p) for p in paths] for name, paths in folder_paths(request).items()})


def _newest_first(directory: Path) -> list[str]:
    root_real = os.path.realpath(directory)
    entries: list[tuple[float, str]] = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    if not entry.is_file() or not is_inside(root_real, entry.path):
                        continue
                    entries.append((entry.stat().st_mtime, entry.name))
                except OSError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries.sort(key=lambda e: (-e[0], e[1]))
    return [name for _, name in entries]


async def internal_files(request: web.Request) -> web.Response:
    kind = request.match_info["directory_type"]
    if kind not in DIRECTORY_TYPES:
        return web.json_response({"error": "Invalid directory type"}, status=400)
    directory = hearth(request).folders.directory(kind)
    return web.json_response(await asyncio.to_thread(_newest_first, directory))


# --- custom-node extras (filled in once custom nodes load) ----------------------------------------
async def i18n(request: web.Request) -> web.Response:
    return web.json_response({})


async def workflow_templates(request: web.Request) -> web.Response:
    return web.json_response({})


def add_routes(routes: Routes) -> None:
    routes.add("GET", "/view", view)
    routes.add("POST", "/upload/image", upload_image)
    routes.add("POST", "/upload/mask", upload_mask)
    routes.add("GET", "/view_metadata/{folder_name}", view_metadata)
    routes.add("GET", "/models", list_model_types)
    routes.add("GET", "/models/{folder}", list_models)
    routes.add("GET", "/experiment/models", experiment_models)
    routes.add("GET", "/experiment/models/{folder}", experiment_model_files)
    routes.add("GET", "/experiment/models/preview/{folder}/{path_index}/{filename:.*}", experiment_model_preview)
    routes.add("GET", "/internal/folder_paths", internal_folder_paths, mirror=False)
    routes.add("GET", "/internal/files/{directory_type}", internal_files, mirror=False)
    routes.add("GET", "/i18n", i18n)
    routes.add("GET", "/workflow_templates", workflow_templates)
