"""Validation: ComfyUI's error bodies (protocol.md §4), coercion, hostile input."""
from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.enginekit import chain_prompt, image_prompt, make_engine

from hearth.engine import validate_node_input

EMPTY_IMAGE_WIDTH = ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}]


@pytest.fixture
def engine():
    return make_engine()[0]


def body(result):
    """What POST /prompt answers with (400 body), through JSON."""
    return json.loads(json.dumps({"error": result.error, "node_errors": result.node_errors}))


def errors_of(result, node_id):
    return result.node_errors[node_id]["errors"]


# -- protocol.md §4, verbatim ---------------------------------------------------------

def test_unknown_class_type(engine):
    result = engine.validate({"1": {"class_type": "NoSuchNodeXYZ", "inputs": {}}})
    assert not result.ok
    assert body(result) == {"error": {"type": "invalid_prompt",
                                      "message": "Cannot execute because node NoSuchNodeXYZ does not exist.",
                                      "details": "Node ID '#1'", "extra_info": {}}, "node_errors": {}}


def test_missing_required_input(engine):
    prompt = image_prompt()
    del prompt["1"]["inputs"]["width"]
    assert body(engine.validate(prompt)) == {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                  "details": "", "extra_info": {}},
        "node_errors": {"1": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                                          "details": "width", "extra_info": {"input_name": "width"}}],
                              "dependent_outputs": ["2"], "class_type": "EmptyImage"}}}


def test_link_to_missing_node_same_shape_without_traceback(engine):
    prompt = {"2": {"class_type": "PreviewImage", "inputs": {"images": ["99", 0]}}}
    result = body(engine.validate(prompt))
    assert result["error"] == {"type": "prompt_outputs_failed_validation",
                               "message": "Prompt outputs failed validation",
                               "details": "Exception when validating node: '99'", "extra_info": {}}
    (error,) = result["node_errors"]["2"]["errors"]
    assert (error["type"], error["message"], error["details"]) == (
        "exception_during_validation", "Exception when validating node", "'99'")
    assert error["extra_info"]["exception_type"] == "KeyError"
    assert error["extra_info"]["traceback"] == []
    assert "99" in error["extra_info"]["exception_message"]
    assert result["node_errors"]["2"]["dependent_outputs"] == ["2"]
    assert result["node_errors"]["2"]["class_type"] == "PreviewImage"


def test_no_output_node_and_empty_prompt(engine):
    expected = {"error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
                          "extra_info": {}}, "node_errors": {}}
    assert body(engine.validate({"1": image_prompt()["1"]})) == expected
    assert body(engine.validate({})) == expected


def test_value_below_min(engine):
    prompt = image_prompt()
    prompt["1"]["inputs"]["width"] = 0
    assert body(engine.validate(prompt))["node_errors"] == {"1": {"errors": [{
        "type": "value_smaller_than_min", "message": "Value 0 smaller than min of 1", "details": "width",
        "extra_info": {"input_name": "width", "input_config": EMPTY_IMAGE_WIDTH, "received_value": 0}}],
        "dependent_outputs": ["2"], "class_type": "EmptyImage"}}


def test_wrong_type_string_for_int(engine):
    prompt = image_prompt()
    prompt["1"]["inputs"]["width"] = "abc"
    assert body(engine.validate(prompt))["node_errors"]["1"]["errors"] == [{
        "type": "invalid_input_type", "message": "Failed to convert an input value to a INT value",
        "details": "width, abc, invalid literal for int() with base 10: 'abc'",
        "extra_info": {"input_name": "width", "input_config": EMPTY_IMAGE_WIDTH, "received_value": "abc",
                       "exception_message": "invalid literal for int() with base 10: 'abc'"}}]


def test_value_above_max(engine):
    prompt = image_prompt()
    prompt["1"]["inputs"]["height"] = 20000
    (error,) = errors_of(engine.validate(prompt), "1")
    assert error["type"] == "value_bigger_than_max"
    assert error["message"] == "Value 20000 bigger than max of 16384"
    assert error["details"] == "height"


