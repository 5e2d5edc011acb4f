"""ComfyUI's ``comfy_execution.utils``: which node is running, from Hearth's engine."""
from __future__ import annotations

from typing import NamedTuple, Optional

from hearth.compat.shims_support import module_getattr


class ExecutionContext(NamedTuple):
    prompt_id: str
    node_id: str
    list_index: Optional[int]


def get_executing_context() -> Optional[ExecutionContext]:
    from hearth.engine.progress import current_execution

    execution = current_execution()
    if execution is None:
        return None
    return ExecutionContext(execution.prompt_id, execution.node_id, execution.list_index)


__getattr__ = module_getattr("comfy_execution.utils")
