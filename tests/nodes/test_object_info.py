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

from hearth.nodes.builtin import (compositing, images, latent, mask, morphology, postprocessing, primitive,
                                  string, utility)

REPO = Path(__file__).resolve().parents[2]
_NAME = Path("reference") / "object_info.comfyui-0.3.64.json"
# shared/ inside the checkout, beside it, or the workspace's
REFERENCE = next((p for p in (REPO / "shared" / _NAME, REPO.parent / "shared" / _NAME, Path("/work/shared") / _NAME)
                  if p.is_file()), REPO / "shared" / _NAME)

# The modules of this library part; a difference in any of their nodes fails the test.
SCOPE_MODULES = (images, mask, latent, postprocessing, compositing, morphology, primitive, string, utility)

# ComfyUI modules whose every node is in scope (none needs model weights).
SCOPE_PYTHON_MODULES = {
    "comfy_extras.nodes_mask", "comfy_extras.nodes_images", "comfy_extras.nodes_latent",
    "comfy_extras.nodes_post_processing", "comfy_extras.nodes_primitive", "comfy_extras.nodes_string",
    "comfy_extras.nodes_compositing", "comfy_extras.nodes_morphology", "comfy_extras.nodes_canny",
    "comfy_extras.nodes_rebatch", "comfy_extras.nodes_preview_any",
}
# Nodes of ComfyUI's core module that need no model and are this part's.
SCOPE_CORE_NODES = {
    "LatentFromBatch", "RepeatLatentBatch", "SetLatentNoiseMask", "LatentComposite", "LatentBlend", "LatentRotate",
    "LatentFlip", "LatentCrop", "LoadImageMask", "LoadImageOutput", "ImageScale", "ImageScaleBy", "ImageBatch",
    "ImagePadForOutpaint",
}
FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf", ".png", ".jpg", ".jpeg",
                 ".webp", ".yaml", ".json", ".onnx")


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip(f"reference object_info not found at {REFERENCE}")
    return json.loads(REFERENCE.read_text())


def _scope_names() -> set[str]:
    return {name for module in SCOPE_MODULES for name in module.NODE_CLASS_MAPPINGS}


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
    """Every ComfyUI node this part is meant to provide is registered, under the right python_module."""
    expected = {name for name, info in reference.items()
                if info["python_module"] in SCOPE_PYTHON_MODULES} | SCOPE_CORE_NODES
    missing = sorted(expected - set(node_ctx.registry.names()))
    assert not missing, f"not implemented: {missing}"
    assert _scope_names() == expected, sorted(_scope_names() ^ expected)


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
