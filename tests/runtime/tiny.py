"""Tiny random-weight Stable Diffusion checkpoints in the original single-file key layouts.

Shapes are enumerated from the original architectures (openaimodel UNet, LDM autoencoder, HF CLIP-L,
OpenCLIP) — independently of the loader's key maps, so loading them checks detection and conversion.
Weights come from a seeded generator; everything is small enough that a txt2img run takes well under a
second on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

VOCAB = 49408


@dataclass
class UNetSpec:
    in_channels: int = 4
    out_channels: int = 4
    mc: int = 32
    mult: tuple = (1, 2)
    num_res: tuple = (1, 1)
    down_depth: tuple = (1, 0)            # per level, or per level a tuple per block
    up_depth: tuple | None = None         # per up level (highest first), per block; default from down_depth
    middle_depth: int | None = 1
    context: int = 32
    linear: bool = False
    adm: int | None = None
    extra: dict = field(default_factory=dict)


def unet_shapes(s: UNetSpec) -> dict[str, tuple]:
    ted = s.mc * 4
    keys: dict[str, tuple] = {}

    def lin(n, o, i, bias=True):
        keys[n + ".weight"] = (o, i)
        if bias:
            keys[n + ".bias"] = (o,)

    def conv(n, o, i, k=3):
        keys[n + ".weight"] = (o, i, k, k)
        keys[n + ".bias"] = (o,)

    def norm(n, c):
        keys[n + ".weight"] = (c,)
        keys[n + ".bias"] = (c,)

    def res(n, cin, cout):
        norm(f"{n}.in_layers.0", cin)
        conv(f"{n}.in_layers.2", cout, cin)
        lin(f"{n}.emb_layers.1", cout, ted)
        norm(f"{n}.out_layers.0", cout)
        conv(f"{n}.out_layers.3", cout, cout)
        if cin != cout:
            conv(f"{n}.skip_connection", cout, cin, 1)

    def st(n, c, depth):
        norm(f"{n}.norm", c)
        (lin if s.linear else (lambda a, o, i: conv(a, o, i, 1)))(f"{n}.proj_in", c, c)
        for d in range(depth):
            b = f"{n}.transformer_blocks.{d}"
            for a, kdim in (("attn1", c), ("attn2", s.context)):
                lin(f"{b}.{a}.to_q", c, c, False)
                lin(f"{b}.{a}.to_k", c, kdim, False)
                lin(f"{b}.{a}.to_v", c, kdim, False)
                lin(f"{b}.{a}.to_out.0", c, c)
            lin(f"{b}.ff.net.0.proj", c * 8, c)
            lin(f"{b}.ff.net.2", c, c * 4)
            for k in ("norm1", "norm2", "norm3"):
                norm(f"{b}.{k}", c)
        (lin if s.linear else (lambda a, o, i: conv(a, o, i, 1)))(f"{n}.proj_out", c, c)

    lin("time_embed.0", ted, s.mc)
    lin("time_embed.2", ted, ted)
    if s.adm:
        lin("label_emb.0.0", ted, s.adm)
        lin("label_emb.0.2", ted, ted)
    conv("input_blocks.0.0", s.mc, s.in_channels)
    chans = [s.mc]
    ch = s.mc
    i = 1
    n = len(s.mult)
    for lvl, m in enumerate(s.mult):
        for b in range(s.num_res[lvl]):
            res(f"input_blocks.{i}.0", ch, s.mc * m)
            ch = s.mc * m
            d = s.down_depth[lvl][b] if isinstance(s.down_depth[lvl], tuple) else s.down_depth[lvl]
            if d:
                st(f"input_blocks.{i}.1", ch, d)
            chans.append(ch)
            i += 1
        if lvl != n - 1:
            conv(f"input_blocks.{i}.0.op", ch, ch)
            chans.append(ch)
            i += 1
    if s.middle_depth is not None:
        res("middle_block.0", ch, ch)
        if s.middle_depth > 0:  # 0: a single res block (ComfyUI's transformer_depth_middle -1)
            st("middle_block.1", ch, s.middle_depth)
            res("middle_block.2", ch, ch)
    up_depth = s.up_depth or tuple((s.down_depth[n - 1 - u],) * (s.num_res[n - 1 - u] + 1) for u in range(n))
    j = 0
    for u in range(n):
        lvl = n - 1 - u
        for b in range(s.num_res[lvl] + 1):
            ich = chans.pop()
            res(f"output_blocks.{j}.0", ch + ich, s.mc * s.mult[lvl])
            ch = s.mc * s.mult[lvl]
            d = up_depth[u][b]
            if d:
                st(f"output_blocks.{j}.1", ch, d)
            if lvl and b == s.num_res[lvl]:
                conv(f"output_blocks.{j}.{2 if d else 1}.conv", ch, ch)
            j += 1
    norm("out.0", ch)
    conv("out.2", s.out_channels, ch)
    return keys


def vae_shapes(ch=32, mult=(1, 1, 2, 2), num_res=1, z=4) -> dict[str, tuple]:
    keys: dict[str, tuple] = {}

    def conv(n, o, i, k=3):
        keys[n + ".weight"] = (o, i, k, k)
        keys[n + ".bias"] = (o,)

    def norm(n, c):
        keys[n + ".weight"] = (c,)
        keys[n + ".bias"] = (c,)

    def res(n, cin, cout):
        norm(f"{n}.norm1", cin)
        conv(f"{n}.conv1", cout, cin)
        norm(f"{n}.norm2", cout)
        conv(f"{n}.conv2", cout, cout)
        if cin != cout:
            conv(f"{n}.nin_shortcut", cout, cin, 1)

    def mid(part, c):
        res(f"{part}.mid.block_1", c, c)
        norm(f"{part}.mid.attn_1.norm", c)
        for q in ("q", "k", "v", "proj_out"):
            conv(f"{part}.mid.attn_1.{q}", c, c, 1)
        res(f"{part}.mid.block_2", c, c)

    n = len(mult)
    conv("encoder.conv_in", ch, 3)
    block_in = ch
    for lvl in range(n):
        out = ch * mult[lvl]
        for b in range(num_res):
            res(f"encoder.down.{lvl}.block.{b}", block_in, out)
            block_in = out
        if lvl != n - 1:
            conv(f"encoder.down.{lvl}.downsample.conv", block_in, block_in)
    mid("encoder", block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", 2 * z, block_in)
    conv("quant_conv", 2 * z, 2 * z, 1)
    conv("post_quant_conv", z, z, 1)
    block_in = ch * mult[-1]
    conv("decoder.conv_in", block_in, z)
    mid("decoder", block_in)
    for lvl in reversed(range(n)):
        out = ch * mult[lvl]
        for b in range(num_res + 1):
            res(f"decoder.up.{lvl}.block.{b}", block_in, out)
            block_in = out
        if lvl != 0:
            conv(f"decoder.up.{lvl}.upsample.conv", block_in, block_in)
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", 3, block_in)
    return keys


def hf_encoder_layer_shapes(prefix: str, layers: int, hidden: int, inner: int) -> dict[str, tuple]:
    """The transformer layers of a Hugging Face CLIP/SigLIP encoder (``{prefix}encoder.layers.N``)."""
    keys = {}
    for i in range(layers):
        b = f"{prefix}encoder.layers.{i}"
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            keys[f"{b}.self_attn.{p}.weight"] = (hidden, hidden)
            keys[f"{b}.self_attn.{p}.bias"] = (hidden,)
        for ln in ("layer_norm1", "layer_norm2"):
            keys[f"{b}.{ln}.weight"] = (hidden,)
            keys[f"{b}.{ln}.bias"] = (hidden,)
        keys[f"{b}.mlp.fc1.weight"] = (inner, hidden)
        keys[f"{b}.mlp.fc1.bias"] = (inner,)
        keys[f"{b}.mlp.fc2.weight"] = (hidden, inner)
        keys[f"{b}.mlp.fc2.bias"] = (hidden,)
    return keys


def hf_clip_shapes(hidden=32, layers=2, inner=64, proj: int | None = None) -> dict[str, tuple]:
    keys = {"text_model.embeddings.token_embedding.weight": (VOCAB, hidden),
            "text_model.embeddings.position_embedding.weight": (77, hidden),
            "text_model.final_layer_norm.weight": (hidden,), "text_model.final_layer_norm.bias": (hidden,)}
    keys.update(hf_encoder_layer_shapes("text_model.", layers, hidden, inner))
    if proj:
        keys["text_projection.weight"] = (proj, hidden)
    return keys


def openclip_block_shapes(prefix: str, layers: int, hidden: int, inner: int) -> dict[str, tuple]:
    """OpenCLIP-style residual attention blocks (``{prefix}.N.attn.in_proj_weight`` ...)."""
    keys = {}
    for i in range(layers):
        b = f"{prefix}.{i}"
        keys[f"{b}.attn.in_proj_weight"] = (3 * hidden, hidden)
        keys[f"{b}.attn.in_proj_bias"] = (3 * hidden,)
        keys[f"{b}.attn.out_proj.weight"] = (hidden, hidden)
        keys[f"{b}.attn.out_proj.bias"] = (hidden,)
        for ln in ("ln_1", "ln_2"):
            keys[f"{b}.{ln}.weight"] = (hidden,)
            keys[f"{b}.{ln}.bias"] = (hidden,)
        keys[f"{b}.mlp.c_fc.weight"] = (inner, hidden)
        keys[f"{b}.mlp.c_fc.bias"] = (inner,)
        keys[f"{b}.mlp.c_proj.weight"] = (hidden, inner)
        keys[f"{b}.mlp.c_proj.bias"] = (hidden,)
    return keys


def openclip_shapes(hidden=32, layers=2, inner=64, proj=32) -> dict[str, tuple]:
    keys = {"token_embedding.weight": (VOCAB, hidden), "positional_embedding": (77, hidden),
            "ln_final.weight": (hidden,), "ln_final.bias": (hidden,), "text_projection": (hidden, proj),
            "logit_scale": ()}
    keys.update(openclip_block_shapes("transformer.resblocks", layers, hidden, inner))
    return keys


def materialise(shapes: dict[str, tuple], gen: torch.Generator, prefix: str = "") -> dict[str, torch.Tensor]:
    """Random weights: norms ~1/0, biases small, matrices scaled by fan-in (finite, non-degenerate outputs)."""
    out = {}
    for name, shape in shapes.items():
        last = name.rsplit(".", 1)[-1]
        is_norm = any(t in name for t in ("norm", "ln_", "layer_norm", "in_layers.0", "out_layers.0", "out.0.",
                                           ".norm.", "norm_out"))
        if len(shape) == 0:
            t = torch.tensor(4.6)
        elif len(shape) == 1:
            if is_norm and last == "weight":
                t = 1.0 + 0.05 * torch.randn(shape, generator=gen)
            else:
                t = 0.02 * torch.randn(shape, generator=gen)
        else:
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            std = 0.02 if "embedding" in name else 1.0 / fan_in ** 0.5
            t = std * torch.randn(shape, generator=gen)
        out[prefix + name] = t.contiguous()
    return out


# --- whole checkpoints ------------------------------------------------------------------------------

SD15_UNET = UNetSpec()
SD15_INPAINT_UNET = UNetSpec(in_channels=9)
SD2_UNET = UNetSpec(linear=True, down_depth=(1, 1))
SDXL_UNET = UNetSpec(linear=True, down_depth=(0, 2), middle_depth=2, context=64, adm=32 + 6 * 256)
SDXL_REFINER_UNET = UNetSpec(linear=True, down_depth=(0, 1), context=32, adm=32 + 5 * 256)
# pruned: three levels, uneven blocks per level, no middle block, uneven transformer depth on the way up
# SSD-1B/Vega-style SDXL pruning: depth varying within a level on both paths, blocks without attention
# beside blocks with it, a middle block shallower than its level (all built as exact identities)
UNEVEN_XL_UNET = UNetSpec(linear=True, mult=(1, 2), num_res=(2, 2), down_depth=((0, 1), (3, 2)), middle_depth=1,
                          up_depth=((1, 3, 0), (0, 2, 1)), context=64, adm=32 + 6 * 256)
# BK-SDM-style: the middle block reduced to one res block
ONE_RES_MIDDLE_UNET = UNetSpec(mult=(1, 2), num_res=(1, 1), down_depth=(1, 1), middle_depth=0)
PRUNED_UNET = UNetSpec(mult=(1, 2, 2), num_res=(2, 1, 1), down_depth=(1, 1, 0), middle_depth=None,
                       up_depth=((0, 0), (2, 1), (1, 1, 2)))


def sd15_checkpoint(seed=1, unet=SD15_UNET) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = materialise(unet_shapes(unet), g, "model.diffusion_model.")
    sd.update(materialise(vae_shapes(), g, "first_stage_model."))
    sd.update(materialise(hf_clip_shapes(), g, "cond_stage_model.transformer."))
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    return sd


def sd2_checkpoint(seed=2, v_prediction=True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = materialise(unet_shapes(SD2_UNET), g, "model.diffusion_model.")
    sd.update(materialise(vae_shapes(), g, "first_stage_model."))
    sd.update(materialise(openclip_shapes(), g, "cond_stage_model.model."))
    # the v-prediction tell ComfyUI relies on: a spread-out norm bias in the last output transformer
    last = max(int(k.split(".")[3]) for k in sd if k.startswith("model.diffusion_model.output_blocks.")
               and ".1.transformer_blocks.0.norm1.bias" in k)
    key = f"model.diffusion_model.output_blocks.{last}.1.transformer_blocks.0.norm1.bias"
    sd[key] = (0.2 if v_prediction else 0.01) * torch.randn(sd[key].shape, generator=g)
    return sd


def sdxl_checkpoint(seed=3, unet=SDXL_UNET) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = materialise(unet_shapes(unet), g, "model.diffusion_model.")
    sd.update(materialise(vae_shapes(), g, "first_stage_model."))
    sd.update(materialise(hf_clip_shapes(), g, "conditioner.embedders.0.transformer."))
    sd.update(materialise(openclip_shapes(), g, "conditioner.embedders.1.model."))
    return sd


def sdxl_refiner_checkpoint(seed=4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = materialise(unet_shapes(SDXL_REFINER_UNET), g, "model.diffusion_model.")
    sd.update(materialise(vae_shapes(), g, "first_stage_model."))
    sd.update(materialise(openclip_shapes(), g, "conditioner.embedders.0.model."))
    return sd


def sd15_lora(seed=5, rank=4) -> dict[str, torch.Tensor]:
    """kohya names (diffusers modules), A1111 names (original modules), text encoder, a LoCon conv."""
    g = torch.Generator().manual_seed(seed)
    out = {}

    def pair(prefix, o, i, conv=False):
        if conv:
            out[f"{prefix}.lora_down.weight"] = 0.1 * torch.randn((rank, i, 3, 3), generator=g)
            out[f"{prefix}.lora_up.weight"] = 0.1 * torch.randn((o, rank, 1, 1), generator=g)
        else:
            out[f"{prefix}.lora_down.weight"] = 0.1 * torch.randn((rank, i), generator=g)
            out[f"{prefix}.lora_up.weight"] = 0.1 * torch.randn((o, rank), generator=g)
        out[f"{prefix}.alpha"] = torch.tensor(float(rank) / 2)

    pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 32, 32)
    pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 32, 32)
    pair("lora_unet_output_blocks_3_1_transformer_blocks_0_ff_net_2", 32, 128)  # A1111 / original names
    pair("lora_unet_down_blocks_0_resnets_0_conv1", 32, 32, conv=True)          # LoCon
    pair("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 32, 32)
    pair("lora_te_text_model_encoder_layers_1_mlp_fc1", 64, 32)
    return out
