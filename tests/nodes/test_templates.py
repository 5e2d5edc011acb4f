"""ComfyUI's official workflow templates (SD1.x / SD2.x / SDXL ones) converted to API prompts and validated by Hearth.

The templates come from the installed ``comfyui_workflow_templates`` package (UI/litegraph format). Each
template of the Stable Diffusion families is converted the way the frontend converts a graph when you queue it
(tests/nodes/ui_workflow.py), tiny fixture files are written under every model/image name it references, and
Hearth's engine validates the prompt, as POST /prompt would.

A template is expected to validate iff every node type it sends is registered in Hearth; the others are listed
with the node types Hearth lacks (computed, so the list shrinks as nodes are added). The summary test prints the
per-template table and the count "N of M SD-family templates validate". Templates that validate are also run
(sizes and steps scaled down) on the tiny models where every file they load has a tiny model of its kind, and the
conversion is compared with the real frontend's own graphToPrompt in headless Chromium when that is installed.

Classification (printed by the summary test):
* API-node templates (``api_*`` files, or any node whose ComfyUI /object_info says ``api_node``) are left out;
* a template's family is the model tag of its entry in the package's index.json (``SD1.5``, ``SDXL``, ...), or,
  for templates the index does not list, what its checkpoint file names say;
* it counts as an SD-family template when that family is SD1.x/SD2.x/SDXL, none of its checkpoint names is
  another family's (Flux, SD3, Stable Audio, ACE-Step, LTXV, Lumina, Hunyuan, SVD, Zero123, Wan, ...) and it does
  not load image-only (video/3D) checkpoints.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("torch")
templates_pkg = pytest.importorskip("comfyui_workflow_templates")

from tests.nodes.ui_workflow import convert, widget_slots  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path("/work/shared/reference/object_info.comfyui-0.3.64.json")
CHROMIUM = os.environ.get("HEARTH_CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.filterwarnings("ignore:Should have:UserWarning")  # torchsde, as in ComfyUI

SD_FAMILIES = {"SD1.5", "SD1.x", "SD1", "SD2", "SD2.x", "SD2.1", "SDXL", "SDXL Turbo"}
OTHER_CHECKPOINTS = re.compile(
    r"flux|sd3|ace_step|stable-audio|stable_audio|ltx|lumina|netayume|hunyuan|svd|zero123|wan2|wan_|mochi|"
    r"cosmos|hidream|qwen|chroma|omnigen|cascade|aura|pixart|kolors|hunyuan3d", re.I)
NOT_SD_NODES = {"ImageOnlyCheckpointLoader"}
CHECKPOINT_LOADERS = {"CheckpointLoaderSimple", "CheckpointLoader", "unCLIPCheckpointLoader",
                      "ImageOnlyCheckpointLoader"}

# (node type, input) -> models/ folder of the file it names
MODEL_INPUTS = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "config_name"): "configs",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
}
IMAGE_INPUTS = {("LoadImage", "image"), ("LoadImageMask", "image")}
# files the run test can really execute with: tiny models of the right kind (the others are placeholders, or
# stand-ins of another architecture, good for validation only)
RUNNABLE = {"checkpoints", "configs", "vae", "loras", "embeddings", "input", "controlnet", "upscale_models", "gligen"}


def _runnable_file(file: str) -> bool:
    folder, _, name = file.partition("/")
    return folder in RUNNABLE and not (folder == "controlnet" and "t2i" in name.lower())
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".pt2", ".sft")


# --- finding and classifying the templates -------------------------------------------------------------
def template_dirs() -> list[Path]:
    """The package's templates folder and those of sibling packages that hold template JSON files."""
    main = Path(templates_pkg.get_templates_path())
    dirs = [main]
    site = Path(templates_pkg.__file__).resolve().parent.parent
    for sibling in sorted(site.glob("comfyui_workflow_templates_*")):
        dirs += [p for p in sibling.rglob("templates") if p.is_dir()]
    return dirs


def load_templates() -> dict[str, dict]:
    out = {}
    for folder in template_dirs():
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith("index"):
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "nodes" in data:
                out.setdefault(path.stem, data)
    return out


def index_models() -> dict[str, list[str]]:
    models: dict[str, list[str]] = {}
    for folder in template_dirs():
        index = folder / "index.json"
        if index.is_file():
            for category in json.loads(index.read_text(encoding="utf-8")):
                for entry in category.get("templates", []):
                    models.setdefault(entry["name"], entry.get("models") or [])
    return models


