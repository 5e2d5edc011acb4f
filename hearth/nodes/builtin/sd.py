"""Stable Diffusion nodes: loaders, text encoding, conditioning, sampling, latents, VAE.

Names, inputs, defaults and outputs are ComfyUI's. MODEL, CLIP and VAE values are Hearth's runtime
objects (``hearth.runtime``); LATENT is ``{"samples": [B,4,H/8,W/8], "noise_mask"?, "batch_index"?}``;
CONDITIONING is a list of ``[tensor, dict]``; IMAGE is float32 [B,H,W,C] in 0..1.

Importing this module imports neither torch nor diffusers: node functions import what they need.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os

from hearth.nodes.context import current
from hearth.sampling.names import SAMPLER_NAMES, SCHEDULER_NAMES

log = logging.getLogger(__name__)

MAX_RESOLUTION = 16384
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image"]
DUAL_CLIP_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]


# --- shared helpers -------------------------------------------------------------------------------

def _manager():
    from hearth.runtime.memory import get_manager

    ctx = current()
    return get_manager(ctx.services, ctx.config)


def _files(kind: str) -> list[str]:
    return current().folders.filenames(kind)


def _path(kind: str, name: str):
    path = current().folders.full_path(kind, name)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{kind}' with filename '{name}' not found.")
    return path


def _reuse_last(node, attr: str, path, load):
    """What ``load(path)`` gave the last time this node instance ran on the same file, else a fresh load.

    Kept as ``(path, value)`` in ``node.<attr>`` (ComfyUI's ``loaded_lora``), so one loader node does
    not re-read its file on every prompt, and a file change of name releases the old value first.
    """
    path = str(path)
    last = getattr(node, attr, None)
    if last is not None and last[0] == path:
        return last[1]
    setattr(node, attr, None)
    value = load(path)
    setattr(node, attr, (path, value))
    return value


def _embedding_dirs() -> list:
    folder = current().folders.folder("embeddings")
    return list(folder.paths) if folder else []


def conditioning_set_values(conditioning, values: dict, append: bool = False):
    c = []
    for t in conditioning:
        n = [t[0], t[1].copy()]
        for k, v in values.items():
            if append and k in n[1]:
                n[1][k] = n[1][k] + v
            else:
                n[1][k] = v
        c.append(n)
    return c


def _require(value, what: str, node: str):
    if value is None:
        raise RuntimeError(f"ERROR: {what} input is invalid: None\n\nIf the {what} is from a checkpoint loader node "
                           f"your checkpoint does not contain a valid {what} model.")
    return value


# --- loaders --------------------------------------------------------------------------------------

class CheckpointLoaderSimple:
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The model used for denoising latents.", "The CLIP model used for encoding text prompts.",
                       "The VAE model used for encoding and decoding images to and from latent space.")
    FUNCTION = "load_checkpoint"
    DESCRIPTION = "Loads a diffusion model checkpoint, diffusion models are used to denoise latents."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (_files("checkpoints"),
                                           {"tooltip": "The name of the checkpoint (model) to load."})}}

    def load_checkpoint(self, ckpt_name):
        from hearth.runtime import loader

        return loader.load_checkpoint(_path("checkpoints", ckpt_name), _manager(), _embedding_dirs())


class CheckpointLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"config_name": (_files("configs"),), "ckpt_name": (_files("checkpoints"),)}}

    def load_checkpoint(self, config_name, ckpt_name):
        # The architecture is read from the weights; the YAML config is not needed.
        from hearth.runtime import loader

        return loader.load_checkpoint(_path("checkpoints", ckpt_name), _manager(), _embedding_dirs())


class DiffusersLoader:
    CATEGORY = "advanced/loaders/deprecated"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"

    @classmethod
    def INPUT_TYPES(cls):
        paths = []
        folder = current().folders.folder("diffusers")
        for root in (folder.paths if folder else []):
            if os.path.isdir(root):
                for dirpath, _dirs, files in os.walk(root, followlinks=True):
                    if "model_index.json" in files:
                        paths.append(os.path.relpath(dirpath, start=root))
        return {"required": {"model_path": (paths,)}}

    def load_checkpoint(self, model_path, output_vae=True, output_clip=True):
        from hearth.paths import PathError, safe_join
        from hearth.runtime import loader

        folder = current().folders.folder("diffusers")
        for root in (folder.paths if folder else []):
            try:
                path = safe_join(root, model_path)
            except PathError:
                continue
            if path.is_dir():
                return loader.load_diffusers(path, _manager(), _embedding_dirs())
        raise FileNotFoundError(f"diffusers folder {model_path!r} not found")


class UNETLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": (_files("diffusion_models"),),
                             "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],)}}

    def load_unet(self, unet_name, weight_dtype):
        from hearth.runtime import loader

        if weight_dtype != "default":
            log.warning("UNETLoader: weight_dtype %s is not supported yet; loading in the default precision",
                        weight_dtype)
        return (loader.load_unet(_path("diffusion_models", unet_name), _manager()),)


class CLIPLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    DESCRIPTION = ("[Recipes]\n\nstable_diffusion: clip-l\nstable_cascade: clip-g\nsd3: t5 xxl/ clip-g / clip-l\n"
                   "stable_audio: t5 base\nmochi: t5 xxl\ncosmos: old t5 xxl\nlumina2: gemma 2 2B\nwan: umt5 xxl\n"
                   " hidream: llama-3.1 (Recommend) or t5\nomnigen2: qwen vl 2.5 3B")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name": (_files("text_encoders"),), "type": (CLIP_TYPES,)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    def load_clip(self, clip_name, type="stable_diffusion", device="default"):
        from hearth.runtime import loader

        return (loader.load_clip([_path("text_encoders", clip_name)], type, _manager(), _embedding_dirs()),)


class DualCLIPLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    DESCRIPTION = ("[Recipes]\n\nsdxl: clip-l, clip-g\nsd3: clip-l, clip-g / clip-l, t5 / clip-g, t5\nflux: clip-l, t5\n"
                   "hidream: at least one of t5 or llama, recommended t5 and llama\nhunyuan_image: qwen2.5vl 7b and "
                   "byt5 small")

    @classmethod
    def INPUT_TYPES(cls):
        names = _files("text_encoders")
        return {"required": {"clip_name1": (names,), "clip_name2": (names,), "type": (DUAL_CLIP_TYPES,)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    def load_clip(self, clip_name1, clip_name2, type, device="default"):
        from hearth.runtime import loader

        paths = [_path("text_encoders", clip_name1), _path("text_encoders", clip_name2)]
        return (loader.load_clip(paths, type, _manager(), _embedding_dirs()),)


class VAELoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae_name": (_files("vae") + ["pixel_space"],)}}

    def load_vae(self, vae_name):
        from hearth.runtime import loader
        from hearth.runtime.pixel import PixelSpaceVAE

        if vae_name == "pixel_space":
            return (PixelSpaceVAE(),)
        return (loader.load_vae(_path("vae", vae_name), _manager()),)


class LoraLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "load_lora"
    DESCRIPTION = ("LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are "
                   "denoised such as applying styles. Multiple LoRA nodes can be linked together.")

    def __init__(self):
        self.loaded_lora = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
            "lora_name": (_files("loras"), {"tooltip": "The name of the LoRA."}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                         "tooltip": "How strongly to modify the diffusion model. This value can be negative."}),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                        "tooltip": "How strongly to modify the CLIP model. This value can be negative."}),
        }}

    def load_lora(self, model, clip, lora_name, strength_model, strength_clip):
        from hearth.runtime import loader
        from hearth.runtime.apply_lora import apply_lora

        if strength_model == 0 and strength_clip == 0:
            return (model, clip)
        lora = _reuse_last(self, "loaded_lora", _path("loras", lora_name), loader.load_lora_file)
        return apply_lora(model, clip, lora, strength_model, strength_clip)


class LoraLoaderModelOnly(LoraLoader):
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_lora_model_only"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "lora_name": (_files("loras"),),
                             "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01})}}

    def load_lora_model_only(self, model, lora_name, strength_model):
        return (self.load_lora(model, None, lora_name, strength_model, 0)[0],)


# --- text -----------------------------------------------------------------------------------------

class CLIPTextEncode:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"
    DESCRIPTION = ("Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
                   "diffusion model towards generating specific images.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
        }}

    def encode(self, clip, text):
        if clip is None:
            raise RuntimeError("ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node "
                               "your checkpoint does not contain a valid clip or text encoder model.")
        return (clip.encode_conditioning(text),)


class CLIPSetLastLayer:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",),
                             "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1})}}

    def set_last_layer(self, clip, stop_at_clip_layer):
        clip = clip.clone()
        clip.clip_layer(stop_at_clip_layer)
        return (clip,)


class CLIPTextEncodeSDXL:
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 0, "max": MAX_RESOLUTION}
        return {"required": {
            "clip": ("CLIP", {}),
            "width": ("INT", {"default": 1024, **size}), "height": ("INT", {"default": 1024, **size}),
            "crop_w": ("INT", {"default": 0, **size}), "crop_h": ("INT", {"default": 0, **size}),
            "target_width": ("INT", {"default": 1024, **size}), "target_height": ("INT", {"default": 1024, **size}),
            "text_g": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "text_l": ("STRING", {"multiline": True, "dynamicPrompts": True}),
        }}

    def encode(self, clip, width, height, crop_w, crop_h, target_width, target_height, text_g, text_l):
        tokens = clip.tokenize(text_g)
        if "l" in tokens and "g" in tokens:
            tokens["l"] = clip.tokenize(text_l)["l"]
            if len(tokens["l"]) != len(tokens["g"]):
                empty = clip.tokenize("")
                while len(tokens["l"]) < len(tokens["g"]):
                    tokens["l"] += empty["l"]
                while len(tokens["l"]) > len(tokens["g"]):
                    tokens["g"] += empty["g"]
        return (clip.encode_from_tokens_scheduled(tokens, add_dict={
            "width": width, "height": height, "crop_w": crop_w, "crop_h": crop_h, "target_width": target_width,
            "target_height": target_height}),)


class CLIPTextEncodeSDXLRefiner:
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ascore": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}),
            "width": ("INT", {"default": 1024, "min": 0, "max": MAX_RESOLUTION}),
            "height": ("INT", {"default": 1024, "min": 0, "max": MAX_RESOLUTION}),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "clip": ("CLIP", {}),
        }}

    def encode(self, clip, ascore, width, height, text):
        return (clip.encode_conditioning(text, {"aesthetic_score": ascore, "width": width, "height": height}),)


# --- conditioning ---------------------------------------------------------------------------------

class ConditioningCombine:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_1": ("CONDITIONING",), "conditioning_2": ("CONDITIONING",)}}

    def combine(self, conditioning_1, conditioning_2):
        return (conditioning_1 + conditioning_2,)


class ConditioningAverage:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "addWeighted"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",),
                             "conditioning_to_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0,
                                                                    "step": 0.01})}}

    def addWeighted(self, conditioning_to, conditioning_from, conditioning_to_strength):
        import torch

        if len(conditioning_from) > 1:
            log.warning("ConditioningAverage: conditioning_from has more than one entry; only the first is used")
        cond_from = conditioning_from[0][0]
        pooled_from = conditioning_from[0][1].get("pooled_output", None)
        out = []
        for t1, opts in conditioning_to:
            pooled_to = opts.get("pooled_output", pooled_from)
            t0 = cond_from[:, :t1.shape[1]]
            if t0.shape[1] < t1.shape[1]:
                t0 = torch.cat([t0] + [torch.zeros((1, t1.shape[1] - t0.shape[1], t1.shape[2]))], dim=1)
            tw = torch.mul(t1, conditioning_to_strength) + torch.mul(t0, 1.0 - conditioning_to_strength)
            new = opts.copy()
            if pooled_from is not None and pooled_to is not None:
                new["pooled_output"] = (torch.mul(pooled_to, conditioning_to_strength)
                                        + torch.mul(pooled_from, 1.0 - conditioning_to_strength))
            elif pooled_from is not None:
                new["pooled_output"] = pooled_from
            out.append([tw, new])
        return (out,)


class ConditioningConcat:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "concat"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning_to": ("CONDITIONING",), "conditioning_from": ("CONDITIONING",)}}

    def concat(self, conditioning_to, conditioning_from):
        import torch

        if len(conditioning_from) > 1:
            log.warning("ConditioningConcat: conditioning_from has more than one entry; only the first is used")
        cond_from = conditioning_from[0][0]
        return ([[torch.cat((t1, cond_from), 1), opts.copy()] for t1, opts in conditioning_to],)


class ConditioningSetArea:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "width": ("INT", {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                             "height": ("INT", {"default": 64, "min": 64, "max": MAX_RESOLUTION, "step": 8}),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})}}

    def append(self, conditioning, width, height, x, y, strength):
        return (conditioning_set_values(conditioning, {"area": (height // 8, width // 8, y // 8, x // 8),
                                                       "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetAreaPercentage:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls):
        frac = {"min": 0, "max": 1.0, "step": 0.01}
        return {"required": {"conditioning": ("CONDITIONING",),
                             "width": ("FLOAT", {"default": 1.0, **frac}), "height": ("FLOAT", {"default": 1.0, **frac}),
                             "x": ("FLOAT", {"default": 0, **frac}), "y": ("FLOAT", {"default": 0, **frac}),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})}}

    def append(self, conditioning, width, height, x, y, strength):
        return (conditioning_set_values(conditioning, {"area": ("percentage", height, width, y, x),
                                                       "strength": strength, "set_area_to_bounds": False}),)


class ConditioningSetMask:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",), "mask": ("MASK",),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
                             "set_cond_area": (["default", "mask bounds"],)}}

    def append(self, conditioning, mask, set_cond_area, strength):
        if len(mask.shape) < 3:
            mask = mask.unsqueeze(0)
        return (conditioning_set_values(conditioning, {"mask": mask,
                                                       "set_area_to_bounds": set_cond_area != "default",
                                                       "mask_strength": strength}),)


class ConditioningZeroOut:
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "zero_out"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",)}}

    def zero_out(self, conditioning):
        import torch

        out = []
        for t, opts in conditioning:
            d = opts.copy()
            for key in ("pooled_output", "conditioning_lyrics"):
                if d.get(key) is not None:
                    d[key] = torch.zeros_like(d[key])
            out.append([torch.zeros_like(t), d])
        return (out,)


class ConditioningSetTimestepRange:
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set_range"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",),
                             "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
                             "end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001})}}

    def set_range(self, conditioning, start, end):
        return (conditioning_set_values(conditioning, {"start_percent": start, "end_percent": end}),)


class InpaintModelConditioning:
    CATEGORY = "conditioning/inpaint"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "vae": ("VAE",),
                             "pixels": ("IMAGE",), "mask": ("MASK",),
                             "noise_mask": ("BOOLEAN", {"default": True, "tooltip": (
                                 "Add a noise mask to the latent so sampling will only happen within the mask. "
                                 "Might improve results or completely break things depending on the model.")})}}

    def encode(self, positive, negative, pixels, vae, mask, noise_mask=True):
        import torch

        x = (pixels.shape[1] // 8) * 8
        y = (pixels.shape[2] // 8) * 8
        mask = torch.nn.functional.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])),
                                               size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")
        orig_pixels = pixels
        pixels = orig_pixels.clone()
        if pixels.shape[1] != x or pixels.shape[2] != y:
            x_off = (pixels.shape[1] % 8) // 2
            y_off = (pixels.shape[2] % 8) // 2
            pixels = pixels[:, x_off:x + x_off, y_off:y + y_off, :]
            mask = mask[:, :, x_off:x + x_off, y_off:y + y_off]
        m = (1.0 - mask.round()).squeeze(1)
        for i in range(3):
            pixels[:, :, :, i] -= 0.5
            pixels[:, :, :, i] *= m
            pixels[:, :, :, i] += 0.5
        concat_latent = vae.encode(pixels)
        orig_latent = vae.encode(orig_pixels)
        out_latent = {"samples": orig_latent}
        if noise_mask:
            out_latent["noise_mask"] = mask
        out = [conditioning_set_values(c, {"concat_latent_image": concat_latent, "concat_mask": mask})
               for c in (positive, negative)]
        return (out[0], out[1], out_latent)


# --- sampling -------------------------------------------------------------------------------------

def _preview_callback(model, steps: int):
    """Per-step progress (and latent2rgb previews when enabled) through the engine's progress channel."""
    from hearth.engine.progress import report_progress
    from hearth.runtime.preview import previewer_for

    ctx = current()
    previewer = previewer_for(model, ctx.config, ctx.folders)
    max_size = getattr(ctx.config, "preview_size", 512)

    def callback(step, x0, x, total_steps):
        preview = None
        if previewer is not None:
            image = previewer(x0)
            if image is not None:
                preview = ("JPEG", image, max_size)
        report_progress(min(step + 1, total_steps), total_steps, preview)  # adaptive samplers may overrun

    return callback


def common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise=1.0,
                    disable_noise=False, start_step=None, last_step=None, force_full_denoise=False):
    import torch

    from hearth.sampling.guidance import repeat_to_batch_size
    from hearth.sampling.ksampler import ksample
    from hearth.sampling.noise import prepare_noise

    latent_image = latent["samples"]
    channels = model.latent_format.channels
    if latent_image.shape[1] != channels and torch.count_nonzero(latent_image) == 0:
        latent_image = repeat_to_batch_size(latent_image, channels, dim=1)
    if disable_noise:
        noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")
    else:
        noise = prepare_noise(latent_image, seed, latent.get("batch_index"))
    samples = ksample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                      denoise=denoise, start_step=start_step, last_step=last_step,
                      force_full_denoise=force_full_denoise, noise_mask=latent.get("noise_mask"),
                      callback=_preview_callback(model, steps), seed=seed)
    out = latent.copy()
    out["samples"] = samples.cpu()
    return (out,)


