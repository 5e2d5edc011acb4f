"""The node registry: class_type -> node class, and /object_info generated from it.

Built-in nodes and custom nodes are the same kind of thing: plain classes
following ComfyUI's protocol (INPUT_TYPES, RETURN_TYPES, FUNCTION, …).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class NodeEntry:
    cls: type
    display_name: str
    python_module: str


class NodeRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeEntry] = {}
        # the engine's facts about each class, reused while INPUT_TYPES() stays equal (engine/nodeclass.py)
        self.class_infos: dict = {}

    def register(self, class_type: str, cls: type, display_name: str | None = None,
                 python_module: str = "nodes") -> None:
        self._nodes[class_type] = NodeEntry(cls, display_name or class_type, python_module)

    def register_mappings(self, class_mappings: dict[str, type], display_names: dict[str, str] | None = None,
                          python_module: str = "nodes") -> None:
        display_names = display_names or {}
        for name, cls in class_mappings.items():
            self.register(name, cls, display_names.get(name), python_module)

    def get(self, class_type: str) -> type | None:
        entry = self._nodes.get(class_type)
        return entry.cls if entry else None

    def entry(self, class_type: str) -> NodeEntry | None:
        return self._nodes.get(class_type)

    def __contains__(self, class_type: object) -> bool:
        return class_type in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def names(self) -> list[str]:
        return list(self._nodes)

    def node_info(self, class_type: str) -> dict[str, Any]:
        """One node's /object_info entry, with ComfyUI's keys."""
        entry = self._nodes[class_type]
        cls = entry.cls
        v1_info = getattr(cls, "GET_NODE_INFO_V1", None)
        if callable(v1_info):
            # V3 nodes (comfy_api io.ComfyNode, adapted by hearth.compat.v3) describe themselves, as in ComfyUI.
            info = dict(v1_info())
            info["python_module"] = entry.python_module
            return info
        input_types = cls.INPUT_TYPES()
        outputs = list(getattr(cls, "RETURN_TYPES", ()))
        info: dict[str, Any] = {
            "input": input_types,
            "input_order": {section: list(spec.keys()) for section, spec in input_types.items()
                            if isinstance(spec, dict)},
            "output": outputs,
            "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(outputs))),
            "output_name": list(getattr(cls, "RETURN_NAMES", outputs)),
            "name": class_type,
            "display_name": entry.display_name,
            "description": getattr(cls, "DESCRIPTION", ""),
            "python_module": entry.python_module,
            "category": getattr(cls, "CATEGORY", "sd"),
            # ComfyUI compares with == True, so only a real True (or 1) makes an output node.
            "output_node": getattr(cls, "OUTPUT_NODE", False) == True,  # noqa: E712
        }
        if hasattr(cls, "OUTPUT_TOOLTIPS"):
            info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
        for attr, key in (("DEPRECATED", "deprecated"), ("EXPERIMENTAL", "experimental"), ("DEV_ONLY", "dev_only")):
            if getattr(cls, attr, False):
                info[key] = True
        if hasattr(cls, "API_NODE"):
            info["api_node"] = cls.API_NODE  # ComfyUI sends it whenever the class defines it, False included
        aliases = getattr(cls, "SEARCH_ALIASES", None)
        if aliases:
            info["search_aliases"] = list(aliases)
        return info

    def object_info(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name in self._nodes:
            try:
                result[name] = self.node_info(name)
            except Exception:  # one broken custom node must not break the UI's node list
                log.exception("object_info failed for node %s", name)
        return result
