"""ComfyUI's ``comfy_execution``: graph vocabulary from Hearth's engine."""
