"""Interface diff: Hearth's /object_info entries against ComfyUI 0.3.64's, node by node.

Compared: input names per section and their order, input types, every option value except tooltips,
outputs (types, names, is_list), output_node, category, python_module, display_name, and the
experimental/deprecated flags. Descriptions and tooltips are our own words and are not compared.
Combos whose choices are computed from folders (model and file lists) are compared by type only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hearth.nodes.builtin import builtin_modules

REPO = Path(__file__).resolve().parents[2]
_NAME = Path("reference") / "object_info.comfyui-0.3.64.json"
# shared/ inside the checkout, beside it, or the workspace's
REFERENCE = next((p for p in (REPO / "shared" / _NAME, REPO.parent / "shared" / _NAME, Path("/work/shared") / _NAME)
                  if p.is_file()), REPO / "shared" / _NAME)

# The node library's scope (the node-library issue): ComfyUI's core module and these extras modules.
SCOPE_PYTHON_MODULES = {"nodes"} | {f"comfy_extras.nodes_{m}" for m in (
    "custom_sampler", "clip_sdxl", "mask", "images", "latent", "post_processing", "primitive", "string",
    "upscale_model", "model_advanced", "model_merging", "model_merging_model_specific", "compositing", "canny",
    "morphology", "freelunch", "sag", "pag", "perpneg", "rebatch", "hypernetwork", "align_your_steps", "gits",
    "optimalsteps", "differential_diffusion", "preview_any", "attention_multiply", "model_downscale", "ip2p",
    "controlnet", "cfg", "apg", "tomesd", "eps", "hooks", "torch_compile", "advanced_samplers", "video")}

# Nodes of those modules Hearth leaves out on purpose, with the reason.
LEFT_OUT = {name: "merges blocks of a model family Hearth does not load" for name in (
    "ModelMergeSD3_2B", "ModelMergeAuraflow", "ModelMergeFlux1", "ModelMergeSD35_Large", "ModelMergeMochiPreview",
    "ModelMergeLTXV", "ModelMergeCosmos7B", "ModelMergeCosmos14B", "ModelMergeWAN2_1", "ModelMergeCosmosPredict2_2B",
    "ModelMergeCosmosPredict2_14B", "ModelMergeQwenImage")} | {
    "ModelSamplingStableCascade": "Stable Cascade is not a family Hearth loads",
    "ModelSamplingSD3": "SD3 is not a family Hearth loads",
    "ModelSamplingAuraFlow": "AuraFlow is not a family Hearth loads",
    "ModelSamplingFlux": "Flux is not a family Hearth loads",
}


FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf", ".png", ".jpg", ".jpeg",
                 ".webp", ".yaml", ".json", ".onnx")


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip(f"reference object_info not found at {REFERENCE}")
    return json.loads(REFERENCE.read_text())


def _scope_names() -> set[str]:
    """Every node Hearth's library registers: each one ComfyUI also has must match it."""
    return {name for module in builtin_modules() for name in module.NODE_CLASS_MAPPINGS}


def _computed_combo(choices) -> bool:
    """A combo filled from a folder: empty in the reference, or every choice a file name."""
    return isinstance(choices, list) and (
        not choices or all(isinstance(c, str) and c.lower().endswith(FILE_SUFFIXES) for c in choices))


def _spec_differences(where: str, ours, theirs) -> list[str]:
    ours, theirs = list(ours), list(theirs)
    ours_type, theirs_type = ours[0], theirs[0]
    diffs = []
    if isinstance(theirs_type, list) and _computed_combo(theirs_type):
        if not isinstance(ours_type, list):
            diffs.append(f"{where}: type {ours_type!r} is not a computed combo")
    elif ours_type != theirs_type:
        diffs.append(f"{where}: type {ours_type!r} != {theirs_type!r}")
    ours_opts = {k: v for k, v in (ours[1] if len(ours) > 1 else {}).items() if k != "tooltip"}
    theirs_opts = {k: v for k, v in (theirs[1] if len(theirs) > 1 else {}).items() if k != "tooltip"}
    for key in sorted(set(ours_opts) | set(theirs_opts)):
        if key not in theirs_opts:
            diffs.append(f"{where}: extra option {key}={ours_opts[key]!r}")
        elif key not in ours_opts:
            diffs.append(f"{where}: missing option {key}={theirs_opts[key]!r}")
        elif ours_opts[key] != theirs_opts[key] or type(ours_opts[key]) is not type(theirs_opts[key]):
            diffs.append(f"{where}: option {key}={ours_opts[key]!r} != {theirs_opts[key]!r}")
    return diffs