class KSampler:
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"
    DESCRIPTION = "Uses the provided model, positive and negative conditioning to denoise the latent image."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "The random seed used for creating the noise."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                              "tooltip": "The number of steps used in the denoising process."}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01, "tooltip": (
                "The Classifier-Free Guidance scale balances creativity and adherence to the prompt. Higher values "
                "result in images more closely matching the prompt however too high values will negatively impact "
                "quality.")}),
            "sampler_name": (SAMPLER_NAMES, {"tooltip": ("The algorithm used when sampling, this can affect the "
                                                         "quality, speed, and style of the generated output.")}),
            "scheduler": (SCHEDULER_NAMES, {"tooltip": "The scheduler controls how noise is gradually removed to "
                                                       "form the image."}),
            "positive": ("CONDITIONING", {"tooltip": "The conditioning describing the attributes you want to "
                                                     "include in the image."}),
            "negative": ("CONDITIONING", {"tooltip": "The conditioning describing the attributes you want to "
                                                     "exclude from the image."}),
            "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": (
                "The amount of denoising applied, lower values will maintain the structure of the initial image "
                "allowing for image to image sampling.")}),
        }}

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0):
        return common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                               denoise=denoise)


class KSamplerAdvanced:
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "add_noise": (["enable", "disable"],),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (SAMPLER_NAMES,),
            "scheduler": (SCHEDULER_NAMES,),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "return_with_leftover_noise": (["disable", "enable"],),
        }}

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise, denoise=1.0):
        return common_ksampler(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                               latent_image, denoise=denoise, disable_noise=add_noise == "disable",
                               start_step=start_at_step, last_step=end_at_step,
                               force_full_denoise=return_with_leftover_noise != "enable")


