"""ControlNets and T2I-Adapters for the Stable Diffusion UNets, with ComfyUI's semantics.

Files (models/controlnet) are recognised by their keys:

* original ControlNet layout (``control_model.*`` or bare ``input_blocks``/``zero_convs``/
  ``input_hint_block``/``middle_block_out``), SD1.x / SD2.x / SDXL, including "diff" ControlNets
  (a ``difference`` marker: weights are deltas on the given MODEL's UNet);
* diffusers ControlNet single files (``controlnet_cond_embedding.*``, ``down_blocks.*``, ...), union
  ControlNets among them (xinsir's ControlNet++: ``task_embedding``, ``control_add_embedding``...);
* Stability's Control-LoRA (``lora_controlnet``): built at sampling time from the model's UNet;
* T2I-Adapters: TencentARC's full (``conv_in``/``body.N``) and light (``body.N.in_conv``) layouts and
  the diffusers layout (``adapter.*``).

The architecture is read off the keys and shapes and built as diffusers' ``ControlNetModel`` or
``T2IAdapter`` (a union ControlNet's type machinery is a small module of ours around the former).
Other families' ControlNets (SD3, Flux, HunyuanDiT, Qwen, Stable Cascade) are refused by name. Every control produces residuals in ComfyUI's form — ``{"input": [...], "middle": [...],
"output": [...]}``, lists consumed from their end as the original UNet walks its blocks — so chaining
(``previous_controlnet``), strength and the timestep range combine exactly as ComfyUI combines them;
``unet_residuals`` turns the merged form into the keyword arguments of diffusers'
``UNet2DConditionModel``.

A CONTROL_NET value is a ``ControlBase``. The apply nodes copy it and attach a hint; at sampling time
``bind(model)`` makes a per-run copy (timestep range in sigmas, hint cache) that guidance calls with
``get_control(x, sigma, cond, batched_number)`` for each batch it runs.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from hearth.runtime import arch as archmod
from hearth.runtime.files import load_state_dict, tensor_shape

log = logging.getLogger(__name__)


class ControlNetError(ValueError):
    """A file that is not a ControlNet or T2I-Adapter Hearth can run."""


# --- residual bookkeeping (ComfyUI's form) -------------------------------------------------------

def broadcast_image_to(tensor, target_batch_size: int, batched_number: int):
    """Hint batch → the batch being run: cond/uncond chunks each get the first per-chunk images."""
    import torch

    current = tensor.shape[0]
    if current == 1:
        return tensor
    per_batch = target_batch_size // batched_number
    tensor = tensor[:per_batch]
    if per_batch > tensor.shape[0]:
        tensor = torch.cat([tensor] * (per_batch // tensor.shape[0]) + [tensor[:per_batch % tensor.shape[0]]], dim=0)
    if tensor.shape[0] == target_batch_size:
        return tensor
    return torch.cat([tensor] * batched_number, dim=0)


def _merge(control: dict, previous: dict | None, strength: float, global_average_pooling: bool, output_dtype=None):
    """Scale this control's residuals by its strength and add the previous control's (a chain sums)."""
    import torch

    out: dict[str, list] = {"input": [], "middle": [], "output": []}
    for key, values in control.items():
        scaled = set()
        for x in values:
            if x is not None:
                if global_average_pooling:
                    x = torch.mean(x, dim=(2, 3), keepdim=True).repeat(1, 1, x.shape[2], x.shape[3])
                if id(x) not in scaled:  # a tensor listed twice is scaled once
                    scaled.add(id(x))
                    x *= strength
                if output_dtype is not None and x.dtype != output_dtype:
                    x = x.to(output_dtype)
            out.setdefault(key, []).append(x)
    if previous is not None:
        for key in ("input", "middle", "output"):
            mine = out.setdefault(key, [])
            for i, prev in enumerate(previous.get(key, [])):
                if i >= len(mine):
                    mine.append(prev)
                elif prev is not None:
                    mine[i] = prev if mine[i] is None else prev + mine[i]
    return out


class ControlBase:
    """What the ControlNet nodes pass around: a network plus hint, strength, range and chain."""

    def __init__(self) -> None:
        self.cond_hint_original = None
        self.strength = 1.0
        self.timestep_percent_range = (0.0, 1.0)
        self.global_average_pooling = False
        self.compression_ratio = 8
        self.upscale_algorithm = "nearest-exact"
        self.extra_args: dict[str, Any] = {}
        self.previous_controlnet: ControlBase | None = None
        self.latent_format = None  # no Stable Diffusion ControlNet takes a latent hint
        self.vae = None
        self.concat_mask = False
        self.extra_concat_orig: list = []
        # per-run state (set on the copy ``bind`` makes)
        self.timestep_range = None
        self.cond_hint = None

    # --- building ---------------------------------------------------------------------------------
    def _blank(self) -> "ControlBase":
        raise NotImplementedError

    def copy(self) -> "ControlBase":
        c = self._blank()
        c.cond_hint_original = self.cond_hint_original
        c.strength = self.strength
        c.timestep_percent_range = self.timestep_percent_range
        c.global_average_pooling = self.global_average_pooling
        c.compression_ratio = self.compression_ratio
        c.upscale_algorithm = self.upscale_algorithm
        c.extra_args = dict(self.extra_args)
        c.previous_controlnet = self.previous_controlnet
        c.latent_format = self.latent_format
        c.vae = self.vae
        c.concat_mask = self.concat_mask
        c.extra_concat_orig = list(self.extra_concat_orig)
        return c

    def set_cond_hint(self, cond_hint, strength: float = 1.0, timestep_percent_range=(0.0, 1.0), vae=None,
                      extra_concat=None) -> "ControlBase":
        self.cond_hint_original = cond_hint
        self.strength = strength
        self.timestep_percent_range = tuple(timestep_percent_range)
        if self.latent_format is not None:
            self.vae = vae
        self.extra_concat_orig = list(extra_concat or [])
        return self

    def set_previous_controlnet(self, controlnet) -> "ControlBase":
        self.previous_controlnet = controlnet
        return self

    def set_extra_arg(self, argument: str, value=None) -> None:
        self.extra_args[argument] = value

    # --- sampling ---------------------------------------------------------------------------------
    def bind(self, model) -> "ControlBase":
        """A copy for one sampling run: its timestep range in sigmas, its own hint cache, its chain bound."""
        if self.cond_hint_original is None:
            raise ValueError("this ControlNet has no hint image (apply it with a ControlNet apply node)")
        c = self.copy()
        ms = model.model_sampling
        c.timestep_range = (ms.percent_to_sigma(self.timestep_percent_range[0]),
                            ms.percent_to_sigma(self.timestep_percent_range[1]))
        c.model = model
        c._prepare_network(model)
        network = getattr(c, "network", None)
        if network is not None:  # place it beside the UNet now (and the UNet back, should that evict it)
            network.manager.load(network.holder)
            model.prepare()
        if self.previous_controlnet is not None:
            c.previous_controlnet = self.previous_controlnet.bind(model)
        return c

    def _prepare_network(self, model) -> None:
        """Hook for controls whose network depends on the sampling model (Control-LoRA)."""

    def _out_of_range(self, sigma) -> bool:
        if self.timestep_range is None:
            return False
        s = float(sigma[0])
        return s > self.timestep_range[0] or s < self.timestep_range[1]

    def get_control(self, x, sigma, cond: dict, batched_number: int):
        """This control's residuals for the batch, summed with the chain before it (which runs first)."""
        prev = None
        if self.previous_controlnet is not None:
            prev = self.previous_controlnet.get_control(x, sigma, cond, batched_number)
        if self._out_of_range(sigma):
            return prev
        return self._control(x, sigma, cond, batched_number, prev)

    def _control(self, x, sigma, cond: dict, batched_number: int, prev):
        raise NotImplementedError


