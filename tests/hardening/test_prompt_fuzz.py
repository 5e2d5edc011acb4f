"""Prompt fuzzing: hypothesis-generated POST /prompt bodies against a real server.

Random graphs over real and bogus node classes, wrong types, huge and non-finite numbers, deep
nesting, cycles, unicode (lone surrogates included), plus hand-picked extremes (10 MB strings,
5,000-node chains, 20,000-node prompts). Every answer is a 200 or a ComfyUI-shaped 400 whose body
is strict JSON; every accepted prompt finishes (success or a clean error); the server log shows no
unhandled error and the worker still runs the next prompt.
"""
from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hardening.conftest import assert_comfy_error, figure, strict_json, worker_alive

EXAMPLES = int(os.environ.get("HEARTH_PROMPT_FUZZ_EXAMPLES", "400"))

# Real classes the graphs draw from (cheap ones, and ones whose inputs name files or models).
VOCAB = ["PrimitiveString", "PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean", "StringConcatenate",
         "StringLength", "StringSubstring", "StringReplace", "CaseConverter", "PreviewAny", "EmptyImage",
         "ImageInvert", "PreviewImage", "SaveImage", "LoadImage", "LoadImageMask", "CheckpointLoaderSimple",
         "VAELoader", "LoraLoader", "CLIPTextEncode", "KSampler", "EmptyLatentImage", "VAEDecode"]
BOGUS_CLASSES = ["", "NoSuchNode", "__proto__", "constructor", "../../etc/passwd", "Preview Image", "emptyimage",
                 "EmptyImage\x00", "💥"]

# Integers are small or far out of every range: nothing generated asks for a large image.
INTS = st.one_of(st.integers(-3, 64),
                 st.sampled_from([-2 ** 63, -1, 2 ** 31, 2 ** 63, 2 ** 64 + 1, 10 ** 30, 10 ** 400, 16385, 4097,
                                  0xFFFFFF + 1]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 5e-324, -0.0]))
TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
PATHLIKE = st.sampled_from(["../../../etc/passwd", "..\\..\\x", "/etc/passwd", "C:\\x", "a\x00b", "%2e%2e/x",
                            "x" * 300, "ComfyUI", "sub/dir/name", "example.png", "model.safetensors",
                            "x.png [output]", "x.png [input]", "../x.png [temp]"])
SCALARS = st.one_of(INTS, FLOATS, TEXT, PATHLIKE, st.booleans(), st.none())


def values(ids: list[str]):
    link_ids = st.sampled_from(ids + ["missing", "", "0"]) if ids else st.sampled_from(["missing", ""])
    link = st.tuples(st.one_of(link_ids, INTS, st.none()),
                     st.one_of(st.integers(-2, 5), FLOATS, TEXT, st.none())).map(list)
    nested = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(TEXT, inner, max_size=3)),
                          max_leaves=8)
    return st.one_of(SCALARS, link, link, nested)


def typed_value(spec, ids: list[str]):
    """A plausible value for an input spec from /object_info (small sizes only), or a link."""
    kind = spec[0] if isinstance(spec, list) and spec else None
    options = spec[1] if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    link = st.tuples(st.sampled_from(ids or ["missing"]), st.integers(0, 2)).map(list)
    if isinstance(kind, list):
        return st.sampled_from(kind) if kind else st.just("")
    if kind == "INT":
        low = max(int(options.get("min", 0)), -3)
        high = min(int(options.get("max", 64)), 64)
        return st.integers(low, max(low, high))
    if kind == "FLOAT":
        low = max(float(options.get("min", 0.0)), -10.0)
        high = min(float(options.get("max", 10.0)), 10.0)
        return st.floats(low, max(low, high), allow_nan=False)
    if kind == "STRING":
        return st.one_of(TEXT, PATHLIKE)
    if kind == "BOOLEAN":
        return st.booleans()
    if kind == "COMBO":
        choices = options.get("options") or [""]
        return st.sampled_from(choices)
    return link