# --- latents --------------------------------------------------------------------------------------

class EmptyLatentImage:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The empty latent image batch.",)
    FUNCTION = "generate"
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                              "tooltip": "The width of the latent images in pixels."}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                               "tooltip": "The height of the latent images in pixels."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096,
                                   "tooltip": "The number of latent images in the batch."}),
        }}

    def generate(self, width, height, batch_size=1):
        import torch

        return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


class LatentUpscale:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    # Custom node packs read these class attributes of ComfyUI's built-in class.
    upscale_methods = list(UPSCALE_METHODS)
    crop_methods = ["disabled", "center"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "upscale_method": (UPSCALE_METHODS,),
                             "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "crop": (["disabled", "center"],)}}

    def upscale(self, samples, upscale_method, width, height, crop):
        from hearth.sampling.guidance import common_upscale

        if width == 0 and height == 0:
            return (samples,)
        s = samples.copy()
        lat = samples["samples"]
        if width == 0:
            height = max(64, height)
            width = max(64, round(lat.shape[-1] * height / lat.shape[-2]))
        elif height == 0:
            width = max(64, width)
            height = max(64, round(lat.shape[-2] * width / lat.shape[-1]))
        else:
            width, height = max(64, width), max(64, height)
        s["samples"] = common_upscale(lat, width // 8, height // 8, upscale_method, crop)
        return (s,)


class LatentUpscaleBy:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    upscale_methods = list(UPSCALE_METHODS)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "upscale_method": (UPSCALE_METHODS,),
                             "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, samples, upscale_method, scale_by):
        from hearth.sampling.guidance import common_upscale

        s = samples.copy()
        lat = samples["samples"]
        width = round(lat.shape[-1] * scale_by)
        height = round(lat.shape[-2] * scale_by)
        s["samples"] = common_upscale(lat, width, height, upscale_method, "disabled")
        return (s,)


class SaveLatent:
    CATEGORY = "_for_testing"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save(self, samples, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        import torch
        from safetensors.torch import save_file

        from hearth.paths import save_image_path

        ctx = current()
        folder, filename, counter, subfolder, _ = save_image_path(filename_prefix, ctx.folders.output)
        metadata = None
        if not ctx.config.disable_metadata:
            metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
            for k, v in (extra_pnginfo or {}).items():
                metadata[k] = json.dumps(v)
        name = f"{filename}_{counter:05}_.latent"
        os.makedirs(folder, exist_ok=True)
        save_file({"latent_tensor": samples["samples"].contiguous(), "latent_format_version_0": torch.tensor([])},
                  os.path.join(folder, name), metadata=metadata)
        return {"ui": {"latents": [{"filename": name, "subfolder": subfolder, "type": "output"}]}}


def _latent_files() -> list[str]:
    folder = current().folders.input
    try:
        return sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)) and f.endswith(".latent"))
    except FileNotFoundError:
        return []


