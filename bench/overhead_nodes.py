"""Trivial nodes for bench/engine_overhead.py, in the plain node protocol (INPUT_TYPES, RETURN_TYPES,
FUNCTION, OUTPUT_NODE) so that Hearth and ComfyUI both load this file from custom_nodes/ unchanged.

  OverheadConst  value -> value
  OverheadAdd    a + b
  OverheadSink   output node; takes a value, shows nothing

Each call is a few hundred nanoseconds of Python, so a graph of them measures what the engine itself
costs per node (validation, scheduling, caching, messages), not the nodes' work.
"""

INT = ("INT", {"default": 0, "min": -(2 ** 62), "max": 2 ** 62})


class OverheadConst:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "benchmark"

    def run(self, value):
        return (value,)


class OverheadAdd:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": INT, "b": INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "benchmark"

    def run(self, a, b):
        return (a + b,)


class OverheadSink:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": INT}}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "benchmark"

    def run(self, value):
        return {}


NODE_CLASS_MAPPINGS = {"OverheadConst": OverheadConst, "OverheadAdd": OverheadAdd, "OverheadSink": OverheadSink}
NODE_DISPLAY_NAME_MAPPINGS = {"OverheadConst": "Const (bench)", "OverheadAdd": "Add (bench)",
                              "OverheadSink": "Sink (bench)"}
