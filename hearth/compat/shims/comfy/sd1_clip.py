"""ComfyUI's ``comfy.sd1_clip``: the prompt-weight syntax helpers (``(word:1.2)``), from Hearth's tokenizer."""
from hearth.compat.shims_support import module_getattr
from hearth.runtime.tokenizer import escape_important, parse_parentheses, token_weights, unescape_important  # noqa: F401

__getattr__ = module_getattr("comfy.sd1_clip")
