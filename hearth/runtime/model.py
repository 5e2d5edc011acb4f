"""The MODEL value: a denoising network + its noise parameterisation + its patches.

``apply_model(x, sigma, ...)`` returns the denoised estimate the samplers work with; ``extra_conds``
turns a conditioning entry into the network's inputs (text embedding, SDXL's vector, the inpainting
model's extra channels). Cloning is cheap: the network is shared, patches and options are copied.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from hearth.compat.model_api import ModelPatcherAPI, copy_model_options
from hearth.runtime.families import Family
from hearth.runtime.patcher import Patcher
from hearth.runtime.unet_patches import PatchableModel, has_patches, patched_forward
from hearth.sampling import guidance
from hearth.sampling.model_sampling import DiscreteSampling
from hearth.sampling.precision import compute_dtype


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin], as SDXL uses for its size and crop numbers."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _blank_inpaint_image_like(latent: torch.Tensor) -> torch.Tensor:
    """Latent-space value of a zero (grey) image, per channel."""
    blank = torch.ones_like(latent)
    for c, v in enumerate((0.8223, -0.6876, 0.6364, 0.1380)):
        if c < blank.shape[1]:
            blank[:, c] *= v
    return blank


class DiffusionModel(PatchableModel, ModelPatcherAPI):  # ModelPatcherAPI: ComfyUI names for packs
    def __init__(self, family: Family, patcher: Patcher, model_sampling: DiscreteSampling, manager,
                 ldm_to_diffusers: dict[str, str] | None = None, in_channels: int = 4) -> None:
        self.family = family
        self.patcher = patcher
        self.model_sampling = model_sampling
        self.manager = manager
        self.ldm_to_diffusers = ldm_to_diffusers or {}
        self.in_channels = in_channels
        self.model_options: dict[str, Any] = {"transformer_options": {}}  # ComfyUI's shape (packs index it)

    # --- identity / cloning ---------------------------------------------------------------------
    @property
    def latent_format(self):
        return self.model_options.get("latent_format") or self.family.latent  # a sampling patch may set it

    @property
    def inpaint(self) -> bool:
        return self.in_channels == self.latent_format.channels * 2 + 1

    @property
    def ip2p(self) -> bool:
        """InstructPix2Pix: the input image's latent is concatenated to the noisy latent."""
        return self.in_channels == self.latent_format.channels * 2

    @property
    def unet(self):
        return self.patcher.holder.module

    def clone(self) -> "DiffusionModel":
        other = DiffusionModel(self.family, self.patcher.clone(), self.model_sampling, self.manager,
                               self.ldm_to_diffusers, self.in_channels)
        other.model_options = copy_model_options(self.model_options)
        return other

    def hook_patcher(self, weighted_hooks, room=None) -> Patcher:
        """This model's patcher plus weight hooks' patches: ``[(WeightHook, keyframe strength)]``
        (see hearth/runtime/hooks.py; ``room``: keep the patched weights for reuse while it agrees)."""
        from hearth.runtime.hooks import model_hook_patcher

        return model_hook_patcher(self, weighted_hooks, room)

    def hook_memory_room(self):
        from hearth.runtime.hooks import memory_room

        return memory_room(self)

    def prepare(self) -> torch.device:
        device = self.manager.load(self.patcher.holder)
        self.patcher.activate()
        return device

    # --- running --------------------------------------------------------------------------------
    def apply_model(self, x, sigma, c_crossattn=None, y=None, c_concat=None, transformer_options=None,
                    gligen=None, control=None,
                    **_ignored) -> torch.Tensor:
        ms = self.model_sampling
        xc = ms.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc, c_concat.to(device=xc.device, dtype=xc.dtype)], dim=1)
        holder = self.patcher.holder
        dtype, device = holder.dtype, holder.device
        t = ms.timestep(sigma).float()
        context = c_crossattn.to(device=device, dtype=dtype) if c_crossattn is not None else None
        labels = y.to(device=device, dtype=dtype) if y is not None else None
        residuals = {}
        if control is not None:  # ControlNet / T2I-Adapter residuals (see hearth.runtime.controlnet)
            from hearth.runtime.controlnet import unet_residuals

            residuals = unet_residuals(self.unet, control, xc.shape, device, dtype)
        xc, t = xc.to(device=device, dtype=dtype), t.to(device)
        with contextlib.ExitStack() as stack:
            stack.enter_context(compute_dtype(self.model_options.get("compute_dtype"), dtype, device))
            if gligen is not None:  # GLIGEN boxes: fusers attached to the transformer blocks for this call
                from hearth.runtime.gligen import patched

                stack.enter_context(holder.lock)
                stack.enter_context(patched(self.unet, gligen, x.shape, device, dtype))
            if has_patches(transformer_options):  # ComfyUI-style patches: walk the blocks (unet_patches.py)
                with holder.lock:
                    out = patched_forward(self.unet, xc, t, context, labels, transformer_options, **residuals)
            else:
                compiled = self.model_options.get("compiled_network")  # TorchCompileModel
                network = self.unet if compiled is None else compiled.bind(self.unet)
                if labels is not None:
                    residuals["class_labels"] = labels
                out = network(xc, t, encoder_hidden_states=context, return_dict=False, **residuals)[0]
        return ms.calculate_denoised(sigma, out.float(), x)

    def extra_conds(self, **kw) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.inpaint:
            out["c_concat"] = guidance.CondNoiseShape(self._concat_cond(**kw))
        elif self.ip2p:
            out["c_concat"] = guidance.CondNoiseShape(self._ip2p_cond(**kw))
        adm = self._encode_adm(**kw)
        if adm is not None:
            out["y"] = guidance.CondRegular(adm)
        if kw.get("cross_attn") is not None:
            out["c_crossattn"] = guidance.CondCrossAttn(kw["cross_attn"])
        return out

    def _concat_cond(self, **kw) -> torch.Tensor:
        noise = kw["noise"]
        device = kw["device"]
        mask = kw.get("concat_mask", kw.get("denoise_mask"))
        image = kw.get("concat_latent_image")
        if image is None:
            image = kw.get("latent_image")
        else:
            image = self.latent_format.process_in(image)
        parts = []
        if mask is not None:
            if image.shape[1:] != noise.shape[1:]:
                image = guidance.common_upscale(image, noise.shape[-1], noise.shape[-2], "bilinear", "center")
            image = guidance.resize_to_batch_size(image, noise.shape[0])
            if mask.ndim == noise.ndim:
                mask = mask[:, :1]
            mask = mask.reshape((-1, 1) + tuple(mask.shape[-2:]))
            if mask.shape[-2:] != noise.shape[-2:]:
                mask = guidance.common_upscale(mask, noise.shape[-1], noise.shape[-2], "bilinear", "center")
            mask = guidance.resize_to_batch_size(mask.round(), noise.shape[0])
            parts = [mask.to(device), image.to(device)]
        else:
            parts = [torch.ones_like(noise)[:, :1], _blank_inpaint_image_like(noise)]
        return torch.cat(parts, dim=1)

    def _ip2p_cond(self, **kw) -> torch.Tensor:
        noise = kw["noise"]
        image = kw.get("concat_latent_image")
        if image is None:
            return torch.zeros_like(noise)
        image = image.to(device=kw["device"], dtype=noise.dtype)
        if image.shape[1:] != noise.shape[1:]:
            image = guidance.common_upscale(image, noise.shape[-1], noise.shape[-2], "bilinear", "center")
        return guidance.resize_to_batch_size(image, noise.shape[0])

    def _encode_adm(self, **kw):
        kind = self.family.adm
        if kind is None:
            return None
        if kind == "unclip" or kw.get("unclip_conditioning") is not None:
            from hearth.runtime import unclip

            if kind == "unclip":
                return unclip.encode_adm(self.unet.config.projection_class_embeddings_input_dim, **kw)
            kw = dict(kw, pooled_output=unclip.sdxl_pooled(**kw))  # SDXL Revision
        pooled = kw.get("pooled_output")
        if pooled is None:
            raise ValueError("this model needs a pooled text embedding (use its own CLIP to encode the prompt)")
        width, height = kw.get("width", 768), kw.get("height", 768)
        crop_w, crop_h = kw.get("crop_w", 0), kw.get("crop_h", 0)
        if kind == "sdxl":
            numbers = [height, width, crop_h, crop_w, kw.get("target_height", height), kw.get("target_width", width)]
        else:
            default_score = 2.5 if kw.get("prompt_type", "") == "negative" else 6
            numbers = [height, width, crop_h, crop_w, kw.get("aesthetic_score", default_score)]
        flat = torch.flatten(torch.cat([timestep_embedding(torch.Tensor([n]), 256) for n in numbers]))
        flat = flat.unsqueeze(0).repeat(pooled.shape[0], 1)
        return torch.cat((pooled.to(flat.device), flat), dim=1)