def all_nodes(workflow: dict) -> list[dict]:
    nodes = list(workflow["nodes"])
    for sub in (workflow.get("definitions") or {}).get("subgraphs", []):
        nodes += sub["nodes"]
    return nodes


def checkpoint_names(workflow: dict) -> list[str]:
    return [n["widgets_values"][0] for n in all_nodes(workflow)
            if n["type"] in CHECKPOINT_LOADERS and isinstance(n.get("widgets_values"), list) and n["widgets_values"]]


def family_from_names(names: list[str]) -> str:
    if not names:
        return "unknown (no checkpoint)"
    if any(OTHER_CHECKPOINTS.search(n) for n in names):
        return "other (" + ", ".join(n for n in names if OTHER_CHECKPOINTS.search(n)) + ")"
    if any(re.search(r"xl", n, re.I) for n in names):
        return "SDXL"
    if any(re.search(r"v2-|sd2|768", n, re.I) for n in names):
        return "SD2"
    return "SD1.5"


def classify(name: str, workflow: dict, tags: dict[str, list[str]], reference: dict) -> tuple[bool, str]:
    """(is SD family, reason/family)."""
    types = {n["type"] for n in all_nodes(workflow)}
    if name.startswith("api_") or any(reference.get(t, {}).get("api_node") for t in types):
        return False, "API nodes"
    ckpts = checkpoint_names(workflow)
    family = next((m for m in tags.get(name, []) if m not in ("Stability",)), None) or family_from_names(ckpts)
    if family not in SD_FAMILIES:
        return False, family
    if any(OTHER_CHECKPOINTS.search(c) for c in ckpts):
        return False, f"{family} tag but other checkpoints: {ckpts}"
    if types & NOT_SD_NODES:
        return False, f"{family} with image-only (video/3D) checkpoints"
    return True, family


def checkpoint_source(name: str) -> str:
    """Which tiny checkpoint stands in for a named one (by the family its name says)."""
    n = name.lower()
    if "refiner" in n:
        return "sdxl_refiner.safetensors"
    if "xl" in n:
        return "sdxl.safetensors"
    if "inpaint" in n:  # 512-inpainting-ema is SD2-based; the tiny 9-channel model is SD1.5-shaped
        return "sd15_inpaint.safetensors"
    if re.search(r"v2-|sd2|768", n):
        return "sd2_v.safetensors"
    return "sd15.safetensors"


# --- the environment: fixture files, Hearth's registry, the conversion ----------------------------------
@dataclass
class Outcome:
    name: str
    family: str
    prompt: dict
    missing: list[str]
    warnings: list[str]
    ok: bool
    errors: str = ""
    files: list[str] = field(default_factory=list)

    @property
    def stand_ins(self) -> list[str]:
        return sorted(f for f in self.files if not _runnable_file(f))


def _placeholder(path: Path) -> None:
    """A tiny valid safetensors file (for model kinds the test only needs by name)."""
    from safetensors.torch import save_file
    import torch

    save_file({"hearth_placeholder": torch.zeros(1)}, str(path))


def _png(path: Path) -> None:
    from PIL import Image

    img = Image.new("RGBA", (64, 64), (120, 80, 40, 255))
    for x in range(32):
        for y in range(64):
            img.putpixel((x, y), (40, 80, 120, 0))
    img.save(path, format="PNG")


def _runnable_model(folder: str, name: str) -> dict | None:
    """Tiny random weights of the right kind for model files the templates load (None: use a placeholder).

    ControlNets in the original layout for the tiny SD1.5 UNet (a T2I-Adapter template keeps a placeholder:
    the tiny UNet is too shallow for an adapter), an ESRGAN (RRDBNet, x4) for upscale models and a GLIGEN
    for the tiny SD1.5 UNet."""
    import torch

    g = torch.Generator().manual_seed(len(name))
    if folder == "controlnet" and "t2i" not in name.lower():
        from tests.runtime import tiny
        from tests.runtime.test_controlnet import controlnet_shapes

        return tiny.materialise(controlnet_shapes(tiny.SD15_UNET), g, "control_model.")
    if folder == "upscale_models":
        from tests.nodes.test_upscale_model_nodes import _rrdb_weights, layout_new

        return layout_new(_rrdb_weights(len(name)))
    if folder == "gligen":
        from tests.runtime import tiny_vision

        return tiny_vision.gligen()
    return None


