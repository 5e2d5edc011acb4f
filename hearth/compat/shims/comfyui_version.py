"""The ComfyUI version whose API Hearth serves (packs compare against it)."""
from hearth.app import COMFYUI_COMPAT_VERSION as __version__  # noqa: F401
