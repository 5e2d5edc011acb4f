"""Tiny random-weight vision files in their real key layouts: CLIP vision (Hugging Face and OpenCLIP),
SigLIP, T2I style adapters, Redux, unCLIP checkpoints and GLIGEN. Shapes are written out here from the
original architectures, independently of the loaders."""
from __future__ import annotations

import torch

from tests.runtime import tiny


def hf_vision_shapes(hidden=32, layers=3, inner=64, patch=4, grid=4, proj: int | None = 24, siglip=False,
                     llava: int | None = None) -> dict[str, tuple]:
    p = "vision_model."
    keys = {f"{p}embeddings.patch_embedding.weight": (hidden, 3, patch, patch),
            f"{p}embeddings.position_embedding.weight": (grid * grid + (0 if siglip else 1), hidden),
            f"{p}post_layernorm.weight": (hidden,), f"{p}post_layernorm.bias": (hidden,)}
    if siglip:
        keys[f"{p}embeddings.patch_embedding.bias"] = (hidden,)
        # the attention-pooling head SigLIP files carry (ComfyUI ignores it)
        keys[f"{p}head.probe"] = (1, 1, hidden)
        keys[f"{p}head.layernorm.weight"] = (hidden,)
        keys[f"{p}head.layernorm.bias"] = (hidden,)
    else:
        keys[f"{p}embeddings.class_embedding"] = (hidden,)
        keys[f"{p}pre_layrnorm.weight"] = (hidden,)
        keys[f"{p}pre_layrnorm.bias"] = (hidden,)
    keys.update(tiny.hf_encoder_layer_shapes(p, layers, hidden, inner))
    if proj:
        keys["visual_projection.weight"] = (proj, hidden)
    if llava:
        keys["multi_modal_projector.linear_1.weight"] = (llava, hidden)
        keys["multi_modal_projector.linear_1.bias"] = (llava,)
        keys["multi_modal_projector.linear_2.weight"] = (llava, llava)
        keys["multi_modal_projector.linear_2.bias"] = (llava,)
    return keys


def openclip_visual_shapes(hidden=32, layers=3, inner=64, patch=4, grid=4, proj=24) -> dict[str, tuple]:
    keys = {"class_embedding": (hidden,), "positional_embedding": (grid * grid + 1, hidden),
            "conv1.weight": (hidden, 3, patch, patch), "ln_pre.weight": (hidden,), "ln_pre.bias": (hidden,),
            "ln_post.weight": (hidden,), "ln_post.bias": (hidden,), "proj": (hidden, proj)}
    keys.update(tiny.openclip_block_shapes("transformer.resblocks", layers, hidden, inner))
    return keys


def style_adapter_shapes(width=32, context=32, layers=2, tokens=4) -> dict[str, tuple]:
    keys = {"style_embedding": (1, tokens, width), "proj": (width, context), "ln_pre.weight": (width,),
            "ln_pre.bias": (width,), "ln_post.weight": (width,), "ln_post.bias": (width,)}
    keys.update(tiny.openclip_block_shapes("transformer_layes", layers, width, 4 * width))
    return keys


def hf_vision(seed=21, **kw) -> dict[str, torch.Tensor]:
    return tiny.materialise(hf_vision_shapes(**kw), torch.Generator().manual_seed(seed))


def openclip_vision(seed=22, prefix="visual.", **kw) -> dict[str, torch.Tensor]:
    return tiny.materialise(openclip_visual_shapes(**kw), torch.Generator().manual_seed(seed), prefix)


def style_adapter(seed=23, **kw) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = tiny.materialise(style_adapter_shapes(**kw), g)
    sd["style_embedding"] = 0.5 * torch.randn(sd["style_embedding"].shape, generator=g)
    return sd


def redux(seed=24, siglip=32, out=32) -> dict[str, torch.Tensor]:
    shapes = {"redux_up.weight": (out * 3, siglip), "redux_up.bias": (out * 3,),
              "redux_down.weight": (out, out * 3), "redux_down.bias": (out,)}
    return tiny.materialise(shapes, torch.Generator().manual_seed(seed))


# An SD2.x unCLIP UNet: linear projections, an ADM input of twice the image embedding width
def unclip_checkpoint(seed=25, embed=24) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    spec = tiny.UNetSpec(linear=True, down_depth=(1, 1), adm=2 * embed)
    sd = tiny.materialise(tiny.unet_shapes(spec), g, "model.diffusion_model.")
    sd.update(tiny.materialise(tiny.vae_shapes(), g, "first_stage_model."))
    sd.update(tiny.materialise(tiny.openclip_shapes(), g, "cond_stage_model.model."))
    sd.update(tiny.materialise(openclip_visual_shapes(proj=embed), g, "embedder.model.visual."))
    # the noise augmentor's schedule buffers real checkpoints carry (the loader recomputes them)
    sd["noise_augmentor.betas"] = torch.zeros(1000)
    sd["noise_augmentor.alphas_cumprod"] = torch.zeros(1000)
    return sd


def gligen_shapes(blocks: dict[str, int], key_dim=32, pos_hidden=64, fourier=8) -> dict[str, tuple]:
    """GLIGEN file: a position net and one gated self-attention "fuser" per transformer block."""
    keys = {"position_net.null_positive_feature": (key_dim,),
            "position_net.null_position_feature": (fourier * 2 * 4,),
            "position_net.linears.0.weight": (pos_hidden, key_dim + fourier * 2 * 4),
            "position_net.linears.0.bias": (pos_hidden,),
            "position_net.linears.2.weight": (pos_hidden, pos_hidden), "position_net.linears.2.bias": (pos_hidden,),
            "position_net.linears.4.weight": (key_dim, pos_hidden), "position_net.linears.4.bias": (key_dim,)}
    for block, q in blocks.items():
        b = f"{block}.transformer_blocks.0.fuser"
        keys[f"{b}.linear.weight"] = (q, key_dim)
        keys[f"{b}.linear.bias"] = (q,)
        for n in ("to_q", "to_k", "to_v"):
            keys[f"{b}.attn.{n}.weight"] = (q, q)
        keys[f"{b}.attn.to_out.0.weight"] = (q, q)
        keys[f"{b}.attn.to_out.0.bias"] = (q,)
        keys[f"{b}.ff.net.0.proj.weight"] = (q * 8, q)
        keys[f"{b}.ff.net.0.proj.bias"] = (q * 8,)
        keys[f"{b}.ff.net.2.weight"] = (q, q * 4)
        keys[f"{b}.ff.net.2.bias"] = (q,)
        for n in ("norm1", "norm2"):
            keys[f"{b}.{n}.weight"] = (q,)
            keys[f"{b}.{n}.bias"] = (q,)
        keys[f"{b}.alpha_attn"] = ()
        keys[f"{b}.alpha_dense"] = ()
    return keys


# the tiny SD1.5 UNet's transformer blocks (tiny.SD15_UNET) and their widths
SD15_TRANSFORMERS = {"input_blocks.1.1": 32, "middle_block.1": 64, "output_blocks.2.1": 32,
                     "output_blocks.3.1": 32}


def gligen(seed=26) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = tiny.materialise(gligen_shapes(SD15_TRANSFORMERS), g)
    for k in sd:
        if k.endswith(("alpha_attn", "alpha_dense")):
            sd[k] = torch.tensor(0.8)
    return sd
