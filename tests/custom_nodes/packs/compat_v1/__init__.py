"""A V1 pack that uses every ComfyUI module name Hearth provides.

Routes (registered on PromptServer.instance.routes, so also under /api):
  GET  /hearth_test/facts     what the compat modules say at request time (folder_paths, nodes, …)
  GET  /hearth_test/startup   what they said while the pack was imported (torch loaded? …)
  POST /hearth_test/echo      echoes its JSON body
  static /hearth_test_static  added through PromptServer.instance.app.add_routes (as KJNodes does)
"""
import json
import os
import sys
from pathlib import Path

from aiohttp import web

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.utils
import folder_paths
import latent_preview
import node_helpers
import nodes
import server
from comfy.comfy_types import IO, ComfyNodeABC, InputTypeDict
from comfy.cli_args import args
from comfy_api.v0_0_2 import ComfyAPISync
from comfy_execution.graph import ExecutionBlocker
from comfy_execution.graph_utils import GraphBuilder, is_link
from comfy_extras.nodes_mask import GrowMask
from server import PromptServer

from .helpers import image_size  # a relative import: the pack is a real package

WEB_DIRECTORY = "./js"
HERE = Path(__file__).resolve().parent

# A model folder of the pack's own, registered as packs do.
folder_paths.add_model_folder_path("hearth_test_models", str(HERE / "models"))
folder_paths.folder_names_and_paths["hearth_test_more"] = ([str(HERE / "more")], {".bin"})

STARTUP = {
    "torch_loaded": "torch" in sys.modules,
    "grow_mask_is_builtin": GrowMask is nodes.NODE_CLASS_MAPPINGS["GrowMask"],
    "max_resolution": nodes.MAX_RESOLUTION,
    "samplers_have_euler": "euler" in comfy.samplers.KSampler.SAMPLERS,
    "schedulers": list(comfy.samplers.KSampler.SCHEDULERS),
    "io_any_matches": not (IO.ANY != "IMAGE"),
    "preview_method": args.preview_method.value,
    "module_name": __name__,
}


def facts() -> dict:
    mappings = nodes.NODE_CLASS_MAPPINGS
    return {
        "checkpoints": folder_paths.get_filename_list("checkpoints"),
        "checkpoint_path": folder_paths.get_full_path("checkpoints", "tiny.safetensors"),
        "checkpoint_folders": folder_paths.get_folder_paths("checkpoints"),
        "custom_folder": folder_paths.get_folder_paths("hearth_test_models"),
        "more_folder": [list(folder_paths.folder_names_and_paths["hearth_test_more"][0]),
                        sorted(folder_paths.folder_names_and_paths["hearth_test_more"][1])],
        "output": folder_paths.get_output_directory(),
        "input": folder_paths.get_input_directory(),
        "temp": folder_paths.get_temp_directory(),
        "annotated": folder_paths.get_annotated_filepath("x.png [output]"),
        "models_dir": folder_paths.models_dir,
        "node_count": len(mappings),
        "has_v3_node": "HT_V3Double" in mappings,
        "has_single_file_node": "HT_Concat" in mappings,
        "v3_class_is_pack_class": getattr(mappings.get("HT_V3Double"), "__name__", None),
        "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get("HT_Concat"),
        "ksampler_is_builtin": mappings["KSampler"].__module__,
        "torch_loaded": "torch" in sys.modules,
        "web_dirs": sorted(nodes.EXTENSION_WEB_DIRS),
        "queue": PromptServer.instance.prompt_queue.get_tasks_remaining(),
    }


@PromptServer.instance.routes.get("/hearth_test/facts")
async def get_facts(request):
    return web.json_response(facts())


@PromptServer.instance.routes.get("/hearth_test/startup")
async def get_startup(request):
    return web.json_response(STARTUP)


@PromptServer.instance.routes.post("/hearth_test/echo")
async def post_echo(request):
    return web.json_response({"echo": await request.json()})


def on_prompt(json_data):
    """An on_prompt handler (Impact Pack and Easy-Use rewrite prompts this way)."""
    json_data.setdefault("extra_data", {})["hearth_test_on_prompt"] = True
    return json_data


PromptServer.instance.add_on_prompt_handler(on_prompt)


@PromptServer.instance.routes.post("/hearth_test/trigger_on_prompt")
async def post_trigger(request):
    return web.json_response(PromptServer.instance.trigger_on_prompt(await request.json()))


if not PromptServer.instance.app.router.frozen:
    PromptServer.instance.app.add_routes([web.static("/hearth_test_static", str(HERE / "static"))])


class HTSaveImage(ComfyNodeABC):
    """Saves IMAGE frames as PNG with folder_paths' save path (and returns them as UI images)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"images": (IO.IMAGE,), "filename_prefix": (IO.STRING, {"default": "hearth_test"})}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "hearth_test"

    def save(self, images, filename_prefix):
        import numpy as np
        from PIL import Image

        width, height = image_size(images)
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height)
        results = []
        for frame in images:
            name = f"{filename}_{counter:05}_.png"
            array = np.clip(frame.cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
            Image.fromarray(array).save(os.path.join(folder, name))
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


class HTResize:
    """comfy.utils.common_upscale on an IMAGE; reports progress with ProgressBar and the V0.0.2 API."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "width": ("INT", {"default": 32, "min": 1, "max": nodes.MAX_RESOLUTION}),
                             "height": ("INT", {"default": 32, "min": 1, "max": nodes.MAX_RESOLUTION})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "resize"
    CATEGORY = "hearth_test"

    def resize(self, image, width, height):
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar = comfy.utils.ProgressBar(4)
        bar.update(1)
        bar.update_absolute(2, 4)
        ComfyAPISync().execution.set_progress(3, 4)
        out = comfy.utils.common_upscale(image.movedim(-1, 1), width, height, "bilinear", "disabled").movedim(1, -1)
        bar.update(2)  # clamps at 4
        return (out,)


