"""ComfyUI's ``comfy_execution.graph_utils``: node expansion helpers (Hearth's engine's own)."""
from hearth.compat.shims_support import module_getattr
from hearth.engine.graph import ExecutionBlocker, GraphBuilder, Node, add_graph_prefix, is_link  # noqa: F401

__getattr__ = module_getattr("comfy_execution.graph_utils")