def node_differences(ours: dict, theirs: dict) -> list[str]:
    diffs = []
    ours_inputs, theirs_inputs = ours["input"], theirs["input"]
    for section in sorted(set(ours_inputs) | set(theirs_inputs)):
        a, b = ours_inputs.get(section, {}), theirs_inputs.get(section, {})
        if list(a) != list(b):
            diffs.append(f"input[{section}] names/order {list(a)} != {list(b)}")
            continue
        if section == "hidden":
            if a != b:
                diffs.append(f"hidden {a} != {b}")
            continue
        for name in a:
            diffs.extend(_spec_differences(f"{section}.{name}", a[name], b[name]))
    if ours.get("input_order") != theirs.get("input_order"):
        diffs.append(f"input_order {ours.get('input_order')} != {theirs.get('input_order')}")
    for key in ("output", "output_is_list", "output_name", "output_node", "category", "python_module"):
        if ours.get(key) != theirs.get(key):
            diffs.append(f"{key} {ours.get(key)!r} != {theirs.get(key)!r}")
    # ComfyUI's v3 nodes without a display name send null; clients show the class name then.
    theirs_display = theirs.get("display_name") or theirs["name"]
    if ours.get("display_name") != theirs_display:
        diffs.append(f"display_name {ours.get('display_name')!r} != {theirs_display!r}")
    for flag in ("experimental", "deprecated"):
        if bool(ours.get(flag)) != bool(theirs.get(flag)):
            diffs.append(f"{flag} {bool(ours.get(flag))} != {bool(theirs.get(flag))}")
    return diffs


def test_object_info_matches_comfyui(node_ctx, reference):
    registry = node_ctx.registry
    compared = [name for name in registry.names() if name in reference]
    scope = _scope_names()
    failures, other = {}, {}
    identical = 0
    for name in compared:
        diffs = node_differences(json.loads(json.dumps(registry.node_info(name))), reference[name])
        if not diffs:
            identical += 1
        elif name in scope:
            failures[name] = diffs
        else:
            other[name] = diffs
    print(f"\n{identical} of {len(compared)} identical "
          f"({len(scope & set(compared))} of them in this part's scope)")
    for name, diffs in other.items():
        print(f"  (outside scope) {name}: {diffs}")
    assert not failures, "\n".join(f"{name}: {d}" for name, diffs in failures.items() for d in diffs)


def test_scope_is_covered(node_ctx, reference):
    """Report coverage of the library's scope; a ComfyUI module Hearth has begun must be complete."""
    ours = set(node_ctx.registry.names())
    in_scope = {name for name, info in reference.items() if info["python_module"] in SCOPE_PYTHON_MODULES}
    expected = in_scope - set(LEFT_OUT)
    print(f"\n{len(expected & ours)} of {len(expected)} nodes in scope registered; left out on purpose: {len(LEFT_OUT)}")
    missing_by_module: dict[str, list[str]] = {}
    for name in sorted(expected - ours):
        missing_by_module.setdefault(reference[name]["python_module"], []).append(name)
    for module, names in sorted(missing_by_module.items()):
        print(f"  not yet: {module}: {' '.join(names)}")
    begun = {reference[name]["python_module"] for name in ours if name in reference}
    partial = {m: names for m, names in missing_by_module.items() if m in begun and m != "nodes"}
    assert not partial, f"modules begun but not complete: {partial}"
    assert not (set(LEFT_OUT) & ours), "a node listed as left out is registered"


def test_object_info_is_json_and_needs_no_torch(tmp_path):
    """/object_info for these nodes is plain JSON, built without importing torch (a fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from hearth.config import config_from_args\n"
        "from hearth.paths import Folders\n"
        "from hearth.nodes.registry import NodeRegistry\n"
        "from hearth.nodes.builtin import register_builtin_nodes\n"
        "from hearth.nodes.context import NodeContext, using\n"
        f"cfg = config_from_args(['--base-directory', {str(tmp_path)!r}])\n"
        "folders = Folders.from_config(cfg); folders.create()\n"
        "r = NodeRegistry(); register_builtin_nodes(r)\n"
        "with using(NodeContext(cfg, folders, r)):\n"
        "    json.dumps(r.object_info(), allow_nan=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