class LoadLatent:
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": [_latent_files()]}}

    def load(self, latent):
        from safetensors.torch import load_file

        from hearth.nodes.builtin.image import resolve_annotated

        path = resolve_annotated(latent)
        if path is None:
            raise FileNotFoundError(f"Invalid latent file: {latent}")
        data = load_file(str(path), device="cpu")
        multiplier = 1.0 if "latent_format_version_0" in data else 1.0 / 0.18215
        return ({"samples": data["latent_tensor"].float() * multiplier},)

    @classmethod
    def IS_CHANGED(cls, latent):
        from hearth.nodes.builtin.image import resolve_annotated

        path = resolve_annotated(latent)
        if path is None:
            return ""
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, latent):
        from hearth.nodes.builtin.image import resolve_annotated

        if not isinstance(latent, str) or resolve_annotated(latent) is None:
            return f"Invalid latent file: {latent}"
        return True


# --- VAE ------------------------------------------------------------------------------------------

class VAEDecode:
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded image.",)
    FUNCTION = "decode"
    DESCRIPTION = "Decodes latent images back into pixel space images."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                             "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."})}}

    def decode(self, vae, samples):
        _require(vae, "vae", "VAEDecode")
        return (vae.decode(samples["samples"]),)


class VAEDecodeTiled:
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "samples": ("LATENT",), "vae": ("VAE",),
            "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 32}),
            "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
            "temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4,
                                      "tooltip": "Video VAEs only: frames decoded per pass."}),
            "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4,
                                         "tooltip": "Video VAEs only: frames shared by neighbouring passes."}),
        }}

    def decode(self, vae, samples, tile_size, overlap=64, temporal_size=64, temporal_overlap=8):
        if tile_size < overlap * 4:
            overlap = tile_size // 4
        r = vae.upscale_ratio
        return (vae.decode_tiled(samples["samples"], tile_x=tile_size // r, tile_y=tile_size // r,
                                 overlap=overlap // r),)


class VAEEncode:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae, pixels):
        _require(vae, "vae", "VAEEncode")
        return ({"samples": vae.encode(pixels[:, :, :, :3])},)


class VAEEncodeTiled:
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pixels": ("IMAGE",), "vae": ("VAE",),
            "tile_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64}),
            "overlap": ("INT", {"default": 64, "min": 0, "max": 4096, "step": 32}),
            "temporal_size": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 4,
                                      "tooltip": "Video VAEs only: frames encoded per pass."}),
            "temporal_overlap": ("INT", {"default": 8, "min": 4, "max": 4096, "step": 4,
                                         "tooltip": "Video VAEs only: frames shared by neighbouring passes."}),
        }}

    def encode(self, vae, pixels, tile_size, overlap, temporal_size=64, temporal_overlap=8):
        return ({"samples": vae.encode_tiled(pixels[:, :, :, :3], tile_x=tile_size, tile_y=tile_size,
                                             overlap=overlap)},)