def write_fixture(base: Path, src: Path, class_type: str, input_name: str, value, written: dict) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if (class_type, input_name) in IMAGE_INPUTS:
        target = base / "input" / value.replace(" [input]", "")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _png(target)
        return f"input/{value}"
    folder = MODEL_INPUTS.get((class_type, input_name))
    if folder is None:
        return None
    target = base / "models" / folder / value
    if target.exists():
        return f"{folder}/{value}"
    target.parent.mkdir(parents=True, exist_ok=True)
    source = {
        "checkpoints": lambda: src / "checkpoints" / checkpoint_source(value),
        "vae": lambda: src / "vae" / "tiny_vae.safetensors",
        "loras": lambda: src / "loras" / "tiny_lora.safetensors",
        "diffusion_models": lambda: src / "diffusion_models" / "sd15_unet.safetensors",
        "text_encoders": lambda: src / "text_encoders" / "clip_l.safetensors",
    }.get(folder)
    made = _runnable_model(folder, value)
    if folder == "configs":
        target.write_text("model: {}\n")
    elif made is not None:
        from safetensors.torch import save_file

        save_file(made, str(target))
    elif source is not None:
        os.link(source(), target)  # same bytes, no copy: the names are what validation needs
    else:
        _placeholder(target)
    written[f"{folder}/{value}"] = True
    return f"{folder}/{value}"


def embeddings_in(prompt: dict) -> set[str]:
    names = set()
    for spec in prompt.values():
        for value in spec["inputs"].values():
            if isinstance(value, str):
                names |= set(re.findall(r"embedding:([\w.\-]+)", value))
    return names


@pytest.fixture(scope="module")
def reference() -> dict:
    if not REFERENCE.is_file():
        pytest.skip("ComfyUI's reference /object_info is not available")
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def survey(tmp_path_factory, reference):
    """Classify every template; convert, write fixtures for and validate every SD-family one."""
    from tests.runtime.conftest import make_harness, write_model_tree

    src = write_model_tree(tmp_path_factory.mktemp("tiny_src")) / "models"
    base = tmp_path_factory.mktemp("templates_base")
    (base / "models").mkdir()
    harness = make_harness(base)
    from hearth.nodes.context import using

    templates = load_templates()
    tags = index_models()
    classes: dict[str, str] = {}
    outcomes: dict[str, Outcome] = {}
    with using(harness.context()):
        infos: dict[str, dict | None] = {}

        def node_info(class_type: str):
            if class_type not in infos:
                if class_type in harness.registry:
                    infos[class_type] = harness.registry.node_info(class_type)
                else:
                    infos[class_type] = reference.get(class_type)
            return infos[class_type]

        for name, workflow in templates.items():
            is_sd, family = classify(name, workflow, tags, reference)
            classes[name] = family if is_sd else f"excluded: {family}"
            if not is_sd:
                continue
            conv = convert(workflow, node_info)
            written: dict = {}
            files = []
            for spec in conv.prompt.values():
                for input_name, value in spec["inputs"].items():
                    f = write_fixture(base, src, spec["class_type"], input_name, value, written)
                    if f:
                        files.append(f)
            for emb in embeddings_in(conv.prompt):
                target = base / "models" / "embeddings" / (emb if emb.endswith((".pt", ".safetensors"))
                                                          else emb + ".pt")
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    os.link(src / "embeddings" / "tinyemb.pt", target)
                files.append(f"embeddings/{target.name}")
            missing = sorted(t for t in conv.node_types if t not in harness.registry)
            outcomes[name] = Outcome(name, family, conv.prompt, missing, conv.warnings, False, files=files)
        # validate once every file exists (combo lists are read from the folders)
        for outcome in outcomes.values():
            result = harness.engine.validate(copy.deepcopy(outcome.prompt))
            outcome.ok = bool(result.ok) and not result.node_errors
            if not outcome.ok:
                outcome.errors = json.dumps({"error": result.error, "node_errors": result.node_errors})[:1500]
    return {"classes": classes, "outcomes": outcomes, "harness": harness, "base": base}


# --- the tests -----------------------------------------------------------------------------------------
def _sd_names() -> list[str]:
    try:
        ref = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
        tags = index_models()
        return [n for n, w in load_templates().items() if classify(n, w, tags, ref)[0]]
    except Exception:  # noqa: BLE001 - collection must not fail; the survey test reports problems
        return []


