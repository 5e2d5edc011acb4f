"""Stable Diffusion workflows end to end through the real server.

One `python -m hearth` subprocess serves the whole module from a base directory whose models/ folder holds the
tiny random-weight fixture checkpoints (tests/runtime/conftest.py ``write_model_tree``): SD1.5, SD2 v-prediction,
SDXL base and refiner, an SD1.5 inpainting (9-channel) model, a LoRA and textual-inversion embeddings. Prompts go
in through POST /prompt, progress comes back on a real websocket, results are read from /history and /view.
Everything is 64x64 with 2-3 steps so the module stays fast on a small CPU machine.
"""
from __future__ import annotations

import asyncio
import io
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
Image = pytest.importorskip("PIL.Image")

from tests.conftest import Server  # noqa: E402
from tests.e2e.test_files import multipart  # noqa: E402
from tests.e2e.wsclient import WSRecorder  # noqa: E402
from tests.runtime.conftest import write_model_tree  # noqa: E402

WORKFLOW = {"last_node_id": 9, "last_link_id": 9, "nodes": [], "links": [], "groups": [], "config": {},
            "extra": {"hearth_test": "sd_server"}, "version": 0.4}
FLOW_TYPES = ("execution_start", "execution_cached", "executing", "progress", "executed", "execution_success",
              "execution_error", "execution_interrupted")


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> Server:
    base = tmp_path_factory.mktemp("sd_server")
    write_model_tree(base)
    with pytest.MonkeyPatch.context() as env:
        # the tiny networks gain nothing from a second thread on a small shared machine
        env.setenv("OMP_NUM_THREADS", "1")
        server = Server(base).start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


# --- prompt building -----------------------------------------------------------------------------------
def base_prompt(ckpt="sd15.safetensors", seed=1, steps=3, positive="a red cat", negative="blurry",
                width=64, height=64, prefix="sd") -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "5": ksampler(["1", 0], ["4", 0], seed=seed, steps=steps),
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


def ksampler(model, latent, seed=1, steps=3, denoise=1.0, positive=("2", 0), negative=("3", 0),
             sampler="euler", scheduler="normal") -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": list(model), "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": sampler,
        "scheduler": scheduler, "positive": list(positive), "negative": list(negative),
        "latent_image": list(latent), "denoise": denoise}}


def decode_and_save(p: dict, samples: list, vae: list, node: str, prefix: str) -> None:
    p[node] = {"class_type": "VAEDecode", "inputs": {"samples": samples, "vae": vae}}
    p[node + "s"] = {"class_type": "SaveImage", "inputs": {"images": [node, 0], "filename_prefix": prefix}}


# --- running -------------------------------------------------------------------------------------------
class Run:
    def __init__(self, server: Server, pid: str, messages: list[dict]):
        self.server, self.pid, self.messages = server, pid, messages
        self.history = server.get_json(f"/history/{pid}")[pid]

    @property
    def flow(self) -> list[dict]:
        return [m for m in self.messages if m["type"] in FLOW_TYPES]

    def progress(self, node: str) -> list[tuple[int, int]]:
        return [(m["data"]["value"], m["data"]["max"]) for m in self.messages
                if m["type"] == "progress" and m["data"]["node"] == node]

    def images(self, node: str) -> list[dict]:
        return self.history["outputs"][node]["images"]

    def view(self, node: str, index: int = 0) -> bytes:
        ref = self.images(node)[index]
        status, headers, body = self.server.request(
            "GET", f"/view?filename={ref['filename']}&subfolder={ref['subfolder']}&type={ref['type']}")
        assert status == 200, body[:300]
        assert headers.get("Content-Type", "").startswith("image/png")
        return body

    def pixels(self, node: str, index: int = 0) -> bytes:
        return Image.open(io.BytesIO(self.view(node, index))).convert("RGB").tobytes()


