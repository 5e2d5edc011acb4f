"""Hearth's built-in node library, registered under ComfyUI's class names.

Each module has NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS, and may declare the ComfyUI module
its nodes come from (/object_info's ``python_module``): ``PYTHON_MODULE`` for the whole module ("nodes"
when absent) and ``NODE_PYTHON_MODULES`` {class name: module} for the nodes that differ.
"""
from __future__ import annotations

from hearth.nodes.registry import NodeRegistry


# Modules registered first, in this order; any other module of this package follows, by name.
_FIRST = ("image", "images", "mask", "latent", "postprocessing", "compositing", "morphology", "primitive", "string",
          "utility", "sd")


def builtin_modules() -> list:
    """Every node module of this package (each must import without torch: model code loads lazily)."""
    import importlib
    import pkgutil

    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    names = [n for n in _FIRST if n in found] + sorted(found - set(_FIRST))
    modules = [importlib.import_module(f"{__name__}.{n}") for n in names]
    return [m for m in modules if hasattr(m, "NODE_CLASS_MAPPINGS")]


def register_builtin_nodes(registry: NodeRegistry) -> None:
    for module in builtin_modules():
        default = getattr(module, "PYTHON_MODULE", "nodes")
        overrides = getattr(module, "NODE_PYTHON_MODULES", {})
        by_module: dict[str, dict[str, type]] = {}
        for name, cls in module.NODE_CLASS_MAPPINGS.items():
            by_module.setdefault(overrides.get(name, default), {})[name] = cls
        for python_module, mappings in by_module.items():
            registry.register_mappings(mappings, module.NODE_DISPLAY_NAME_MAPPINGS, python_module)
