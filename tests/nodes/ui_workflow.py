"""UI-format (litegraph) workflow -> API-format prompt, the way ComfyUI's frontend builds it when you queue.

Written from the frontend's behaviour (graphToPrompt in comfyui_frontend_package 1.36):

* every widget of a node is serialised under its input name; a node's widgets are made, in /object_info input
  order (required, then optional), for its INT/FLOAT/STRING/BOOLEAN/COMBO inputs that are not ``forceInput``;
  ``widgets_values`` lists their values in that order, plus the values of the frontend's own extra widgets: the
  "control_after_generate" value after an INT named seed/noise_seed (or any input flagged
  ``control_after_generate``; a COMBO flagged so also gets a "control_filter_list" value), and the "upload"
  button after an image/video/audio upload COMBO. Those extras are not sent;
* a linked input becomes ``[str(origin_id), origin_slot]``; links are followed through legacy Reroute nodes and
  through bypassed (mode 4) nodes, which pass an input of the output's type (the same slot index preferred);
  a PrimitiveNode feeding a widget input gives its value instead of a link;
* muted (mode 2) and bypassed nodes are not sent, and inputs linked to a node that is not sent are dropped;
  virtual nodes (Reroute, PrimitiveNode, Note, MarkdownNote) are never sent;
* list values are wrapped as ``{"__value__": [...]}``;
* subgraph nodes are expanded: inner nodes get ids ``"<outer id>:<inner id>"``; links from the subgraph's input
  node continue outside, links into its output node are followed inside.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

VIRTUAL = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")
MUTED, BYPASSED = 2, 4
SUBGRAPH_IN, SUBGRAPH_OUT = -10, -20


def widget_slots(info: dict) -> list[str | None]:
    """The widget names of a node (from its /object_info entry), None for frontend-only widgets."""
    slots: list[str | None] = []
    order = info.get("input_order") or {s: list(info["input"].get(s, {})) for s in ("required", "optional")}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"].get(section, {}).get(name)
            if not spec:
                continue
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            is_combo = isinstance(kind, list) or kind == "COMBO"
            if not (is_combo or kind in WIDGET_TYPES) or opts.get("forceInput"):
                continue
            slots.append(name)
            if kind == "INT" and opts.get("control_after_generate", name in ("seed", "noise_seed")):
                slots.append(None)
            elif kind == "FLOAT" and opts.get("control_after_generate"):
                slots.append(None)
            elif is_combo and opts.get("control_after_generate"):
                slots.extend([None, None])
            if is_combo and any(opts.get(flag) for flag in UPLOAD_FLAGS):
                slots.append(None)
    return slots


def widget_default(info: dict, name: str) -> Any:
    """The value a fresh widget starts with (the frontend's defaults)."""
    for section in ("required", "optional"):
        spec = info["input"].get(section, {}).get(name)
        if spec:
            break
    else:
        return None
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in opts:
        return opts["default"]
    if isinstance(kind, list):
        return kind[0] if kind else None
    if kind == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else None
    return {"INT": 0, "FLOAT": 0, "STRING": "", "BOOLEAN": False}.get(kind)


@dataclass
class Scope:
    """One graph level: the root graph or one expanded subgraph instance."""

    prefix: str
    nodes: dict[int, dict]
    links: dict[int, dict]
    parent: tuple["Scope", dict] | None = None


@dataclass
class Conversion:
    prompt: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    node_types: set[str] = field(default_factory=set)


def _links(raw: list) -> dict[int, dict]:
    out = {}
    for link in raw or []:
        if isinstance(link, dict):
            out[link["id"]] = link
        else:
            lid, origin, oslot, target, tslot, typ = link[:6]
            out[lid] = {"id": lid, "origin_id": origin, "origin_slot": oslot, "target_id": target,
                        "target_slot": tslot, "type": typ}
    return out


def _wrap(value: Any) -> Any:
    return {"__value__": value} if isinstance(value, list) else value


def convert(workflow: dict, node_info: Callable[[str], dict | None]) -> Conversion:
    """``node_info(class_type)`` answers the /object_info entry of a node type (None when unknown)."""
    subgraphs = {s["id"]: s for s in (workflow.get("definitions") or {}).get("subgraphs", [])}
    conv = Conversion()
    root = Scope("", {n["id"]: n for n in workflow["nodes"]}, _links(workflow.get("links")))

    def widget_values(node: dict, scope: Scope) -> dict[str, Any]:
        values = node.get("widgets_values")
        info = node_info(node["type"])
        if info is None:
            return {}
        if isinstance(values, dict):
            return {k: _wrap(v) for k, v in values.items()}
        slots = widget_slots(info)
        # a widget the saved list does not cover keeps the value it was created with: its default
        out = {slot: _wrap(widget_default(info, slot)) for slot in slots if slot is not None}
        if values is None:
            return out
        if len(values) != len(slots):
            conv.warnings.append(f"{scope.prefix}{node['id']} {node['type']}: {len(values)} widget values for "
                                 f"{len(slots)} widgets")
        out.update({slot: _wrap(v) for slot, v in zip(slots, values) if slot is not None})
        return out

    def resolve(scope: Scope, link_id: int | None, seen: frozenset = frozenset()):
        """('link', api_id, slot) | ('value', v) | None, for the link feeding an input."""
        if link_id is None or (id(scope), link_id) in seen:
            return None
        seen = seen | {(id(scope), link_id)}
        link = scope.links.get(link_id)
        if link is None:
            return None
        origin_id, slot = link["origin_id"], int(link["origin_slot"])
        if origin_id == SUBGRAPH_IN:
            outer, outer_node = scope.parent
            inputs = outer_node.get("inputs") or []
            if slot >= len(inputs):
                return None
            inp = inputs[slot]
            if inp.get("link") is not None:
                return resolve(outer, inp["link"], seen)
            if inp.get("widget"):  # a promoted widget: its value sits on the subgraph node
                own = widget_values_of_subgraph_node(outer_node)
                if inp["name"] in own:
                    return ("value", own[inp["name"]])
            return None
        origin = scope.nodes.get(origin_id)
        if origin is None:
            return None
        kind = origin["type"]
        if kind in subgraphs and origin.get("mode", 0) not in (MUTED, BYPASSED):
            inner = inner_scope(scope, origin)
            for inner_link in inner.links.values():
                if inner_link["target_id"] == SUBGRAPH_OUT and int(inner_link["target_slot"]) == slot:
                    return resolve(inner, inner_link["id"], seen)
            return None
        if kind == "Reroute":
            inputs = origin.get("inputs") or []
            return resolve(scope, inputs[0].get("link"), seen) if inputs else None
        if kind == "PrimitiveNode":
            values = origin.get("widgets_values") or []
            return ("value", _wrap(values[0])) if values else None
        if origin.get("mode", 0) == BYPASSED:
            outputs = origin.get("outputs") or []
            inputs = origin.get("inputs") or []
            out_type = outputs[slot]["type"] if slot < len(outputs) else None
            index = None
            if slot < len(inputs) and (out_type in ("*", "") or inputs[slot].get("type") == out_type):
                index = slot
            else:
                index = next((i for i, inp in enumerate(inputs) if inp.get("type") == out_type), None)
            return resolve(scope, inputs[index].get("link"), seen) if index is not None else None
        return ("link", f"{scope.prefix}{origin_id}", slot)

    def widget_values_of_subgraph_node(node: dict) -> dict[str, Any]:
        values = node.get("widgets_values") or []
        names = [inp["name"] for inp in node.get("inputs") or [] if inp.get("widget")]
        return dict(zip(names, values)) if isinstance(values, list) else {}

    scopes: dict[tuple[int, Any], Scope] = {}

    def inner_scope(scope: Scope, node: dict) -> Scope:
        key = (id(scope), node["id"])
        if key not in scopes:
            definition = subgraphs[node["type"]]
            scopes[key] = Scope(f"{scope.prefix}{node['id']}:", {n["id"]: n for n in definition["nodes"]},
                                _links(definition.get("links")), (scope, node))
        return scopes[key]

    def emit(scope: Scope) -> None:
        for node in scope.nodes.values():
            kind = node["type"]
            mode = node.get("mode", 0)
            if kind in VIRTUAL or mode in (MUTED, BYPASSED):
                continue
            if kind in subgraphs:
                emit(inner_scope(scope, node))
                continue
            conv.node_types.add(kind)
            inputs = widget_values(node, scope)
            for inp in node.get("inputs") or []:
                if inp.get("link") is None:
                    continue
                got = resolve(scope, inp["link"])
                if got is None:  # nothing upstream: a widget keeps its own value, a socket stays empty
                    continue
                inputs[inp["name"]] = got[1] if got[0] == "value" else [got[1], got[2]]
            conv.prompt[f"{scope.prefix}{node['id']}"] = {
                "inputs": inputs, "class_type": kind, "_meta": {"title": node.get("title") or kind}}

    emit(root)
    # inputs linked to nodes that are not sent (muted) are dropped, as the frontend does
    for spec in conv.prompt.values():
        for name, value in list(spec["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] not in conv.prompt:
                del spec["inputs"][name]
    return conv
