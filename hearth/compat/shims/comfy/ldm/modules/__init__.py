"""ComfyUI's ``comfy.ldm.modules``: see ``comfy.ldm.modules.attention``."""
