"""Facts the engine reads from node classes (ComfyUI's class protocol), looked up once per class per call.

``INPUT_TYPES()`` may be dynamic (file lists), so it is called again for every validate or execute call
(a ``ClassTable`` lives for one call); the facts derived from it are reused across calls while it returns
an equal dict (kept in the registry's ``class_infos``).
"""
from __future__ import annotations

import inspect
from typing import Any

from hearth.engine.graph import split_input_spec


class UnknownNodeClass(Exception):
    """A class_type that the registry does not know."""


class ClassInfo:
    """One node class with its INPUT_TYPES read and the flags the engine needs."""

    __slots__ = ("class_type", "cls", "input_types", "inputs", "declared", "hidden", "is_output",
                 "function", "is_async", "input_is_list", "output_is_list", "return_count",
                 "not_idempotent", "has_unique_id", "lazy_inputs", "raw_link_inputs", "_coroutines")

    def __init__(self, class_type: str, cls: type, input_types: Any = None) -> None:
        self.class_type = class_type
        self.cls = cls
        if input_types is None:
            input_types = cls.INPUT_TYPES()
        if not isinstance(input_types, dict):
            raise TypeError(f"{class_type}.INPUT_TYPES() returned {type(input_types).__name__}, expected a dict")
        self.input_types = input_types
        # name -> (type, category, options), required before optional before hidden.
        self.inputs: dict[str, tuple[Any, str, dict]] = {}
        for category in ("required", "optional", "hidden"):
            section = input_types.get(category)
            if isinstance(section, dict):
                for name, spec in section.items():
                    self.inputs.setdefault(name, split_input_spec(spec, category))
        self.declared = [name for name, info in self.inputs.items() if info[1] != "hidden"]
        self.hidden = {name: info[0] for name, info in self.inputs.items() if info[1] == "hidden"}
        self.is_output = getattr(cls, "OUTPUT_NODE", False) == True  # noqa: E712 (ComfyUI compares with ==)
        self.function = getattr(cls, "FUNCTION", None)
        self.is_async = inspect.iscoroutinefunction(getattr(cls, self.function, None)) if self.function else False
        self.input_is_list = bool(getattr(cls, "INPUT_IS_LIST", False))
        self.return_count = len(getattr(cls, "RETURN_TYPES", ()) or ())
        self.output_is_list = tuple(getattr(cls, "OUTPUT_IS_LIST", ()) or ())
        self.not_idempotent = bool(getattr(cls, "NOT_IDEMPOTENT", False))
        self.has_unique_id = "UNIQUE_ID" in self.hidden.values()
        self.lazy_inputs = {name for name, info in self.inputs.items() if info[2].get("lazy")}
        self.raw_link_inputs = {name for name, info in self.inputs.items() if info[2].get("rawLink")}
        self._coroutines: dict[str, bool] = {}

    def is_coroutine(self, func_name: str) -> bool:
        """Is the class's ``func_name`` an ``async def`` (looked up once)?"""
        flag = self._coroutines.get(func_name)
        if flag is None:
            flag = self._coroutines[func_name] = inspect.iscoroutinefunction(getattr(self.cls, func_name, None))
        return flag

    def input_info(self, name: str) -> tuple[Any, str | None, dict | None]:
        return self.inputs.get(name, (None, None, None))


class ClassTable:
    """class_type -> ClassInfo for the duration of one engine call."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._infos: dict[str, ClassInfo] = {}
        # across calls: class_type -> the ClassInfo built from the last INPUT_TYPES() seen
        self._shared: dict[str, ClassInfo] | None = getattr(registry, "class_infos", None)

    def get(self, class_type: Any) -> ClassInfo:
        info = self._infos.get(class_type) if isinstance(class_type, str) else None
        if info is None:
            cls = self.registry.get(class_type) if isinstance(class_type, str) else None
            if cls is None:
                raise UnknownNodeClass(f"Node class {class_type!r} does not exist")
            shared = self._shared
            if shared is None:
                info = ClassInfo(class_type, cls)
            else:
                input_types = cls.INPUT_TYPES()
                known = shared.get(class_type)
                if known is not None and known.cls is cls and _same(known.input_types, input_types):
                    info = known
                else:
                    info = shared[class_type] = ClassInfo(class_type, cls, input_types)
            self._infos[class_type] = info
        return info

    def class_of(self, class_type: Any) -> type | None:
        return self.registry.get(class_type) if isinstance(class_type, str) else None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. an array inside a spec: no truth value
        return False


def full_type_name(klass: type) -> str:
    """``module.QualName`` as in error reports; builtins are plain (``ValueError``)."""
    module = getattr(klass, "__module__", "builtins")
    if module == "builtins":
        return klass.__qualname__
    return f"{module}.{klass.__qualname__}"


SUMMARY_LIMIT = 300


def summarize_value(value: Any, limit: int = SUMMARY_LIMIT) -> Any:
    """A short JSON-safe description of an input value for error reports.

    Tensors and arrays become "Tensor(shape=[1, 64, 64, 3], dtype=float32)"
    instead of their (multi-kilobyte) repr; other reprs are capped.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        module = type(value).__module__.split(".")[0]
        kind = "Tensor" if module == "torch" else ("ndarray" if module == "numpy" else type(value).__name__)
        try:
            dims = [int(d) for d in shape]
        except (TypeError, ValueError):
            dims = str(shape)
        dtype_name = str(dtype).removeprefix("torch.")
        return f"{kind}(shape={dims}, dtype={dtype_name})"
    try:
        text = str(value)
    except Exception as ex:  # a broken __str__ must not break the error report
        text = f"<{type(value).__name__} (str() failed: {ex})>"
    return text if len(text) <= limit else text[:limit] + "…"