class HTMessages:
    """send_sync (JSON and binary text), client_id and last_node_id of the running prompt."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hello"})}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "hearth_test"

    def run(self, text, unique_id):
        instance = PromptServer.instance
        payload = {"text": text, "node": unique_id, "client_id": instance.client_id,
                   "last_node_id": instance.last_node_id}
        instance.send_sync("hearth_test.message", payload)
        instance.send_progress_text("progress text " + text, unique_id)
        return {"ui": {"text": [json.dumps(payload)]}, "result": (text,)}


class HTGate:
    """ExecutionBlocker: blocks silently, with a message, or passes the value on."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": ""}), "mode": (["pass", "silent", "message"],)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "hearth_test"

    def run(self, value, mode):
        if mode == "pass":
            return (value,)
        return (ExecutionBlocker(None if mode == "silent" else "blocked by HT_Gate"),)


class HTShow:
    """An output node that shows a string."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"forceInput": True})}}

    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "hearth_test"

    def show(self, value):
        return {"ui": {"text": [value]}}


class HTRepeat:
    """Node expansion with GraphBuilder: repeats ``text`` ``times`` times through HT_Concat nodes."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "ab"}), "times": ("INT", {"default": 3, "min": 1})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "expand"
    CATEGORY = "hearth_test"

    def expand(self, text, times):
        graph = GraphBuilder()
        current = text
        for _ in range(times - 1):
            node = graph.node("HT_Concat", a=current, b=text)
            current = node.out(0)
        assert is_link(current) or times == 1
        return {"result": (current,), "expand": graph.finalize()}


class HTLazySwitch:
    """V1 lazy inputs: only the chosen branch is evaluated."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"use_a": ("BOOLEAN", {"default": True}),
                             "a": ("STRING", {"lazy": True, "forceInput": True}),
                             "b": ("STRING", {"lazy": True, "forceInput": True})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "hearth_test"

    def check_lazy_status(self, use_a, a=None, b=None):
        return ["a"] if use_a else ["b"]

    def run(self, use_a, a=None, b=None):
        return (a if use_a else b,)


class HTConditioning:
    """node_helpers.conditioning_set_values on a hand-made CONDITIONING-like list."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"strength": ("FLOAT", {"default": 0.5})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "hearth_test"

    def run(self, strength):
        cond = [["tensor", {"a": 1.0}]]
        out = node_helpers.conditioning_set_values(cond, {"a": strength, "b": 2}, append=True)
        return (json.dumps({"before": cond[0][1], "after": out[0][1]}),)


class HTTinySD:
    """comfy.sd / comfy.sample / comfy.samplers / latent_preview / nodes.common_ksampler on Hearth's runtime."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),),
                             "seed": ("INT", {"default": 0})}}

    RETURN_TYPES = ("IMAGE", "STRING")
    FUNCTION = "run"
    CATEGORY = "hearth_test"

    def run(self, ckpt_name, seed):
        import torch

        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            path, embedding_directory=folder_paths.get_folder_paths("embeddings"))
        def encode(text):
            out = clip.encode_from_tokens(clip.tokenize(text))
            cond, pooled = out if isinstance(out, tuple) else (out, None)
            return [[cond, {"pooled_output": pooled}]]

        positive, negative = encode("a cat"), encode("")
        latent = torch.zeros([1, 4, 8, 8])
        latent = comfy.sample.fix_empty_latent_channels(model, latent)
        noise = comfy.sample.prepare_noise(latent, seed)
        callback = latent_preview.prepare_callback(model, 2)
        samples = comfy.sample.sample(model, noise, 2, 7.0, "euler", "normal", positive, negative, latent,
                                      callback=callback, seed=seed)
        (via_node,) = nodes.common_ksampler(model, seed, 2, 7.0, "euler", "normal", positive, negative,
                                            {"samples": torch.zeros([1, 4, 8, 8])})
        ksampler = comfy.samplers.KSampler(model, steps=2, device=comfy.model_management.get_torch_device(),
                                           sampler="euler", scheduler="normal")
        weights = comfy.utils.load_torch_file(path)
        report = {"same_as_node": bool(torch.allclose(samples, via_node["samples"], atol=1e-5)),
                  "unet_keys": sum(1 for k in weights if k.startswith("model.diffusion_model.")) > 0,
                  "sigmas": len(ksampler.sigmas), "device": str(comfy.model_management.get_torch_device()),
                  "unet_dtype": str(comfy.model_management.unet_dtype())}
        return (vae.decode(samples), json.dumps(report))


NODE_CLASS_MAPPINGS = {
    "HT_SaveImage": HTSaveImage,
    "HT_Resize": HTResize,
    "HT_Messages": HTMessages,
    "HT_Gate": HTGate,
    "HT_Show": HTShow,
    "HT_Repeat": HTRepeat,
    "HT_LazySwitch": HTLazySwitch,
    "HT_Conditioning": HTConditioning,
    "HT_TinySD": HTTinySD,
}
NODE_DISPLAY_NAME_MAPPINGS = {"HT_SaveImage": "HT Save Image"}
