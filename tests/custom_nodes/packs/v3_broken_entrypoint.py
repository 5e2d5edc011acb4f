"""A V3 pack whose extension fails while listing its nodes."""
from comfy_api.latest import ComfyExtension


class Broken(ComfyExtension):
    async def get_node_list(self):
        raise ValueError("hearth test: get_node_list failed on purpose")


def comfy_entrypoint():
    return Broken()
