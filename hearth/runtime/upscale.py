"""Image upscale models (ESRGAN and friends): the UPSCALE_MODEL value, loading, and tiled upscaling.

With the optional ``spandrel`` package installed (``pip install hearth[upscale]``; it needs torchvision),
every architecture spandrel recognises loads through it, as in ComfyUI. Without it Hearth still loads
the most common upscalers with its own small networks, written from the published architectures:

* ESRGAN / Real-ESRGAN (RRDBNet: 23 residual-in-residual dense blocks, nearest-neighbour upsampling
  with a convolution per 2x step), in the original ``model.N`` key layout, the BasicSR/Real-ESRGAN
  ``conv_first / body.N.rdbK`` layout and the ``RRDB_trunk`` layout of BSRGAN; scale 1, 2, 4 or 8,
  including the Real-ESRGAN x2/x1 variants that pixel-unshuffle their input first.
* Real-ESRGAN Compact (SRVGGNetCompact: a plain stack of convolutions with PReLU, a pixel shuffle and a
  nearest-neighbour residual).

Any other file is refused with a message that names the extra to install. Pickle files are read only
through ``torch.load(weights_only=True)`` (see hearth.runtime.files).
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hearth.runtime.files import WeightFileError, load_state_dict

log = logging.getLogger(__name__)

TILE = 512
OVERLAP = 32
MIN_TILE = 128


class UnsupportedUpscaleModel(WeightFileError):
    """A weight file whose architecture Hearth cannot build."""


# --- networks ---------------------------------------------------------------------------------------

def _lrelu(x):
    return F.leaky_relu(x, 0.2, inplace=True)


class DenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing the block input and every earlier output; residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x):
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(_lrelu(conv(torch.cat(feats, 1))))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Three dense blocks in a row with a 0.2-scaled residual around them."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(nf, gc)
        self.rdb2 = DenseBlock(nf, gc)
        self.rdb3 = DenseBlock(nf, gc)

    def forward(self, x):
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator. ``unshuffle`` > 1: Real-ESRGAN's x2/x1 models, which fold the input into
    channels first (so the network's own 4x yields 2x or 1x)."""

    def __init__(self, in_nc: int, out_nc: int, nf: int, nb: int, gc: int, n_up: int, unshuffle: int = 1) -> None:
        super().__init__()
        self.unshuffle = unshuffle
        self.conv_first = nn.Conv2d(in_nc, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.ups = nn.ModuleList([nn.Conv2d(nf, nf, 3, 1, 1) for _ in range(n_up)])
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_nc, 3, 1, 1)

    def forward(self, x):
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self.ups:
            feat = _lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN Compact: conv + PReLU pairs, a last conv to out*scale² channels, pixel shuffle, plus the
    nearest-neighbour upscaled input."""

    def __init__(self, in_nc: int, out_nc: int, nf: int, num_conv: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(in_nc, nf, 3, 1, 1), nn.PReLU(num_parameters=nf)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(nf, nf, 3, 1, 1), nn.PReLU(num_parameters=nf)]
        layers.append(nn.Conv2d(nf, out_nc * scale * scale, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        out = F.pixel_shuffle(self.body(x), self.scale)
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")


# --- the UPSCALE_MODEL value ------------------------------------------------------------------------

class UpscaleModel:
    """An image-to-image network with a fixed integer scale.

    ``model`` is the torch module (spandrel's descriptor when spandrel loaded the file, in ``descriptor``);
    calling the value runs one [1, C, H, W] tile in 0..1 and returns [1, C', H*scale, W*scale] in 0..1.
    """

    def __init__(self, model: nn.Module, scale: int, input_channels: int, output_channels: int, architecture: str,
                 minimum: int = 0, multiple_of: int = 1, descriptor: Any = None, name: str = "") -> None:
        self.model = model
        self.scale = scale
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.architecture = architecture
        self.minimum = minimum
        self.multiple_of = multiple_of
        self.descriptor = descriptor
        self.name = name
        self.holder = None  # the memory manager's handle, made on first use

    def __repr__(self) -> str:
        return f"<UpscaleModel {self.architecture} x{self.scale} {self.name}>"

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.model.parameters():
            return p.dtype
        return torch.float32

    def to(self, device) -> "UpscaleModel":
        self.model.to(device)
        return self

    def _padding(self, width: int, height: int) -> tuple[int, int]:
        def up(v: int) -> int:
            v = max(self.minimum, v)
            return -(-v // self.multiple_of) * self.multiple_of

        return up(width) - width, up(height) - height

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.descriptor is not None:
            return self.descriptor(image)
        if image.ndim != 4:
            raise ValueError(f"an upscale model takes [1, C, H, W] tensors, not {list(image.shape)}")
        _, _, h, w = image.shape
        pad_w, pad_h = self._padding(w, h)
        if pad_w or pad_h:
            # mirror what can be mirrored (at most side-1 pixels), repeat the edge for the rest
            rw, rh = min(pad_w, w - 1), min(pad_h, h - 1)
            image = F.pad(image, (0, rw, 0, rh), mode="reflect")
            image = F.pad(image, (0, pad_w - rw, 0, pad_h - rh), mode="replicate")
        out = self.model(image.to(self.dtype)).clamp_(0, 1)
        return out[..., : h * self.scale, : w * self.scale]


# --- loading ----------------------------------------------------------------------------------------

def _plain_state_dict(sd: Mapping[str, Any], name: str) -> dict[str, torch.Tensor]:
    """Unwrap training containers ({"params_ema": sd}, a single nested dict) into {name: tensor}."""
    sd = dict(sd)
    for key in ("params_ema", "params"):
        if isinstance(sd.get(key), Mapping):
            sd = dict(sd[key])
            break
    else:
        if len(sd) == 1:
            only = next(iter(sd.values()))
            if isinstance(only, Mapping):
                sd = dict(only)
    tensors = {k: v for k, v in sd.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise UnsupportedUpscaleModel(f"{name} holds no tensors: it is not an upscale model")
    # DataParallel-trained SwinIR files prefix every key with "module."
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in tensors:
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _shape(sd: dict, key: str) -> tuple[int, ...]:
    return tuple(sd[key].shape)


def _esrgan_canonical(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Rename any of the three RRDBNet layouts to RRDBNet's own names; None if this is not one."""
    out: dict[str, torch.Tensor] = {}
    if "model.0.weight" in sd and "model.1.sub.0.RDB1.conv1.0.weight" in sd:  # original ESRGAN
        top = sorted({int(k.split(".")[1]) for k in sd if re.match(r"model\.\d+\.(weight|bias)$", k)})
        if not top or top[0] != 0:
            return None
        last = top[-1]
        hr = last - 2
        if hr < 2 or (hr - 2) % 3:
            return None
        n_up = (hr - 2) // 3
        names = {0: "conv_first", hr: "conv_hr", last: "conv_last"}
        names.update({3 + 3 * i: f"ups.{i}" for i in range(n_up)})
        if set(top) != set(names):
            return None
        nb = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k)))
        for key, value in sd.items():
            if m := re.match(r"model\.(\d+)\.(weight|bias)$", key):
                out[f"{names[int(m.group(1))]}.{m.group(2)}"] = value
            elif m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
                out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
            elif m := re.match(r"model\.1\.sub\.(\d+)\.(weight|bias)$", key):
                if int(m.group(1)) != nb:
                    return None
                out[f"conv_body.{m.group(2)}"] = value
            else:
                return None  # ESRGAN+ (conv1x1), normalisation layers, pixel-shuffle upsamplers ...
        return out
    trunk = None
    if "body.0.rdb1.conv1.weight" in sd and "conv_body.weight" in sd:  # BasicSR / Real-ESRGAN
        trunk = (r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)$", "conv_body", r"conv_up(\d)")
    elif "RRDB_trunk.0.RDB1.conv1.weight" in sd and "trunk_conv.weight" in sd:  # BSRGAN, later ESRGAN code
        trunk = (r"RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)$", "trunk_conv", r"upconv(\d)")
    if trunk is None or "conv_first.weight" not in sd or "conv_last.weight" not in sd:
        return None
    block, body_conv, up = trunk
    fixed = {"conv_first": "conv_first", body_conv: "conv_body", "conv_hr": "conv_hr", "HRconv": "conv_hr",
             "conv_last": "conv_last"}
    for key, value in sd.items():
        if m := re.match(block, key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif m := re.match(up + r"\.(weight|bias)$", key):
            out[f"ups.{int(m.group(1)) - 1}.{m.group(2)}"] = value
        elif (m := re.match(r"(\w+)\.(weight|bias)$", key)) and m.group(1) in fixed:
            out[f"{fixed[m.group(1)]}.{m.group(2)}"] = value
        else:
            return None
    return out


def _build_esrgan(sd: dict[str, torch.Tensor], name: str) -> UpscaleModel | None:
    canon = _esrgan_canonical(sd)
    if canon is None:
        return None
    nf, in_nc = _shape(canon, "conv_first.weight")[:2]
    out_nc = _shape(canon, "conv_last.weight")[0]
    gc = _shape(canon, "body.0.rdb1.conv1.weight")[0]
    nb = 1 + max(int(k.split(".")[1]) for k in canon if k.startswith("body."))
    n_up = len({k.split(".")[1] for k in canon if k.startswith("ups.")})
    # every block has 3 dense blocks of 5 convolutions (weight + bias): a file naming block 99999 must hold
    # all of them, checked before anything is built
    if len(canon) != 30 * nb + 2 * (4 + n_up):
        raise UnsupportedUpscaleModel(f"{name}: an incomplete ESRGAN file ({len(canon)} tensors for {nb} blocks)")
    unshuffle = 1
    if in_nc in (out_nc * 4, out_nc * 16):  # Real-ESRGAN x2 / x1: the input is pixel-unshuffled
        unshuffle = int(math.isqrt(in_nc // out_nc))
    net_scale = 2 ** n_up
    if net_scale % unshuffle:
        return None
    model = _load_weights(lambda: RRDBNet(in_nc, out_nc, nf, nb, gc, n_up, unshuffle), canon, name)
    return UpscaleModel(model, net_scale // unshuffle, in_nc // (unshuffle * unshuffle), out_nc, "ESRGAN",
                        minimum=2, multiple_of=4 if unshuffle > 1 else 1, name=name)


def _build_compact(sd: dict[str, torch.Tensor], name: str) -> UpscaleModel | None:
    if "body.0.weight" not in sd or "body.1.weight" not in sd:
        return None
    matches = [re.match(r"body\.(\d+)\.(weight|bias)$", k) for k in sd]
    if not all(matches):
        return None
    indices = sorted({int(m.group(1)) for m in matches})
    last = indices[-1]
    if last < 2 or last % 2 or indices != list(range(last + 1)):
        return None
    nf, in_nc = _shape(sd, "body.0.weight")[:2]
    channels = _shape(sd, f"body.{last}.weight")[0]
    scale = math.isqrt(channels // in_nc) if channels % in_nc == 0 else 0
    if scale < 1 or scale * scale * in_nc != channels:
        return None
    model = _load_weights(lambda: SRVGGNetCompact(in_nc, in_nc, nf, (last - 2) // 2, scale), sd, name)
    return UpscaleModel(model, scale, in_nc, in_nc, "RealESRGAN Compact", name=name)


def _load_weights(build, sd: dict[str, torch.Tensor], name: str) -> nn.Module:
    """Build the network without memory first (meta device) and check the file's names and shapes against
    it, so a hostile file cannot make Hearth allocate more than the weights the file really holds."""
    with torch.device("meta"):
        model = build()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise UnsupportedUpscaleModel(f"{name}: unexpected layout (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, tensor in expected.items():
        if tuple(sd[key].shape) != tuple(tensor.shape):
            raise UnsupportedUpscaleModel(f"{name}: {key} has shape {list(sd[key].shape)}, "
                                          f"expected {list(tensor.shape)}")
    model = model.to_empty(device="cpu")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval().requires_grad_(False)


def _spandrel():
    """spandrel's ModelLoader and ImageModelDescriptor, or None when the extra is not installed."""
    try:
        import spandrel
    except ImportError:
        return None
    try:  # the non-commercial architectures, when that package is installed too (as ComfyUI does)
        from spandrel_extra_arches import EXTRA_REGISTRY

        spandrel.MAIN_REGISTRY.add(*EXTRA_REGISTRY)
    except Exception:  # noqa: BLE001 - not installed, or already added by an earlier load
        pass
    return spandrel


def build_upscale_model(sd: Mapping[str, Any], name: str = "model", use_spandrel: bool | None = None) -> UpscaleModel:
    """An UpscaleModel from a state dict: spandrel when available (unless ``use_spandrel`` is False),
    else Hearth's own ESRGAN / Compact networks."""
    tensors = _plain_state_dict(sd, name)
    spandrel = _spandrel() if use_spandrel is not False else None
    if use_spandrel and spandrel is None:
        raise UnsupportedUpscaleModel("spandrel is not installed (pip install 'hearth[upscale]')")
    if spandrel is not None:
        try:
            descriptor = spandrel.ModelLoader().load_from_state_dict(tensors).eval()
        except spandrel.UnsupportedModelError as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise UnsupportedUpscaleModel(f"{name}: not an upscale model architecture spandrel knows{detail}") from None
        except Exception as exc:  # noqa: BLE001 - a known architecture with missing or misshapen weights
            raise UnsupportedUpscaleModel(f"{name}: spandrel could not load it: {exc}") from None
        if not isinstance(descriptor, spandrel.ImageModelDescriptor):
            raise UnsupportedUpscaleModel("Upscale model must be a single-image model.")
        sr = descriptor.size_requirements
        return UpscaleModel(descriptor.model, int(descriptor.scale), descriptor.input_channels,
                            descriptor.output_channels, str(descriptor.architecture.name),
                            minimum=sr.minimum, multiple_of=sr.multiple_of, descriptor=descriptor, name=name)
    for build in (_build_esrgan, _build_compact):
        model = build(tensors, name)
        if model is not None:
            return model
    raise UnsupportedUpscaleModel(
        f"{name}: unsupported upscale model architecture. Without the optional spandrel package Hearth "
        f"loads ESRGAN/Real-ESRGAN (RRDBNet) and Real-ESRGAN Compact models; for SwinIR, HAT, DAT, OmniSR and "
        f"the other architectures install it: pip install 'hearth[upscale]'")


def load_upscale_model(path: str | Path, use_spandrel: bool | None = None) -> UpscaleModel:
    path = Path(path)
    return build_upscale_model(load_state_dict(path), path.name, use_spandrel)


# --- running ----------------------------------------------------------------------------------------

def tiled_steps(width: int, height: int, tile: int, overlap: int) -> int:
    """How many tiles ``tiled_scale`` runs for one image (ComfyUI's count)."""
    rows = 1 if height <= tile else math.ceil((height - overlap) / (tile - overlap))
    cols = 1 if width <= tile else math.ceil((width - overlap) / (tile - overlap))
    return rows * cols


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def upscale_image(model: UpscaleModel, image: torch.Tensor, manager=None, tile: int = TILE, overlap: int = OVERLAP,
                  progress=None) -> torch.Tensor:
    """IMAGE [B, H, W, C] -> [B, H*scale, W*scale, C'] in 0..1, in ``tile``-pixel tiles overlapping by
    ``overlap``; when the device runs out of memory the tile is halved, down to 128 pixels.
    ``progress(done, total)`` is called after each tile."""
    from hearth.runtime.patcher import ModuleHolder
    from hearth.runtime.vae import tiled_scale

    if image.ndim != 4:
        raise ValueError(f"IMAGE must be [batch, height, width, channels], got {list(image.shape)}")
    if image.shape[-1] != model.input_channels:
        raise ValueError(f"the upscale model takes {model.input_channels}-channel images, this one has "
                         f"{image.shape[-1]} channels")
    device = torch.device("cpu")
    if manager is not None:
        if model.holder is None:
            model.holder = ModuleHolder(model.model, model.name or "upscale_model", "upscale")
        per_tile = (512 * 512 * 3) * image.element_size() * max(model.scale, 1.0) * 384.0
        device = manager.load(model.holder, int(per_tile + image.nelement() * image.element_size()))
    pixels = image.movedim(-1, -3).to(device)
    while True:
        total = pixels.shape[0] * tiled_steps(pixels.shape[3], pixels.shape[2], tile, overlap)
        done = 0

        def tick():
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        try:
            out = tiled_scale(pixels, model, tile=(tile, tile), overlap=overlap, upscale_amount=model.scale,
                              out_channels=model.output_channels, output_device="cpu", progress=tick)
            break
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            tile //= 2
            if tile < MIN_TILE:
                raise
            log.warning("out of memory while upscaling: retrying with %dpx tiles", tile)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return torch.clamp(out.movedim(-3, -1), min=0.0, max=1.0)
