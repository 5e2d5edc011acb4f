"""The V3 schema and its V1 adapter, in process (no server): what the engine is handed for a V3 node.

The ComfyUI module names are made importable for this module only and removed afterwards.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REFERENCE = json.loads((HERE / "comfyui_v3_object_info.json").read_text())


@pytest.fixture(scope="module")
def v3():
    from hearth.compat.finder import TOP_LEVEL, ShimFinder, install_finder

    before = set(sys.modules)
    install_finder()
    spec = importlib.util.spec_from_file_location("hearth_test_v3_pack", HERE / "packs" / "v3_pack" / "__init__.py")
    pack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack)
    from hearth.compat import v3 as adapter

    yield pack, adapter, sys.modules["comfy_api.latest._io"]
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, ShimFinder)]
    for name in set(sys.modules) - before:
        if name.partition(".")[0] in TOP_LEVEL or name == "hearth_test_v3_pack":
            del sys.modules[name]


def classes(pack):
    return [pack.V3Double, pack.V3Shape, pack.V3Lazy, pack.V3Async, pack.V3Expand, pack.V3Blocked, pack.V3Preview]


def test_node_info_matches_comfyui(v3):
    pack, adapter, _ = v3
    for cls in classes(pack):
        engine_class = adapter.adapt(cls, "custom_nodes.v3_pack")
        info = json.loads(json.dumps(engine_class.GET_NODE_INFO_V1()))
        assert info == REFERENCE[info["name"]]
        assert list(info) == list(REFERENCE[info["name"]])  # key order too
        assert engine_class.V3_CLASS is cls and cls.RELATIVE_PYTHON_MODULE == "custom_nodes.v3_pack"


def test_adapter_speaks_the_v1_protocol(v3):
    pack, adapter, _ = v3
    double = adapter.adapt(pack.V3Double, "custom_nodes.v3_pack")
    assert double.RETURN_TYPES == ("INT", "STRING") and double.RETURN_NAMES == ("doubled", "who")
    assert double.OUTPUT_IS_LIST == (False, False) and double.OUTPUT_NODE is False
    assert double.CATEGORY == "hearth_test/v3" and double.DESCRIPTION == "Doubles an integer."
    assert double.INPUT_TYPES()["hidden"] == {"unique_id": ("UNIQUE_ID",)}
    # only the hooks the node overrides exist, so the engine treats it as ComfyUI does
    assert hasattr(double, "IS_CHANGED") and hasattr(double, "VALIDATE_INPUTS")
    assert not hasattr(double, "check_lazy_status")
    spec = inspect.getfullargspec(double.VALIDATE_INPUTS)
    assert spec.args == ["cls", "value"] and spec.varkw is None  # same inputs as ComfyUI hands over
    assert double.VALIDATE_INPUTS(value=13) == "13 is unlucky" and double.VALIDATE_INPUTS(value=2) is True
    assert double.IS_CHANGED(value=4, unique_id="9") == 4
    result = double().execute_v3(value=4, unique_id="9")
    assert result == {"result": (8, "node 9")}
    lazy = adapter.adapt(pack.V3Lazy, "custom_nodes.v3_pack")
    assert lazy().check_lazy_status(use_a=False, a=None, b=None) == ["b"]
    assert not hasattr(lazy, "IS_CHANGED") and not hasattr(lazy, "VALIDATE_INPUTS")
    assert inspect.iscoroutinefunction(adapter.adapt(pack.V3Async, "x").execute_v3)


def test_results_become_v1_dicts(v3):
    pack, adapter, io = v3
    blocked = adapter.adapt(pack.V3Blocked, "x")().execute_v3(text="t")
    assert list(blocked) == ["result"] and blocked["result"][0].message == "v3 blocked"
    shape = adapter.adapt(pack.V3Shape, "x")().execute_v3(mode="fast", amount=0.5, text="", flag=True, seed=1,
                                                          prompt={"1": {}}, extra_pnginfo=None)
    assert shape["ui"] == {"text": (shape["result"][0],)} and shape["result"][0].endswith("['1']")

    class NotExpandable(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="X", outputs=[io.Int.Output()])

        @classmethod
        def execute(cls):
            return io.NodeOutput(1, expand={})

    with pytest.raises(RuntimeError, match="enable_expand"):
        adapter.adapt(NotExpandable, "x")().execute_v3()


def test_schema_rejects_duplicate_ids(v3):
    _, _, io = v3

    class Duplicate(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="D", inputs=[io.Int.Input("a"), io.Int.Input("a")])

        @classmethod
        def execute(cls, a):
            return io.NodeOutput()

    with pytest.raises(ValueError, match="Input ids must be unique"):
        Duplicate.GET_SCHEMA()
