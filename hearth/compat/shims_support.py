"""Helpers the shim modules share: live registry lookups and loud "not provided" errors."""
from __future__ import annotations

from typing import Any, Callable

from hearth.compat import binding


class NotProvidedError(NotImplementedError):
    """A ComfyUI function that Hearth's compatibility layer does not offer (yet)."""


def module_getattr(module_name: str, lazy: dict[str, Callable[[], Any]] | None = None) -> Callable[[str], Any]:
    """A PEP 562 ``__getattr__``: values computed on access, else an error naming the attribute."""
    lazy = lazy or {}

    def __getattr__(name: str) -> Any:
        factory = lazy.get(name)
        if factory is not None:
            return factory()
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"module {module_name!r} has no attribute {name!r} "
                             "(a ComfyUI internal that Hearth's compatibility layer does not provide)")

    return __getattr__


def not_provided(qualname: str, why: str = "") -> Callable[..., Any]:
    """A stand-in that fails loudly when called, naming the missing function (never a silent stub)."""

    def missing(*args: Any, **kwargs: Any) -> Any:
        detail = f": {why}" if why else ""
        raise NotProvidedError(f"{qualname} is not provided by Hearth's ComfyUI compatibility layer{detail}")

    missing.__name__ = qualname.rsplit(".", 1)[-1]
    missing.__qualname__ = qualname
    return missing


def not_provided_class(qualname: str, why: str = "") -> type:
    """A class packs may name or subclass at import time; making one fails loudly, naming it."""
    detail = f": {why}" if why else ""
    message = f"{qualname} is not provided by Hearth's ComfyUI compatibility layer{detail}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotProvidedError(message)

    module, _, name = qualname.rpartition(".")
    return type(name, (), {"__init__": __init__, "__module__": module, "__doc__": message})


def registry_has_module(python_module: str) -> bool:
    state = binding.maybe_state()
    if state is None:
        return False
    registry = state.app.registry
    return any(registry.entry(name).python_module == python_module for name in registry.names())


# Functions some packs import from comfy_extras modules, mapped onto Hearth's own.
_EXTRAS_FUNCTIONS: dict[str, dict[str, str]] = {
    "comfy_extras.nodes_mask": {"composite": "hearth.nodes.builtin.mask:composite"},
}


def registry_module_getattr(python_module: str) -> Callable[[str], Any]:
    """``comfy_extras.nodes_x.Name``: the registry's class ``Name`` of that python_module."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = _EXTRAS_FUNCTIONS.get(python_module, {}).get(name)
        if target is not None:
            import importlib

            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr)
        registry = binding.app().registry
        entry = registry.entry(name)
        if entry is not None and entry.python_module == python_module:
            return original_class(entry.cls)
        raise AttributeError(f"module {python_module!r} has no attribute {name!r} "
                             "(Hearth provides this module's node classes only)")

    return __getattr__


def original_class(cls: type) -> type:
    """The class a pack defined (a V3 node's own class rather than the engine's adapter)."""
    return getattr(cls, "V3_CLASS", None) or cls