class _Network:
    """A loaded network shared by every ControlBase made from one file (weak-referenced by the manager)."""

    def __init__(self, holder, kind: str, manager, **info) -> None:
        self.holder = holder
        self.kind = kind
        self.manager = manager
        self.info = info


class ControlNet(ControlBase):
    def __init__(self, network: _Network) -> None:
        super().__init__()
        self.network = network

    def _blank(self):
        return ControlNet(self.network)

    def _control(self, x, sigma, cond: dict, batched_number: int, prev):
        from hearth.sampling.guidance import common_upscale

        holder = self.network.holder
        device = self.network.manager.load(holder)
        dtype = holder.dtype
        ratio = self.compression_ratio
        if self.cond_hint is None or tuple(self.cond_hint.shape[-2:]) != (x.shape[2] * ratio, x.shape[3] * ratio):
            hint = common_upscale(self.cond_hint_original.float(), x.shape[3] * ratio, x.shape[2] * ratio,
                                  self.upscale_algorithm, "center")
            self.cond_hint = hint.to(device=device, dtype=dtype)
        if x.shape[0] != self.cond_hint.shape[0]:
            self.cond_hint = broadcast_image_to(self.cond_hint, x.shape[0], batched_number)
        ms = self.model.model_sampling
        context = cond.get("crossattn_controlnet", cond.get("c_crossattn"))
        if context is None:
            raise ValueError("a ControlNet needs a text conditioning (cross attention) input")
        kwargs = {}
        if self.network.info.get("adm"):
            y = cond.get("y")
            if y is None:
                raise ValueError("this ControlNet needs SDXL's conditioning vector; use it with an SDXL model")
            kwargs["class_labels"] = y.to(device=device, dtype=dtype)
        if self.network.info.get("union"):
            kwargs["control_type"] = list(self.extra_args.get("control_type", []))
        t = ms.timestep(sigma).to(device=device, dtype=dtype)
        xin = ms.calculate_input(sigma, x).to(device=device, dtype=dtype)
        down, mid = holder.module(xin, t, encoder_hidden_states=context.to(device=device, dtype=dtype),
                                  controlnet_cond=self.cond_hint, return_dict=False, **kwargs)
        control = {"middle": [mid], "output": list(down)}
        return _merge(control, prev, self.strength, self.global_average_pooling)


