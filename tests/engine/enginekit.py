"""Test nodes and helpers for the engine tests (plain Python values, no torch).

``make_registry(log)`` builds a fresh registry whose nodes append what they do
to ``log`` (a list), so tests never share state.
"""
from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from typing import Any

from hearth.engine import (CachePolicy, Engine, ExecutionBlocker, GraphBuilder, Interrupt, check_interrupt,
                           current_execution, report_progress, send_text)
from hearth.nodes.registry import NodeRegistry

INT = ("INT", {"default": 0, "min": -1000, "max": 1000})


class CustomError(Exception):
    """An exception from a non-builtin module (type reported as enginekit.CustomError)."""


class NodeCrash(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


class FakeTensor:
    """Looks like a tensor to the error summariser; its repr is enormous."""

    def __init__(self, shape):
        self.shape = shape
        self.dtype = "float32"

    def __repr__(self):
        return "x" * 100_000

    __str__ = __repr__


def make_registry(log: list) -> NodeRegistry:  # noqa: C901 (one flat list of small node classes)
    registry = NodeRegistry()

    def node(cls):
        registry.register(cls.__name__, cls)
        return cls

    @node
    class EmptyImage:
        """Shaped like ComfyUI's EmptyImage (same INPUT_TYPES), returns a dict."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {
                "width": ("INT", {"default": 512, "min": 1, "max": 16384, "step": 1}),
                "height": ("INT", {"default": 512, "min": 1, "max": 16384, "step": 1}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": ("INT", {"default": 0, "min": 0, "max": 16777215, "step": 1, "display": "color"}),
            }}

        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "generate"
        CATEGORY = "image"

        def generate(self, width, height, batch_size=1, color=0):
            log.append(("EmptyImage", width, height, color))
            return ({"width": width, "height": height, "color": color},)

    @node
    class PreviewImage:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE",)},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

        RETURN_TYPES = ()
        FUNCTION = "save_images"
        OUTPUT_NODE = True
        CATEGORY = "image"

        def save_images(self, images, prompt=None, extra_pnginfo=None):
            log.append(("PreviewImage", images["color"]))
            return {"ui": {"images": [{"filename": f"ComfyUI_temp_{images['color']}_00001_.png",
                                       "subfolder": "", "type": "temp"}]}}

    @node
    class SaveImage:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

        RETURN_TYPES = ()
        FUNCTION = "save_images"
        OUTPUT_NODE = True

        def save_images(self, images, filename_prefix, prompt=None, extra_pnginfo=None):
            if ".." in filename_prefix:
                raise Exception("**** ERROR: Saving image outside the output folder is not allowed.")
            return {"ui": {"images": [{"filename": f"{filename_prefix}_00001_.png", "subfolder": "",
                                       "type": "output"}]}}

    @node
    class Const:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, value):
            log.append(("Const", value))
            return (value,)

    @node
    class FloatConst:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.1})}}

        RETURN_TYPES = ("FLOAT",)
        FUNCTION = "run"

        def run(self, value):
            return (value,)

    @node
    class Text:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"text": ("STRING", {"multiline": True})}}

        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        def run(self, text):
            return (text,)

    @node
    class Flag:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("BOOLEAN", {"default": False})}}

        RETURN_TYPES = ("BOOLEAN",)
        FUNCTION = "run"

        def run(self, value):
            return (value,)

    @node
    class Add:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": INT, "b": INT}}

        RETURN_TYPES = ("INT",)
        RETURN_NAMES = ("sum",)
        FUNCTION = "run"

        def run(self, a, b):
            log.append(("Add", a, b))
            return (a + b,)

    @node
    class Output:
        """An output node showing whatever it gets."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",)}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value):
            log.append(("Output", value))
            return {"ui": {"values": [value]}}

    @node
    class ListOutput:
        """An output node that receives whole lists."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",)}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        INPUT_IS_LIST = True

        def run(self, value):
            return {"ui": {"values": list(value)}}

    @node
    class OutputWithResult:
        """An output node that also has an output socket."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value):
            log.append(("OutputWithResult", value))
            return {"ui": {"values": [value]}, "result": (value * 10,)}

    @node
    class SilentOutput:
        """An output node that returns nothing at all."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",)}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value):
            log.append(("SilentOutput", value))

    @node
    class LazySwitch:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"condition": ("BOOLEAN", {"default": True}),
                                 "on_true": ("*", {"lazy": True}),
                                 "on_false": ("*", {"lazy": True})}}

        RETURN_TYPES = ("*",)
        FUNCTION = "run"

        def check_lazy_status(self, condition, on_true=None, on_false=None):
            log.append(("check_lazy_status", condition, on_true, on_false))
            return ["on_true" if condition else "on_false"]

        def run(self, condition, on_true=None, on_false=None):
            return (on_true if condition else on_false,)

    @node
    class LazyMix:
        """Like ComfyUI's TestLazyMixImages: needs a only at 0, b only at 1, both in between."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": ("INT", {"lazy": True}), "b": ("INT", {"lazy": True}),
                                 "mix": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}}

        RETURN_TYPES = ("FLOAT",)
        FUNCTION = "run"

        def check_lazy_status(self, mix, a=None, b=None):
            log.append(("mix_check", a, b))
            needed = []
            if a is None and mix != 1.0:
                needed.append("a")
            if b is None and mix != 0.0:
                needed.append("b")
            return needed

        def run(self, mix, a=None, b=None):
            if mix == 0.0:
                return (float(a),)
            if mix == 1.0:
                return (float(b),)
            return (a * (1 - mix) + b * mix,)

    @node
    class MakeList:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value1": ("*",)}, "optional": {"value2": ("*",), "value3": ("*",)}}

        RETURN_TYPES = ("*",)
        OUTPUT_IS_LIST = (True,)
        FUNCTION = "run"

        def run(self, value1, value2=None, value3=None):
            return ([v for v in (value1, value2, value3) if v is not None],)

    @node
    class Range:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 100})}}

        RETURN_TYPES = ("INT", "INT")
        OUTPUT_IS_LIST = (True, False)
        FUNCTION = "run"

        def run(self, count):
            return (list(range(count)), count)

    @node
    class Double:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, x):
            log.append(("Double", x))
            return (x * 2,)

    @node
    class Pair:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": ("*",), "b": ("*",)}}

        RETURN_TYPES = ("*",)
        FUNCTION = "run"

        def run(self, a, b):
            return (f"{a}-{b}",)

    @node
    class ListSum:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"values": INT, "scale": INT}}

        RETURN_TYPES = ("INT",)
        INPUT_IS_LIST = True
        FUNCTION = "run"

        def run(self, values, scale):
            log.append(("ListSum", list(values), list(scale)))
            return (sum(values) * scale[0],)

    @node
    class ShowEach:
        """Output node mapped over a list: one ui entry per call, merged by the engine."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",)}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value):
            return {"ui": {"values": [value], "text": [f"v={value}"]}}

    @node
    class SumTo:
        """Expands into a chain of Add nodes computing 1 + 2 + … + n."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"n": ("INT", {"default": 3, "min": 1, "max": 50})}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, n):
            graph = GraphBuilder()
            total = graph.node("Const", value=0)
            for i in range(1, n + 1):
                total = graph.node("Add", a=total.out(0), b=i)
            return {"result": (total.out(0),), "expand": graph.finalize()}

    @node
    class CountDown:
        """Nested expansion: n -> CountDown(n-1, acc+n) -> … -> acc."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"n": ("INT", {"default": 2, "min": 0, "max": 50}), "acc": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, n, acc):
            log.append(("CountDown", n, acc, current_execution().node_id))
            if n == 0:
                return (acc,)
            graph = GraphBuilder()
            added = graph.node("Add", a=acc, b=n)
            inner = graph.node("CountDown", n=n - 1, acc=added.out(0))
            return {"result": (inner.out(0),), "expand": graph.finalize()}

    @node
    class ExpandToOutput:
        """Expands into a Const feeding an (ephemeral) Output node, and returns the Const."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, value):
            graph = GraphBuilder()
            const = graph.node("Const", value=value)
            graph.node("Output", value=const.out(0))
            return {"result": (const.out(0),), "expand": graph.finalize()}

    @node
    class MixedExpand:
        """Per list item: expands for odd values, returns a literal for even ones."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, x):
            if x % 2 == 0:
                return {"result": (x,)}
            graph = GraphBuilder()
            doubled = graph.node("Double", x=x)
            return {"result": (doubled.out(0),), "expand": graph.finalize()}

    @node
    class ExpandCycle:
        """Expands into two nodes that feed each other."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, x):
            graph = GraphBuilder()
            first = graph.node("Add", id="first", a=x, b=["placeholder", 0])
            second = graph.node("Add", id="second", a=first.out(0), b=x)
            first.set_input("b", second.out(0))
            return {"result": (second.out(0),), "expand": graph.finalize()}

    @node
    class ExpandDisplay:
        """Expands into a Double shown in the UI as another node (override_display_id)."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": INT, "show_as": ("STRING", {"default": "1"})}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, x, show_as):
            graph = GraphBuilder()
            doubled = graph.node("Double", x=x)
            doubled.set_override_display_id(show_as)
            return {"result": (doubled.out(0),), "expand": graph.finalize()}

    @node
    class ExpandDuplicate:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, x):
            # Reuses a prompt node id: must be refused.
            return {"result": (["1", 0],), "expand": {"1": {"class_type": "Const", "inputs": {"value": x}}}}

    @node
    class Blocker:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",), "block": ("BOOLEAN", {"default": False}),
                                 "message": ("STRING", {"default": ""})}}

        RETURN_TYPES = ("*",)
        FUNCTION = "run"

        def run(self, value, block, message):
            if block:
                return (ExecutionBlocker(message or None),)
            return (value,)

    @node
    class IsEven:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"x": INT}}

        RETURN_TYPES = ("BOOLEAN",)
        FUNCTION = "run"

        def run(self, x):
            return (x % 2 == 0,)

    @node
    class AsyncSleep:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",), "seconds": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 5.0})}}

        RETURN_TYPES = ("*",)
        FUNCTION = "run"

        async def run(self, value, seconds):
            log.append(("sleep_start", current_execution().node_id, time.monotonic()))
            await asyncio.sleep(seconds)
            log.append(("sleep_end", current_execution().node_id, time.monotonic()))
            return (value,)

    @node
    class AsyncFail:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",)}}

        RETURN_TYPES = ("*",)
        FUNCTION = "run"

        async def run(self, value):
            await asyncio.sleep(0.01)
            raise ValueError("async boom")

    @node
    class AsyncQuick:
        """Async, but finishes without ever suspending."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        async def run(self, value):
            return (value + 1,)

    @node
    class AsyncLazy:
        """Async check_lazy_status and async function."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"use_b": ("BOOLEAN", {"default": False}),
                                 "a": ("*", {"lazy": True}), "b": ("*", {"lazy": True})}}

        RETURN_TYPES = ("*",)
        FUNCTION = "run"

        async def check_lazy_status(self, use_b, a=None, b=None):
            await asyncio.sleep(0)
            return ["b" if use_b else "a"]

        async def run(self, use_b, a=None, b=None):
            return (b if use_b else a,)

    @node
    class HiddenEcho:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID",
                               "dynprompt": "DYNPROMPT", "auth_token": "AUTH_TOKEN_COMFY_ORG",
                               "api_key": "API_KEY_COMFY_ORG"}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value, prompt, extra_pnginfo, unique_id, dynprompt, auth_token, api_key):
            log.append(("HiddenEcho", prompt, extra_pnginfo, unique_id, dynprompt, auth_token, api_key))
            return {"ui": {"unique_id": [unique_id]}}

    @node
    class Changed:
        """IS_CHANGED returns ``token``; "nan" means NaN, "raise" raises."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT, "token": ("STRING", {"default": "a"})}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def IS_CHANGED(cls, value, token):
            log.append(("IS_CHANGED", value, token))
            if token == "nan":
                return float("nan")
            if token == "raise":
                raise RuntimeError("cannot tell")
            return token

        def run(self, value, token):
            log.append(("Changed", value))
            return (value,)

    @node
    class NotIdempotent:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        NOT_IDEMPOTENT = True

        def run(self, value):
            log.append(("NotIdempotent", value))
            return (value,)

    @node
    class Stateful:
        """Counts its own calls on the instance."""

        def __init__(self):
            self.calls = 0

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        NOT_IDEMPOTENT = True

        @classmethod
        def IS_CHANGED(cls, value):
            return float("nan")  # always run, so the instance is exercised each prompt

        def run(self, value):
            self.calls += 1
            log.append(("Stateful", id(self), self.calls))
            return {"ui": {"calls": [self.calls]}}

    @node
    class Fail:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",), "kind": ("STRING", {"default": "value"})},
                    "optional": {"extra": ("*",)}}

        RETURN_TYPES = ("*",)
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value, kind, extra=None):
            if kind == "value":
                raise ValueError("boom")
            if kind == "custom":
                raise CustomError("custom boom")
            if kind == "base":
                raise NodeCrash("crashed hard")
            if kind == "keyboard":
                raise KeyboardInterrupt()
            return (value,)

    @node
    class Slow:
        """Long node: reports progress each step and checks for interrupts; can interrupt itself at a step."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"steps": ("INT", {"default": 3, "min": 1, "max": 10000}),
                                 "interrupt_at": ("INT", {"default": -1, "min": -1, "max": 10000}),
                                 "delay": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0})}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, steps, interrupt_at, delay):
            for i in range(steps):
                if i == interrupt_at:
                    current_execution().interrupt.set()
                check_interrupt()
                if delay:
                    time.sleep(delay)
                report_progress(i + 1, steps)
                log.append(("Slow", i))
            return (steps,)

    @node
    class Previewer:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value):
            report_progress(1, 2, preview=("JPEG", b"\xff\xd8fakejpeg", 512))
            send_text(None, "halfway")
            from PIL import Image

            report_progress(2, 2, preview=("PNG", Image.new("RGB", (64, 32), "red"), 16))
            return {"ui": {"values": [value]}}

    @node
    class WhoAmI:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, value):
            ctx = current_execution()
            log.append(("WhoAmI", ctx.prompt_id, ctx.node_id, ctx.display_node_id, ctx.real_node_id,
                        ctx.list_index))
            return (value,)

    @node
    class Validated:
        """VALIDATE_INPUTS takes over 'value' (so its min/max are not checked)."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("INT", {"default": 0, "min": 0, "max": 10}), "other": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def VALIDATE_INPUTS(cls, value):
            if value == 13:
                return "unlucky number"
            if value == 14:
                return False
            if value == 15:
                raise RuntimeError("validator exploded")
            return True

        def run(self, value, other):
            return (value + other,)

    @node
    class TypeChecked:
        """Declares input_types: the built-in link type check is skipped."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("FLOAT",)}}

        RETURN_TYPES = ("FLOAT",)
        FUNCTION = "run"

        @classmethod
        def VALIDATE_INPUTS(cls, input_types):
            log.append(("input_types", input_types))
            if input_types.get("value") not in ("FLOAT", "INT"):
                return f"value must be a number, got {input_types.get('value')}"
            return True

        def run(self, value):
            return (float(value),)

    @node
    class KwargsValidated:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": ("FLOAT", {"min": 0.0, "max": 1.0}), "b": ("FLOAT", {"min": 0.0, "max": 1.0})}}

        RETURN_TYPES = ("FLOAT",)
        FUNCTION = "run"

        @classmethod
        def VALIDATE_INPUTS(cls, **kwargs):
            return kwargs["a"] + kwargs["b"] < 6 or "sum too big"

        def run(self, a, b):
            return (a + b,)

    @node
    class AsyncValidated:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        async def VALIDATE_INPUTS(cls, value):
            await asyncio.sleep(0)
            return value != 7 or "seven is async-invalid"

        def run(self, value):
            return (value,)

    @node
    class Choice:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"pick": (["a", "b", "c"],), "big": ([f"m{i}" for i in range(25)],),
                                 "mode": ("COMBO", {"options": ["x", "y"]})}}

        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        def run(self, pick, big, mode):
            return (pick + big + mode,)

    @node
    class NeedsImage:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"image": ("IMAGE",)}, "optional": {"number": ("INT,FLOAT",)}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, image, number=None):
            return {"ui": {"number": [number]}}

    @node
    class RawLink:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"link": ("INT", {"rawLink": True})}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, link):
            return {"ui": {"link": [link]}}

    @node
    class Variadic:
        """Declares nothing; sums whatever is linked in."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, **kwargs):
            return (sum(kwargs.values()),)

    @node
    class Summary:
        """Fails with inputs whose repr is huge."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value):
            raise CustomError("bad inputs")

    @node
    class MakeTensor:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("IMAGE", "STRING")
        FUNCTION = "run"

        def run(self, value):
            return (FakeTensor((1, 64, 64, 3)), "y" * 5000)

    @node
    class BrokenInputTypes:
        @classmethod
        def INPUT_TYPES(cls):
            raise RuntimeError("INPUT_TYPES is broken")

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

    @node
    class TwoOut:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("INT", "STRING")
        FUNCTION = "run"

        def run(self, value):
            return (value, str(value))

    @node
    class MakeObject:
        """Returns a fresh object and keeps only a weak reference to it in the log."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": INT}}

        RETURN_TYPES = ("OBJECT",)
        FUNCTION = "run"

        def run(self, value):
            obj = Payload(value)
            log.append(("made", weakref.ref(obj)))
            return (obj,)

    @node
    class Touch:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",)}}

        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        def run(self, value):
            return (1,)

    @node
    class IsFreed:
        """Output node: records whether the object made earlier is gone by now."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("*",)}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        def run(self, value):
            gc.collect()
            refs = [entry[1] for entry in log if entry[0] == "made"]
            log.append(("freed", [ref() is None for ref in refs]))
            return {}

    return registry


class Payload:
    def __init__(self, value):
        self.value = value


def make_engine(log: list | None = None, **policy: Any) -> tuple[Engine, list]:
    log = [] if log is None else log
    return Engine(make_registry(log), CachePolicy(**policy)), log


class Run:
    """The events and outcome of one execution, with helpers for assertions."""

    def __init__(self, events: list, outcome):
        self.events = events
        self.outcome = outcome

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of_type(self, type_: str) -> list:
        return [e for e in self.events if e.type == type_]

    @property
    def ran(self) -> list[str]:
        """Node ids that sent `executing` (ran, not cached), in order."""
        return [e.node for e in self.events if e.type == "executing"]

    @property
    def cached(self) -> list[str]:
        return self.of_type("execution_cached")[0].nodes

    def summary(self) -> list[tuple]:
        """(type, key data) per event, comparable with protocol.md §5 tables."""
        rows = []
        for e in self.events:
            d = e.data()
            if e.type == "progress_state":
                rows.append((e.type, tuple((k, v["state"]) for k, v in d["nodes"].items())))
            elif e.type in ("executing", "executed"):
                rows.append((e.type, d["node"]))
            elif e.type == "execution_cached":
                rows.append((e.type, tuple(d["nodes"])))
            else:
                rows.append((e.type,))
        return rows


def run_prompt(engine: Engine, prompt: dict, prompt_id: str = "p1", extra_data: dict | None = None,
               targets: list[str] | None = None, interrupt: Interrupt | None = None,
               outputs: list[str] | None = None) -> Run:
    """Validate then execute like the worker does; asserts that validation passed."""
    if outputs is None:
        result = engine.validate(prompt, targets)
        assert result.ok, (result.error, result.node_errors)
        outputs = result.outputs
    events: list = []
    lock = threading.Lock()

    def emit(event):
        with lock:
            events.append(event)

    outcome = engine.execute(prompt_id, prompt, extra_data or {}, outputs, emit, interrupt or Interrupt())
    return Run(events, outcome)


def image_prompt(color: int = 4242, output: str = "PreviewImage") -> dict:
    """protocol.md's prompt: EmptyImage 64x64 -> PreviewImage."""
    inputs: dict[str, Any] = {"images": ["1", 0]}
    if output == "SaveImage":
        inputs["filename_prefix"] = "../../../outside_output"
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
            "2": {"class_type": output, "inputs": inputs}}


def chain_prompt(length: int, output: str = "Output") -> dict:
    """Const -> Add -> Add -> … -> Output."""
    prompt: dict[str, Any] = {"1": {"class_type": "Const", "inputs": {"value": 1}}}
    for i in range(2, length):
        prompt[str(i)] = {"class_type": "Add", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    prompt[str(length)] = {"class_type": output, "inputs": {"value": [str(length - 1), 0]}}
    return prompt
