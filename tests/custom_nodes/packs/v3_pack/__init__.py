"""A V3 pack: comfy_entrypoint() -> ComfyExtension with io.ComfyNode classes."""
import asyncio

from comfy_api.latest import ComfyExtension, io, ui
from comfy_execution.graph_utils import GraphBuilder

LOADED = []


class V3Double(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HT_V3Double",
            display_name="HT V3 Double",
            category="hearth_test/v3",
            description="Doubles an integer.",
            inputs=[io.Int.Input("value", default=1, min=0, max=100, tooltip="what to double")],
            outputs=[io.Int.Output(display_name="doubled"), io.String.Output("who", display_name="who")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, value):
        if value == 13:
            return "13 is unlucky"
        return True

    @classmethod
    def fingerprint_inputs(cls, value):
        return value  # the same value: the cached result is reused

    @classmethod
    def execute(cls, value) -> io.NodeOutput:
        return io.NodeOutput(value * 2, f"node {cls.hidden.unique_id}")


class V3Shape(io.ComfyNode):
    """Every widget kind, for /object_info."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HT_V3Shape",
            display_name="HT V3 Shape",
            category="hearth_test/v3",
            description="All the input kinds.",
            is_output_node=True,
            is_experimental=True,
            inputs=[
                io.Combo.Input("mode", options=["fast", "slow"], default="slow"),
                io.Float.Input("amount", default=0.5, min=0.0, max=1.0, step=0.01, display_mode=io.NumberDisplay.slider),
                io.String.Input("text", multiline=True, placeholder="type here"),
                io.Boolean.Input("flag", default=True, label_on="yes", label_off="no"),
                io.Int.Input("seed", default=0, min=0, max=2**32, control_after_generate=True),
                io.Image.Input("image", optional=True),
                io.MultiCombo.Input("tags", options=["a", "b", "c"], default=["a"], optional=True),
            ],
            outputs=[io.String.Output(tooltip="a summary")],
        )

    @classmethod
    def execute(cls, mode, amount, text, flag, seed, image=None, tags=None) -> io.NodeOutput:
        summary = f"{mode}|{amount}|{text}|{flag}|{seed}|{image is not None}|{sorted(cls.hidden.prompt or {})}"
        return io.NodeOutput(summary, ui=ui.PreviewText(summary))


class V3Lazy(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HT_V3Lazy", category="hearth_test/v3",
            inputs=[io.Boolean.Input("use_a", default=True),
                    io.String.Input("a", lazy=True, force_input=True),
                    io.String.Input("b", lazy=True, force_input=True)],
            outputs=[io.String.Output()],
        )

    @classmethod
    def check_lazy_status(cls, use_a, a=None, b=None):
        return ["a"] if use_a else ["b"]

    @classmethod
    def execute(cls, use_a, a=None, b=None) -> io.NodeOutput:
        return io.NodeOutput(a if use_a else b)


class V3Async(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="HT_V3Async", category="hearth_test/v3",
                         inputs=[io.String.Input("text", default="async")],
                         outputs=[io.String.Output()])

    @classmethod
    async def execute(cls, text) -> io.NodeOutput:
        await asyncio.sleep(0.01)
        return io.NodeOutput(text.upper())


class V3Expand(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="HT_V3Expand", category="hearth_test/v3", enable_expand=True,
                         inputs=[io.Int.Input("value", default=3)],
                         outputs=[io.Int.Output()])

    @classmethod
    def execute(cls, value) -> io.NodeOutput:
        graph = GraphBuilder()
        first = graph.node("HT_V3Double", value=value)
        second = graph.node("HT_V3Double", value=first.out(0))
        return io.NodeOutput(second.out(0), expand=graph.finalize())


class V3Blocked(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="HT_V3Blocked", category="hearth_test/v3",
                         inputs=[io.String.Input("text", default="x")], outputs=[io.String.Output()])

    @classmethod
    def execute(cls, text) -> io.NodeOutput:
        return io.NodeOutput(block_execution="v3 blocked")


class V3Preview(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="HT_V3Preview", category="hearth_test/v3", is_output_node=True,
                         inputs=[io.Image.Input("images")], outputs=[])

    @classmethod
    def execute(cls, images) -> io.NodeOutput:
        return io.NodeOutput(ui=ui.PreviewImage(images, cls=cls))


class Extension(ComfyExtension):
    async def on_load(self) -> None:
        LOADED.append("on_load")

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [V3Double, V3Shape, V3Lazy, V3Async, V3Expand, V3Blocked, V3Preview]


async def comfy_entrypoint() -> ComfyExtension:
    return Extension()