@pytest.mark.parametrize("name", _sd_names())
def test_template_validates(survey, name):
    outcome = survey["outcomes"][name]
    if outcome.missing:
        pytest.xfail(f"Hearth lacks {', '.join(outcome.missing)}")
    # (widget-count notes in outcome.warnings are informational: the frontend also ignores surplus values,
    # e.g. depth_t2i_adapter's LoadImage saved a third one; the Chromium test checks the real mapping)
    assert outcome.ok, outcome.errors


def test_summary_counts(survey, capsys):
    outcomes = survey["outcomes"]
    classes = survey["classes"]
    expected = [o for o in outcomes.values() if not o.missing]
    passed = [o for o in outcomes.values() if o.ok]
    lines = ["", "Template classification:"]
    by_class: dict[str, list[str]] = {}
    for name, cls in sorted(classes.items()):
        by_class.setdefault(cls, []).append(name)
    for cls, names in sorted(by_class.items()):
        lines.append(f"  {cls}: {len(names)}" + (f" ({', '.join(names)})" if not cls.startswith("excluded: API")
                                                  else ""))
    lines.append("SD-family templates:")
    for o in sorted(outcomes.values(), key=lambda o: o.name):
        state = "PASS" if o.ok else ("MISSING NODES" if o.missing else "FAIL")
        detail = f" needs {', '.join(o.missing)}" if o.missing else (f" {o.errors[:300]}" if not o.ok else "")
        lines.append(f"  {state:13} {o.name} [{o.family}]{detail}")
        lines += [f"                note: {w}" for w in o.warnings]
    missing_all = sorted({t for o in outcomes.values() for t in o.missing})
    lines.append(f"Node types SD-family templates need that Hearth lacks: {', '.join(missing_all) or 'none'}")
    lines.append(f"{len(passed)} of {len(outcomes)} SD-family templates validate "
                 f"({len(expected)} have every node type registered)")
    with capsys.disabled():
        print("\n".join(lines))
    assert outcomes, "no SD-family templates found"
    unexpected = [o.name for o in expected if not o.ok]
    assert not unexpected, [(o.name, o.errors) for o in expected if not o.ok]
    # a template that validates while using unregistered nodes would mean the check is broken
    assert not [o.name for o in passed if o.missing]


# pixel sizes scaled down 4x (and steps cut) so a template runs in about a second on the tiny models
PIXEL_INPUTS = {
    "EmptyLatentImage": ("width", "height"),
    "LatentUpscale": ("width", "height"),
    "ImageScale": ("width", "height"),
    "ConditioningSetArea": ("width", "height", "x", "y"),
    "ImagePadForOutpaint": ("left", "top", "right", "bottom", "feathering"),
}


def shrink(prompt: dict, node_info) -> dict:
    prompt = copy.deepcopy(prompt)
    for spec in prompt.values():
        inputs, kind = spec["inputs"], spec["class_type"]
        required = node_info(kind)["input"].get("required", {})
        for name in PIXEL_INPUTS.get(kind, ()):
            if isinstance(inputs.get(name), int) and inputs[name] > 0:
                low = required[name][1].get("min", 0)
                inputs[name] = max(low, inputs[name] // 32 * 8)
        if kind == "ImageScaleToTotalPixels":
            inputs["megapixels"] = max(0.01, inputs["megapixels"] / 16)
        if kind == "KSampler":
            inputs["steps"] = min(inputs["steps"], 2)
        if kind == "KSamplerAdvanced":
            total, new = inputs["steps"], 4
            for name in ("start_at_step", "end_at_step"):
                if inputs[name] < total:
                    inputs[name] = round(inputs[name] * new / total)
            inputs["steps"] = new
    return prompt


@pytest.mark.parametrize("name", _sd_names())
def test_template_runs_on_tiny_models(survey, name):
    """Every template that validates also executes (sizes and steps scaled down, tiny random models)."""
    outcome = survey["outcomes"][name]
    if outcome.missing:
        pytest.xfail(f"Hearth lacks {', '.join(outcome.missing)}")
    if outcome.stand_ins:
        pytest.skip(f"validated only: no tiny model of the right kind for {', '.join(outcome.stand_ins)}")
    harness = survey["harness"]
    from hearth.nodes.context import using

    with using(harness.context()):
        prompt = shrink(outcome.prompt, harness.registry.node_info)
    result = harness.run(prompt)
    images = [img for node in result.outputs.values() for img in node.get("images", [])]
    assert images, result.outputs
    for image in images:
        folder = harness.folders.output if image["type"] == "output" else harness.folders.temp
        assert (folder / image["subfolder"] / image["filename"]).is_file()


def test_conversion_matches_the_real_frontend(survey):
    """The official frontend (served by Hearth, in headless Chromium) builds the same prompts from the templates.

    Only templates whose node types Hearth serves can be compared: for the others the frontend has no node
    definitions and leaves their widgets out.
    """
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("no Chromium")
    from tests.conftest import Server

    base = survey["base"]
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.InstalledVersion": "1.27.10"}))
    templates = load_templates()
    names = sorted(n for n, o in survey["outcomes"].items() if not o.missing)
    assert names
    server = Server(base).start(timeout=60)
    differences = {}
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                         "--disable-gpu"])
            page = browser.new_context().new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server.url) else r.abort())
            page.goto(server.url + "/")
            page.wait_for_function("window.app && window.app.graph", timeout=90000)
            page.wait_for_timeout(1000)
            for name in names:
                theirs = page.evaluate("""async ([wf, name]) => {
                    await window.app.loadGraphData(wf, true, true, name);
                    return (await window.app.graphToPrompt()).output; }""", [copy.deepcopy(templates[name]), name])
                ours = survey["outcomes"][name].prompt
                a = {k: (v["class_type"], v["inputs"]) for k, v in ours.items()}
                b = {k: (v["class_type"], v["inputs"]) for k, v in theirs.items()}
                if a != b:
                    differences[name] = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
            browser.close()
    finally:
        server.stop()
    assert not differences, differences


