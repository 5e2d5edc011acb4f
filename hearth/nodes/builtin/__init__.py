"""Hearth's built-in node library, registered under ComfyUI's class names.

Each module has NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS, and may declare the ComfyUI module
its nodes come from (/object_info's ``python_module``): ``PYTHON_MODULE`` for the whole module ("nodes"
when absent) and ``NODE_PYTHON_MODULES`` {class name: module} for the nodes that differ.
"""
from __future__ import annotations

from hearth.nodes.registry import NodeRegistry


def register_builtin_nodes(registry: NodeRegistry) -> None:
    from hearth.nodes.builtin import (compositing, image, images, latent, mask, morphology, postprocessing,
                                      primitive, sd, string, utility)

    for module in (image, images, mask, latent, postprocessing, compositing, morphology, primitive, string, utility,
                   sd):
        default = getattr(module, "PYTHON_MODULE", "nodes")
        overrides = getattr(module, "NODE_PYTHON_MODULES", {})
        by_module: dict[str, dict[str, type]] = {}
        for name, cls in module.NODE_CLASS_MAPPINGS.items():
            by_module.setdefault(overrides.get(name, default), {})[name] = cls
        for python_module, mappings in by_module.items():
            registry.register_mappings(mappings, module.NODE_DISPLAY_NAME_MAPPINGS, python_module)