class ControlLora(ControlNet):
    """Stability's Control-LoRA: a ControlNet made, at sampling time, from the model's own UNet weights
    (its down path), the file's full weights (hint encoder, zero convs, norms, biases) and low-rank
    ``up @ down`` differences added to the other weights."""

    def _blank(self):
        return ControlLora(self.network)

    def _prepare_network(self, model) -> None:
        self.network = _control_lora_network(self.network, model)


def _control_lora_network(lora: _Network, model) -> _Network:
    import torch

    info = lora.info
    name = info["name"]
    mapping = getattr(model, "ldm_to_diffusers", None) or {}
    if not mapping:
        raise ControlNetError(f"{name}: a Control-LoRA needs a model loaded from a single-file checkpoint")
    model.prepare()
    holder = model.patcher.holder
    key = (holder.id, model.patcher.signature)
    built = info.get("built")
    if built is not None and built[0] == key:
        return built[1]
    weights = info["weights"]
    sd: dict[str, Any] = {}
    for k, target in mapping.items():
        if k.startswith(("time_embed.", "label_emb.", "input_blocks.", "middle_block.")):
            param = holder.param(target)
            if param is not None:
                sd[k] = param.data.detach().to("cpu", torch.float32, copy=True)
    for k, v in weights.items():
        if k != "lora_controlnet" and "__" not in k and k.endswith((".weight", ".bias")):
            sd[k] = v
    for k, up in weights.items():
        if not k.endswith(".up") or "__" in k:
            continue
        base = k[:-len(".up")]
        down = weights.get(base + ".down")
        weight = sd.get(base + ".weight")
        if down is None or weight is None:
            raise ControlNetError(f"{name}: Control-LoRA weight {base} has no base weight or no down half")
        delta = torch.mm(up.flatten(start_dim=1).float(), down.flatten(start_dim=1).float())
        if delta.numel() != weight.numel():
            raise ControlNetError(f"{name}: Control-LoRA weight {base} does not fit the model")
        sd[base + ".weight"] = weight.float() + delta.reshape(weight.shape)
    if "zero_convs.0.0.weight" not in sd:
        raise ControlNetError(f"{name}: not a Control-LoRA (no zero convs)")
    try:
        network = _controlnet_from_ldm(sd, "", lora.manager, name)
    except ControlNetError as exc:
        raise ControlNetError(f"{name}: {exc}") from None
    info["built"] = (key, network)  # one model at a time: a new model rebuilds
    return network


class T2IAdapter(ControlBase):
    def __init__(self, network: _Network) -> None:
        super().__init__()
        self.network = network
        self.control_input = None

    def _blank(self):
        return T2IAdapter(self.network)

    def _control(self, x, sigma, cond: dict, batched_number: int, prev):
        import torch

        from hearth.sampling.guidance import common_upscale

        info = self.network.info
        holder = self.network.holder
        device = self.network.manager.load(holder)
        ratio = self.compression_ratio
        if self.cond_hint is None or tuple(self.cond_hint.shape[-2:]) != (x.shape[2] * ratio, x.shape[3] * ratio):
            self.control_input = None
            unshuffle = info["unshuffle"]
            width = math.ceil(x.shape[3] * ratio / unshuffle) * unshuffle
            height = math.ceil(x.shape[2] * ratio / unshuffle) * unshuffle
            hint = common_upscale(self.cond_hint_original.float(), width, height, self.upscale_algorithm, "center")
            hint = hint.float().to(device)
            if info["channels_in"] == 1 and hint.shape[1] > 1:
                hint = torch.mean(hint, 1, keepdim=True)
            self.cond_hint = hint
        if x.shape[0] != self.cond_hint.shape[0]:
            self.cond_hint = broadcast_image_to(self.cond_hint, x.shape[0], batched_number)
        if self.control_input is None:
            features = holder.module(self.cond_hint.to(holder.dtype))
            self.control_input = _t2i_layout(list(features), info["xl"])
        control = {k: [None if a is None else a.clone() for a in v] for k, v in self.control_input.items()}
        return _merge(control, prev, self.strength, self.global_average_pooling, output_dtype=x.dtype)


def _t2i_layout(features: list, xl: bool) -> dict:
    """The adapter's per-level features placed where the original UNet adds them (ComfyUI's lists)."""
    placed: list = []
    for i, f in enumerate(features):
        if xl:
            placed.append(None)
            if i == 0:
                placed += [None, None]
            if i == 2:
                placed.append(None)
        else:
            placed += [None, None]
        placed.append(f)
    placed.reverse()
    if xl:
        return {"input": placed[1:], "middle": placed[:1]}
    return {"input": placed}


# --- feeding residuals to the diffusers UNet ---------------------------------------------------------