# --- the converter itself --------------------------------------------------------------------------------
def test_default_template_converts_like_the_frontend(reference):
    workflow = load_templates()["default"]
    prompt = convert(workflow, reference.get).prompt
    ks = next(spec for spec in prompt.values() if spec["class_type"] == "KSampler")
    node = next(n for n in workflow["nodes"] if n["type"] == "KSampler")
    seed, control, steps, cfg, sampler, scheduler, denoise = node["widgets_values"]
    assert control in (True, "fixed", "randomize", "increment", "decrement")  # True: an old save of "randomize"
    assert {k: v for k, v in ks["inputs"].items() if not isinstance(v, list)} == {
        "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
        "denoise": denoise}
    by_type = {spec["class_type"]: node_id for node_id, spec in prompt.items()}
    assert ks["inputs"]["model"] == [by_type["CheckpointLoaderSimple"], 0]
    assert ks["inputs"]["latent_image"] == [by_type["EmptyLatentImage"], 0]
    assert sorted(spec["class_type"] for spec in prompt.values()) == sorted(
        ["CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode",
         "SaveImage"])
    assert "MarkdownNote" not in by_type and "Note" not in by_type
    # SaveImage was saved without widget values: the widget's default is sent
    assert prompt[by_type["SaveImage"]]["inputs"] == {"images": [by_type["VAEDecode"], 0],
                                                      "filename_prefix": "ComfyUI"}


def test_bypassed_lora_is_passed_through(reference):
    workflow = load_templates()["lora"]
    bypassed = [n for n in workflow["nodes"] if n.get("mode") == 4]
    assert bypassed, "the lora template no longer has a bypassed node"
    prompt = convert(workflow, reference.get).prompt
    for node in bypassed:
        assert str(node["id"]) not in prompt
    for spec in prompt.values():
        for value in spec["inputs"].values():
            if isinstance(value, list):
                assert value[0] in prompt


def _node(nid, kind, inputs=(), outputs=(), widgets=None, mode=0):
    return {"id": nid, "type": kind, "mode": mode, "widgets_values": widgets,
            "inputs": [dict(i) for i in inputs], "outputs": [dict(o) for o in outputs]}


