"""A pack that reaches into a ComfyUI internal Hearth does not provide."""
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: F401

NODE_CLASS_MAPPINGS = {}
