"""JSON that every client can parse.

Python's ``json`` writes ``NaN``/``Infinity`` for non-finite floats; browsers' ``JSON.parse`` (the
ComfyUI frontend) rejects the whole document then, so one NaN in a node's ui would break a client's
history view for good. Values stored or sent by Hearth go through ``dumps`` here, which writes
non-finite floats as ``null`` (what ``JSON.stringify`` does) and raises on anything else JSON cannot
carry (``TypeError``) unless a ``default`` is given.
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, **kwargs: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, default=default, **kwargs)
    except ValueError as exc:
        if "Circular reference" in str(exc):
            raise
    return json.dumps(finite(value), allow_nan=False, default=default, **kwargs)


def finite(value: Any, _path: frozenset[int] = frozenset()) -> Any:
    """A copy of ``value`` with NaN and ±Infinity replaced by None (containers copied as needed)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dict, list, tuple)):
        if id(value) in _path:
            raise ValueError("Circular reference detected")
        inner = _path | {id(value)}
        if isinstance(value, dict):
            return {k: finite(v, inner) for k, v in value.items()}
        return [finite(v, inner) for v in value]
    return value
