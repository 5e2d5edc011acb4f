"""ComfyUI's ``comfy.comfy_types``."""
from typing import Any, Callable

from comfy.comfy_types.node_typing import (IO, CheckLazyMixin, ComfyNodeABC, FileLocator,  # noqa: F401
                                           InputTypeDict, InputTypeOptions)

UnetApplyFunction = Callable[..., Any]
UnetApplyConds = dict
UnetParams = dict
UnetWrapperFunction = Callable[[Any, Any], Any]

__all__ = ["UnetWrapperFunction", "UnetApplyConds", "UnetParams", "UnetApplyFunction", "IO", "InputTypeDict",
           "ComfyNodeABC", "CheckLazyMixin", "FileLocator"]