class VAEEncodeForInpaint:
    CATEGORY = "latent/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), "mask": ("MASK",),
                             "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})}}

    def encode(self, vae, pixels, mask, grow_mask_by=6):
        import torch

        r = vae.downscale_ratio
        x = (pixels.shape[1] // r) * r
        y = (pixels.shape[2] // r) * r
        mask = torch.nn.functional.interpolate(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])),
                                               size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")
        pixels = pixels.clone()
        if pixels.shape[1] != x or pixels.shape[2] != y:
            x_off = (pixels.shape[1] % r) // 2
            y_off = (pixels.shape[2] % r) // 2
            pixels = pixels[:, x_off:x + x_off, y_off:y + y_off, :]
            mask = mask[:, :, x_off:x + x_off, y_off:y + y_off]
        if grow_mask_by == 0:
            mask_erosion = mask
        else:
            kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by))
            padding = math.ceil((grow_mask_by - 1) / 2)
            mask_erosion = torch.clamp(torch.nn.functional.conv2d(mask.round(), kernel, padding=padding), 0, 1)
        m = (1.0 - mask.round()).squeeze(1)
        for i in range(3):
            pixels[:, :, :, i] -= 0.5
            pixels[:, :, :, i] *= m
            pixels[:, :, :, i] += 0.5
        t = vae.encode(pixels)
        return ({"samples": t, "noise_mask": mask_erosion[:, :, :x, :y].round()},)


