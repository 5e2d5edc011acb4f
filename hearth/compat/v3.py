"""Running V3 nodes (``comfy_api.latest.io.ComfyNode``) on Hearth's engine, which speaks the V1 protocol.

``adapt(cls, python_module)`` makes a small V1 class for the engine:

    INPUT_TYPES      the schema's inputs (hidden ones under their Hidden names, as ComfyUI lists them)
    RETURN_TYPES …   RETURN_NAMES, OUTPUT_IS_LIST, OUTPUT_TOOLTIPS, OUTPUT_NODE, INPUT_IS_LIST, CATEGORY,
                     DESCRIPTION, NOT_IDEMPOTENT, DEPRECATED, EXPERIMENTAL, API_NODE from the schema
    FUNCTION         calls ``execute`` and turns its NodeOutput into the V1 result dict
    IS_CHANGED       only when the node overrides ``fingerprint_inputs``
    VALIDATE_INPUTS  only when it overrides ``validate_inputs`` (same argument names, so the engine
                     hands over the same inputs ComfyUI would)
    check_lazy_status  only when it overrides ``check_lazy_status``
    GET_NODE_INFO_V1 the /object_info entry exactly as ComfyUI builds it for V3 nodes

Every call runs on a throw-away subclass of the pack's class whose ``hidden`` holds that call's
hidden values (unique_id, prompt, extra_pnginfo, dynprompt, …), as ComfyUI's class clones do; the
pack's class itself is never changed, except for RELATIVE_PYTHON_MODULE, which ComfyUI sets too.
"""
from __future__ import annotations

import inspect
import sys
from typing import Any

_IO_MODULE = "comfy_api.latest._io"


def _io():
    return sys.modules.get(_IO_MODULE)


def is_v3_node(obj: Any) -> bool:
    io = _io()
    return io is not None and isinstance(obj, type) and issubclass(obj, io.ComfyNode)


def is_extension(obj: Any) -> bool:
    import importlib

    if "comfy_api.latest" not in sys.modules:
        return False
    latest = importlib.import_module("comfy_api.latest")
    return isinstance(obj, latest.ComfyExtension)


