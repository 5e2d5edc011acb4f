"""Loading custom node packs from custom_nodes/ folders into the registry, as ComfyUI does.

A pack is a package (folder with __init__.py) or a single .py file. It declares its nodes with
``NODE_CLASS_MAPPINGS`` (and ``NODE_DISPLAY_NAME_MAPPINGS``) or, V3 style, with
``comfy_entrypoint()`` returning a ``ComfyExtension`` whose ``get_node_list()`` names
``io.ComfyNode`` classes. ``WEB_DIRECTORY`` (or ``[tool.comfy] web`` in its pyproject.toml) is a
folder of frontend scripts served under /extensions/<pack>/. A package's ``prestartup_script.py``
runs before any pack is imported.

One pack failing to import is logged with its traceback (and, for a missing module, whether it is
a dependency to install or a ComfyUI internal Hearth lacks) and listed as failed; it never stops
the server or the other packs. Import times are logged per pack. Node names that Hearth's built-in
nodes already use are not replaced (ComfyUI protects its own the same way).
"""
from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.nodes.registry import NodeRegistry

log = logging.getLogger(__name__)

PACKAGE_PARENT = "custom_nodes"  # packs are importable as custom_nodes.<name>, as under ComfyUI's root


@dataclass
class PackResult:
    name: str
    path: Path
    ok: bool
    seconds: float
    nodes: list[str] = field(default_factory=list)
    error: str | None = None
    web_directory: Path | None = None
    skipped: list[str] = field(default_factory=list)  # names that built-in nodes already use


@dataclass
class PrestartupResult:
    path: Path
    ok: bool
    seconds: float
    error: str | None = None


