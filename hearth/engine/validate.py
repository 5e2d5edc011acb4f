"""Prompt validation before queueing, with ComfyUI's error bodies.

Only output nodes and what they link to are validated. An output whose
upstream fails is dropped while valid outputs still run; the prompt is
rejected only when no output is left. Constants are coerced in place (INT,
FLOAT, STRING, BOOLEAN, COMBO), as ComfyUI does, so the prompt that is queued
and executed carries the converted values.

Unlike ComfyUI this never raises, whatever the JSON: a link to a missing node,
a cycle or a malformed node all become ordinary ComfyUI-shaped errors. The
graph walk is iterative, so deep chains do not hit Python's recursion limit.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

from hearth.engine.graph import ExecutionBlocker
from hearth.engine.nodeclass import ClassInfo, ClassTable, full_type_name

log = logging.getLogger(__name__)


@dataclass
class ValidationResult:
    ok: bool
    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)


def _error(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


def validate_node_input(received_type: Any, input_type: Any, strict: bool = False) -> bool:
    """Can an output of ``received_type`` feed an input of ``input_type``?

    Types are strings, possibly comma-separated unions ("INT,FLOAT"); "*"
    matches anything; non-strict means the unions only need to overlap.
    ``not a != b`` (rather than ``a == b``) honours the ``__ne__`` overrides
    custom nodes use to declare wildcard types.
    """
    if not received_type != input_type:
        return True
    if isinstance(input_type, list):
        # A combo input: ComfyUI's frontend links combo outputs to it.
        return received_type in ("COMBO", "*") or isinstance(received_type, (list, tuple))
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    accepted = {t.strip() for t in input_type.split(",")}
    if "*" in received or "*" in accepted:
        return True
    if strict:
        return received <= accepted
    return not received.isdisjoint(accepted)


# ---------------------------------------------------------------------------
# Calling VALIDATE_INPUTS (ComfyUI's list mapping, sync or async)
# ---------------------------------------------------------------------------

def call_inputs(input_data_all: dict[str, Any], input_is_list: bool) -> list[tuple[int | None, dict[str, Any]]]:
    """The (list_index, kwargs) of each call of a node function, ComfyUI's list mapping.

    INPUT_IS_LIST nodes get whole lists in one call. Otherwise the node runs
    once per item of the longest input, shorter inputs repeating their last
    item; with no inputs (or only empty lists) it runs once without arguments.
    """
    if input_is_list:
        return [(0, input_data_all)]
    longest = max((len(v) for v in input_data_all.values()), default=0)
    if longest == 0:
        return [(None, {})]
    return [(i, {k: v[i if len(v) > i else -1] for k, v in input_data_all.items()}) for i in range(longest)]


def _run_coroutines(coroutines: list[Any]) -> list[Any]:
    """Run coroutines to completion from sync code, even inside a running event loop."""
    async def gather():
        return await asyncio.gather(*coroutines)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(gather())
    # Called on the HTTP loop: run them on a private loop in a helper thread.
    box: dict[str, Any] = {}

    def worker():
        try:
            box["result"] = asyncio.run(gather())
        except BaseException as ex:  # re-raised in the caller's thread
            box["error"] = ex

    thread = threading.Thread(target=worker, name="hearth-validate-async", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def hidden_value(kind: Any, unique_id: str, prompt: Any, dynprompt: Any, extra_data: dict) -> tuple[bool, Any]:
    """Value of a hidden input kind ("PROMPT", "UNIQUE_ID", …); (False, None) for unknown kinds."""
    if kind == "PROMPT":
        return True, prompt
    if kind == "DYNPROMPT":
        return True, dynprompt
    if kind == "EXTRA_PNGINFO":
        return True, extra_data.get("extra_pnginfo")
    if kind == "UNIQUE_ID":
        return True, unique_id
    if kind == "AUTH_TOKEN_COMFY_ORG":
        return True, extra_data.get("auth_token_comfy_org")
    if kind == "API_KEY_COMFY_ORG":
        return True, extra_data.get("api_key_comfy_org")
    return False, None


def constant_inputs(info: ClassInfo, inputs: dict[str, Any], unique_id: str) -> dict[str, list]:
    """Inputs as VALIDATE_INPUTS and IS_CHANGED see them: constants, with links as None."""
    data: dict[str, list] = {}
    for name, value in inputs.items():
        category = info.input_info(name)[1]
        if _looks_like_link(value) and name not in info.raw_link_inputs:
            data[name] = [None]
        elif category is not None:
            data[name] = [value]
    for name, kind in info.hidden.items():
        known, value = hidden_value(kind, unique_id, {}, None, {})
        if known:
            data[name] = [value]
    return data


def _looks_like_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) \
        and isinstance(value[1], (int, float))


def map_class_function(info: ClassInfo, func_name: str, input_data_all: dict[str, list]) -> list[Any]:
    """Call a class-level function (VALIDATE_INPUTS, IS_CHANGED) over the input lists, synchronously."""
    func = getattr(info.cls, func_name)
    results = [func(**kwargs) for _, kwargs in call_inputs(input_data_all, info.input_is_list)]
    if any(inspect.iscoroutine(r) for r in results):
        pending = [r for r in results if inspect.iscoroutine(r)]
        done = iter(_run_coroutines(pending))
        results = [next(done) if inspect.iscoroutine(r) else r for r in results]
    return results


# ---------------------------------------------------------------------------
# The validator
# ---------------------------------------------------------------------------

@dataclass
class _Check:
    """One node's own validation: its errors and the upstream nodes it depends on."""

    errors: list[dict[str, Any]]
    upstream: list[str]  # source node ids, in input order (links that passed their checks)


