"""ComfyUI's ``comfy_extras``: each ``comfy_extras.nodes_*`` module that Hearth's built-ins mirror
offers those node classes (made from the live registry by hearth.compat.finder)."""
