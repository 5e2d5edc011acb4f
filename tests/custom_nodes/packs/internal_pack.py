"""A pack that reaches into a ComfyUI internal Hearth does not provide."""
from comfy.ldm.modules.attention import optimized_attention  # noqa: F401

NODE_CLASS_MAPPINGS = {}