_BAD_LINK = "Bad linked input, must be a length-2 list of [node_id, slot_index]"


class Validator:
    def __init__(self, registry: Any, prompt: dict[str, Any]) -> None:
        self.prompt = prompt
        self.classes = ClassTable(registry)
        self.checks: dict[str, _Check] = {}
        self.valid: dict[str, bool] = {}
        self._argspecs: dict[type, tuple[list[str], bool] | None] = {}
        # class_type -> its RETURN_TYPES (link checks) / its class (None: unknown), looked up once.
        self._return_types: dict[str, tuple] = {}
        self._class_of: dict[Any, type | None] = {}
        # Upstream links found so far by a node check, kept if the node's own code raises midway.
        self._partial_upstream: dict[str, list[str]] = {}

    # -- top level ---------------------------------------------------------
    def run(self, partial_targets: Any) -> ValidationResult:
        prompt = self.prompt
        if not isinstance(prompt, dict):
            return ValidationResult(False, _error(
                "invalid_prompt", "Cannot execute because the prompt is not a JSON object of nodes.",
                f"Received {type(prompt).__name__}"))
        targets = _normalise_targets(partial_targets)

        outputs: list[str] = []
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return ValidationResult(False, _error(
                    "invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'"))
            class_type = node["class_type"]
            cls = self._class(class_type)
            if cls is None:
                return ValidationResult(False, _error(
                    "invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                    f"Node ID '#{node_id}'"))
            if getattr(cls, "OUTPUT_NODE", False) is True and (targets is None or node_id in targets):
                outputs.append(node_id)

        if not outputs:
            return ValidationResult(False, _error("prompt_no_outputs", "Prompt has no outputs"))

        good: list[str] = []
        failed: list[str] = []
        for output_id in outputs:
            (good if self._validate_from(output_id) else failed).append(output_id)

        node_errors = self._node_errors(failed)
        for output_id in failed:
            log.warning("Prompt output %s failed validation and will be ignored", output_id)
        if not good:
            # Like ComfyUI, the summary lists only the output nodes' own errors.
            details = "\n".join(f"{e['message']}: {e['details']}"
                                for o in failed for e in self.checks[o].errors)
            return ValidationResult(False, _error("prompt_outputs_failed_validation",
                                                  "Prompt outputs failed validation", details),
                                    node_errors, [])
        return ValidationResult(True, None, node_errors, good)

    def _node_errors(self, failed_outputs: list[str]) -> dict[str, Any]:
        dependents: dict[str, list[str]] = {}
        for output_id in failed_outputs:
            # Walk only through invalid nodes: a valid node has no failure upstream.
            seen = {output_id}
            stack = [output_id]
            while stack:
                node_id = stack.pop()
                check = self.checks[node_id]
                if check.errors:
                    dependents.setdefault(node_id, []).append(output_id)
                for up in check.upstream:
                    if up not in seen and not self.valid.get(up, False):
                        seen.add(up)
                        stack.append(up)
        node_errors: dict[str, Any] = {}
        for node_id, check in self.checks.items():  # order in which nodes were checked
            if node_id in dependents:
                node_errors[node_id] = {"errors": check.errors, "dependent_outputs": dependents[node_id],
                                        "class_type": self.prompt[node_id]["class_type"]}
        return node_errors

    # -- graph walk ----------------------------------------------------------
    def _validate_from(self, output_id: str) -> bool:
        """Validate an output and everything it links to; iterative DFS with cycle detection."""
        if output_id in self.valid:
            return self.valid[output_id]
        self._ensure_check(output_id, None)
        check = self.checks[output_id]
        valid = self.valid
        if all(up in valid for up in check.upstream):
            # Everything it links to was validated already (a fan-out's outputs): no walk needed.
            ok = valid[output_id] = not check.errors and all(valid[up] for up in check.upstream)
            return ok
        on_path: dict[str, int] = {}  # node -> position in stack (grey nodes)
        in_cycle: set[str] = set()
        stack: list[list[Any]] = [[output_id, 0]]
        on_path[output_id] = 0
        while stack:
            frame = stack[-1]
            node_id, position = frame
            upstream = self.checks[node_id].upstream
            if position < len(upstream):
                frame[1] += 1
                up = upstream[position]
                if up in self.valid:
                    continue
                if up in on_path:
                    cycle = [f[0] for f in stack[on_path[up]:]]
                    self._report_cycle(cycle)
                    in_cycle.update(cycle)
                    continue
                self._ensure_check(up, (node_id, position))
                on_path[up] = len(stack)
                stack.append([up, 0])
                continue
            stack.pop()
            del on_path[node_id]
            check = self.checks[node_id]
            self.valid[node_id] = (not check.errors and node_id not in in_cycle
                                   and all(self.valid.get(up, False) for up in check.upstream))
        return self.valid[output_id]

    def _report_cycle(self, cycle: list[str]) -> None:
        path = " -> ".join([*cycle, cycle[0]])
        for node_id in cycle:
            errors = self.checks[node_id].errors
            if not any(e["type"] == "dependency_cycle" for e in errors):
                errors.append(_error("dependency_cycle", "Dependency cycle detected", path,
                                     {"cycle": list(cycle)}))

    def _ensure_check(self, node_id: str, via: tuple[str, int] | None) -> None:
        if node_id in self.checks:
            return
        try:
            self.checks[node_id] = self._check_node(node_id)
        except Exception as ex:
            # A node's own code (INPUT_TYPES, VALIDATE_INPUTS) raised. ComfyUI blames
            # the node, as "inner" when it was reached through another node's input.
            tb = traceback.format_tb(ex.__traceback__)
            upstream = self._partial_upstream.get(node_id, [])
            if via is None:
                error = _error("exception_during_validation", "Exception when validating node", str(ex),
                               {"exception_type": full_type_name(type(ex)), "traceback": tb})
            else:
                parent_id, _ = via
                input_name, link, config = self._link_origin(parent_id, node_id)
                error = _error("exception_during_inner_validation", "Exception when validating inner node",
                               str(ex), {"input_name": input_name, "input_config": config,
                                         "exception_message": str(ex), "exception_type": full_type_name(type(ex)),
                                         "traceback": tb, "linked_node": link})
            self.checks[node_id] = _Check([error], upstream)
        finally:
            self._partial_upstream.pop(node_id, None)

    def _class(self, class_type: Any) -> type | None:
        try:
            return self._class_of[class_type]
        except KeyError:
            cls = self._class_of[class_type] = self.classes.class_of(class_type)
            return cls
        except TypeError:  # unhashable class_type
            return None

    def _link_origin(self, parent_id: str, node_id: str) -> tuple[str | None, Any, Any]:
        inputs = self.prompt[parent_id].get("inputs") or {}
        for name, value in inputs.items():
            if isinstance(value, list) and len(value) == 2 and value[0] == node_id:
                try:
                    input_type, _, options = self.classes.get(self.prompt[parent_id]["class_type"]).input_info(name)
                    config = [input_type, options] if input_type is not None else None
                except Exception:
                    config = None
                return name, value, config
        return None, None, None

    # -- one node ------------------------------------------------------------
    def _validate_function(self, cls: type) -> tuple[list[str], bool] | None:
        """Argument names of VALIDATE_INPUTS and whether it takes **kwargs (None: no such function)."""
        if cls not in self._argspecs:
            func = getattr(cls, "VALIDATE_INPUTS", None)
            if func is None:
                self._argspecs[cls] = None
            else:
                spec = inspect.getfullargspec(func)
                self._argspecs[cls] = (list(spec.args) + list(spec.kwonlyargs), spec.varkw is not None)
        return self._argspecs[cls]

    def _check_node(self, node_id: str) -> _Check:
        prompt = self.prompt
        node = prompt[node_id]
        errors: list[dict[str, Any]] = []
        upstream: list[str] = []
        self._partial_upstream[node_id] = upstream

        inputs = node.get("inputs")
        if inputs is None:
            inputs = node["inputs"] = {}
        if not isinstance(inputs, dict):
            errors.append(_error("exception_during_validation", "Exception when validating node",
                                 "The node's inputs must be a JSON object",
                                 {"exception_type": "TypeError", "traceback": []}))
            return _Check(errors, [])

        info = self.classes.get(node["class_type"])
        validate_fn = self._validate_function(info.cls)
        vf_args, vf_kwargs = validate_fn if validate_fn is not None else ((), False)
        check_link_types = "input_types" not in vf_args
        received_types: dict[str, Any] = {}
        specs = info.inputs

        for name in info.declared:
            input_type, category, options = specs[name]
            if name not in inputs:
                if category == "required":
                    errors.append(_error("required_input_missing", "Required input is missing", name,
                                         {"input_name": name}))
                continue
            value = inputs[name]
            if isinstance(value, list):
                source = self._check_link(name, value, (input_type, options), errors)
                if source is None:
                    continue
                source_id, received_type = source
                received_types[name] = received_type
                if check_link_types and not validate_node_input(received_type, input_type):
                    errors.append(_error(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        f"{name}, received_type({received_type}) mismatch input_type({input_type})",
                        {"input_name": name, "input_config": [input_type, options], "received_type": received_type,
                         "linked_node": value}))
                    continue
                upstream.append(source_id)
                continue

            # A constant. {"__value__": v} wraps list-valued widgets (a bare list would be a link).
            if isinstance(value, dict) and "__value__" in value:
                value = inputs[name] = value["__value__"]
            try:
                value = _coerce(input_type, value)
                inputs[name] = value
            except Exception as ex:
                errors.append(_error(
                    "invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                    f"{name}, {value}, {ex}",
                    {"input_name": name, "input_config": [input_type, options], "received_value": value,
                     "exception_message": str(ex)}))
                continue

            # VALIDATE_INPUTS takes over the built-in checks of the inputs it names.
            if vf_kwargs or name in vf_args:
                continue
            if "min" in options and value < options["min"]:
                errors.append(_error("value_smaller_than_min",
                                     "Value {} smaller than min of {}".format(value, options["min"]), name,
                                     {"input_name": name, "input_config": [input_type, options],
                                      "received_value": value}))
                continue
            if "max" in options and value > options["max"]:
                errors.append(_error("value_bigger_than_max",
                                     "Value {} bigger than max of {}".format(value, options["max"]), name,
                                     {"input_name": name, "input_config": [input_type, options],
                                      "received_value": value}))
                continue
            if type(input_type) is str and input_type != "COMBO":
                continue  # not a combo: no list of choices
            choices = _combo_options(input_type, options)
            if choices is not None and value not in choices:
                if len(choices) > 20:
                    # Don't echo huge lists (model folders) back to the client.
                    list_info, shown_config = f"(list of length {len(choices)})", None
                else:
                    list_info, shown_config = str(choices), [input_type, options]
                errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {list_info}",
                                     {"input_name": name, "input_config": shown_config, "received_value": value}))
                continue

        # Links on undeclared inputs (variadic nodes) still run upstream: check they resolve.
        if not specs.keys() >= inputs.keys():
            for name, value in inputs.items():
                if name not in specs and _looks_like_link(value):
                    source = self._check_link(name, value, None, errors)
                    if source is not None:
                        upstream.append(source[0])

        if validate_fn is not None:
            self._run_validate_inputs(node_id, info, inputs, vf_args, vf_kwargs, received_types, errors)
        return _Check(errors, upstream)

    def _check_link(self, name: str, value: list, spec: tuple | None, errors: list) -> tuple[str, Any] | None:
        """Check a link's shape and target; returns (source id, source output type) or None after an error.

        ``spec`` is the input's (type, options), None for an undeclared input."""
        if len(value) != 2:
            errors.append(_error("bad_linked_input", _BAD_LINK, name,
                                 {"input_name": name, "input_config": _config(spec), "received_value": value}))
            return None
        source_id, slot = value
        if not isinstance(source_id, str) or isinstance(slot, bool) or not isinstance(slot, int):
            errors.append(_error("bad_linked_input", _BAD_LINK, name,
                                 {"input_name": name, "input_config": _config(spec), "received_value": value}))
            return None
        if source_id not in self.prompt:
            # ComfyUI reports a KeyError with its own traceback here; same shape, a plain explanation.
            errors.append(_error("exception_during_validation", "Exception when validating node", f"'{source_id}'",
                                 {"exception_type": "KeyError", "traceback": [], "input_name": name,
                                  "linked_node": value,
                                  "exception_message": f"Input '{name}' links to node '{source_id}', "
                                                       "which is not in the prompt"}))
            return None
        source_type = self.prompt[source_id]["class_type"]
        return_types = self._return_types.get(source_type) if isinstance(source_type, str) else None
        if return_types is None:
            return_types = getattr(self._class(source_type), "RETURN_TYPES", ()) or ()
            if isinstance(source_type, str):
                self._return_types[source_type] = return_types
        if not 0 <= slot < len(return_types):
            errors.append(_error("bad_linked_input", _BAD_LINK, name,
                                 {"input_name": name, "input_config": _config(spec), "received_value": value,
                                  "exception_message": f"Node '{source_id}' has no output {slot}"}))
            return None
        return source_id, return_types[slot]

    def _run_validate_inputs(self, node_id: str, info: ClassInfo, inputs: dict, vf_args: Any, vf_kwargs: bool,
                             received_types: dict, errors: list) -> None:
        data = constant_inputs(info, inputs, node_id)
        filtered = {name: values for name, values in data.items() if vf_kwargs or name in vf_args}
        if "input_types" in vf_args:
            filtered["input_types"] = [received_types]
        results = map_class_function(info, "VALIDATE_INPUTS", filtered)
        for name in filtered:
            for result in results:
                if result is not True and not isinstance(result, ExecutionBlocker):
                    details = name if result is False else f"{name} - {result}"
                    errors.append(_error("custom_validation_failed", "Custom validation failed for node", details,
                                         {"input_name": name}))