def submit(server: Server, prompt: dict, workflow: dict | None = WORKFLOW, timeout: float = 120.0) -> Run:
    async def go():
        async with WSRecorder(server.ws_url) as ws:
            await ws.wait_for(lambda m: m["type"] == "status" and "sid" in m["data"])
            before = len(ws.messages)
            body = {"prompt": prompt, "client_id": ws.sid}
            if workflow is not None:
                body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
            status, answer = server.post_json("/prompt", body)
            assert status == 200, answer
            pid = answer["prompt_id"]
            await ws.wait_done(pid, timeout)
            return pid, [m for m in ws.messages[before:] if m["type"] != "status"]

    pid, messages = asyncio.run(go())
    run = Run(server, pid, messages)
    assert run.history["status"]["status_str"] == "success", (run.history["status"], server.log()[-3000:])
    return run


def upload(server: Server, path: str, fields: dict) -> dict:
    body, headers = multipart(fields)
    status, _, raw = server.request("POST", path, body, headers)
    assert status == 200, raw
    return json.loads(raw)


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def gradient(size=64, alpha_left: int | None = None):
    """An RGB(A) test picture; with ``alpha_left`` the left half gets that alpha (0 = to be inpainted)."""
    img = Image.new("RGBA" if alpha_left is not None else "RGB", (size, size))
    for y in range(size):
        for x in range(size):
            rgb = (x * 4 % 256, y * 4 % 256, (x + y) * 2 % 256)
            if alpha_left is not None:
                img.putpixel((x, y), rgb + ((alpha_left if x < size // 2 else 255),))
            else:
                img.putpixel((x, y), rgb)
    return img


def check_png(data: bytes, size: tuple[int, int], prompt: dict, workflow: dict | None = WORKFLOW) -> None:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.size == size
    stored = json.loads(img.text["prompt"])
    assert {k: v["class_type"] for k, v in stored.items()} == {k: v["class_type"] for k, v in prompt.items()}
    if workflow is not None:
        assert json.loads(img.text["workflow"]) == workflow


# --- txt2img, the websocket sequence, history and /view ---------------------------------------------------
@pytest.mark.parametrize("ckpt", ["sd15.safetensors", "sd2_v.safetensors", "sdxl.safetensors",
                                  "sdxl_refiner.safetensors"])
def test_txt2img_each_family(sd, ckpt):
    prompt = base_prompt(ckpt, seed=11, prefix=f"t2i_{ckpt[:-12]}")
    run = submit(sd, prompt)
    flow = run.flow
    types = [m["type"] for m in flow]
    assert types[0] == "execution_start" and flow[0]["data"]["prompt_id"] == run.pid
    assert types[1] == "execution_cached"
    cached = flow[1]["data"]["nodes"]
    assert set(cached) <= {"4"}  # only the latent shared with the previous prompt may come from the cache
    executing = [m["data"]["node"] for m in flow if m["type"] == "executing"]
    assert executing[-1] is None and flow[-1]["type"] == "executing"
    assert sorted(executing[:-1] + cached) == sorted(prompt)  # every other node ran once
    # ComfyUI's execution order: a node only after everything it links to
    order = {node: i for i, node in enumerate(cached + executing[:-1])}
    for node, spec in prompt.items():
        for value in spec["inputs"].values():
            if isinstance(value, list) and node not in cached:
                assert order[value[0]] < order[node]
    assert types[-2] == "execution_success"
    # one progress message per sampling step, all between "executing 5" and the next "executing"
    assert run.progress("5") == [(1, 3), (2, 3), (3, 3)]
    i5 = next(i for i, m in enumerate(flow) if m["type"] == "executing" and m["data"]["node"] == "5")
    assert [m["type"] for m in flow[i5 + 1:i5 + 4]] == ["progress"] * 3
    assert all(m["data"]["prompt_id"] == run.pid for m in flow if m["type"] == "progress")
    executed = [m["data"] for m in flow if m["type"] == "executed"]
    assert [e["node"] for e in executed] == ["7"]
    image = executed[0]["output"]["images"][0]
    assert image["type"] == "output" and image["subfolder"] == ""
    assert image["filename"].startswith(f"t2i_{ckpt[:-12]}_") and image["filename"].endswith("_.png")
    # history mirrors it
    h = run.history
    assert h["status"]["completed"] is True
    assert [m[0] for m in h["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert h["outputs"] == {"7": executed[0]["output"]}
    assert set(image) == {"filename", "subfolder", "type"}
    assert h["prompt"][2]["5"]["inputs"]["seed"] == 11
    data = run.view("7")
    check_png(data, (64, 64), prompt)
    pixels = Image.open(io.BytesIO(data)).convert("RGB")
    assert len(pixels.getcolors(64 * 64)) > 8  # an actual picture, not a flat fill
    assert (sd.base / "output" / image["filename"]).read_bytes() == data


def test_same_seed_same_bytes_other_seed_differs_and_cached_resubmission(sd):
    a = submit(sd, base_prompt(seed=123, prefix="det"))
    first = a.view("7")
    # identical resubmission: everything comes from the cache
    again = submit(sd, base_prompt(seed=123, prefix="det"))
    assert [m["type"] for m in again.flow] == ["execution_start", "execution_cached", "executed",
                                               "execution_success", "executing"]
    assert sorted(again.flow[1]["data"]["nodes"]) == sorted(base_prompt())
    assert again.progress("5") == []
    assert again.history["outputs"] == a.history["outputs"]
    # another seed samples again, with the checkpoint loader and text encoders still cached
    b = submit(sd, base_prompt(seed=124, prefix="det"))
    assert sorted(b.flow[1]["data"]["nodes"]) == ["1", "2", "3", "4"]
    assert len(b.progress("5")) == 3
    second = b.view("7")
    # and the first seed again really re-samples (the classic cache keeps only the previous prompt's nodes)
    c = submit(sd, base_prompt(seed=123, prefix="det"))
    assert len(c.progress("5")) == 3
    third = c.view("7")
    assert a.images("7") != c.images("7")  # a new file ...
    assert third == first  # ... with exactly the same bytes (pixels and metadata)
    assert a.pixels("7") != b.pixels("7")
    assert second != first


# --- img2img, inpainting ---------------------------------------------------------------------------------
def test_img2img_from_an_uploaded_image(sd):
    ref = upload(sd, "/upload/image", {"image": ("i2i_source.png", png_bytes(gradient())), "type": "input"})
    assert ref["type"] == "input"
    p = base_prompt(seed=5, prefix="i2i")
    p["8"] = {"class_type": "LoadImage", "inputs": {"image": ref["name"]}}
    p["9"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["8", 0], "vae": ["1", 2]}}
    p["5"] = ksampler(["1", 0], ["9", 0], seed=5, steps=3, denoise=0.6)
    run = submit(sd, p)
    # denoise 0.6 samples the last 3 of 5 scheduled steps: 3 progress steps
    assert run.progress("5") == [(1, 3), (2, 3), (3, 3)]
    check_png(run.view("7"), (64, 64), p)
    t2i = submit(sd, base_prompt(seed=5, prefix="i2i_ref"))
    assert run.pixels("7") != t2i.pixels("7")


def test_inpaint_with_a_regular_and_a_9_channel_model(sd):
    source = upload(sd, "/upload/image", {"image": ("inpaint_src.png", png_bytes(gradient())), "type": "input"})
    # the mask editor's upload: an alpha-only picture applied to the original
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    for y in range(16, 48):
        for x in range(16, 48):
            mask.putpixel((x, y), (0, 0, 0, 0))
    original = json.dumps({"filename": source["name"], "subfolder": source["subfolder"], "type": "input"})
    masked = upload(sd, "/upload/mask", {"image": ("clipspace-mask.png", png_bytes(mask)), "type": "input",
                                         "subfolder": "clipspace", "original_ref": original})
    masked_name = f"{masked['subfolder']}/{masked['name']}" if masked["subfolder"] else masked["name"]
    # and a picture that already carries its alpha channel
    alpha = upload(sd, "/upload/image", {"image": ("alpha_src.png", png_bytes(gradient(alpha_left=0))),
                                         "type": "input"})

    p = base_prompt(seed=9, prefix="inpaint_regular")
    p["8"] = {"class_type": "LoadImage", "inputs": {"image": masked_name}}
    p["9"] = {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["8", 0], "vae": ["1", 2],
                                                              "mask": ["8", 1], "grow_mask_by": 6}}
    p["5"] = ksampler(["1", 0], ["9", 0], seed=9)
    # the inpainting model through InpaintModelConditioning, from the alpha PNG
    p["10"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_inpaint.safetensors"}}
    p["11"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog", "clip": ["10", 1]}}
    p["12"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["10", 1]}}
    p["13"] = {"class_type": "LoadImage", "inputs": {"image": alpha["name"]}}
    p["14"] = {"class_type": "InpaintModelConditioning", "inputs": {
        "positive": ["11", 0], "negative": ["12", 0], "vae": ["10", 2], "pixels": ["13", 0], "mask": ["13", 1],
        "noise_mask": True}}
    p["15"] = ksampler(["10", 0], ["14", 2], seed=9, positive=("14", 0), negative=("14", 1))
    decode_and_save(p, ["15", 0], ["10", 2], "16", "inpaint_9ch")
    run = submit(sd, p)
    assert len(run.progress("5")) == 3 and len(run.progress("15")) == 3
    check_png(run.view("7"), (64, 64), p)
    check_png(run.view("16s"), (64, 64), p)
    # the noise mask keeps the unmasked (opaque) right half close to the source picture
    out = Image.open(io.BytesIO(run.view("16s"))).convert("RGB")
    src = gradient().convert("RGB")

    def diff(box):
        a, b = out.crop(box).tobytes(), src.crop(box).tobytes()
        return sum(abs(x - y) for x, y in zip(a, b)) / len(a)

    assert diff((40, 0, 64, 64)) < diff((0, 0, 24, 64))


# --- LoRA, embeddings --------------------------------------------------------------------------------------
def test_lora_changes_the_picture(sd):
    plain = submit(sd, base_prompt(seed=21, prefix="lora_off"))
    p = base_prompt(seed=21, prefix="lora_on")
    p["8"] = {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1],
                                                     "lora_name": "tiny_lora.safetensors",
                                                     "strength_model": 1.0, "strength_clip": 1.0}}
    p["2"]["inputs"]["clip"] = ["8", 1]
    p["3"]["inputs"]["clip"] = ["8", 1]
    p["5"]["inputs"]["model"] = ["8", 0]
    run = submit(sd, p)
    assert len(run.progress("5")) == 3
    check_png(run.view("7"), (64, 64), p)
    assert run.pixels("7") != plain.pixels("7")
    # strength 0 is the plain model again
    p["8"]["inputs"].update(strength_model=0.0, strength_clip=0.0)
    p["7"]["inputs"]["filename_prefix"] = "lora_zero"
    zero = submit(sd, p)
    assert zero.pixels("7") == plain.pixels("7")


def test_embedding_in_the_prompt(sd):
    plain = submit(sd, base_prompt(seed=31, positive="a cat", prefix="emb_off"))
    p = base_prompt(seed=31, positive="embedding:tinyemb a cat", prefix="emb_on")
    run = submit(sd, p)
    assert run.pixels("7") != plain.pixels("7")
    check_png(run.view("7"), (64, 64), p)
    assert "tinyemb" in sd.get_json("/embeddings")


# --- SDXL base + refiner, hires fix --------------------------------------------------------------------------
def test_sdxl_base_then_refiner(sd):
    def advanced(model, latent, pos, neg, add_noise, start, end, leftover):
        return {"class_type": "KSamplerAdvanced", "inputs": {
            "model": model, "add_noise": add_noise, "noise_seed": 42, "steps": 4, "cfg": 5.0,
            "sampler_name": "euler", "scheduler": "normal", "positive": pos, "negative": neg,
            "latent_image": latent, "start_at_step": start, "end_at_step": end,
            "return_with_leftover_noise": leftover}}

    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "2": {"class_type": "CLIPTextEncodeSDXL", "inputs": {
            "clip": ["1", 1], "width": 64, "height": 64, "crop_w": 0, "crop_h": 0, "target_width": 64,
            "target_height": 64, "text_g": "a lighthouse", "text_l": "a lighthouse"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": advanced(["1", 0], ["4", 0], ["2", 0], ["3", 0], "enable", 0, 2, "enable"),
        "8": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_refiner.safetensors"}},
        "9": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
            "ascore": 6.0, "width": 64, "height": 64, "text": "a lighthouse", "clip": ["8", 1]}},
        "10": {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
            "ascore": 2.5, "width": 64, "height": 64, "text": "blurry", "clip": ["8", 1]}},
        "11": advanced(["8", 0], ["5", 0], ["9", 0], ["10", 0], "disable", 2, 10000, "disable"),
    }
    decode_and_save(p, ["11", 0], ["8", 2], "12", "sdxl_refined")
    decode_and_save(p, ["5", 0], ["1", 2], "13", "sdxl_leftover")
    run = submit(sd, p)
    assert run.progress("5") == [(1, 2), (2, 2)]
    assert run.progress("11") == [(1, 2), (2, 2)]
    executing = [m["data"]["node"] for m in run.flow if m["type"] == "executing"]
    assert executing.index("5") < executing.index("11")
    check_png(run.view("12s"), (64, 64), p)
    check_png(run.view("13s"), (64, 64), p)
    assert run.pixels("12s") != run.pixels("13s")


