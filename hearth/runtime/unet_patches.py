"""ComfyUI's model-patch mechanism on a diffusers ``UNet2DConditionModel``.

A MODEL's ``model_options["transformer_options"]`` may hold

* ``"patches"``: lists of callables under ComfyUI's names — ``input_block_patch(h, opts)``,
  ``input_block_patch_after_skip(h, opts)``, ``output_block_patch(h, hsp, opts) -> (h, hsp)``,
  ``attn1_patch`` / ``attn2_patch`` ``(n, context, value, extra) -> (n, context, value)`` and
  ``attn1_output_patch`` / ``attn2_output_patch`` ``(out, extra) -> out``;
* ``"patches_replace"``: ``{"attn1"|"attn2": {(block_name, block_id[, transformer_index]): fn}}`` where
  ``fn(q, k, v, extra)`` replaces the attention itself (q/k/v after the projections, ``[b, seq, heads*dim]``).

Blocks are numbered as in the original (ldm) UNet: ``("input", n)`` counts conv_in, every res(+attention)
block and every downsampler; ``("middle", 0)``; ``("output", n)`` counts every up res(+attention) block.

The diffusers network is shared between clones, so nothing is left installed on it: when a call carries
patches, ``patched_forward`` walks the diffusers sub-modules in ldm order (so block patches can act
between them) and, only while it runs, puts attention processors on the attention modules that read that
call's options. A call without patches uses the plain diffusers forward. ``middle_patch`` (between a
transformer block's self- and cross-attention) and ``emb_patch`` are not supported.
"""
from __future__ import annotations

import re
from typing import Callable

import torch
import torch.nn.functional as F

ATTN_PATCHES = ("attn1_patch", "attn2_patch", "attn1_output_patch", "attn2_output_patch")
_ATTN_NAME = re.compile(r"transformer_blocks\.(\d+)\.(attn[12])\.processor$")