def test_custom_validation_failed_shape(engine):
    prompt = {"1": {"class_type": "Validated", "inputs": {"value": 13, "other": 1}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert body(engine.validate(prompt))["node_errors"]["1"]["errors"] == [{
        "type": "custom_validation_failed", "message": "Custom validation failed for node",
        "details": "value - unlucky number", "extra_info": {"input_name": "value"}}]
    prompt["1"]["inputs"]["value"] = 14  # False: details are just the input name
    assert errors_of(engine.validate(prompt), "1")[0]["details"] == "value"


# -- each error type --------------------------------------------------------------------

def test_validate_inputs_takes_over_builtin_checks(engine):
    # 'value' has max 10, but VALIDATE_INPUTS names it: 50 is accepted.
    prompt = {"1": {"class_type": "Validated", "inputs": {"value": 50, "other": 1}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert engine.validate(prompt).ok
    prompt["1"]["inputs"]["other"] = 5000  # 'other' is still checked
    assert errors_of(engine.validate(prompt), "1")[0]["type"] == "value_bigger_than_max"


def test_validate_inputs_with_kwargs_and_async(engine):
    prompt = {"1": {"class_type": "KwargsValidated", "inputs": {"a": 3.0, "b": 2.0}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert engine.validate(prompt).ok  # min/max skipped for all inputs (**kwargs)
    prompt["1"]["inputs"]["b"] = 5.0
    result = engine.validate(prompt)
    assert {e["details"] for e in errors_of(result, "1")} == {"a - sum too big", "b - sum too big"}

    prompt = {"1": {"class_type": "AsyncValidated", "inputs": {"value": 7}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert errors_of(engine.validate(prompt), "1")[0]["details"] == "value - seven is async-invalid"
    prompt["1"]["inputs"]["value"] = 8
    assert engine.validate(prompt).ok


def test_async_validate_inputs_inside_a_running_loop(engine):
    # The server validates on its event loop: async VALIDATE_INPUTS must still work there.
    prompt = {"1": {"class_type": "AsyncValidated", "inputs": {"value": 7}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}

    async def on_the_loop():
        return engine.validate(prompt)
    assert not asyncio.run(on_the_loop()).ok


def test_input_types_gets_link_types_and_skips_type_check():
    engine, log = make_engine()
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "TypeChecked", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    assert engine.validate(prompt).ok  # INT into FLOAT accepted by VALIDATE_INPUTS
    assert ("input_types", {"value": "INT"}) in log
    prompt["1"] = {"class_type": "Text", "inputs": {"text": "x"}}
    result = engine.validate(prompt)
    details = {e["details"] for e in errors_of(result, "2")}
    assert "input_types - value must be a number, got STRING" in details


def test_exception_during_validation_and_inner(engine):
    prompt = {"1": {"class_type": "Validated", "inputs": {"value": 15, "other": 1}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    (error,) = errors_of(engine.validate(prompt), "1")
    assert error["type"] == "exception_during_inner_validation"
    assert error["message"] == "Exception when validating inner node"
    assert error["details"] == "validator exploded"
    assert error["extra_info"]["input_name"] == "value"
    assert error["extra_info"]["linked_node"] == ["1", 0]
    assert error["extra_info"]["exception_type"] == "RuntimeError"
    assert isinstance(error["extra_info"]["traceback"], list)

    prompt = {"1": {"class_type": "BrokenInputTypes", "inputs": {}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert errors_of(engine.validate(prompt), "1")[0]["type"] == "exception_during_inner_validation"
    # The same failure on an output node itself is a plain exception_during_validation.
    prompt = {"1": {"class_type": "Fail", "inputs": {"value": 1, "kind": "none"}}}
    assert engine.validate(prompt).ok


def test_return_type_mismatch_wildcards_and_unions(engine):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "NeedsImage", "inputs": {"image": ["1", 0]}}}
    (error,) = errors_of(engine.validate(prompt), "2")
    assert error["type"] == "return_type_mismatch"
    assert error["message"] == "Return type mismatch between linked nodes"
    assert error["details"] == "image, received_type(INT) mismatch input_type(IMAGE)"
    assert error["extra_info"]["received_type"] == "INT" and error["extra_info"]["linked_node"] == ["1", 0]

    ok = {"1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
          "2": {"class_type": "Const", "inputs": {"value": 1}},
          "3": {"class_type": "NeedsImage", "inputs": {"image": ["1", 0], "number": ["2", 0]}}}
    assert engine.validate(ok).ok  # INT into "INT,FLOAT"
    ok["2"] = {"class_type": "Text", "inputs": {"text": "x"}}
    assert errors_of(engine.validate(ok), "3")[0]["type"] == "return_type_mismatch"
    # "*" on either side matches anything.
    assert engine.validate({"1": {"class_type": "Text", "inputs": {"text": "x"}},
                            "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}).ok


def test_validate_node_input_rules():
    assert validate_node_input("INT", "INT")
    assert validate_node_input("INT", "INT,FLOAT")
    assert validate_node_input("INT, STRING", "STRING")
    assert not validate_node_input("INT,STRING", "STRING", strict=True)
    assert not validate_node_input("IMAGE", "LATENT")
    assert validate_node_input("*", "LATENT") and validate_node_input("IMAGE", "*")
    assert validate_node_input("COMBO", ["a", "b"])

    class AnyType(str):
        def __ne__(self, other):
            return False
    assert validate_node_input("IMAGE", AnyType("whatever"))


def test_bad_linked_inputs(engine):
    for bad in (["1", 0, 0], ["1", "0"], ["1", 1.5], ["1", 7], ["1", -1], [1, 0], ["1", True]):
        prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
                  "2": {"class_type": "Output", "inputs": {"value": bad}}}
        result = engine.validate(prompt)
        (error,) = errors_of(result, "2")
        assert error["type"] == "bad_linked_input", bad
        assert error["message"] == "Bad linked input, must be a length-2 list of [node_id, slot_index]"
        assert error["details"] == "value"


def test_value_not_in_list(engine):
    prompt = {"1": {"class_type": "Choice", "inputs": {"pick": "z", "big": "nope", "mode": "q"}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    errors = errors_of(engine.validate(prompt), "1")
    assert [e["type"] for e in errors] == ["value_not_in_list"] * 3
    assert errors[0]["message"] == "Value not in list"
    assert errors[0]["details"] == "pick: 'z' not in ['a', 'b', 'c']"
    assert errors[0]["extra_info"] == {"input_name": "pick", "input_config": [["a", "b", "c"], {}],
                                       "received_value": "z"}
    assert errors[1]["details"] == "big: 'nope' not in (list of length 25)"
    assert errors[1]["extra_info"]["input_config"] is None
    assert errors[2]["details"] == "mode: 'q' not in ['x', 'y']"
    prompt["1"]["inputs"] = {"pick": "b", "big": "m24", "mode": "y"}
    assert engine.validate(prompt).ok


def test_constants_are_coerced_in_place(engine):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": "64", "height": 63.9, "batch_size": True,
                                                           "color": {"__value__": 5}}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
              "3": {"class_type": "FloatConst", "inputs": {"value": 1}},
              "4": {"class_type": "Text", "inputs": {"text": 12}},
              "5": {"class_type": "Flag", "inputs": {"value": "false"}},
              "6": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
              "7": {"class_type": "Output", "inputs": {"value": ["4", 0]}},
              "8": {"class_type": "Output", "inputs": {"value": ["5", 0]}}}
    assert engine.validate(prompt).ok
    assert prompt["1"]["inputs"] == {"width": 64, "height": 63, "batch_size": 1, "color": 5}
    assert prompt["3"]["inputs"]["value"] == 1.0 and isinstance(prompt["3"]["inputs"]["value"], float)
    assert prompt["4"]["inputs"]["text"] == "12"
    assert prompt["5"]["inputs"]["value"] is True  # bool("false"), as ComfyUI


def test_huge_numbers(engine):
    prompt = image_prompt()
    prompt["1"]["inputs"]["width"] = 10 ** 400
    assert errors_of(engine.validate(prompt), "1")[0]["type"] == "value_bigger_than_max"
    prompt = {"1": {"class_type": "FloatConst", "inputs": {"value": 10 ** 400}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    (error,) = errors_of(engine.validate(prompt), "1")
    assert error["type"] == "invalid_input_type"  # int too large to convert to float
    prompt["1"]["inputs"]["value"] = float("inf")
    assert errors_of(engine.validate(prompt), "1")[0]["type"] == "value_bigger_than_max"


def test_cycles_are_rejected(engine):
    prompt = {"1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
              "3": {"class_type": "Output", "inputs": {"value": ["2", 0]}}}
    result = engine.validate(prompt)
    assert not result.ok
    assert result.error["type"] == "prompt_outputs_failed_validation"
    for node_id in ("1", "2"):
        (error,) = errors_of(result, node_id)
        assert error["type"] == "dependency_cycle"
        assert error["message"] == "Dependency cycle detected"
    assert "3" not in result.node_errors  # invalid only because of its upstream
    self_loop = {"1": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
                 "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert errors_of(engine.validate(self_loop), "1")[0]["type"] == "dependency_cycle"


def test_invalid_outputs_are_dropped_valid_ones_kept(engine):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 5000}},   # above max
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Const", "inputs": {"value": 1}},
              "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}},
              "5": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    result = engine.validate(prompt)
    assert result.ok and result.error is None
    assert result.outputs == ["4"]
    assert result.node_errors["1"]["dependent_outputs"] == ["2", "5"]
    assert set(result.node_errors) == {"1"}


def test_dependent_outputs_only_lists_real_dependents(engine):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 5000}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Const", "inputs": {"value": -5000}},
              "4": {"class_type": "Output", "inputs": {"value": ["3", 0]}}}
    result = engine.validate(prompt)
    assert result.node_errors["1"]["dependent_outputs"] == ["2"]
    assert result.node_errors["3"]["dependent_outputs"] == ["4"]
    assert result.error["details"] == ""  # only the outputs' own errors are summarised


def test_partial_execution_targets(engine):
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 1}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert engine.validate(prompt).outputs == ["2", "3"]
    assert engine.validate(prompt, ["3"]).outputs == ["3"]
    assert engine.validate(prompt, []).error["type"] == "prompt_no_outputs"
    assert engine.validate(prompt, ["1"]).error["type"] == "prompt_no_outputs"  # not an output node
    assert engine.validate(prompt, ["nope"]).error["type"] == "prompt_no_outputs"
    assert engine.validate(prompt, 42).error["type"] == "prompt_no_outputs"


def test_undeclared_links_are_checked(engine):
    prompt = {"1": {"class_type": "Variadic", "inputs": {"x": ["9", 0]}},
              "2": {"class_type": "Output", "inputs": {"value": ["1", 0]}}}
    assert errors_of(engine.validate(prompt), "1")[0]["details"] == "'9'"


@pytest.mark.parametrize("prompt, message", [
    ([1, 2, 3], "Cannot execute because the prompt is not a JSON object of nodes."),
    ("hello", "Cannot execute because the prompt is not a JSON object of nodes."),
    (None, "Cannot execute because the prompt is not a JSON object of nodes."),
    ({"1": "EmptyImage"}, "Cannot execute because a node is missing the class_type property."),
    ({"1": 5}, "Cannot execute because a node is missing the class_type property."),
    ({"1": {"inputs": {}}}, "Cannot execute because a node is missing the class_type property."),
    ({"1": {"class_type": ["list"], "inputs": {}}}, "Cannot execute because node ['list'] does not exist."),
    ({"1": {"class_type": None}}, "Cannot execute because node None does not exist."),
])
def test_hostile_prompts_get_invalid_prompt(engine, prompt, message):
    result = engine.validate(prompt)
    assert not result.ok
    assert result.error["type"] == "invalid_prompt"
    assert result.error["message"] == message
    json.dumps(body(result))


def test_hostile_node_contents(engine):
    for inputs in ([1, 2], "x", 5):
        result = engine.validate({"1": {"class_type": "Output", "inputs": inputs}})
        assert not result.ok
        assert errors_of(result, "1")[0]["type"] == "exception_during_validation"
    # A node without "inputs" is treated as having none.
    result = engine.validate({"1": {"class_type": "Output"}})
    assert errors_of(result, "1")[0]["type"] == "required_input_missing"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
NODE_IDS = st.sampled_from(["1", "2", "3", "4"])
CLASSES = st.sampled_from(["Const", "Add", "Output", "EmptyImage", "PreviewImage", "Choice", "Validated",
                           "LazySwitch", "Variadic", "Nope"])
INPUT_VALUE = JSON | st.tuples(NODE_IDS, st.integers(-1, 3)).map(list)
NODE = st.fixed_dictionaries({"class_type": CLASSES},
                             optional={"inputs": st.dictionaries(st.sampled_from(["value", "a", "b", "images", "width",
                                                                                  "pick", "on_true", "x"]),
                                                                 INPUT_VALUE, max_size=4)})
PROMPTS = st.dictionaries(NODE_IDS, NODE | JSON, max_size=4) | JSON


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROMPTS)
def test_fuzzed_prompts_never_raise(prompt):
    engine, _ = make_engine()
    result = engine.validate(prompt)
    json.dumps(body(result))  # always serialisable
    if result.ok:
        assert result.outputs and result.error is None
    else:
        assert set(result.error) == {"type", "message", "details", "extra_info"}
    for node_error in result.node_errors.values():
        assert set(node_error) == {"errors", "dependent_outputs", "class_type"}
        for error in node_error["errors"]:
            assert set(error) == {"type", "message", "details", "extra_info"}


def test_validation_of_long_chains_does_not_recurse(engine):
    # ComfyUI raises RecursionError on a 1,000-node chain; the walk here is iterative. How fast it is
    # belongs to bench/engine_overhead.py, not to a timed test.
    for n in (1000, 5000):
        result = engine.validate(chain_prompt(n))
        assert result.ok, result.error
        assert len(result.outputs) == 1