def test_hires_fix(sd):
    p = base_prompt(seed=51, prefix="hires_base")
    p["8"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["5", 0], "upscale_method": "nearest-exact",
                                                          "scale_by": 1.5}}
    p["9"] = ksampler(["1", 0], ["8", 0], seed=52, steps=2, denoise=0.5)
    decode_and_save(p, ["9", 0], ["1", 2], "10", "hires_by")
    p["11"] = {"class_type": "LatentUpscale", "inputs": {"samples": ["5", 0], "upscale_method": "bilinear",
                                                         "width": 128, "height": 96, "crop": "disabled"}}
    p["12"] = ksampler(["1", 0], ["11", 0], seed=52, steps=2, denoise=0.5)
    decode_and_save(p, ["12", 0], ["1", 2], "13", "hires_to")
    run = submit(sd, p)
    # denoise 0.5 of 2 steps: 4 scheduled, the last 2 sampled
    assert run.progress("9") == [(1, 2), (2, 2)] and run.progress("12") == [(1, 2), (2, 2)]
    check_png(run.view("7"), (64, 64), p)
    check_png(run.view("10s"), (96, 96), p)
    check_png(run.view("13s"), (128, 96), p)


# --- a broken workflow -----------------------------------------------------------------------------------------
def test_missing_checkpoint_is_rejected_like_comfyui(sd):
    p = base_prompt(ckpt="no_such_model.safetensors")
    status, body = sd.post_json("/prompt", {"prompt": p})
    assert status == 400
    assert body["error"] == {"type": "prompt_outputs_failed_validation",
                             "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}
    assert list(body["node_errors"]) == ["1"]
    node = body["node_errors"]["1"]
    assert node["class_type"] == "CheckpointLoaderSimple" and node["dependent_outputs"] == ["7"]
    spec = sd.get_json("/object_info/CheckpointLoaderSimple")["CheckpointLoaderSimple"]["input"]["required"]
    names = spec["ckpt_name"][0]
    assert "sd15.safetensors" in names and len(names) <= 20
    assert node["errors"] == [{
        "type": "value_not_in_list", "message": "Value not in list",
        "details": f"ckpt_name: 'no_such_model.safetensors' not in {names!s}",
        "extra_info": {"input_name": "ckpt_name", "input_config": spec["ckpt_name"],
                       "received_value": "no_such_model.safetensors"}}]
    # nothing was queued
    assert sd.get_json("/queue") == {"queue_running": [], "queue_pending": []}