@st.composite
def nodes(draw, ids: list[str], input_names: dict[str, list[str]], input_specs: dict[str, dict]):
    shape = draw(st.integers(0, 39))
    if shape == 0:
        return draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3)))  # not a node object at all
    class_type = draw(st.one_of(st.sampled_from(VOCAB), st.sampled_from(VOCAB), st.sampled_from(VOCAB),
                                st.sampled_from(VOCAB), st.sampled_from(BOGUS_CLASSES), TEXT, INTS, st.none(),
                                st.lists(TEXT, max_size=2)))
    names = list(input_names.get(class_type, [])) if isinstance(class_type, str) else []
    inputs = {}
    specs = input_specs.get(class_type, {}) if isinstance(class_type, str) else {}
    for name in names:
        roll = draw(st.integers(0, 9))
        if roll == 0:
            continue  # a missing input
        inputs[name] = draw(values(ids)) if roll <= 2 else draw(typed_value(specs.get(name), ids))
    for name in draw(st.lists(TEXT, max_size=2)):
        inputs[name] = draw(values(ids))
    node: dict = {"class_type": class_type, "inputs": inputs}
    if shape == 1:
        node["inputs"] = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=2)))
    elif shape == 2:
        del node["class_type"]
    elif shape == 3:
        node["_meta"] = {"title": draw(TEXT)}
    return node


@st.composite
def bodies(draw, input_names: dict[str, list[str]], input_specs: dict[str, dict]):
    ids = draw(st.lists(st.one_of(st.integers(0, 30).map(str), st.integers(0, 30).map(str), TEXT), max_size=7,
                        unique=True))
    prompt = {node_id: draw(nodes(ids, input_names, input_specs)) for node_id in ids}
    body: dict = {"prompt": prompt}
    kind = draw(st.integers(0, 59))
    if kind == 0:
        body["prompt"] = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3)))
    elif kind == 1:
        del body["prompt"]
    elif kind == 2:
        body = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=2)))
    for key, strategy in (("number", st.one_of(INTS, FLOATS, TEXT, st.booleans(), st.none())),
                          ("front", SCALARS), ("client_id", st.one_of(TEXT, INTS, st.none())),
                          ("prompt_id", st.one_of(TEXT, st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()))),
                          ("extra_data", st.one_of(SCALARS, st.dictionaries(TEXT, SCALARS, max_size=3))),
                          ("partial_execution_targets", st.one_of(SCALARS, st.lists(st.one_of(TEXT, INTS), max_size=3)))):
        if isinstance(body, dict) and draw(st.integers(0, 11)) == 0:
            body[key] = draw(strategy)
    return body


