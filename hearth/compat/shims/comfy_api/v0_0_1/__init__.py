"""ComfyUI's ``comfy_api.v0_0_1``: the oldest API version name (the same calls as v0_0_2)."""
from comfy_api.v0_0_2 import (ComfyAPIAdapter_v0_0_2, ComfyAPISyncAdapter_v0_0_2, ComfyExtension,  # noqa: F401
                              Input, InputImpl, Types)


class ComfyAPIAdapter_v0_0_1(ComfyAPIAdapter_v0_0_2):
    VERSION = "0.0.1"


class ComfyAPISyncAdapter_v0_0_1(ComfyAPISyncAdapter_v0_0_2):
    VERSION = "0.0.1"


ComfyAPI = ComfyAPIAdapter_v0_0_1
ComfyAPISync = ComfyAPISyncAdapter_v0_0_1
