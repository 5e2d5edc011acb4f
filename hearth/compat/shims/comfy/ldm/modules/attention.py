"""ComfyUI's ``comfy.ldm.modules.attention``: the attention function patches call.

``optimized_attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
skip_output_reshape=False)`` takes q/k/v as ``[batch, tokens, heads * dim]`` (or, with ``skip_reshape``,
``[batch, heads, tokens, dim]``) and returns ``[batch, tokens, heads * dim]`` (or ``[batch, heads,
tokens, dim]`` with ``skip_output_reshape``), as ComfyUI's does; it is computed with PyTorch's scaled
dot-product attention, like the attention in Hearth's patched UNet walk (hearth/runtime/unet_patches.py,
whose attention replacements receive the same q/k/v layout). A 2-d mask gets a batch axis and a 3-d mask
a heads axis. ComfyUI's attention modules (CrossAttention, BasicTransformerBlock …) are not provided.
"""
from __future__ import annotations

from hearth.compat.shims_support import module_getattr


def optimized_attention(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False,
                        skip_output_reshape=False, **kwargs):
    import torch
    import torch.nn.functional as F

    if skip_reshape:
        batch, _, _, dim = q.shape
    else:
        batch, _, width = q.shape
        dim = width // heads
        q, k, v = (t.view(batch, -1, heads, dim).transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
    out_dtype = q.dtype
    if attn_precision == torch.float32 and q.dtype != torch.float32:
        q, k, v = q.float(), k.float(), v.float()
        if mask is not None and mask.is_floating_point():
            mask = mask.float()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False).to(out_dtype)
    if skip_output_reshape:
        return out
    return out.transpose(1, 2).reshape(batch, -1, heads * dim)


optimized_attention_masked = optimized_attention
attention_pytorch = optimized_attention


def optimized_attention_for_device(device=None, mask=False, small_input=False):
    return optimized_attention


__getattr__ = module_getattr("comfy.ldm.modules.attention")
