"""Architectures inferred from weight names and shapes, and the original→library key maps.

Nothing here assumes a fixed configuration: levels, channel multipliers, blocks per level, transformer
depth per block, context width, projection style and conditioning vectors are all read off the state
dict, so pruned and distilled variants load like the originals. Only conventions that leave no trace in
the weights come from the family (attention head counts, activation functions).

Key layouts:
* UNet: the original LDM/SGM ``openaimodel`` names (``input_blocks.N.M``, ``middle_block``,
  ``output_blocks``, ``time_embed``, ``label_emb``, ``out``) → diffusers ``UNet2DConditionModel``.
* VAE: the LDM autoencoder (``encoder.down.N.block.M``, ``mid.attn_1``, ``decoder.up.N``) → diffusers
  ``AutoencoderKL``.
* Text encoders: Hugging Face CLIP names (``text_model.encoder.layers.N``) are used as they are;
  OpenCLIP names (``transformer.resblocks.N``, fused ``in_proj``) are converted to them.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hearth.runtime.files import deferred, tensor_shape


class ArchitectureError(ValueError):
    """Weights that do not describe a supported architecture."""


def check_weights(expected: Mapping, state: Mapping, what: str) -> None:
    """Raise ArchitectureError unless ``state`` has every key of ``expected`` (a module's state dict) with
    the same shape. Values may be tensors or anything with a ``shape`` (unread ``TensorRef``s)."""
    missing = [k for k in expected if k not in state]
    if missing:
        raise ArchitectureError(f"{what}: {len(missing)} weights missing, e.g. {missing[:3]}")
    for k, ref in expected.items():
        if tuple(state[k].shape) != tuple(ref.shape):
            raise ArchitectureError(f"{what}: {k} has shape {tuple(state[k].shape)}, expected {tuple(ref.shape)}")


def _indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    found = set()
    for k in keys:
        m = rx.match(k)
        if m:
            found.add(int(m.group(1)))
    return sorted(found)


def _depth(keys: set[str], prefix: str) -> int:
    return len(_indices(keys, re.escape(prefix) + r"transformer_blocks\.(\d+)\."))


# --- UNet ----------------------------------------------------------------------------------------

@dataclass
class UNetArch:
    in_channels: int
    out_channels: int
    model_channels: int
    level_channels: list[int]          # output channels per level
    num_res_blocks: list[int]          # res blocks per level (down path)
    down_depth: list[int]              # transformer depth per level (0 = no attention)
    up_depth: list[list[int]]          # per up-level (highest first), per block
    middle_depth: int | None           # None = no middle block; 0 = one res block, no attention
    context_dim: int | None
    use_linear: bool
    adm_in_channels: int | None
    time_embed_dim: int
    num_head_channels: int = -1        # one of these two comes from the family convention
    num_heads: int = -1
    down_block_depth: list[list[int]] | None = None  # per level, per block, when it varies within a level

    def heads(self, channels: int) -> int:
        if self.num_head_channels > 0:
            if channels % self.num_head_channels == 0 and channels >= self.num_head_channels:
                return channels // self.num_head_channels
            return 1
        return self.num_heads if channels % self.num_heads == 0 else 1

    def _down_blocks(self) -> list[list[int]]:
        if self.down_block_depth is not None:
            return self.down_block_depth
        return [[d] * r for d, r in zip(self.down_depth, self.num_res_blocks)]

    def _layout(self) -> tuple[list[int], list[list[int]]]:
        """Transformer depth per down level and per up block as built in diffusers (padded, see padding())."""
        down = [max(ds, default=0) for ds in self._down_blocks()]
        if self.middle_depth is not None:
            # diffusers' middle block takes the last level's depth: the shallower of the two is padded
            down[-1] = max(down[-1], self.middle_depth, 1) if down[-1] else max(self.middle_depth, 1)
        up = [[max(d, 1) for d in ds] if any(ds) else [0] * len(ds) for ds in self.up_depth]
        return down, up

    def padding(self) -> list[str]:
        """diffusers modules that have no counterpart in the checkpoint and are built as exact identities.

        Pruned models (SSD-1B, Vega, BK-SDM, ...) drop transformer layers or blocks unevenly, which diffusers'
        per-level configuration cannot express. Those places get a module whose every weight is zero: a zero
        transformer block, transformer or res block adds exactly zero to its residual stream.
        """
        down, up = self._layout()
        pads = []
        for lvl, ds in enumerate(self._down_blocks()):
            if down[lvl] == 0:
                continue
            for b, d in enumerate(ds):
                pads += self._pad_attention(f"down_blocks.{lvl}.attentions.{b}", d, down[lvl])
        if self.middle_depth is not None:
            if self.middle_depth == 0:
                pads += ["mid_block.attentions.0", "mid_block.resnets.1"]
            else:
                pads += self._pad_attention("mid_block.attentions.0", self.middle_depth, down[-1])
        for u, ds in enumerate(self.up_depth):
            for b, d in enumerate(ds):
                if up[u][b]:
                    pads += self._pad_attention(f"up_blocks.{u}.attentions.{b}", d, up[u][b])
        return pads

    @staticmethod
    def _pad_attention(prefix: str, real: int, built: int) -> list[str]:
        if real == 0:
            return [prefix]
        return [f"{prefix}.transformer_blocks.{k}" for k in range(real, built)]

    def diffusers_config(self) -> dict:
        n = len(self.level_channels)
        depth, up_depth = self._layout()
        down_types = tuple("CrossAttnDownBlock2D" if d > 0 else "DownBlock2D" for d in depth[:-1]) + (
            "CrossAttnDownBlock2D" if max(self._down_blocks()[-1], default=0) > 0 else "DownBlock2D",)
        up_types = tuple("CrossAttnUpBlock2D" if any(ds) else "UpBlock2D" for ds in up_depth)
        heads = [self.heads(c) for c in self.level_channels]
        config = {
            "sample_size": 64,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": down_types,
            "up_block_types": up_types,
            "block_out_channels": tuple(self.level_channels),
            "layers_per_block": list(self.num_res_blocks) if len(set(self.num_res_blocks)) > 1 else self.num_res_blocks[0],
            "cross_attention_dim": self.context_dim or self.level_channels[0],
            "attention_head_dim": tuple(heads),
            "transformer_layers_per_block": tuple(d if d > 0 else 1 for d in depth),
            "use_linear_projection": self.use_linear,
            "time_embedding_dim": self.time_embed_dim,
            "mid_block_type": "UNetMidBlock2DCrossAttn" if self.middle_depth is not None else None,
            "flip_sin_to_cos": True,
            "freq_shift": 0,
            "norm_num_groups": 32,
            "norm_eps": 1e-5,
        }
        reversed_default = [config["transformer_layers_per_block"][n - 1 - u] for u in range(n)]
        if any(d != reversed_default[u] for u, ds in enumerate(up_depth) for d in ds if d):
            config["reverse_transformer_layers_per_block"] = tuple(
                tuple(d if d > 0 else 1 for d in ds) for ds in up_depth)
        if self.adm_in_channels is not None:
            config["class_embed_type"] = "projection"
            config["projection_class_embeddings_input_dim"] = self.adm_in_channels
        return config


def infer_down_path(sd: Mapping, prefix: str = "") -> UNetArch:
    """The input blocks and middle block of an original-layout UNet (all a ControlNet has). The up path of
    the result mirrors the levels without attention; ``infer_unet`` reads the real one."""
    keys = {k[len(prefix):] for k in sd if k.startswith(prefix)}
    if "input_blocks.0.0.weight" not in keys:
        raise ArchitectureError("no UNet input blocks in the original layout found")

    def shape(k):
        return tensor_shape(sd, prefix + k)

    model_channels, in_channels = shape("input_blocks.0.0.weight")[:2]
    time_embed_dim = shape("time_embed.0.weight")[0]
    adm = shape("label_emb.0.0.weight")[1] if "label_emb.0.0.weight" in keys else None

    level_channels: list[int] = []
    num_res: list[int] = []
    down_depth: list[list[int]] = []
    cur_res, cur_depth, cur_ch = 0, [], None
    context_dim = None
    use_linear = False
    n_in = max(_indices(keys, r"input_blocks\.(\d+)\.")) + 1
    for i in range(1, n_in):
        if f"input_blocks.{i}.0.op.weight" in keys:
            level_channels.append(cur_ch)
            num_res.append(cur_res)
            down_depth.append(cur_depth)
            cur_res, cur_depth = 0, []
        elif f"input_blocks.{i}.0.in_layers.2.weight" in keys:
            cur_ch = shape(f"input_blocks.{i}.0.in_layers.2.weight")[0]
            cur_res += 1
            d = _depth(keys, f"input_blocks.{i}.1.")
            cur_depth.append(d)
            if d:
                context_dim = shape(f"input_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight")[1]
                use_linear = len(shape(f"input_blocks.{i}.1.proj_in.weight")) == 2
        else:
            raise ArchitectureError(f"unrecognised UNet input block {i}")
    level_channels.append(cur_ch)
    num_res.append(cur_res)
    down_depth.append(cur_depth)
    uneven = any(len(set(ds)) > 1 for ds in down_depth)

    middle = None
    if "middle_block.0.in_layers.0.weight" in keys:
        middle = _depth(keys, "middle_block.1.")
        if middle == 0 and "middle_block.1.in_layers.0.weight" in keys:
            raise ArchitectureError("a middle block of two res blocks without attention is not supported")
        if middle and context_dim is None:
            context_dim = shape("middle_block.1.transformer_blocks.0.attn2.to_k.weight")[1]
            use_linear = len(shape("middle_block.1.proj_in.weight")) == 2
    for ch in level_channels:
        if ch % model_channels:
            raise ArchitectureError("level channels are not multiples of the base channels")
    n_levels = len(level_channels)
    return UNetArch(in_channels=in_channels, out_channels=in_channels, model_channels=model_channels,
                    level_channels=level_channels, num_res_blocks=num_res,
                    down_depth=[max(ds, default=0) for ds in down_depth],
                    up_depth=[[0] * (num_res[n_levels - 1 - u] + 1) for u in range(n_levels)],
                    middle_depth=middle, context_dim=context_dim, use_linear=use_linear, adm_in_channels=adm,
                    time_embed_dim=time_embed_dim, down_block_depth=down_depth if uneven else None)


def infer_unet(sd: Mapping, prefix: str = "") -> UNetArch:
    keys = {k[len(prefix):] for k in sd if k.startswith(prefix)}
    if "input_blocks.0.0.weight" not in keys or "out.2.weight" not in keys:
        raise ArchitectureError("no UNet in the original layout (input_blocks/out) found")

    def shape(k):
        return tensor_shape(sd, prefix + k)

    arch = infer_down_path(sd, prefix)
    arch.out_channels = shape("out.2.weight")[0]
    n_levels = len(arch.level_channels)
    arch.up_depth = []
    j = 0
    for u in range(n_levels):
        ds = []
        for _ in range(arch.num_res_blocks[n_levels - 1 - u] + 1):
            if f"output_blocks.{j}.0.in_layers.2.weight" not in keys:
                raise ArchitectureError(f"UNet output block {j} missing")
            d = _depth(keys, f"output_blocks.{j}.1.")
            ds.append(d)
            if d and arch.context_dim is None:
                arch.context_dim = shape(f"output_blocks.{j}.1.transformer_blocks.0.attn2.to_k.weight")[1]
                arch.use_linear = len(shape(f"output_blocks.{j}.1.proj_in.weight")) == 2
            j += 1
        arch.up_depth.append(ds)
    if f"output_blocks.{j}.0.in_layers.2.weight" in keys:
        raise ArchitectureError("more UNet output blocks than the down path explains")
    return arch


_RES_MAP = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
            "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def unet_key_map(arch: UNetArch) -> dict[str, str]:
    """Original module prefix → diffusers module prefix (append ``.weight``/``.bias`` or sub-names)."""
    m = {"input_blocks.0.0": "conv_in", "time_embed.0": "time_embedding.linear_1",
         "time_embed.2": "time_embedding.linear_2", "out.0": "conv_norm_out", "out.2": "conv_out"}
    if arch.adm_in_channels is not None:
        m["label_emb.0.0"] = "class_embedding.linear_1"
        m["label_emb.0.2"] = "class_embedding.linear_2"
    n_levels = len(arch.level_channels)
    i = 1
    for lvl in range(n_levels):
        for b in range(arch.num_res_blocks[lvl]):
            m[f"input_blocks.{i}.0"] = f"down_blocks.{lvl}.resnets.{b}"
            if arch.down_depth[lvl]:
                m[f"input_blocks.{i}.1"] = f"down_blocks.{lvl}.attentions.{b}"
            i += 1
        if lvl != n_levels - 1:
            m[f"input_blocks.{i}.0.op"] = f"down_blocks.{lvl}.downsamplers.0.conv"
            i += 1
    if arch.middle_depth is not None:
        m["middle_block.0"] = "mid_block.resnets.0"
        m["middle_block.1"] = "mid_block.attentions.0"
        m["middle_block.2"] = "mid_block.resnets.1"
    j = 0
    for u in range(n_levels):
        level = n_levels - 1 - u
        for b in range(arch.num_res_blocks[level] + 1):
            m[f"output_blocks.{j}.0"] = f"up_blocks.{u}.resnets.{b}"
            has_attn = arch.up_depth[u][b] > 0
            if has_attn:
                m[f"output_blocks.{j}.1"] = f"up_blocks.{u}.attentions.{b}"
            if level != 0 and b == arch.num_res_blocks[level]:
                m[f"output_blocks.{j}.{2 if has_attn else 1}.conv"] = f"up_blocks.{u}.upsamplers.0.conv"
            j += 1
    return m


def _translate(key: str, prefixes: dict[str, str], inner: dict[str, str] | None = None) -> str | None:
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in prefixes:
            rest = ".".join(parts[cut:])
            if inner:
                for a, b in inner.items():
                    if rest == a or rest.startswith(a + "."):
                        rest = b + rest[len(a):]
                        break
            return prefixes[head] + "." + rest
    return None


def convert_unet_key(key: str, key_map: dict[str, str]) -> str | None:
    """One original UNet parameter name → its diffusers name (None when not part of the map)."""
    new = _translate(key, key_map)
    if new is None:
        return None
    if ".resnets." in new:
        head, _, rest = new.partition(".resnets.")
        idx, _, sub = rest.partition(".")
        for a, b in _RES_MAP.items():
            if sub == a or sub.startswith(a + "."):
                sub = b + sub[len(a):]
                break
        new = f"{head}.resnets.{idx}.{sub}"
    return new


# --- VAE -----------------------------------------------------------------------------------------

@dataclass
class VAEArch:
    in_channels: int
    out_channels: int
    ch: int
    level_channels: list[int]
    num_res_blocks: int
    z_channels: int
    embed_dim: int
    use_quant_conv: bool
    use_post_quant_conv: bool

    def diffusers_config(self) -> dict:
        n = len(self.level_channels)
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": ("DownEncoderBlock2D",) * n,
            "up_block_types": ("UpDecoderBlock2D",) * n,
            "block_out_channels": tuple(self.level_channels),
            "layers_per_block": self.num_res_blocks,
            "latent_channels": self.embed_dim,
            "norm_num_groups": 32,
            "sample_size": 256,
            "use_quant_conv": self.use_quant_conv,
            "use_post_quant_conv": self.use_post_quant_conv,
        }


def infer_vae(sd: Mapping, prefix: str = "") -> VAEArch:
    keys = {k[len(prefix):] for k in sd if k.startswith(prefix)}
    if "encoder.conv_in.weight" not in keys or "decoder.conv_out.weight" not in keys:
        raise ArchitectureError("no VAE in the original layout (encoder/decoder) found")

    def shape(k):
        return tensor_shape(sd, prefix + k)

    ch, in_channels = shape("encoder.conv_in.weight")[:2]
    out_channels = shape("decoder.conv_out.weight")[0]
    levels = _indices(keys, r"encoder\.down\.(\d+)\.")
    level_channels = [shape(f"encoder.down.{lv}.block.0.conv2.weight")[0] for lv in levels]
    num_res = len(_indices(keys, r"encoder\.down\.0\.block\.(\d+)\."))
    z_channels = shape("decoder.conv_in.weight")[1]
    use_quant = "quant_conv.weight" in keys
    use_post = "post_quant_conv.weight" in keys
    embed_dim = shape("quant_conv.weight")[0] // 2 if use_quant else z_channels
    return VAEArch(in_channels, out_channels, ch, level_channels, num_res, z_channels, embed_dim, use_quant, use_post)


def vae_key_map(arch: VAEArch) -> dict[str, str]:
    n = len(arch.level_channels)
    m = {"encoder.conv_in": "encoder.conv_in", "encoder.conv_out": "encoder.conv_out",
         "encoder.norm_out": "encoder.conv_norm_out", "decoder.conv_in": "decoder.conv_in",
         "decoder.conv_out": "decoder.conv_out", "decoder.norm_out": "decoder.conv_norm_out",
         "quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for part in ("encoder", "decoder"):
        m[f"{part}.mid.block_1"] = f"{part}.mid_block.resnets.0"
        m[f"{part}.mid.block_2"] = f"{part}.mid_block.resnets.1"
        m[f"{part}.mid.attn_1"] = f"{part}.mid_block.attentions.0"
    for lv in range(n):
        for b in range(arch.num_res_blocks):
            m[f"encoder.down.{lv}.block.{b}"] = f"encoder.down_blocks.{lv}.resnets.{b}"
        if lv != n - 1:
            m[f"encoder.down.{lv}.downsample.conv"] = f"encoder.down_blocks.{lv}.downsamplers.0.conv"
        u = n - 1 - lv
        for b in range(arch.num_res_blocks + 1):
            m[f"decoder.up.{lv}.block.{b}"] = f"decoder.up_blocks.{u}.resnets.{b}"
        if lv != 0:
            m[f"decoder.up.{lv}.upsample.conv"] = f"decoder.up_blocks.{u}.upsamplers.0.conv"
    return m


_VAE_INNER = {"nin_shortcut": "conv_shortcut", "norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v",
              "proj_out": "to_out.0"}


def convert_vae_state_dict(sd: Mapping, prefix: str = "") -> tuple[VAEArch, dict]:
    """Original VAE weights (optionally under ``prefix``) → (arch, diffusers state dict)."""
    arch = infer_vae(sd, prefix)
    key_map = vae_key_map(arch)
    out = {}
    for full in sd:
        if not full.startswith(prefix):
            continue
        key = full[len(prefix):]
        new = _translate(key, key_map)
        if new is None:
            continue
        tensor = deferred(sd, full)
        if ".attentions." in new:
            head, _, rest = new.partition(".attentions.0.")
            for a, b in _VAE_INNER.items():
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
                    break
            new = f"{head}.attentions.0.{rest}"
            if tensor.ndim == 4:  # 1x1 conv attention projections are linear layers there
                tensor = sd[full][:, :, 0, 0]
        elif ".resnets." in new:
            new = new.replace(".nin_shortcut.", ".conv_shortcut.")
        out[new] = tensor
    return arch, out


# --- CLIP text encoders ----------------------------------------------------------------------------

@dataclass
class ClipArch:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    positions: int
    projection_dim: int | None
    activation: str = "quick_gelu"
    extra: dict = field(default_factory=dict)


# OpenCLIP → Hugging Face names (also read backwards when saving in the original layout)
OPENCLIP_TOP_NAMES = {"token_embedding.weight": "text_model.embeddings.token_embedding.weight",
                      "positional_embedding": "text_model.embeddings.position_embedding.weight",
                      "ln_final.weight": "text_model.final_layer_norm.weight",
                      "ln_final.bias": "text_model.final_layer_norm.bias"}
OPENCLIP_LAYER_NAMES = (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                        ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"))


def openclip_to_hf(sd: Mapping, prefix: str) -> dict:
    """OpenCLIP text tower weights under ``prefix`` → Hugging Face CLIP text names (fused q/k/v split)."""
    out = {}
    for full in sd:
        if not full.startswith(prefix):
            continue
        k = full[len(prefix):]
        v = sd[full]
        if k in OPENCLIP_TOP_NAMES:
            out[OPENCLIP_TOP_NAMES[k]] = v
        elif k == "text_projection":
            out["text_projection.weight"] = v.transpose(0, 1).contiguous()
        elif k == "text_projection.weight":
            out["text_projection.weight"] = v
        elif k.startswith("transformer.resblocks."):
            rest = k[len("transformer.resblocks."):]
            idx, _, sub = rest.partition(".")
            base = f"text_model.encoder.layers.{idx}."
            if sub == "attn.in_proj_weight" or sub == "attn.in_proj_bias":
                kind = "weight" if sub.endswith("weight") else "bias"
                q, k_, vv = v.chunk(3, dim=0)
                out[base + f"self_attn.q_proj.{kind}"] = q
                out[base + f"self_attn.k_proj.{kind}"] = k_
                out[base + f"self_attn.v_proj.{kind}"] = vv
            else:
                for a, b in OPENCLIP_LAYER_NAMES:
                    if sub.startswith(a + "."):
                        out[base + b + sub[len(a):]] = v
                        break
    return out


def hf_clip_from(sd: Mapping, prefix: str) -> dict:
    """HF-layout text encoder weights under ``prefix``; accepts both ``text_model.``-rooted and older names."""
    out = {}
    for full in sd:
        if not full.startswith(prefix):
            continue
        k = full[len(prefix):]
        if k.endswith("position_ids"):
            continue
        if not k.startswith("text_model.") and not k.startswith("text_projection"):
            k = "text_model." + k
        out[k] = deferred(sd, full)
    return out


def infer_clip(sd: Mapping, activation: str) -> ClipArch:
    """Architecture of an HF-layout CLIP text encoder state dict (``text_model.*``)."""
    try:
        vocab, hidden = tuple(sd["text_model.embeddings.token_embedding.weight"].shape)
    except KeyError:
        raise ArchitectureError("no CLIP text encoder token embedding found") from None
    positions = sd["text_model.embeddings.position_embedding.weight"].shape[0]
    layers = len(_indices(sd.keys(), r"text_model\.encoder\.layers\.(\d+)\."))
    if layers == 0:
        raise ArchitectureError("CLIP text encoder has no layers")
    intermediate = sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
    proj = sd["text_projection.weight"].shape[0] if "text_projection.weight" in sd else None
    heads = hidden // 64 if hidden % 64 == 0 else 1
    return ClipArch(hidden, layers, heads, intermediate, vocab, positions, proj, activation)
