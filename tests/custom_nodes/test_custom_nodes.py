"""Custom node packs in a real server: loading, the ComfyUI module names they import, V1 and V3 nodes,
web folders, custom routes, prestartup scripts, failure isolation and the enable/whitelist flags.

The packs are this folder's packs/ (each one exercises part of hearth.compat); they are copied into
``<base>/custom_nodes/`` before the server starts. Three servers start together (module scope):

  full       every pack, plus a custom_nodes folder named in --extra-model-paths-config
  whitelist  --disable-all-custom-nodes --whitelist-custom-nodes single_file_v1.py
  disabled   --disable-all-custom-nodes

The full server also has a tiny random-weight checkpoint; a prompt that loads and samples it through
comfy.sd / comfy.sample / comfy.samplers / latent_preview / nodes.common_ksampler is queued first.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import struct
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.e2e.wsclient import WSRecorder

HERE = Path(__file__).resolve().parent
PACKS = HERE / "packs"
EXTRA_NODES = HERE / "extra_nodes"
V3_REFERENCE = json.loads((HERE / "comfyui_v3_object_info.json").read_text())

FAILING = {"broken_pack": "RuntimeError: hearth test: this pack is broken on purpose",
           "exit_pack.py": "SystemExit: 3",
           "missing_dep_pack.py": "needs the Python package that provides 'hearth_test_no_such_dependency'",
           "internal_pack.py": "imports 'comfy.ldm.modules.diffusionmodules', a ComfyUI internal",
           "internal_attr_pack.py":
               "cannot import name 'hearth_test_not_a_real_function' from 'comfy.model_management'",
           "v3_broken_entrypoint.py": "ValueError: hearth test: get_node_list failed on purpose"}


def _copy_packs(base: Path) -> None:
    target = base / "custom_nodes"
    target.mkdir(parents=True, exist_ok=True)
    for item in PACKS.iterdir():
        if item.name == "__pycache__":
            continue
        if item.is_dir():
            shutil.copytree(item, target / item.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(item, target / item.name)


def _tiny_checkpoint(base: Path) -> None:
    """A random-weight SD1.5-layout checkpoint (tests/runtime/tiny.py) in models/checkpoints."""
    from safetensors.torch import save_file

    from tests.runtime.tiny import sd15_checkpoint

    folder = base / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd15_checkpoint().items()}, str(folder / "tiny.safetensors"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    full_base = tmp_path_factory.mktemp("cn_full")
    _copy_packs(full_base)
    _tiny_checkpoint(full_base)
    extra = full_base / "extra_paths.yaml"
    extra.write_text(f"hearth_test:\n  custom_nodes: {EXTRA_NODES}\n")
    white_base = tmp_path_factory.mktemp("cn_whitelist")
    _copy_packs(white_base)
    off_base = tmp_path_factory.mktemp("cn_disabled")
    _copy_packs(off_base)
    created = {
        "full": Server(full_base, ["--extra-model-paths-config", str(extra)]),
        "whitelist": Server(white_base, ["--disable-all-custom-nodes", "--whitelist-custom-nodes",
                                         "single_file_v1.py"]),
        "disabled": Server(off_base, ["--disable-all-custom-nodes"]),
    }
    def start(name: str, server: Server) -> None:
        server.start(60.0)
        # The SD runtime's first use (torch, diffusers) is slow: its prompt is queued at once, so that
        # it runs while the tests that only use HTTP do.
        if name == "full":
            status, answer = server.post_json("/prompt", {"prompt": SD_PROMPT})
            assert status == 200, answer
            server.first_prompt_id = answer["prompt_id"]

    try:
        with ThreadPoolExecutor(len(created)) as pool:
            for future in [pool.submit(start, name, s) for name, s in created.items()]:
                future.result()
        yield created
    finally:
        with ThreadPoolExecutor(len(created)) as pool:
            list(pool.map(Server.stop, created.values()))


@pytest.fixture(scope="module")
def full(servers) -> Server:
    return servers["full"]


@pytest.fixture(scope="module")
def object_info(full) -> dict:
    return full.get_json("/object_info")


SD_PROMPT = {"1": {"class_type": "HT_TinySD", "inputs": {"ckpt_name": "tiny.safetensors", "seed": 7}},
             "2": {"class_type": "HT_Show", "inputs": {"value": ["1", 1]}},
             "3": {"class_type": "HT_SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "tiny"}}}


def run(server: Server, prompt: dict, client_id: str | None = None) -> dict:
    body = {"prompt": prompt}
    if client_id:
        body["client_id"] = client_id
    status, answer = server.post_json("/prompt", body)
    assert status == 200, answer
    return server.wait_history(answer["prompt_id"])


def outputs_of(entry: dict) -> dict:
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry["outputs"]


# --- loading and failure isolation ----------------------------------------------------------------
def test_good_packs_register_their_nodes(object_info):
    for name in ("HT_Concat", "HT_SaveImage", "HT_Resize", "HT_Messages", "HT_Gate", "HT_Repeat",
                 "HT_LazySwitch", "HT_TinySD", "HT_V3Double", "HT_V3Shape", "HT_V3Lazy", "HT_V3Async",
                 "HT_V3Expand", "HT_V3Blocked", "HT_V3Preview", "HT_V3InMappings", "HT_Extra"):
        assert name in object_info, name
    assert object_info["HT_Concat"]["python_module"] == "custom_nodes.single_file_v1"
    assert object_info["HT_Concat"]["display_name"] == "HT Concat (single file)"
    assert object_info["HT_SaveImage"]["python_module"] == "custom_nodes.compat_v1"
    assert object_info["HT_Extra"]["python_module"] == "custom_nodes.extra_pack"


def test_built_in_nodes_are_not_replaced(full, object_info):
    assert object_info["KSampler"]["python_module"] == "nodes"
    assert "not replacing built-in nodes KSampler" in full.log()


def test_failing_packs_are_reported_and_isolated(full):
    log = full.log()
    for pack, reason in FAILING.items():
        assert f"Cannot import custom node pack {full.base / 'custom_nodes' / pack}" in log, pack
        assert reason in log, (pack, reason)
        assert f"(IMPORT FAILED): {full.base / 'custom_nodes' / pack}" in log, pack
    assert "Traceback (most recent call last)" in log
    assert "Hearth does not install packs' dependencies" in log
    # the server still answers, and the good packs after the broken ones in name order loaded
    assert full.get_json("/system_stats")["system"]["comfyui_version"]


def test_import_times_are_logged_per_pack(full):
    log = full.log()
    assert "Import times for custom nodes:" in log
    for pack in ("compat_v1", "v3_pack", "single_file_v1.py", "prestartup_pack"):
        assert any(line.strip().endswith(str(full.base / "custom_nodes" / pack)) and "seconds" in line
                   for line in log.splitlines()), pack


def test_prestartup_script_runs_before_any_pack(full):
    seen = full.get_json("/hearth_test/prestartup")
    assert seen == {"packs_loaded_before": [], "base_path": str(full.base)}
    assert "Prestartup times for custom nodes:" in full.log()


def test_whitelist_loads_only_the_named_packs(servers):
    server = servers["whitelist"]
    info = server.get_json("/object_info")
    assert "HT_Concat" in info
    assert not any(name.startswith("HT_") and name != "HT_Concat" for name in info)
    status, _, _ = server.request("GET", "/hearth_test/prestartup")
    assert status == 404  # prestartup_pack is not whitelisted: neither its script nor its routes
    assert "Prestartup times" not in server.log()


def test_disable_all_custom_nodes(servers):
    server = servers["disabled"]
    info = server.get_json("/object_info")
    assert not any(name.startswith("HT_") for name in info)
    assert "custom nodes disabled" in server.log()
    assert "Import times for custom nodes" not in server.log()
    assert not any("/extensions/compat_v1/" in s for s in server.get_json("/extensions"))


# --- the compat modules ---------------------------------------------------------------------------
def test_module_facades_at_import_time(full):
    startup = full.get_json("/hearth_test/startup")
    assert startup == {
        "torch_loaded": False,  # neither Hearth's start-up nor the compat modules import torch
        "grow_mask_is_builtin": True,  # comfy_extras.nodes_mask.GrowMask is the registry's class
        "max_resolution": 16384,
        "samplers_have_euler": True,
        "schedulers": ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                       "linear_quadratic", "kl_optimal"],
        "io_any_matches": True,
        "preview_method": "none",
        "module_name": "custom_nodes.compat_v1",
    }


def test_module_facades_read_the_live_server(full, object_info):
    facts = full.get_json("/hearth_test/facts")
    base = full.base
    assert facts["checkpoints"] == ["tiny.safetensors"]
    assert facts["checkpoint_path"] == str(base / "models" / "checkpoints" / "tiny.safetensors")
    assert facts["checkpoint_folders"] == [str(base / "models" / "checkpoints")]
    assert facts["custom_folder"] == [str(base / "custom_nodes" / "compat_v1" / "models")]
    assert facts["more_folder"] == [[str(base / "custom_nodes" / "compat_v1" / "more")], [".bin"]]
    assert facts["output"] == str(base / "output") and facts["input"] == str(base / "input")
    assert facts["temp"] == str(base / "temp") and facts["models_dir"] == str(base / "models")
    assert facts["annotated"] == str(base / "output" / "x.png")
    assert facts["node_count"] == len(object_info)  # nodes.NODE_CLASS_MAPPINGS is the live registry
    assert facts["has_v3_node"] and facts["has_single_file_node"]
    assert facts["v3_class_is_pack_class"] == "V3Double"
    assert facts["display_name"] == "HT Concat (single file)"
    assert facts["ksampler_is_builtin"].startswith("hearth.")
    assert facts["web_dirs"] == ["compat_v1", "v3_pack"]
    assert isinstance(facts["queue"], int)  # the prompt queue's length (the SD prompt may still run)
    # folders a pack registers are the server's folders
    assert {"hearth_test_models", "hearth_test_more"} <= set(full.get_json("/models"))


# --- web folders and routes -----------------------------------------------------------------------
def test_web_directories_are_served_and_listed(full):
    scripts = full.get_json("/extensions")
    for script in ("/extensions/compat_v1/hearth_test.js", "/extensions/compat_v1/sub/nested.js",
                   "/extensions/v3_pack/v3.js"):
        assert script in scripts
        status, headers, body = full.request("GET", script)
        assert status == 200 and body.strip(), script
    status, _, body = full.request("GET", "/extensions/compat_v1/hearth_test.js")
    assert b"compat_v1 web extension" in body
    assert full.request("GET", "/extensions/compat_v1/../__init__.py")[0] in (403, 404)


def test_custom_routes_at_path_and_under_api(full):
    for prefix in ("", "/api"):
        assert full.get_json(prefix + "/hearth_test/startup")["module_name"] == "custom_nodes.compat_v1"
        status, answer = full.post_json(prefix + "/hearth_test/echo", {"x": [1, 2]})
        assert status == 200 and answer == {"echo": {"x": [1, 2]}}
    status, _, body = full.request("GET", "/hearth_test_static/hello.txt")
    assert status == 200 and body.strip() == b"static file of compat_v1"


def test_on_prompt_handlers(full):
    status, body = full.post_json("/hearth_test/trigger_on_prompt", {"prompt": {}})
    assert status == 200 and body == {"prompt": {}, "extra_data": {"hearth_test_on_prompt": True}}


# --- V3 object_info -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(V3_REFERENCE))
def test_v3_object_info_is_comfyui_s(object_info, name):
    # The reference entries were produced by ComfyUI 0.3.64 itself from this folder's v3_pack.
    # (Needs NodeRegistry.node_info to defer to a class's GET_NODE_INFO_V1, as ComfyUI's server does.)
    hint = "NodeRegistry.node_info must answer with the class's GET_NODE_INFO_V1() (see hearth/compat/v3.py)"
    assert object_info[name] == V3_REFERENCE[name], hint
    assert list(object_info[name]) == list(V3_REFERENCE[name]), hint


# --- V1 nodes through the compat modules ------------------------------------------------------------
def test_v1_image_workflow_saves_through_folder_paths(full):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 255}},
              "2": {"class_type": "HT_Resize", "inputs": {"image": ["1", 0], "width": 24, "height": 20}},
              "3": {"class_type": "HT_SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ht/img"}}}
    images = outputs_of(run(full, prompt))["3"]["images"]
    assert images == [{"filename": "img_00001_.png", "subfolder": "ht", "type": "output"},
                      {"filename": "img_00002_.png", "subfolder": "ht", "type": "output"}]
    from PIL import Image

    with Image.open(full.base / "output" / "ht" / "img_00001_.png") as saved:
        assert saved.size == (24, 20)
    status, _, body = full.request("GET", "/view?filename=img_00002_.png&subfolder=ht&type=output")
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"


def test_custom_nodes_folder_from_extra_model_paths(full, object_info):
    assert "HT_Extra" in object_info
    assert outputs_of(run(full, {"1": {"class_type": "HT_Extra", "inputs": {}},
                                 "2": {"class_type": "HT_Show", "inputs": {"value": ["1", 0]}}}))["2"] == \
        {"text": ["extra"]}


def test_progress_messages_and_custom_events_reach_the_client(full):
    async def scenario():
        client_id = uuid.uuid4().hex
        async with WSRecorder(full.ws_url, client_id) as ws:
            await ws.wait_for(lambda m: m["type"] == "status")
            prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                                   "color": 0}},
                      "2": {"class_type": "HT_Resize", "inputs": {"image": ["1", 0], "width": 8, "height": 8}},
                      "3": {"class_type": "HT_Messages", "inputs": {"text": "hi"}},
                      "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
            status, answer = await asyncio.to_thread(full.post_json, "/prompt",
                                                     {"prompt": prompt, "client_id": client_id})
            assert status == 200, answer
            pid = answer["prompt_id"]
            await ws.wait_for(lambda m: m["type"] == "executing" and m["data"]["node"] is None
                              and m["data"]["prompt_id"] == pid)
            return ws.messages, ws.binary, client_id

    messages, binary, client_id = asyncio.run(scenario())
    progress = [(m["data"]["value"], m["data"]["max"]) for m in messages
                if m["type"] == "progress" and m["data"]["node"] == "2"]
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    custom = [m for m in messages if m["type"] == "hearth_test.message"]
    assert custom == [{"type": "hearth_test.message",
                       "data": {"text": "hi", "node": "3", "client_id": client_id, "last_node_id": "3"}}]
    # the custom event comes while node 3 runs: after its `executing`, before its `executed`
    kinds = [(m["type"], m["data"].get("node")) for m in messages
             if m["type"] in ("executing", "executed", "hearth_test.message")]
    at = kinds.index(("hearth_test.message", "3"))
    assert kinds[at - 1] == ("executing", "3") and kinds[at + 1] == ("executed", "3")
    texts = []
    for frame in binary:
        kind, = struct.unpack(">I", frame[:4])
        if kind == 3:
            (length,) = struct.unpack(">I", frame[4:8])
            texts.append((frame[8:8 + length].decode(), frame[8 + length:].decode()))
    assert ("3", "progress text hi") in texts


def test_execution_blocker_and_expansion(full):
    prompt = {"1": {"class_type": "HT_Gate", "inputs": {"value": "v", "mode": "pass"}},
              "2": {"class_type": "HT_Show", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "HT_Gate", "inputs": {"value": "v", "mode": "silent"}},
              "4": {"class_type": "HT_Show", "inputs": {"value": ["3", 0]}},
              "5": {"class_type": "HT_Repeat", "inputs": {"text": "ab", "times": 3}},
              "6": {"class_type": "HT_Show", "inputs": {"value": ["5", 0]}}}
    outputs = outputs_of(run(full, prompt))
    assert outputs["2"] == {"text": ["v"]}
    assert "4" not in outputs  # blocked
    assert outputs["6"] == {"text": ["ababab"]}


def test_v1_lazy_inputs(full):
    prompt = {"1": {"class_type": "HT_Concat", "inputs": {"a": "A", "b": ""}},
              "2": {"class_type": "HT_Gate", "inputs": {"value": "never", "mode": "message"}},
              "3": {"class_type": "HT_LazySwitch", "inputs": {"use_a": True, "a": ["1", 0], "b": ["2", 0]}},
              "4": {"class_type": "HT_Show", "inputs": {"value": ["3", 0]}}}
    entry = run(full, prompt)
    assert outputs_of(entry)["4"] == {"text": ["A"]}
    # the blocking branch was never evaluated, so it reported nothing
    assert not any(m[0] == "execution_error" for m in entry["status"]["messages"])


def test_node_helpers(full):
    prompt = {"1": {"class_type": "HT_Conditioning", "inputs": {"strength": 0.25}},
              "2": {"class_type": "HT_Show", "inputs": {"value": ["1", 0]}}}
    (text,) = outputs_of(run(full, prompt))["2"]["text"]
    assert json.loads(text) == {"before": {"a": 1.0}, "after": {"a": 1.25, "b": 2}}


# --- V3 nodes -------------------------------------------------------------------------------------
def test_v3_execute_hidden_and_caching(full):
    prompt = {"1": {"class_type": "HT_V3Double", "inputs": {"value": 21}},
              "2": {"class_type": "HT_Show", "inputs": {"value": ["1", 1]}},
              "3": {"class_type": "HT_V3InMappings", "inputs": {"text": "ab"}},
              "4": {"class_type": "HT_Show", "inputs": {"value": ["3", 0]}}}
    entry = run(full, prompt)
    outputs = outputs_of(entry)
    assert outputs["2"] == {"text": ["node 1"]}
    assert outputs["4"] == {"text": ["abab"]}
    # fingerprint_inputs gives the same fingerprint: the second run is served from the cache
    again = run(full, prompt)
    cached = [m for m in again["status"]["messages"] if m[0] == "execution_cached"][0][1]["nodes"]
    assert "1" in cached


def test_v3_validate_inputs(full):
    status, body = full.post_json("/prompt", {"prompt": {
        "1": {"class_type": "HT_V3Double", "inputs": {"value": 13}},
        "2": {"class_type": "HT_Show", "inputs": {"value": ["1", 1]}}}})
    assert status == 400
    errors = body["node_errors"]["1"]["errors"]
    assert errors[0]["type"] == "custom_validation_failed"
    assert errors[0]["details"] == "value - 13 is unlucky"


def test_v3_lazy_async_expand_block_and_ui(full):
    prompt = {"1": {"class_type": "HT_V3Async", "inputs": {"text": "abc"}},
              "2": {"class_type": "HT_V3Blocked", "inputs": {"text": "x"}},
              "3": {"class_type": "HT_V3Lazy", "inputs": {"use_a": True, "a": ["1", 0], "b": ["2", 0]}},
              "4": {"class_type": "HT_Show", "inputs": {"value": ["3", 0]}},
              "5": {"class_type": "HT_V3Expand", "inputs": {"value": 3}},
              "6": {"class_type": "HT_V3Double", "inputs": {"value": ["5", 0]}},
              "7": {"class_type": "HT_Show", "inputs": {"value": ["6", 1]}},
              "8": {"class_type": "HT_V3Shape", "inputs": {"mode": "fast", "amount": 0.25, "text": "t", "flag": False,
                                                          "seed": 9}},
              "9": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "10": {"class_type": "HT_V3Preview", "inputs": {"images": ["9", 0]}}}
    entry = run(full, prompt)
    outputs = outputs_of(entry)
    assert outputs["4"] == {"text": ["ABC"]}
    assert not any(m[0] == "execution_error" for m in entry["status"]["messages"])
    assert outputs["7"] == {"text": ["node 6"]}
    summary = "fast|0.25|t|False|9|False|" + json.dumps(sorted(prompt))
    assert outputs["8"]["text"] == [summary.replace('"', "'")]
    (image,) = outputs["10"]["images"]
    assert image["type"] == "temp" and image["filename"].startswith("ComfyUI_temp_")
    assert outputs["10"]["animated"] == [False]


def test_v3_block_execution_reports_its_message(full):
    prompt = {"1": {"class_type": "HT_V3Blocked", "inputs": {"text": "x"}},
              "2": {"class_type": "HT_Show", "inputs": {"value": ["1", 0]}}}
    status, answer = full.post_json("/prompt", {"prompt": prompt})
    assert status == 200
    entry = full.wait_history(answer["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    assert "2" not in entry["outputs"]


def test_v3_expansion_runs_its_subgraph(full):
    prompt = {"1": {"class_type": "HT_V3Expand", "inputs": {"value": 5}},
              "2": {"class_type": "HT_V3Double", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "HT_Show", "inputs": {"value": ["2", 1]}}}
    assert outputs_of(run(full, prompt))["3"] == {"text": ["node 2"]}


# --- last: the SD runtime through comfy.sd / comfy.sample / comfy.samplers / latent_preview ------------
def test_sd_runtime_through_comfy_modules(full):
    server = full
    outputs = outputs_of(server.wait_history(server.first_prompt_id, timeout=240))
    report = json.loads(outputs["2"]["text"][0])
    assert report == {"same_as_node": True, "unet_keys": True, "sigmas": 3, "device": "cpu",
                      "unet_dtype": "torch.float32"}
    assert outputs["3"]["images"][0]["filename"] == "tiny_00001_.png"