def adapt(cls: type, python_module: str) -> type:
    """The engine-facing V1 class for V3 node class ``cls`` (validates its schema now)."""
    io = _io()
    cls.RELATIVE_PYTHON_MODULE = python_module
    schema = cls.GET_SCHEMA()
    outputs = list(schema.outputs or [])
    input_ids = set()
    for item in schema.inputs or []:
        for one in (item.get_dynamic() if isinstance(item, io.DynamicInput) else [item]):
            input_ids.add(one.id)
    # Hidden values arrive as keyword arguments named like the Hidden members; an input of the same
    # name wins (the engine passes the input's value then).
    hidden_names = {h.name: h for h in schema.hidden or [] if h.name not in input_ids}
    input_is_list = bool(schema.is_input_list)

    def split(kwargs: dict) -> tuple[dict, type]:
        hidden = {}
        for name in [n for n in kwargs if n in hidden_names]:
            value = kwargs.pop(name)
            if input_is_list and isinstance(value, list) and len(value) == 1:
                value = value[0]  # INPUT_IS_LIST wraps every argument; hidden values are single
            hidden[hidden_names[name]] = value
        clone = type(cls.__name__, (cls,), {"hidden": io.HiddenHolder.from_dict(hidden),
                                            "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        return kwargs, clone

    def to_v1(result: Any) -> dict:
        return _v1_result(io, cls, schema, len(outputs), result)

    attrs: dict[str, Any] = {
        "__module__": cls.__module__,
        "__doc__": cls.__doc__,
        "V3_CLASS": cls,
        "RETURN_TYPES": tuple(o.io_type for o in outputs),
        "RETURN_NAMES": tuple(o.display_name or o.io_type for o in outputs),
        "OUTPUT_IS_LIST": tuple(bool(o.is_output_list) for o in outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip or None for o in outputs),
        "OUTPUT_NODE": bool(schema.is_output_node),
        "INPUT_IS_LIST": bool(schema.is_input_list),
        "NOT_IDEMPOTENT": bool(schema.not_idempotent),
        "CATEGORY": schema.category,
        "DESCRIPTION": schema.description,
        "DEPRECATED": bool(schema.is_deprecated),
        "EXPERIMENTAL": bool(schema.is_experimental),
        "API_NODE": bool(schema.is_api_node),
        "RELATIVE_PYTHON_MODULE": python_module,
        "FUNCTION": "execute_v3",
        "INPUT_TYPES": classmethod(lambda _adapter: cls.INPUT_TYPES()),
        "GET_NODE_INFO_V1": classmethod(lambda _adapter: cls.GET_NODE_INFO_V1()),
    }

    if inspect.iscoroutinefunction(cls.execute):
        async def execute_v3(self, **kwargs):
            kwargs, clone = split(kwargs)
            return to_v1(await clone.execute(**kwargs))
    else:
        def execute_v3(self, **kwargs):
            kwargs, clone = split(kwargs)
            return to_v1(clone.execute(**kwargs))
    attrs["execute_v3"] = execute_v3

    if io.first_real_override(cls, "fingerprint_inputs") is not None:
        def IS_CHANGED(_adapter, **kwargs):
            kwargs, clone = split(kwargs)
            return clone.fingerprint_inputs(**kwargs)
        attrs["IS_CHANGED"] = classmethod(IS_CHANGED)

    if io.first_real_override(cls, "validate_inputs") is not None:
        def VALIDATE_INPUTS(_adapter, **kwargs):
            kwargs, clone = split(kwargs)
            return clone.validate_inputs(**kwargs)
        params = [inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += list(inspect.signature(cls.validate_inputs).parameters.values())
        VALIDATE_INPUTS.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        attrs["VALIDATE_INPUTS"] = classmethod(VALIDATE_INPUTS)

    if io.first_real_override(cls, "check_lazy_status") is not None:
        if inspect.iscoroutinefunction(cls.check_lazy_status):
            async def check_lazy_status(self, **kwargs):
                kwargs, clone = split(kwargs)
                return await clone.check_lazy_status(**kwargs)
        else:
            def check_lazy_status(self, **kwargs):
                kwargs, clone = split(kwargs)
                return clone.check_lazy_status(**kwargs)
        attrs["check_lazy_status"] = check_lazy_status

    return type(cls.__name__, (), attrs)


def _v1_result(io, cls: type, schema, width: int, result: Any) -> dict:
    """A V3 ``execute`` result as the V1 dict the engine reads ({"result", "ui", "expand"})."""
    from hearth.engine.graph import ExecutionBlocker

    if result is None:
        result = io.NodeOutput()
    elif isinstance(result, tuple):
        result = io.NodeOutput(*result)
    elif isinstance(result, dict):
        result = io.NodeOutput.from_dict(result)
    elif isinstance(result, ExecutionBlocker):
        result = io.NodeOutput(block_execution=result.message)
    elif not isinstance(result, io.NodeOutput):
        raise TypeError(f"{cls.__name__}.execute returned {type(result).__name__}; a V3 node returns a NodeOutput")
    out: dict[str, Any] = {}
    if result.ui is not None:
        out["ui"] = result.ui if isinstance(result.ui, dict) else result.ui.as_dict()
    values = result.result
    if result.block_execution is not None:
        values = (ExecutionBlocker(result.block_execution),) * width
    if result.expand is not None:
        if not schema.enable_expand:
            raise RuntimeError(f"Node {cls.__name__} is not expandable, but its NodeOutput has 'expand'; "
                               "set enable_expand=True in its Schema")
        out["expand"] = result.expand
        out["result"] = values
    elif values is not None:
        out["result"] = tuple(values)
    return out
