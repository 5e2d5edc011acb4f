"""ComfyUI's ``comfy_execution.graph``: Hearth's engine graph classes under their ComfyUI names."""
from hearth.compat.shims_support import module_getattr
from hearth.engine.graph import (DependencyCycleError, DynamicPrompt, ExecutionBlocker,  # noqa: F401
                                 NodeInputError, NodeNotFoundError, get_input_info, is_link)
from hearth.engine.scheduler import ExecutionList  # noqa: F401

__getattr__ = module_getattr("comfy_execution.graph")