def unet_residuals(unet, control: dict, x_shape, device, dtype) -> dict:
    """ComfyUI-form residuals → ``UNet2DConditionModel.forward`` keyword arguments.

    The original UNet adds ``output`` residuals to the skip connections (one per input block, the last
    entry to the last block), ``input`` residuals to the hidden state right after input blocks (the
    last entry after block 0) and ``middle`` after the middle block. diffusers takes the first as
    ``down_block_additional_residuals``/``mid_block_additional_residual`` and the second, one per down
    block, as ``down_intrablock_additional_residuals`` (after a block's last attention pair, or after a
    block without attention, downsampler included); gaps are filled with zeros.
    """
    import torch

    cfg = unet.config
    channels = list(cfg.block_out_channels)
    n = len(channels)
    lpb = cfg.layers_per_block
    lpb = [lpb] * n if isinstance(lpb, int) else list(lpb)
    batch = x_shape[0]
    h, w = x_shape[-2], x_shape[-1]
    blocks = [(channels[0], h, w)]
    positions = []
    for level in range(n):
        blocks += [(channels[level], h, w)] * lpb[level]
        pos = len(blocks) - 1
        if level < n - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
            blocks.append((channels[level], h, w))
            if not cfg.down_block_types[level].startswith("CrossAttn"):
                pos = len(blocks) - 1
        positions.append(pos)
    mid_shape = (channels[-1], h, w)
    count = len(blocks)

    def fit(t, shape, where):
        if t is None:
            return None
        if tuple(t.shape[1:]) != tuple(shape) or t.shape[0] not in (1, batch):
            log.warning("control residual of shape %s does not fit %s %s; not applied", tuple(t.shape), where,
                        (batch,) + tuple(shape))
            return None
        return t.to(device=device, dtype=dtype)

    def zeros(shape):
        return torch.zeros((batch,) + tuple(shape), device=device, dtype=dtype)

    out = control.get("output") or []
    offset = count - len(out)
    skips = [fit(out[i - offset], blocks[i], "skip connection") if 0 <= i - offset < len(out) else None
             for i in range(count)]
    inp = control.get("input") or []
    after = [inp[len(inp) - 1 - i] if i < len(inp) else None for i in range(count)]
    middle = control.get("middle") or []
    mid = fit(middle[-1], mid_shape, "middle block") if middle else None

    kwargs: dict = {}
    if any(s is not None for s in skips) or (mid is not None and not any(a is not None for a in after)):
        kwargs["down_block_additional_residuals"] = tuple(zeros(blocks[i]) if s is None else s
                                                          for i, s in enumerate(skips))
        kwargs["mid_block_additional_residual"] = zeros(mid_shape) if mid is None else mid
        mid = None
    stray = [i for i, a in enumerate(after) if a is not None and i not in positions]
    if stray:
        log.warning("control residuals after input blocks %s cannot be applied to this UNet layout", stray)
    intra = [fit(after[p], blocks[p], f"input block {p}") for p in positions]
    if any(a is not None for a in intra):
        residuals = [zeros(blocks[p]) if a is None else a for a, p in zip(intra, positions)]
        if mid is not None:
            residuals.append(mid)
        kwargs["down_intrablock_additional_residuals"] = residuals
    return kwargs


# --- detection and building ------------------------------------------------------------------------

def _hint_channels_ldm(sd, prefix: str) -> tuple[int, list[int], list[int]]:
    rx = re.compile(re.escape(prefix) + r"input_hint_block\.(\d+)\.weight$")
    idx = sorted({int(m.group(1)) for m in map(rx.match, sd) if m})
    if len(idx) < 3:
        raise ControlNetError("hint encoder (input_hint_block) not found")
    shapes = [tensor_shape(sd, f"{prefix}input_hint_block.{i}.weight") for i in idx]
    return shapes[0][1], [s[0] for s in shapes[0:-1:2]], idx


def _down_path(sd, prefix: str) -> archmod.UNetArch:
    """The UNet architecture of a ControlNet's down path (input blocks + middle block), original layout."""
    arch = archmod.infer_down_path(sd, prefix)
    if arch.down_block_depth is not None:
        raise ControlNetError("transformer depth varies within a level; not supported")
    if not arch.middle_depth:
        raise ControlNetError("a ControlNet without an attention middle block is not supported")
    return arch


