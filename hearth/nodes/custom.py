"""Loading custom node packs from custom_nodes/ folders into the registry.

A pack is a package (folder with __init__.py) or a single .py file exposing NODE_CLASS_MAPPINGS
(and optionally NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY). One pack failing to import is
logged with its traceback and listed as failed; it never stops the server or the other packs.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hearth.nodes.registry import NodeRegistry

log = logging.getLogger(__name__)


@dataclass
class PackResult:
    name: str
    path: Path
    ok: bool
    seconds: float
    nodes: list[str] = field(default_factory=list)
    error: str | None = None
    web_directory: Path | None = None


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


def load_pack(path: Path, registry: NodeRegistry) -> PackResult:
    name = path.stem if path.is_file() else path.name
    module_name = f"custom_nodes.{name}" if path.is_dir() else name
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
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if not isinstance(mappings, dict):
            raise ImportError(f"{name} has no NODE_CLASS_MAPPINGS")
        display = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}) or {}
        python_module = f"custom_nodes.{name}"
        registry.register_mappings(mappings, display, python_module)
        web_dir = None
        web = getattr(module, "WEB_DIRECTORY", None)
        if isinstance(web, str):
            candidate = (path if path.is_dir() else path.parent) / web
            if candidate.is_dir():
                web_dir = candidate.resolve()
        return PackResult(name, path, True, time.perf_counter() - start, list(mappings), None, web_dir)
    except Exception:  # a broken pack: report it, keep going
        sys.modules.pop(module_name, None)
        err = traceback.format_exc()
        log.error("Cannot import custom node pack %s:\n%s", path, err)
        return PackResult(name, path, False, time.perf_counter() - start, [], err)


def load_custom_nodes(folders: list[Path], registry: NodeRegistry, whitelist: list[str] | None = None
                      ) -> list[PackResult]:
    results = []
    for folder in folders:
        for path in _candidates(Path(folder)):
            if whitelist is not None and path.name not in whitelist and path.stem not in whitelist:
                continue
            results.append(load_pack(path, registry))
    if results:
        log.info("Import times for custom nodes:")
        for r in sorted(results, key=lambda r: -r.seconds):
            log.info("  %6.1f seconds%s: %s", r.seconds, "" if r.ok else " (IMPORT FAILED)", r.path)
    return results
