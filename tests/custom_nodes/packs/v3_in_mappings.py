"""A V3 node class registered through NODE_CLASS_MAPPINGS (ComfyUI accepts that too)."""
from comfy_api.latest import io


class V3InMappings(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="HT_V3InMappings", category="hearth_test/v3",
                         inputs=[io.String.Input("text", default="m")], outputs=[io.String.Output()])

    @classmethod
    def execute(cls, text):
        return (text * 2,)  # a plain tuple is accepted as the outputs


NODE_CLASS_MAPPINGS = {"HT_V3InMappings": V3InMappings}