# --- attention helpers the patches use --------------------------------------------------------------

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask=None) -> torch.Tensor:
    """Multi-head attention on ``[b, seq, heads*dim]`` tensors (ComfyUI's ``optimized_attention``)."""
    b = q.shape[0]
    dim = q.shape[-1] // heads
    q, k, v = (t.reshape(b, -1, heads, dim).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(b, -1, heads * dim).to(q.dtype)


def attention_with_scores(q, k, v, heads: int, attn_precision=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention done explicitly; also returns the softmaxed scores ``[b*heads, seq_q, seq_k]``."""
    b = q.shape[0]
    dim = q.shape[-1] // heads
    q, k, v = (t.reshape(b, -1, heads, dim).transpose(1, 2).reshape(b * heads, -1, dim) for t in (q, k, v))
    if attn_precision == torch.float32:
        sim = torch.bmm(q.float(), k.float().transpose(1, 2)) * dim ** -0.5
    else:
        sim = torch.bmm(q, k.transpose(1, 2)) * dim ** -0.5
    sim = sim.softmax(dim=-1)
    out = torch.bmm(sim.to(v.dtype), v)
    out = out.reshape(b, heads, -1, dim).transpose(1, 2).reshape(b, -1, heads * dim)
    return out, sim


# --- model_options editing (copy-on-write: clones share nested dicts) -------------------------------

def _transformer_options(model_options: dict) -> dict:
    to = dict(model_options.get("transformer_options", {}))
    model_options["transformer_options"] = to
    return to


def add_patch(model_options: dict, patch: Callable, name: str) -> None:
    to = _transformer_options(model_options)
    patches = dict(to.get("patches", {}))
    patches[name] = list(patches.get(name, [])) + [patch]
    to["patches"] = patches


def replace_patch(model_options: dict, patch: Callable, name: str, block_name: str, number: int,
                  transformer_index: int | None = None) -> None:
    to = _transformer_options(model_options)
    replace = dict(to.get("patches_replace", {}))
    table = dict(replace.get(name, {}))
    key = (block_name, number) if transformer_index is None else (block_name, number, transformer_index)
    table[key] = patch
    replace[name] = table
    to["patches_replace"] = replace


def set_model_options_patch_replace(model_options: dict, patch, name, block_name, number, transformer_index=None):
    """A copy of ``model_options`` with one attention replacement added (as ComfyUI's function of that name)."""
    out = dict(model_options)
    replace_patch(out, patch, name, block_name, number, transformer_index)
    return out


def set_model_options_post_cfg_function(model_options: dict, fn, disable_cfg1_optimization=False) -> dict:
    out = dict(model_options)
    out["sampler_post_cfg_function"] = list(out.get("sampler_post_cfg_function", [])) + [fn]
    if disable_cfg1_optimization:
        out["disable_cfg1_optimization"] = True
    return out


class PatchableModel:
    """ComfyUI's ModelPatcher ``set_model_*`` methods, on anything with a ``model_options`` dict."""

    model_options: dict

    def set_model_patch(self, patch, name):
        add_patch(self.model_options, patch, name)

    def set_model_patch_replace(self, patch, name, block_name, number, transformer_index=None):
        replace_patch(self.model_options, patch, name, block_name, number, transformer_index)

    def set_model_attn1_patch(self, patch):
        self.set_model_patch(patch, "attn1_patch")

    def set_model_attn2_patch(self, patch):
        self.set_model_patch(patch, "attn2_patch")

    def set_model_attn1_output_patch(self, patch):
        self.set_model_patch(patch, "attn1_output_patch")

    def set_model_attn2_output_patch(self, patch):
        self.set_model_patch(patch, "attn2_output_patch")

    def set_model_attn1_replace(self, patch, block_name, number, transformer_index=None):
        self.set_model_patch_replace(patch, "attn1", block_name, number, transformer_index)

    def set_model_attn2_replace(self, patch, block_name, number, transformer_index=None):
        self.set_model_patch_replace(patch, "attn2", block_name, number, transformer_index)

    def set_model_input_block_patch(self, patch):
        self.set_model_patch(patch, "input_block_patch")

    def set_model_input_block_patch_after_skip(self, patch):
        self.set_model_patch(patch, "input_block_patch_after_skip")

    def set_model_output_block_patch(self, patch):
        self.set_model_patch(patch, "output_block_patch")

    def set_model_unet_function_wrapper(self, wrapper):
        self.model_options["model_function_wrapper"] = wrapper

    def set_model_denoise_mask_function(self, fn):
        self.model_options["denoise_mask_function"] = fn

    def set_model_sampler_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options["sampler_cfg_function"] = fn
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_post_cfg_function(self, fn, disable_cfg1_optimization=False):
        self.model_options.update(set_model_options_post_cfg_function(self.model_options, fn,
                                                                      disable_cfg1_optimization))


def has_patches(transformer_options: dict | None) -> bool:
    if not transformer_options:
        return False
    if any(transformer_options.get("patches", {}).values()):
        return True
    return any(transformer_options.get("patches_replace", {}).values())


def _needs_attention(options: dict) -> bool:
    patches = options.get("patches", {})
    return any(patches.get(k) for k in ATTN_PATCHES) or any(options.get("patches_replace", {}).values())


# --- attention processors for one call ------------------------------------------------------------

class _PatchedAttention:
    """Attention processor applying the current call's attention patches; otherwise defers to ``inner``."""

    def __init__(self, options: dict, kind: str, block_index: int, inner) -> None:
        self.options = options
        self.kind = kind
        self.block_index = block_index
        self.inner = inner

    def _extra(self, attn) -> dict:
        extra = {k: v for k, v in self.options.items() if k not in ("patches", "patches_replace")}
        extra["block_index"] = self.block_index
        extra["n_heads"] = attn.heads
        extra["dim_head"] = attn.to_q.out_features // attn.heads
        extra["attn_precision"] = torch.float32 if getattr(attn, "upcast_attention", False) else None
        return extra

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        opts = self.options
        patches = opts.get("patches", {})
        pre = patches.get(f"{self.kind}_patch") or ()
        post = patches.get(f"{self.kind}_output_patch") or ()
        table = opts.get("patches_replace", {}).get(self.kind, {})
        block = opts.get("block")
        fn = None
        if block is not None and table:
            fn = table.get((block[0], block[1], self.block_index), table.get(tuple(block)))
        if not pre and not post and fn is None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        extra = self._extra(attn)
        n = hidden_states
        context = encoder_hidden_states if encoder_hidden_states is not None else n
        value = context
        for p in pre:
            n, context, value = p(n, context, value, extra)
        q, k, v = attn.to_q(n), attn.to_k(context), attn.to_v(value)
        out = fn(q, k, v, extra) if fn is not None else attention(q, k, v, attn.heads, None)
        out = attn.to_out[1](attn.to_out[0](out))
        for p in post:
            out = p(out, extra)
        return out


# --- the forward pass in ldm block order --------------------------------------------------------------

def _run_transformer(module, h, context, opts):
    opts["activations_shape"] = list(h.shape)
    h = module(h, encoder_hidden_states=context, return_dict=False)[0]
    opts["transformer_index"] = opts.get("transformer_index", 0) + 1
    return h


def _after_input(h, hs, patches, opts):
    for p in patches.get("input_block_patch", ()):
        h = p(h, opts)
    hs.append(h)
    for p in patches.get("input_block_patch_after_skip", ()):
        h = p(h, opts)
    return h


def _forward(unet, x, t, context, class_labels, opts, down_residuals=None, mid_residual=None, intrablock=None):
    patches = opts.get("patches", {})
    # T2I-Adapter features, with diffusers' meaning: added after a cross-attention block's last pair, or after
    # a block without attention (its downsampler included); either way its last skip output gets them too
    intrablock = list(intrablock) if intrablock else []
    opts["original_shape"] = list(x.shape)
    opts["transformer_index"] = 0
    t_emb = unet.get_time_embed(sample=x, timestep=t)
    emb = unet.time_embedding(t_emb, None)
    class_emb = unet.get_class_embed(sample=x, class_labels=class_labels)
    if class_emb is not None:
        emb = torch.cat([emb, class_emb], dim=-1) if unet.config.class_embeddings_concat else emb + class_emb
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)

    hs: list[torch.Tensor] = []
    block_id = 0
    opts["block"] = ("input", 0)
    h = _after_input(unet.conv_in(x), hs, patches, opts)
    for down in unet.down_blocks:
        attentions = getattr(down, "attentions", None)
        for b, resnet in enumerate(down.resnets):
            block_id += 1
            opts["block"] = ("input", block_id)
            h = resnet(h, emb)
            if attentions is not None:
                h = _run_transformer(attentions[b], h, context, opts)
                if intrablock and b == len(down.resnets) - 1:
                    h = h + intrablock.pop(0)
            h = _after_input(h, hs, patches, opts)
        if down.downsamplers is not None:
            block_id += 1
            opts["block"] = ("input", block_id)
            for sampler in down.downsamplers:
                h = sampler(h)
            h = _after_input(h, hs, patches, opts)
        if attentions is None and intrablock:
            # diffusers adds this in place to a tensor its last skip output also holds: both get it
            extra = intrablock.pop(0)
            h, hs[-1] = h + extra, hs[-1] + extra

    opts["block"] = ("middle", 0)
    mid = unet.mid_block
    if mid is not None:
        h = mid.resnets[0](h, emb)
        for attn, resnet in zip(mid.attentions, mid.resnets[1:]):
            h = _run_transformer(attn, h, context, opts)
            h = resnet(h, emb)
    if intrablock and h.shape == intrablock[0].shape:
        h = h + intrablock.pop(0)
    if mid_residual is not None:
        h = h + mid_residual

    residuals = list(down_residuals) if down_residuals is not None else None
    block_id = -1
    for up in unet.up_blocks:
        attentions = getattr(up, "attentions", None)
        last = len(up.resnets) - 1
        for b, resnet in enumerate(up.resnets):
            block_id += 1
            opts["block"] = ("output", block_id)
            hsp = hs.pop()
            if residuals:
                hsp = hsp + residuals.pop()
            for p in patches.get("output_block_patch", ()):
                h, hsp = p(h, hsp, opts)
            h = resnet(torch.cat([h, hsp], dim=1), emb)
            if attentions is not None:
                h = _run_transformer(attentions[b], h, context, opts)
            if b == last and up.upsamplers is not None:
                size = tuple(hs[-1].shape[2:]) if hs else None
                for sampler in up.upsamplers:
                    h = sampler(h, output_size=size)
    if unet.conv_norm_out is not None:
        h = unet.conv_act(unet.conv_norm_out(h))
    return unet.conv_out(h)


def patched_forward(unet, x, t, context=None, class_labels=None, transformer_options=None,
                    down_block_additional_residuals=None, mid_block_additional_residual=None,
                    down_intrablock_additional_residuals=None) -> torch.Tensor:
    """The UNet's output for one call, honouring ``transformer_options`` patches (see the module doc)."""
    opts = dict(transformer_options or {})
    if not _needs_attention(opts):
        return _forward(unet, x, t, context, class_labels, opts, down_block_additional_residuals,
                        mid_block_additional_residual, down_intrablock_additional_residuals)
    saved = unet.attn_processors
    installed = {}
    for name, proc in saved.items():
        m = _ATTN_NAME.search(name)
        installed[name] = _PatchedAttention(opts, m.group(2), int(m.group(1)), proc) if m else proc
    unet.set_attn_processor(installed)  # (set_attn_processor empties the dict it is given)
    try:
        return _forward(unet, x, t, context, class_labels, opts, down_block_additional_residuals,
                        mid_block_additional_residual, down_intrablock_additional_residuals)
    finally:
        unet.set_attn_processor(dict(saved))



class LazyCompiled:
    """``torch.compile`` of the shared network with one backend, done on first use and kept per network."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._compiled: dict[int, Callable] = {}

    def bind(self, unet) -> Callable:
        fn = self._compiled.get(id(unet))
        if fn is None:
            fn = torch.compile(unet, backend=self.backend)
            self._compiled = {id(unet): fn}
        return fn
