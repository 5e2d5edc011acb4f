"""Fixtures for the Stable Diffusion runtime tests: tiny checkpoints on disk and an engine to run them.

The checkpoints are generated once per session (seeded, a few MB each, in a temporary folder laid out
like ComfyUI's models/ tree); nothing is downloaded and nothing large is committed.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402

from tests.runtime import tiny  # noqa: E402

# The tiny networks run faster on one thread than on two competing ones (and CI has 2 cores).
torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    for item in items:
        # torchsde warns about float rounding at the ends of its interval (ComfyUI sees the same)
        item.add_marker(pytest.mark.filterwarnings("ignore:Should have:UserWarning"))
        item.add_marker(pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning"))

CHECKPOINTS = {
    "sd15.safetensors": lambda: tiny.sd15_checkpoint(),
    "sd15_inpaint.safetensors": lambda: tiny.sd15_checkpoint(seed=11, unet=tiny.SD15_INPAINT_UNET),
    "sd2_v.safetensors": lambda: tiny.sd2_checkpoint(),
    "sdxl.safetensors": lambda: tiny.sdxl_checkpoint(),
    "sdxl_refiner.safetensors": lambda: tiny.sdxl_refiner_checkpoint(),
    "pruned.safetensors": lambda: tiny.sd15_checkpoint(seed=12, unet=tiny.PRUNED_UNET),
}


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> Path:
    """A base directory with models/{checkpoints,loras,embeddings,vae,text_encoders,diffusion_models}."""
    return write_model_tree(tmp_path_factory.mktemp("hearth_sd"))


def write_model_tree(base: Path) -> Path:
    """Write the tiny fixture models under ``base/models`` (also used by tests that start a real server)."""
    models = base / "models"
    for sub in ("checkpoints", "loras", "embeddings", "vae", "text_encoders", "diffusion_models", "configs"):
        (models / sub).mkdir(parents=True)
    for name, make in CHECKPOINTS.items():
        save_file(make(), str(models / "checkpoints" / name))
    sd15 = load_file(str(models / "checkpoints" / "sd15.safetensors"))
    # the same parts as standalone files
    save_file({k[len("first_stage_model."):]: v for k, v in sd15.items() if k.startswith("first_stage_model.")},
              str(models / "vae" / "tiny_vae.safetensors"))
    save_file({k[len("model.diffusion_model."):]: v for k, v in sd15.items()
               if k.startswith("model.diffusion_model.")}, str(models / "diffusion_models" / "sd15_unet.safetensors"))
    save_file({k[len("cond_stage_model.transformer."):]: v for k, v in sd15.items()
               if k.startswith("cond_stage_model.transformer.text_model.")},
              str(models / "text_encoders" / "clip_l.safetensors"))
    xl = load_file(str(models / "checkpoints" / "sdxl.safetensors"))
    save_file({k[len("conditioner.embedders.0.transformer."):]: v for k, v in xl.items()
               if k.startswith("conditioner.embedders.0.transformer.")},
              str(models / "text_encoders" / "xl_clip_l.safetensors"))
    save_file({k[len("conditioner.embedders.1.model."):]: v for k, v in xl.items()
               if k.startswith("conditioner.embedders.1.model.")},
              str(models / "text_encoders" / "xl_clip_g.safetensors"))
    save_file(tiny.sd15_lora(), str(models / "loras" / "tiny_lora.safetensors"))
    g = torch.Generator().manual_seed(7)
    torch.save({"string_to_param": {"*": torch.randn((2, 32), generator=g)}, "name": "tinyemb"},
               str(models / "embeddings" / "tinyemb.pt"))
    save_file({"emb_params": torch.randn((3, 32), generator=g)}, str(models / "embeddings" / "safeemb.safetensors"))
    (models / "configs" / "v1-inference.yaml").write_text("model: {}\n")
    return base


@dataclass
class Harness:
    """A node registry + engine + node context over ``model_base``; ``run`` validates and executes."""

    base: Path
    config: object
    folders: object
    registry: object
    engine: object
    services: dict = field(default_factory=dict)
    events: list = field(default_factory=list)

    def context(self):
        from hearth.nodes.context import NodeContext

        return NodeContext(self.config, self.folders, self.registry, self.services)

    def run(self, prompt: dict, expect: str = "success"):
        from hearth.engine import Interrupt
        from hearth.nodes.context import using

        self.events = []
        lock = threading.Lock()

        def emit(event):
            with lock:
                self.events.append(event)

        with using(self.context()):
            result = self.engine.validate(prompt)
            assert result.ok, (result.error, result.node_errors)
            outcome = self.engine.execute("p", prompt, {}, result.outputs, emit, Interrupt())
        assert outcome.status == expect, outcome.error
        return outcome

    def latent(self, outcome, node_id: str):
        """The tensor a SaveLatent node wrote."""
        entry = outcome.outputs[node_id]["latents"][0]
        path = self.folders.output / entry["subfolder"] / entry["filename"]
        return load_file(str(path))["latent_tensor"]


def make_harness(base: Path, **config_overrides) -> Harness:
    from hearth.config import Config
    from hearth.engine import CachePolicy, Engine
    from hearth.nodes.builtin import register_builtin_nodes
    from hearth.nodes.registry import NodeRegistry
    from hearth.paths import Folders

    cfg = Config(base_directory=base, cpu=True, **config_overrides)
    folders = Folders.from_config(cfg)
    folders.create()
    registry = NodeRegistry()
    register_builtin_nodes(registry)
    return Harness(base, cfg, folders, registry, Engine(registry, CachePolicy()))


@pytest.fixture(scope="session")
def harness(model_base) -> Harness:
    return make_harness(model_base)


@pytest.fixture(scope="session")
def manager():
    from hearth.runtime.memory import ModelManager

    return ModelManager()


# --- prompt building ---------------------------------------------------------------------------------

def txt2img(ckpt="sd15.safetensors", sampler="euler", scheduler="normal", steps=3, cfg=5.0, seed=1, width=64,
            height=64, batch=1, positive="a (red:1.2) cat", negative="blurry", denoise=1.0, save_image=False):
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                   "sampler_name": sampler, "scheduler": scheduler,
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": denoise}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latents/test"}},
    }
    if save_image:
        p["7"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
        p["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "test"}}
    return p