def _config(spec: tuple | None) -> list | None:
    """An input's ``input_config`` in error reports: [type, options]."""
    return list(spec) if spec is not None else None


def _coerce(input_type: Any, value: Any) -> Any:
    if input_type == "INT":
        return int(value)
    if input_type == "FLOAT":
        return float(value)
    if input_type == "STRING":
        return str(value)
    if input_type == "BOOLEAN":
        return bool(value)
    return value


def _combo_options(input_type: Any, options: dict) -> list | None:
    if isinstance(input_type, (list, tuple)):
        return list(input_type)
    if input_type == "COMBO" and isinstance(options.get("options"), (list, tuple)):
        return list(options["options"])
    return None


def _normalise_targets(targets: Any) -> set[str] | None:
    if targets is None:
        return None
    if isinstance(targets, str):
        return {targets}
    if isinstance(targets, (list, tuple, set)):
        return {str(t) for t in targets if isinstance(t, (str, int)) and not isinstance(t, bool)}
    return set()  # nonsense selects nothing, so the prompt has no outputs


def validate_prompt(registry: Any, prompt: Any, partial_execution_targets: Any = None) -> ValidationResult:
    """Validate a prompt; never raises for any JSON input."""
    validator = Validator(registry, prompt)
    try:
        return validator.run(partial_execution_targets)
    except Exception as ex:  # a bug of ours: still answer in ComfyUI's shape
        log.exception("validation failed unexpectedly")
        return ValidationResult(False, _error("invalid_prompt", "Cannot validate the prompt", str(ex),
                                              {"exception_type": full_type_name(type(ex))}))