def _down_path_diffusers(sd) -> tuple[archmod.UNetArch, bool]:
    keys = set(sd.keys())
    levels = sorted({int(k.split(".")[1]) for k in keys if k.startswith("down_blocks.")})
    channels = [tensor_shape(sd, f"down_blocks.{i}.resnets.0.conv2.weight")[0] for i in levels]
    num_res = [len({k.split(".")[3] for k in keys if k.startswith(f"down_blocks.{i}.resnets.")}) for i in levels]
    down, context_dim, use_linear = [], None, False
    for i in levels:
        d = archmod._depth(keys, f"down_blocks.{i}.attentions.0.")
        down.append(d)
        if d:
            context_dim = tensor_shape(sd, f"down_blocks.{i}.attentions.0.transformer_blocks.0.attn2.to_k.weight")[1]
            use_linear = len(tensor_shape(sd, f"down_blocks.{i}.attentions.0.proj_in.weight")) == 2
    if "mid_block.attentions.0.proj_in.weight" not in keys:
        raise ControlNetError("a ControlNet without an attention middle block is not supported")
    middle = archmod._depth(keys, "mid_block.attentions.0.")
    if context_dim is None:
        context_dim = tensor_shape(sd, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")[1]
        use_linear = len(tensor_shape(sd, "mid_block.attentions.0.proj_in.weight")) == 2
    adm, text_time = None, False
    if "class_embedding.linear_1.weight" in keys:
        adm = tensor_shape(sd, "class_embedding.linear_1.weight")[1]
    elif "add_embedding.linear_1.weight" in keys:
        adm, text_time = tensor_shape(sd, "add_embedding.linear_1.weight")[1], True
    mc, in_channels = tensor_shape(sd, "conv_in.weight")[:2]
    arch = archmod.UNetArch(in_channels=in_channels, out_channels=in_channels, model_channels=mc,
                            level_channels=channels, num_res_blocks=num_res, down_depth=down,
                            up_depth=[[0] * (num_res[len(levels) - 1 - u] + 1) for u in range(len(levels))],
                            middle_depth=middle, context_dim=context_dim, use_linear=use_linear,
                            adm_in_channels=adm, time_embed_dim=tensor_shape(sd, "time_embedding.linear_1.weight")[0])
    return arch, text_time


def _controlnet_config(arch: archmod.UNetArch, hint_channels: int, hint_block: list[int]) -> dict:
    from hearth.runtime.loader import family_from_unet

    family = family_from_unet(arch)
    arch.num_head_channels = family.num_head_channels
    arch.num_heads = family.num_heads
    if len(set(arch.num_res_blocks)) > 1:
        raise ControlNetError("ControlNets with a different number of blocks per level are not supported")
    if arch.time_embed_dim != 4 * arch.model_channels:
        raise ControlNetError("unusual time embedding width; not supported")
    depth = [d if d > 0 else 1 for d in arch.down_depth]
    if arch.down_depth[-1] > 0 and arch.middle_depth != arch.down_depth[-1]:
        raise ControlNetError("middle block depth differs from the last level's; not supported")
    depth[-1] = arch.down_depth[-1] if arch.down_depth[-1] > 0 else arch.middle_depth
    config = {
        "in_channels": arch.in_channels,
        "conditioning_channels": hint_channels,
        "down_block_types": tuple("CrossAttnDownBlock2D" if d > 0 else "DownBlock2D" for d in arch.down_depth),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "block_out_channels": tuple(arch.level_channels),
        "layers_per_block": arch.num_res_blocks[0],
        "cross_attention_dim": arch.context_dim,
        "transformer_layers_per_block": tuple(depth),
        "attention_head_dim": tuple(arch.heads(c) for c in arch.level_channels),
        "use_linear_projection": arch.use_linear,
        "upcast_attention": family.upcast_attention,
        "conditioning_embedding_out_channels": tuple(hint_block),
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
    }
    if arch.adm_in_channels is not None:
        config["class_embed_type"] = "projection"
        config["projection_class_embeddings_input_dim"] = arch.adm_in_channels
    return config


def _ldm_to_diffusers(sd, prefix: str, arch: archmod.UNetArch, hint_idx: list[int]) -> dict:
    key_map = archmod.unet_key_map(arch)
    hint = {f"input_hint_block.{hint_idx[0]}": "controlnet_cond_embedding.conv_in",
            f"input_hint_block.{hint_idx[-1]}": "controlnet_cond_embedding.conv_out"}
    for j, i in enumerate(hint_idx[1:-1]):
        hint[f"input_hint_block.{i}"] = f"controlnet_cond_embedding.blocks.{j}"
    state = {}
    for full in sd:
        if not full.startswith(prefix):
            continue
        k = full[len(prefix):]
        m = re.match(r"zero_convs\.(\d+)\.0\.(weight|bias)$", k)
        if m:
            state[f"controlnet_down_blocks.{m.group(1)}.{m.group(2)}"] = sd[full]
            continue
        m = re.match(r"middle_block_out\.0\.(weight|bias)$", k)
        if m:
            state[f"controlnet_mid_block.{m.group(1)}"] = sd[full]
            continue
        m = re.match(r"(input_hint_block\.\d+)\.(weight|bias)$", k)
        if m:
            state[f"{hint[m.group(1)]}.{m.group(2)}"] = sd[full]
            continue
        new = archmod.convert_unet_key(k, key_map)
        if new is not None:
            state[new] = sd[full]
    return state


def _build(factory, state: dict, dtype, what: str):
    from hearth.runtime.loader import _empty_module, _load_into

    module = _empty_module(factory)
    try:
        return _load_into(module, state, dtype, what)
    except archmod.ArchitectureError as exc:
        raise ControlNetError(str(exc)) from None


def _build_controlnet(state: dict, config: dict, manager, name: str, union: dict | None = None) -> _Network:
    from diffusers import ControlNetModel

    from hearth.runtime.patcher import ModuleHolder

    dtype = manager.dtype_for("unet")
    module = _build(lambda: ControlNetModel(**config), state, dtype, f"{name} (ControlNet)")
    if union is not None:
        module = _union_controlnet(module, union, dtype, name)
    return _Network(ModuleHolder(module, name, "unet"), "controlnet", manager,
                    adm="class_embed_type" in config, union=union is not None)


UNION_KEYS = ("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")


def _union_controlnet(net, union: dict, dtype, name: str):
    """A union ControlNet (xinsir's ControlNet++): the plain network plus its control-type machinery.

    The type (SetUnionControlNetType) adds an embedding of its one-hot vector to the time embedding, and
    the hint features get, per channel, a learned offset computed from their spatial mean plus the
    type's task embedding (one transformer layer, then a projection). With no type ("auto") the hint
    is used as in a plain ControlNet; the type embedding (of an all-zero vector) is still added.
    """
    import torch
    from torch import nn

    from hearth.runtime.model import timestep_embedding

    try:
        task = union["task_embedding"]
        types, width = task.shape
        add_in = union["control_add_embedding.linear_1.weight"].shape[1]
        add_dim = add_in // types
        heads = 8
        layers = sorted({int(k.split(".")[1]) for k in union if k.startswith("transformer_layes.")})
    except (KeyError, IndexError) as exc:
        raise ControlNetError(f"incomplete union ControlNet weights ({exc})") from None
    if width % heads or add_in % types:
        raise ControlNetError("unexpected union ControlNet shapes")

    class Block(nn.Module):  # pre-norm transformer layer with quick-GELU, fused q/k/v
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(width)
            self.in_proj = nn.Linear(width, 3 * width)
            self.out_proj = nn.Linear(width, width)
            self.ln_2 = nn.LayerNorm(width)
            self.c_fc = nn.Linear(width, 4 * width)
            self.c_proj = nn.Linear(4 * width, width)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.in_proj(self.ln_1(x)).split(width, dim=2)
            q, k, v = (t.reshape(b, n, heads, width // heads).transpose(1, 2) for t in (q, k, v))
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, width)
            x = x + self.out_proj(a)
            h = self.c_fc(self.ln_2(x))
            return x + self.c_proj(h * torch.sigmoid(1.702 * h))

    class WithExtra(nn.Module):  # class embedding + the control-type embedding passed after the labels
        def __init__(self, inner, n_labels):
            super().__init__()
            self.inner = inner
            self.n_labels = n_labels

        def forward(self, labels):
            extra = labels[:, self.n_labels:]
            if self.inner is None:
                return extra
            return self.inner(labels[:, :self.n_labels]) + extra

    class Union(nn.Module):
        def __init__(self):
            super().__init__()
            self.hint_embedding = net.controlnet_cond_embedding
            net.controlnet_cond_embedding = nn.Identity()
            n_labels = net.config.projection_class_embeddings_input_dim or 0
            net.class_embedding = WithExtra(net.class_embedding, n_labels)
            self.net = net
            self.task_embedding = nn.Parameter(torch.empty(types, width))
            self.transformer = nn.ModuleList(Block() for _ in layers)
            self.spatial_ch_projs = nn.Linear(width, width)
            self.add_linear_1 = nn.Linear(add_in, union["control_add_embedding.linear_2.weight"].shape[0])
            self.add_linear_2 = nn.Linear(*union["control_add_embedding.linear_2.weight"].shape[::-1])
            self.num_types = types

        @property
        def dtype(self):
            return self.task_embedding.dtype

        def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, class_labels=None,
                    control_type=(), return_dict=False):
            control_type = list(control_type)
            if any(c >= self.num_types for c in control_type):
                raise ValueError(f"control type {max(control_type)} is out of range for this union ControlNet "
                                 f"({self.num_types} types); the ProMax model has more")
            one_hot = torch.zeros((self.num_types,), device=sample.device)
            for c in control_type:
                one_hot[c] = 1.0
            add = timestep_embedding(one_hot, add_dim).to(sample.dtype).reshape((1, -1))
            add = self.add_linear_2(torch.nn.functional.silu(self.add_linear_1(add)))
            add = add.expand(sample.shape[0], -1)
            guided = self.hint_embedding(controlnet_cond)
            if control_type:
                feat = torch.mean(guided, dim=(2, 3)) + self.task_embedding[control_type[0]].to(guided.dtype)
                x = feat.unsqueeze(1)
                for block in self.transformer:
                    x = block(x)
                guided = guided + self.spatial_ch_projs(x[:, 0]).unsqueeze(-1).unsqueeze(-1)
            labels = add if class_labels is None else torch.cat([class_labels.to(add.dtype), add], dim=1)
            return self.net(sample, timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=guided,
                            class_labels=labels, return_dict=return_dict)

    module = Union()
    state = {"task_embedding": task, "spatial_ch_projs.weight": union["spatial_ch_projs.weight"],
             "spatial_ch_projs.bias": union["spatial_ch_projs.bias"]}
    for part in ("weight", "bias"):
        state[f"add_linear_1.{part}"] = union[f"control_add_embedding.linear_1.{part}"]
        state[f"add_linear_2.{part}"] = union[f"control_add_embedding.linear_2.{part}"]
    rename = {"attn.in_proj_weight": "in_proj.weight", "attn.in_proj_bias": "in_proj.bias",
              "attn.in_proj.weight": "in_proj.weight", "attn.in_proj.bias": "in_proj.bias",
              "attn.out_proj.weight": "out_proj.weight", "attn.out_proj.bias": "out_proj.bias",
              "mlp.c_fc.weight": "c_fc.weight", "mlp.c_fc.bias": "c_fc.bias", "mlp.c_proj.weight": "c_proj.weight",
              "mlp.c_proj.bias": "c_proj.bias"}
    for k, v in union.items():
        if k.startswith("transformer_layes."):
            _, idx, rest = k.split(".", 2)
            state[f"transformer.{layers.index(int(idx))}.{rename.get(rest, rest)}"] = v
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(("net.", "hint_embedding."))}
    try:
        archmod.check_weights(own, state, "union ControlNet")
    except archmod.ArchitectureError as exc:
        raise ControlNetError(str(exc)) from None
    with torch.no_grad():
        for k in own:
            module.get_parameter(k).copy_(state[k].to(dtype))
    return module.to(dtype).eval().requires_grad_(False)