TEMPLATES = [
    {"1": {"class_type": "PrimitiveString", "inputs": {"value": "a"}},
     "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "b", "delimiter": "-"}},
     "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}},
    {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
     "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
     "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}},
    {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
     "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "fuzz"}}},
    {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 3}},
     "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
     "3": {"class_type": "PrimitiveFloat", "inputs": {"value": 0.5}},
     "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}},
    {"1": {"class_type": "PrimitiveString", "inputs": {"value": "Hello"}},
     "2": {"class_type": "StringSubstring", "inputs": {"string": ["1", 0], "start": 0, "end": 3}},
     "3": {"class_type": "CaseConverter", "inputs": {"string": ["2", 0], "mode": "UPPERCASE"}},
     "4": {"class_type": "StringLength", "inputs": {"string": ["3", 0]}},
     "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}}},
]


@st.composite
def mutated_templates(draw):
    """A valid graph with 0-3 hostile changes: most are accepted, some fail validation, a few fail at run time."""
    prompt = json.loads(json.dumps(draw(st.sampled_from(TEMPLATES))))
    ids = list(prompt)
    for _ in range(draw(st.integers(0, 3))):
        node_id = draw(st.sampled_from(ids))
        node = prompt[node_id]
        what = draw(st.integers(0, 6))
        if what == 0:
            node["class_type"] = draw(st.one_of(st.sampled_from(VOCAB + BOGUS_CLASSES), TEXT))
        elif what == 1 and node["inputs"]:
            node["inputs"].pop(draw(st.sampled_from(sorted(node["inputs"]))))
        elif what == 2:
            node["inputs"][draw(TEXT)] = draw(values(ids))
        elif what == 3:
            prompt[draw(TEXT)] = {"class_type": draw(st.sampled_from(VOCAB)), "inputs": {}}
        elif node["inputs"]:
            name = draw(st.sampled_from(sorted(node["inputs"])))
            node["inputs"][name] = draw(values(ids))
    body: dict = {"prompt": prompt}
    if draw(st.booleans()):
        body["client_id"] = draw(TEXT)
    if draw(st.integers(0, 3)) == 0:
        body["extra_data"] = {"extra_pnginfo": {"workflow": draw(st.dictionaries(TEXT, SCALARS, max_size=3))}}
    return body


def encode(body) -> bytes:
    """Python's json.dumps writes NaN/Infinity (which the server's parser accepts) and escapes lone surrogates."""
    return json.dumps(body).encode()


class Tally:
    def __init__(self):
        self.cases = 0
        self.accepted: list[str] = []
        self.rejected = 0
        self.bad: list[str] = []


def check_answer(status: int, raw: bytes, tally: Tally, body) -> None:
    tally.cases += 1
    if status == 200:
        answer = strict_json(raw)
        assert set(answer) == {"prompt_id", "number", "node_errors"}, answer
        tally.accepted.append(answer["prompt_id"])
    else:
        try:
            assert_comfy_error(status, raw)
        except (AssertionError, ValueError) as exc:
            tally.bad.append(f"{status} {raw[:300]!r} for {json.dumps(body)[:300]}: {exc}")
        tally.rejected += 1


def wait_all_finished(server, prompt_ids: list[str], timeout: float = 120.0) -> dict[str, str]:
    """Every accepted prompt reaches history (the queue drains); returns status_str per prompt."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        q = server.get_json("/queue")
        if not q["queue_running"] and not q["queue_pending"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"queue did not drain: {server.get_json('/queue')}")
    history = server.get_json("/history")
    missing = [p for p in prompt_ids if p not in history]
    assert not missing, f"accepted but never finished: {missing[:5]}"
    return {p: history[p]["status"]["status_str"] for p in prompt_ids}


def assert_clean_log(server) -> None:
    log = server.log()
    for marker in ("unhandled error", "engine failure", "failed outside any node", "could not claim"):
        assert marker not in log, log[log.find(marker) - 2000: log.find(marker) + 3000]


@pytest.fixture(scope="module")
def fuzz_server(module_server):
    return module_server("promptfuzz")


@pytest.fixture(scope="module")
def object_info(fuzz_server):
    return fuzz_server.get_json("/object_info")


@pytest.fixture(scope="module")
def input_names(object_info):
    return {name: [n for section in ("required", "optional") for n in object_info[name]["input"].get(section, {})]
            for name in VOCAB if name in object_info}


@pytest.fixture(scope="module")
def input_specs(object_info):
    return {name: {n: spec for section in ("required", "optional")
                   for n, spec in object_info[name]["input"].get(section, {}).items()}
            for name in VOCAB if name in object_info}


def test_generated_prompts_get_200_or_comfyui_400(fuzz_server, input_names, input_specs):
    tally = Tally()
    start = time.time()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(body=st.one_of(bodies(input_names, input_specs), mutated_templates()))
    def one(body):
        status, _, raw = fuzz_server.request("POST", "/prompt", encode(body), {"Content-Type": "application/json"})
        assert status < 500, (status, raw[:500], body)
        check_answer(status, raw, tally, body)

    one()
    assert not tally.bad, "\n".join(tally.bad[:10])
    outcomes = wait_all_finished(fuzz_server, tally.accepted)
    figure("prompt fuzz", cases=tally.cases, accepted=len(tally.accepted), rejected_400=tally.rejected,
           server_errors=0, seconds=round(time.time() - start, 1),
           accepted_then_failed_cleanly=sum(1 for s in outcomes.values() if s == "error"))
    assert_clean_log(fuzz_server)
    worker_alive(fuzz_server, 0x030303)


def _chain(n: int) -> dict:
    prompt = {"0": {"class_type": "PrimitiveString", "inputs": {"value": "a"}}}
    for i in range(1, n):
        prompt[str(i)] = {"class_type": "StringConcatenate",
                          "inputs": {"string_a": [str(i - 1), 0], "string_b": "b", "delimiter": ""}}
    prompt["out"] = {"class_type": "PreviewAny", "inputs": {"source": [str(n - 1), 0]}}
    return prompt


def _nested(depth: int):
    value: object = "x"
    for _ in range(depth - 1):
        value = [value]
    return value


BIG = "\u00e9" * (5 * 1024 * 1024)  # 10 MB of UTF-8


def extreme_bodies() -> dict[str, bytes]:
    preview = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    image = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    cases = {
        "10MB string value": {"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": BIG}},
                                         "2": preview}},
        "10MB class_type": {"prompt": {"1": {"class_type": BIG, "inputs": {}}}},
        "10MB node id": {"prompt": {BIG: {"class_type": "PreviewAny", "inputs": {"source": "x"}}}},
        "10MB input name": {"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "v", BIG: 1}},
                                       "2": preview}},
        "10MB client_id": {"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "v"}},
                                      "2": preview}, "client_id": BIG},
        "5000-node chain": {"prompt": _chain(5000)},
        "20000 nodes": {"prompt": {**{str(i): {"class_type": "PrimitiveInt", "inputs": {"value": i}}
                                      for i in range(20000)}, "out": {"class_type": "PreviewAny",
                                                                       "inputs": {"source": ["7", 0]}}}},
        "two-node cycle": {"prompt": {"1": {"class_type": "StringConcatenate", "inputs": {
            "string_a": ["2", 0], "string_b": "", "delimiter": ""}}, "2": {"class_type": "StringConcatenate", "inputs": {
                "string_a": ["1", 0], "string_b": "", "delimiter": ""}}, "3": {"class_type": "PreviewAny",
                                                                              "inputs": {"source": ["2", 0]}}}},
        "nested value at the depth limit": {"prompt": {"1": {"class_type": "PrimitiveString",
                                                             "inputs": {"value": _nested(195)}}, "2": preview}},
        "nested workflow at the depth limit": {"prompt": image, "extra_data": {"extra_pnginfo": {
            "workflow": _nested(190)}}},
        "huge number": {"prompt": image, "number": 10 ** 400},
        "huge ints": {"prompt": {"1": {"class_type": "EmptyImage", "inputs": {
            "width": 10 ** 4000, "height": -10 ** 4000, "batch_size": 2 ** 64, "color": 2 ** 200}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}},
        "link index 2**70": {"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "v"}},
                                        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 2 ** 70]}}}},
        "unicode everywhere": {"prompt": {"\u202e\u0000": {"class_type": "PrimitiveString", "inputs": {
            "value": "\U0001f525\u0301\ufeff\u200b"}}, "n\u00f8de": {"class_type": "PreviewAny", "inputs": {
                "source": ["\u202e\u0000", 0]}}}, "client_id": "\U0001f525"},
    }
    out = {name: encode(body) for name, body in cases.items()}
    # bodies Python's json module cannot produce
    out["NaN and Infinity literals"] = (b'{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": NaN, '
                                        b'"height": Infinity, "batch_size": -Infinity, "color": 0}}, "2": '
                                        b'{"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}}')
    out["NaN float input"] = (b'{"prompt": {"1": {"class_type": "PrimitiveFloat", "inputs": {"value": NaN}}, '
                              b'"2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}}')
    out["lone surrogate"] = b'{"prompt": {"1": {"class_type": "PrimitiveString", "inputs": {"value": "\\udc80"}}}}'
    out["lone surrogate key"] = b'{"prompt": {"\\ud800": {"class_type": "PrimitiveString", "inputs": {}}}}'
    out["100k-deep array"] = b"[" * 100_000 + b"]" * 100_000
    out["deep prompt object"] = b'{"prompt": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"
    out["duplicate keys"] = b'{"prompt": {"1": {"class_type": "X"}, "1": {"class_type": "PreviewAny"}}}'
    out["invalid UTF-8"] = b'{"prompt": {"1": {"class_type": "\xff\xfe"}}}'
    out["BOM"] = b"\xef\xbb\xbf" + encode({"prompt": {}})
    out["not JSON"] = b"<xml/>"
    out["trailing garbage"] = encode({"prompt": {}}) + b" {}"
    return out


def test_extreme_prompts(fuzz_server):
    tally = Tally()
    timings = {}
    for name, raw_body in extreme_bodies().items():
        start = time.time()
        status, _, raw = fuzz_server.request("POST", "/prompt", raw_body, {"Content-Type": "application/json"})
        timings[name] = time.time() - start
        assert status < 500, (name, status, raw[:500])
        check_answer(status, raw, tally, name)
        assert timings[name] < 30, (name, timings[name])
    assert not tally.bad, "\n".join(tally.bad)
    outcomes = wait_all_finished(fuzz_server, tally.accepted, timeout=180)
    # the accepted extremes do run
    assert outcomes and all(s in ("success", "error") for s in outcomes.values())
    for pid in tally.accepted:  # and their history entries are strict JSON
        strict_json(fuzz_server.request("GET", f"/history/{pid}")[2])
    strict_json(fuzz_server.request("GET", "/queue")[2])
    figure("prompt fuzz", extreme_cases=tally.cases, extreme_accepted=len(tally.accepted),
           slowest_extreme_s=round(max(timings.values()), 2))
    assert_clean_log(fuzz_server)
    worker_alive(fuzz_server, 0x040404)
