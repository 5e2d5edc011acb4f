"""ComfyUI's ``comfy.k_diffusion``: only ``utils.FolderOfImages`` is provided (Hearth's samplers live in
hearth.sampling)."""