def _controlnet_from_ldm(sd: dict, prefix: str, manager, name: str) -> _Network:
    try:
        arch = _down_path(sd, prefix)
    except archmod.ArchitectureError as exc:
        raise ControlNetError(str(exc)) from None
    hint_channels, hint_block, hint_idx = _hint_channels_ldm(sd, prefix)
    config = _controlnet_config(arch, hint_channels, hint_block)
    return _build_controlnet(_ldm_to_diffusers(sd, prefix, arch, hint_idx), config, manager, name)


def _controlnet_from_diffusers(sd: dict, manager, name: str) -> _Network:
    arch, text_time = _down_path_diffusers(sd)
    keys = set(sd)
    hint_channels = tensor_shape(sd, "controlnet_cond_embedding.conv_in.weight")[1]
    n_blocks = len({k.split(".")[2] for k in keys if k.startswith("controlnet_cond_embedding.blocks.")})
    hint_block = [tensor_shape(sd, "controlnet_cond_embedding.conv_in.weight")[0]] + [
        tensor_shape(sd, f"controlnet_cond_embedding.blocks.{j}.weight")[0] for j in range(1, n_blocks, 2)]
    config = _controlnet_config(arch, hint_channels, hint_block)
    state, union = {}, {}
    for k in keys:
        if k.startswith(UNION_KEYS):
            union[k] = sd[k]
            continue
        new = k
        if text_time and k.startswith("add_embedding."):
            new = "class_embedding." + k[len("add_embedding."):]
        state[new] = sd[k]
    return _build_controlnet(state, config, manager, name, union or None)


