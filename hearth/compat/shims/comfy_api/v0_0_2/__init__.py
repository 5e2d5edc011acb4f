"""ComfyUI's ``comfy_api.v0_0_2``: the same API as ``latest`` under a pinned version name."""
from comfy_api.latest import ComfyAPI_latest, ComfyAPISyncLatest, ComfyExtension, io, ui  # noqa: F401
from comfy_api.latest import Input as _Input
from comfy_api.latest import InputImpl as _InputImpl
from comfy_api.latest import Types as _Types


class ComfyAPIAdapter_v0_0_2(ComfyAPI_latest):
    VERSION = "0.0.2"
    STABLE = False


class ComfyAPISyncAdapter_v0_0_2(ComfyAPISyncLatest):
    VERSION = "0.0.2"
    STABLE = False


class Input(_Input):
    pass


class InputImpl(_InputImpl):
    pass


class Types(_Types):
    pass


ComfyAPI = ComfyAPIAdapter_v0_0_2
ComfyAPISync = ComfyAPISyncAdapter_v0_0_2

__all__ = ["ComfyAPI", "ComfyAPISync", "Input", "InputImpl", "Types", "ComfyExtension"]