def _candidates(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    out = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name == "__pycache__" or entry.name.endswith(".disabled"):
            continue
        if entry.is_dir() and (entry / "__init__.py").is_file():
            out.append(entry)
        elif entry.is_file() and entry.suffix == ".py":
            out.append(entry)
    return out


def _pack_name(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _module_name(path: Path) -> str:
    return f"{PACKAGE_PARENT}.{_pack_name(path).replace('.', '_x_')}"


def _allowed(path: Path, whitelist: list[str] | None) -> bool:
    return whitelist is None or path.name in whitelist or path.stem in whitelist


def _ensure_parent_package(folders: list[Path]) -> None:
    """``custom_nodes`` as a namespace package over the custom node folders (``import custom_nodes.X`` works)."""
    parent = sys.modules.get(PACKAGE_PARENT)
    paths = [str(Path(f)) for f in folders]
    if parent is None or not hasattr(parent, "__path__"):
        parent = types.ModuleType(PACKAGE_PARENT, "Custom node packs (loaded by Hearth)")
        parent.__path__ = []  # type: ignore[attr-defined]
        sys.modules[PACKAGE_PARENT] = parent
    for p in paths:
        if p not in parent.__path__:
            parent.__path__.append(p)


def explain_import_error(exc: BaseException) -> str | None:
    """One line saying what a failed import lacks: a pack dependency, or a ComfyUI internal."""
    from hearth.compat.finder import provided_by_hearth

    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing:
        if provided_by_hearth(missing):
            return (f"it imports '{missing}', a ComfyUI internal that Hearth's compatibility layer does not "
                    "provide")
        top = missing.partition(".")[0]
        return (f"it needs the Python package that provides '{top}', which is not installed; Hearth does not "
                "install packs' dependencies: install them into Hearth's environment "
                "(pip install -r <pack>/requirements.txt)")
    if isinstance(exc, ImportError) and getattr(exc, "name", None) and provided_by_hearth(exc.name):
        return f"Hearth's '{exc.name}' does not provide that name (a ComfyUI internal)"
    return None


def run_coroutine(coroutine) -> Any:
    """Finish a coroutine from sync code, even while this thread's event loop runs (as at start-up)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def worker():
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    import contextvars

    thread = threading.Thread(target=contextvars.copy_context().run, args=(worker,), name="hearth-pack-entrypoint")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def register_node_class(registry: NodeRegistry, name: str, cls: type, display_name: str | None,
                        python_module: str) -> None:
    """Register one node class; V3 classes go in through their V1 adapter (hearth.compat.v3)."""
    from hearth.compat import v3

    if v3.is_v3_node(cls):
        adapter = v3.adapt(cls, python_module)
        schema_name = cls.SCHEMA.display_name if cls.SCHEMA is not None else None
        registry.register(name, adapter, display_name or schema_name, python_module)
        return
    try:
        cls.RELATIVE_PYTHON_MODULE = python_module  # ComfyUI sets it on every pack class
    except (AttributeError, TypeError):
        pass
    registry.register(name, cls, display_name, python_module)


def _web_directory(module: types.ModuleType, path: Path) -> Path | None:
    module_dir = path if path.is_dir() else path.parent
    web = getattr(module, "WEB_DIRECTORY", None)
    candidates = []
    if isinstance(web, str):
        candidates.append(module_dir / web)
    if path.is_dir() and (path / "pyproject.toml").is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10
            tomllib = None
        if tomllib is not None:
            try:
                data = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))
                configured = data.get("tool", {}).get("comfy", {}).get("web")
                if isinstance(configured, str) and configured:
                    candidates.append(module_dir / configured)
            except (OSError, ValueError):
                pass
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _register_pack(module: types.ModuleType, name: str, registry: NodeRegistry, reserved: set[str]
                   ) -> tuple[list[str], list[str]]:
    """Register the pack's nodes; returns (registered, skipped because built-ins own the name)."""
    python_module = f"{PACKAGE_PARENT}.{name}"
    registered: list[str] = []
    skipped: list[str] = []
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if mappings is not None:
        if not isinstance(mappings, dict):
            raise TypeError(f"NODE_CLASS_MAPPINGS of {name} is a {type(mappings).__name__}, not a dict")
        display = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
        for node_name, cls in mappings.items():
            if node_name in reserved:
                skipped.append(node_name)
                continue
            register_node_class(registry, node_name, cls, display.get(node_name), python_module)
            registered.append(node_name)
        # ComfyUI merges a pack's display names globally: a pack may name other packs' nodes too.
        for node_name, title in display.items():
            entry = registry.entry(node_name)
            if entry is not None and node_name not in mappings and node_name not in reserved:
                entry.display_name = title
        return registered, skipped
    entrypoint = getattr(module, "comfy_entrypoint", None)
    if entrypoint is None:
        raise ImportError(f"{name} defines neither NODE_CLASS_MAPPINGS nor comfy_entrypoint")
    if not callable(entrypoint):
        raise TypeError(f"comfy_entrypoint of {name} is not callable")
    from hearth.compat import v3

    extension = entrypoint()
    if inspect.isawaitable(extension):
        extension = run_coroutine(extension)
    if not v3.is_extension(extension):
        raise TypeError(f"comfy_entrypoint of {name} returned {type(extension).__name__}, not a ComfyExtension")
    run_coroutine(extension.on_load())
    node_list = run_coroutine(extension.get_node_list())
    if not isinstance(node_list, list):
        raise TypeError(f"get_node_list of {name} returned {type(node_list).__name__}, not a list")
    for cls in node_list:
        if not v3.is_v3_node(cls):
            raise TypeError(f"{name}: {cls!r} in get_node_list is not an io.ComfyNode class")
        node_id = cls.GET_SCHEMA().node_id
        if node_id in reserved:
            skipped.append(node_id)
            continue
        register_node_class(registry, node_id, cls, None, python_module)
        registered.append(node_id)
    return registered, skipped


def load_pack(path: Path, registry: NodeRegistry, reserved: set[str] | None = None) -> PackResult:
    name = _pack_name(path)
    module_name = _module_name(path)
    reserved = reserved if reserved is not None else set()
    start = time.perf_counter()
    try:
        if path.is_dir():
            spec = importlib.util.spec_from_file_location(module_name, path / "__init__.py",
                                                          submodule_search_locations=[str(path)])
        else:
            spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _note_module_dir(name, path)
        registered, skipped = _register_pack(module, name, registry, reserved)
        if skipped:
            log.warning("custom node pack %s: not replacing built-in nodes %s", name, ", ".join(skipped))
        return PackResult(name, path, True, time.perf_counter() - start, registered, None,
                          _web_directory(module, path), skipped)
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # a broken pack (even one calling sys.exit): report it, keep going
        sys.modules.pop(module_name, None)
        err = traceback.format_exc()
        reason = explain_import_error(exc)
        summary = f"{type(exc).__name__}: {exc}" + (f" — {reason}" if reason else "")
        log.error("Cannot import custom node pack %s: %s\n%s", path, summary, err)
        return PackResult(name, path, False, time.perf_counter() - start, [], f"{summary}\n{err}")


def _note_module_dir(name: str, path: Path) -> None:
    from hearth.compat import binding

    state = binding.maybe_state()
    if state is not None:
        state.loaded_module_dirs[name] = str((path if path.is_dir() else path.parent).resolve())


def run_prestartup_scripts(folders: list[Path], whitelist: list[str] | None = None) -> list[PrestartupResult]:
    """Each package's prestartup_script.py, before any pack is imported (ComfyUI runs them first)."""
    results = []
    for folder in folders:
        for path in _candidates(Path(folder)):
            script = path / "prestartup_script.py"
            if not path.is_dir() or not script.is_file() or not _allowed(path, whitelist):
                continue
            start = time.perf_counter()
            try:
                spec = importlib.util.spec_from_file_location(f"{_module_name(path)}_prestartup", script)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {script}")
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
                results.append(PrestartupResult(script, True, time.perf_counter() - start))
            except (KeyboardInterrupt, GeneratorExit):
                raise
            except BaseException as exc:
                err = traceback.format_exc()
                log.error("Failed to execute startup-script %s: %s\n%s", script, exc, err)
                results.append(PrestartupResult(script, False, time.perf_counter() - start, err))
    if results:
        log.info("Prestartup times for custom nodes:")
        for r in sorted(results, key=lambda r: -r.seconds):
            log.info("  %6.1f seconds%s: %s", r.seconds, "" if r.ok else " (PRESTARTUP FAILED)", r.path.parent)
    return results


def load_custom_nodes(folders: list[Path], registry: NodeRegistry, whitelist: list[str] | None = None
                      ) -> list[PackResult]:
    """Run prestartup scripts, then import every pack of ``folders`` (only ``whitelist`` when given)."""
    source = folders
    folders = [Path(f) for f in source]
    _ensure_parent_package(folders)
    run_prestartup_scripts(folders, whitelist)
    folders = [Path(f) for f in source]  # a prestartup script may have added folders (folder_paths)
    _ensure_parent_package(folders)
    reserved = set(registry.names())  # built-in names: packs cannot replace them
    results = []
    for folder in folders:
        for path in _candidates(folder):
            if not _allowed(path, whitelist):
                log.info("Skipping %s due to disable_all_custom_nodes and whitelist_custom_nodes", path.name)
                continue
            results.append(load_pack(path, registry, reserved))
    if results:
        log.info("Import times for custom nodes:")
        for r in sorted(results, key=lambda r: -r.seconds):
            log.info("  %6.1f seconds%s: %s", r.seconds, "" if r.ok else " (IMPORT FAILED)", r.path)
        failed = [r.name for r in results if not r.ok]
        if failed:
            log.warning("%d custom node pack(s) failed to import: %s", len(failed), ", ".join(failed))
    return results