NODE_CLASS_MAPPINGS = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "CheckpointLoader": CheckpointLoader,
    "DiffusersLoader": DiffusersLoader,
    "UNETLoader": UNETLoader,
    "CLIPLoader": CLIPLoader,
    "DualCLIPLoader": DualCLIPLoader,
    "VAELoader": VAELoader,
    "LoraLoader": LoraLoader,
    "LoraLoaderModelOnly": LoraLoaderModelOnly,
    "CLIPTextEncode": CLIPTextEncode,
    "CLIPSetLastLayer": CLIPSetLastLayer,
    "CLIPTextEncodeSDXL": CLIPTextEncodeSDXL,
    "CLIPTextEncodeSDXLRefiner": CLIPTextEncodeSDXLRefiner,
    "ConditioningCombine": ConditioningCombine,
    "ConditioningAverage": ConditioningAverage,
    "ConditioningConcat": ConditioningConcat,
    "ConditioningSetArea": ConditioningSetArea,
    "ConditioningSetAreaPercentage": ConditioningSetAreaPercentage,
    "ConditioningSetMask": ConditioningSetMask,
    "ConditioningZeroOut": ConditioningZeroOut,
    "ConditioningSetTimestepRange": ConditioningSetTimestepRange,
    "InpaintModelConditioning": InpaintModelConditioning,
    "KSampler": KSampler,
    "KSamplerAdvanced": KSamplerAdvanced,
    "EmptyLatentImage": EmptyLatentImage,
    "LatentUpscale": LatentUpscale,
    "LatentUpscaleBy": LatentUpscaleBy,
    "SaveLatent": SaveLatent,
    "LoadLatent": LoadLatent,
    "VAEDecode": VAEDecode,
    "VAEDecodeTiled": VAEDecodeTiled,
    "VAEEncode": VAEEncode,
    "VAEEncodeTiled": VAEEncodeTiled,
    "VAEEncodeForInpaint": VAEEncodeForInpaint,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "CheckpointLoader": "Load Checkpoint With Config (DEPRECATED)",
    "UNETLoader": "Load Diffusion Model",
    "CLIPLoader": "Load CLIP",
    "VAELoader": "Load VAE",
    "LoraLoader": "Load LoRA",
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "CLIPSetLastLayer": "CLIP Set Last Layer",
    "ConditioningCombine": "Conditioning (Combine)",
    "ConditioningConcat": "Conditioning (Concat)",
    "ConditioningSetArea": "Conditioning (Set Area)",
    "ConditioningSetAreaPercentage": "Conditioning (Set Area with Percentage)",
    "ConditioningSetMask": "Conditioning (Set Mask)",
    "KSampler": "KSampler",
    "KSamplerAdvanced": "KSampler (Advanced)",
    "EmptyLatentImage": "Empty Latent Image",
    "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By",
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "VAEDecodeTiled": "VAE Decode (Tiled)",
    "VAEEncodeTiled": "VAE Encode (Tiled)",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
}

NODE_PYTHON_MODULES = {"CLIPTextEncodeSDXL": "comfy_extras.nodes_clip_sdxl",
                       "CLIPTextEncodeSDXLRefiner": "comfy_extras.nodes_clip_sdxl"}