def _t2i_to_diffusers(sd: dict) -> tuple[dict, dict]:
    """TencentARC adapter weights (or diffusers' ``adapter.*``) → (diffusers state, T2IAdapter config)."""
    if any(k.startswith("adapter.") for k in sd):
        state = dict(sd)
    elif "body.0.in_conv.weight" in sd and "body.0.out_conv.weight" in sd:  # light
        state = {}
        for k, v in sd.items():
            m = re.match(r"body\.(\d+)\.body\.(\d+)\.(.*)$", k)
            if m:
                state[f"adapter.body.{m.group(1)}.resnets.{m.group(2)}.{m.group(3)}"] = v
            else:
                state["adapter." + k] = v
    elif "conv_in.weight" in sd:  # full
        if any(k.endswith("down_opt.op.weight") for k in sd):
            raise ControlNetError("T2I-Adapters with convolution downsampling are not supported")
        if tensor_shape(sd, "body.0.block2.weight")[2] != 1:
            raise ControlNetError("T2I-Adapters with 3x3 second convolutions are not supported")
        state = {}
        for k, v in sd.items():
            m = re.match(r"body\.(\d+)\.(in_conv|block1|block2|skep)\.(.*)$", k)
            if m:
                n, part = int(m.group(1)), m.group(2)
                if part == "skep":
                    raise ControlNetError("T2I-Adapters with skip convolutions are not supported")
                if part == "in_conv":
                    state[f"adapter.body.{n // 2}.in_conv.{m.group(3)}"] = v
                else:
                    state[f"adapter.body.{n // 2}.resnets.{n % 2}.{part}.{m.group(3)}"] = v
            else:
                state["adapter." + k] = v
    else:
        raise ControlNetError("not a T2I-Adapter")
    keys = set(state)
    levels = sorted({int(k.split(".")[2]) for k in keys if k.startswith("adapter.body.")})
    res = len({k.split(".")[4] for k in keys if k.startswith("adapter.body.0.resnets.")})
    if "adapter.conv_in.weight" in keys:
        cin = tensor_shape(state, "adapter.conv_in.weight")[1]
        xl = cin in (256, 768)
        factor = 16 if xl else 8
        channels = [tensor_shape(state, f"adapter.body.{i}.resnets.0.block1.weight")[0] for i in levels]
        kind = "full_adapter_xl" if xl else "full_adapter"
    elif "adapter.body.0.out_conv.weight" in keys:
        cin = tensor_shape(state, "adapter.body.0.in_conv.weight")[1]
        xl, factor, kind = False, 8, "light_adapter"
        outs = [tensor_shape(state, f"adapter.body.{i}.out_conv.weight")[0] for i in levels]
        if len(outs) < 2 or outs[-1] != outs[-2]:
            raise ControlNetError("unexpected light T2I-Adapter layout")
        channels = outs[:-1]
    else:
        raise ControlNetError("unrecognised T2I-Adapter layout")
    if cin % (factor * factor):
        raise ControlNetError("unexpected T2I-Adapter input width")
    config = {"in_channels": cin // (factor * factor), "channels": channels, "num_res_blocks": res,
              "downscale_factor": factor, "adapter_type": kind}
    return state, config


