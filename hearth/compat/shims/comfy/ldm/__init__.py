"""ComfyUI's ``comfy.ldm``: only ``comfy.ldm.modules.attention``'s attention functions are provided (the
ones attention patches call); ComfyUI's network classes are not (Hearth runs diffusers networks)."""
