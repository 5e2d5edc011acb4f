"""ComfyUI's ``nodes`` module over the bound App's node registry.

``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS`` are live views of the registry
(built-ins and every loaded pack; a pack that adds to them adds to the registry), and the
built-in classes of ComfyUI's nodes.py (``nodes.KSampler``, ``nodes.SaveImage`` …) are Hearth's.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any, Iterator

from hearth.compat import binding
from hearth.compat.shims_support import module_getattr, not_provided, original_class
from hearth.nodes.builtin.sd import MAX_RESOLUTION, common_ksampler  # noqa: F401  (torch-free imports)


def _registry():
    return binding.app().registry


class _ClassMappings(MutableMapping):
    """class_type -> node class, read from (and written to) the registry."""

    def __getitem__(self, name: str) -> type:
        cls = _registry().get(name)
        if cls is None:
            raise KeyError(name)
        return original_class(cls)

    def __setitem__(self, name: str, cls: type) -> None:
        from hearth.nodes.custom import register_node_class

        register_node_class(_registry(), name, cls, None, getattr(cls, "RELATIVE_PYTHON_MODULE", None) or "nodes")

    def __delitem__(self, name: str) -> None:
        raise TypeError("Hearth does not remove node classes from its registry at run time")

    def __iter__(self) -> Iterator[str]:
        return iter(_registry().names())

    def __len__(self) -> int:
        return len(_registry())

    def __contains__(self, name: object) -> bool:
        return name in _registry()

    def __repr__(self) -> str:
        return f"<NODE_CLASS_MAPPINGS: {len(self)} node classes>"


class _DisplayNames(MutableMapping):
    """class_type -> display name, as the registry holds them."""

    def __getitem__(self, name: str) -> str:
        entry = _registry().entry(name)
        if entry is None:
            raise KeyError(name)
        return entry.display_name

    def __setitem__(self, name: str, display_name: str) -> None:
        entry = _registry().entry(name)
        if entry is not None:
            entry.display_name = display_name

    def __delitem__(self, name: str) -> None:
        raise TypeError("Hearth does not remove display names at run time")

    def __iter__(self) -> Iterator[str]:
        return iter(_registry().names())

    def __len__(self) -> int:
        return len(_registry())

    def __contains__(self, name: object) -> bool:
        return name in _registry()


NODE_CLASS_MAPPINGS = _ClassMappings()
NODE_DISPLAY_NAME_MAPPINGS = _DisplayNames()


class _WebDirs(MutableMapping):
    """ComfyUI's EXTENSION_WEB_DIRS: pack name -> web folder, from the App's loaded packs."""

    def _dirs(self) -> dict[str, str]:
        return {name: str(path) for name, path in binding.app().web_extensions().items()}

    def __getitem__(self, name: str) -> str:
        return self._dirs()[name]

    def __setitem__(self, name: str, value: str) -> None:
        raise TypeError("EXTENSION_WEB_DIRS is read-only in Hearth: declare WEB_DIRECTORY in the pack")

    def __delitem__(self, name: str) -> None:
        raise TypeError("EXTENSION_WEB_DIRS is read-only in Hearth")

    def __iter__(self) -> Iterator[str]:
        return iter(self._dirs())

    def __len__(self) -> int:
        return len(self._dirs())


EXTENSION_WEB_DIRS = _WebDirs()


def before_node_execution() -> None:
    from hearth.engine.progress import check_interrupt

    check_interrupt()


def interrupt_processing(value: bool = True) -> None:
    interrupt = binding.app().worker.interrupt
    interrupt.set() if value else interrupt.clear()


def get_module_name(module_path: str) -> str:
    base = os.path.basename(module_path.rstrip("/\\"))
    if os.path.isfile(module_path):
        base = os.path.splitext(base)[0]
    return base


load_custom_node = not_provided("nodes.load_custom_node", "Hearth loads packs itself at start-up")
init_extra_nodes = not_provided("nodes.init_extra_nodes", "Hearth loads packs itself at start-up")
init_external_custom_nodes = not_provided("nodes.init_external_custom_nodes", "Hearth loads packs itself")


def _builtin(name: str) -> Any:
    entry = _registry().entry(name)
    if entry is not None and entry.python_module == "nodes":
        return original_class(entry.cls)
    return None


def _lazy() -> dict:
    return {"LOADED_MODULE_DIRS": lambda: binding.state().loaded_module_dirs}


_fallback_getattr = module_getattr("nodes", _lazy())


def __getattr__(name: str) -> Any:
    if not name.startswith("__"):
        cls = _builtin(name)
        if cls is not None:
            return cls
    return _fallback_getattr(name)