def _t2i_adapter(sd: dict, manager, name: str) -> _Network:
    import torch
    from diffusers import T2IAdapter as DiffusersT2IAdapter

    from hearth.runtime.patcher import ModuleHolder

    state, config = _t2i_to_diffusers(sd)
    # ComfyUI runs adapters in the sampling precision (float32 latents)
    module = _build(lambda: DiffusersT2IAdapter(**config), state, torch.float32, f"{name} (T2I-Adapter)")
    return _Network(ModuleHolder(module, name, "unet"), "t2i", manager, channels_in=config["in_channels"],
                    unshuffle=config["downscale_factor"], xl=config["adapter_type"] == "full_adapter_xl")


def _apply_difference(sd: dict, model, name: str) -> None:
    """Diff ControlNet: add the MODEL's (patched) UNet weights to the deltas, in the file's precision."""
    if model is None:
        log.warning("%s is a diff ControlNet loaded without a model; it will very likely not work", name)
        return
    mapping = getattr(model, "ldm_to_diffusers", None) or {}
    if not mapping:
        log.warning("%s: the model's original weight names are unknown; diff ControlNet left as is", name)
        return
    model.prepare()
    holder = model.patcher.holder
    for k in list(sd):
        if not k.startswith("control_model."):
            continue
        target = mapping.get(k[len("control_model."):])
        param = holder.param(target) if target is not None else None
        if param is not None and tuple(param.shape) == tuple(sd[k].shape):
            delta = sd[k]
            sd[k] = delta + param.data.to(device=delta.device, dtype=delta.dtype)


def load_controlnet(path: str | os.PathLike, manager, model=None) -> ControlBase:
    """ControlNetLoader / DiffControlNetLoader. Plain files are shared between loads."""
    path = Path(path)
    name = path.name
    stem = os.path.splitext(name)[0]
    gap = stem.endswith("_shuffle") or stem.endswith("_shuffle_fp16")

    def build() -> _Network:
        return _load_network(path, manager, model)

    if model is not None:
        network = build()  # depends on the model's weights: not shared
    else:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, "controlnet")
        network = manager.cached(key)
        if network is None:
            network = build()
            manager.remember(key, network)
    control = {"controlnet": ControlNet, "controllora": ControlLora, "t2i": T2IAdapter}[network.kind](network)
    control.global_average_pooling = gap
    return control


def _load_network(path: Path, manager, model) -> _Network:
    name = path.name
    try:
        raw = load_state_dict(path)
    except Exception as exc:
        raise ControlNetError(f"{name}: {exc}") from None
    sd = {k: raw[k] for k in raw}
    if isinstance(sd.get("adapter"), dict):
        sd = dict(sd["adapter"])
    try:
        return _detect_and_build(sd, manager, model, name)
    except ControlNetError as exc:
        raise ControlNetError(f"{name}: {exc}") from None


def _detect_and_build(sd: dict, manager, model, name: str) -> _Network:
    if "lora_controlnet" in sd:
        if "input_hint_block.0.weight" not in sd:
            raise ControlNetError("Control-LoRA without a hint encoder")
        return _Network(None, "controllora", manager, weights=sd, name=name)
    if "controlnet_cond_embedding.conv_in.weight" in sd:
        return _controlnet_from_diffusers(sd, manager, name)
    if any(k in sd for k in ("controlnet_blocks.0.weight", "controlnet_blocks.0.linear.weight",
                             "after_proj_list.0.weight", "controlnet_x_embedder.weight")):
        raise ControlNetError("a ControlNet for a model family Hearth does not load (SD3/Flux/HunyuanDiT/Qwen)")
    if "control_model.zero_convs.0.0.weight" in sd:
        if "difference" in sd:
            _apply_difference(sd, model, name)
        return _controlnet_from_ldm(sd, "control_model.", manager, name)
    if "zero_convs.0.0.weight" in sd:
        return _controlnet_from_ldm(sd, "", manager, name)
    if any(k.startswith(("backbone.", "adapter.backbone.")) for k in sd):
        raise ControlNetError("Stable Cascade ControlNets are not supported")
    if ("conv_in.weight" in sd and "body.0.block1.weight" in sd) or "body.0.in_conv.weight" in sd \
            or "adapter.body.0.resnets.0.block1.weight" in sd:
        return _t2i_adapter(sd, manager, name)
    raise ControlNetError("not a ControlNet or T2I-Adapter this version understands (no known key layout)")