def test_reroute_primitive_mute_bypass_and_subgraph(reference):
    sub_id = "5f0c2d3e-0000-4000-8000-000000000001"
    workflow = {
        "nodes": [
            _node(1, "EmptyImage", outputs=[{"name": "IMAGE", "type": "IMAGE"}], widgets=[32, 16, 1, 0]),
            _node(2, "Reroute", inputs=[{"name": "", "type": "*", "link": 1}], outputs=[{"type": "IMAGE"}]),
            _node(3, "PrimitiveNode", outputs=[{"type": "INT", "widget": {"name": "amount"}}], widgets=[7, "fixed"]),
            _node(4, "ImageInvert", inputs=[{"name": "image", "type": "IMAGE", "link": 2}],
                  outputs=[{"name": "IMAGE", "type": "IMAGE"}], mode=4),
            _node(5, "ImageBlur", inputs=[{"name": "image", "type": "IMAGE", "link": 3}],
                  outputs=[{"type": "IMAGE"}], widgets=[1, 1.0], mode=2),
            _node(6, "PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 4}]),
            _node(7, "PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 5}]),
            _node(8, sub_id, inputs=[{"name": "image", "type": "IMAGE", "link": 6},
                                     {"name": "amount", "type": "INT", "link": 7, "widget": {"name": "amount"}}],
                  outputs=[{"name": "IMAGE", "type": "IMAGE"}]),
            _node(9, "SaveImage", inputs=[{"name": "images", "type": "IMAGE", "link": 8}], widgets=["sub"]),
            _node(10, "MarkdownNote", widgets=["# hello"]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 4, 0, "IMAGE"], [3, 1, 0, 5, 0, "IMAGE"],
                  [4, 4, 0, 6, 0, "IMAGE"], [5, 5, 0, 7, 0, "IMAGE"], [6, 2, 0, 8, 0, "IMAGE"],
                  [7, 3, 0, 8, 1, "INT"], [8, 8, 0, 9, 0, "IMAGE"]],
        "definitions": {"subgraphs": [{
            "id": sub_id, "inputs": [], "outputs": [],
            "nodes": [_node(1, "ImageSharpen", inputs=[{"name": "image", "type": "IMAGE", "link": 11},
                                                       {"name": "sharpen_radius", "type": "INT", "link": 12,
                                                        "widget": {"name": "sharpen_radius"}}],
                            outputs=[{"type": "IMAGE"}], widgets=[1, 1.0, 1.0])],
            "links": [{"id": 11, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0,
                       "type": "IMAGE"},
                      {"id": 12, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1,
                       "type": "INT"},
                      {"id": 13, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0,
                       "type": "IMAGE"}]}]},
    }
    prompt = convert(workflow, reference.get).prompt
    assert sorted(prompt) == ["1", "6", "7", "8:1", "9"]
    assert prompt["1"]["inputs"] == {"width": 32, "height": 16, "batch_size": 1, "color": 0}
    assert prompt["6"]["inputs"] == {"images": ["1", 0]}  # through the reroute and the bypassed invert
    assert prompt["7"]["inputs"] == {}  # its source is muted
    assert prompt["8:1"]["inputs"] == {"image": ["1", 0], "sharpen_radius": 7, "sigma": 1.0, "alpha": 1.0}
    assert prompt["9"]["inputs"] == {"images": ["8:1", 0], "filename_prefix": "sub"}
    assert prompt["9"]["class_type"] == "SaveImage"


def test_widget_slots_follow_the_frontend():
    ksampler = {"input": {"required": {"model": ["MODEL"], "seed": ["INT", {"control_after_generate": True}],
                                       "steps": ["INT", {}], "sampler_name": [["euler"]]}},
                "input_order": {"required": ["model", "seed", "steps", "sampler_name"]}}
    assert widget_slots(ksampler) == ["seed", None, "steps", "sampler_name"]
    load = {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}},
            "input_order": {"required": ["image"]}}
    assert widget_slots(load) == ["image", None]
    forced = {"input": {"required": {"text": ["STRING", {"forceInput": True}], "noise_seed": ["INT", {}]},
                        "optional": {"mode": ["COMBO", {"options": ["a"], "control_after_generate": True}]}},
              "input_order": {"required": ["text", "noise_seed"], "optional": ["mode"]}}
    assert widget_slots(forced) == ["noise_seed", None, "mode", None, None]


def test_every_template_converts(reference):
    """All templates (every family, subgraphs included) convert without error into self-consistent prompts."""
    with_subgraphs = 0
    for name, workflow in load_templates().items():
        conv = convert(workflow, reference.get)
        with_subgraphs += bool((workflow.get("definitions") or {}).get("subgraphs"))
        assert conv.prompt or not workflow["nodes"], name
        for node_id, spec in conv.prompt.items():
            assert spec["class_type"] not in ("Reroute", "PrimitiveNode", "Note", "MarkdownNote"), (name, node_id)
            for value in spec["inputs"].values():
                if isinstance(value, list):
                    assert value[0] in conv.prompt and isinstance(value[1], int), (name, node_id, value)
    assert with_subgraphs  # the package ships at least one template with a subgraph (expanded above)
