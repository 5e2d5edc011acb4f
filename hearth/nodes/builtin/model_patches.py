"""Nodes that patch a MODEL (or CLIP) without changing its file: FreeU, SAG, PAG, attention multipliers,
Kohya deep shrink, token merging, differential diffusion, InstructPix2Pix conditioning, torch.compile and
A1111 hypernetworks — ComfyUI's interfaces and behaviour.

Patches go into the clone's ``model_options["transformer_options"]`` (see ``hearth.runtime.unet_patches``)
or, for the multipliers, into its weight patches; the shared network itself is never modified.
Importing this module does not import torch.
"""
from __future__ import annotations

import logging
import math
import shutil

from hearth.nodes.context import current

log = logging.getLogger(__name__)

PYTHON_MODULE = "comfy_extras.nodes_freelunch"
UPSCALE_METHODS = ["bicubic", "nearest-exact", "bilinear", "area", "bislerp"]


def _float(default, lo, hi, step, **extra):
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, **extra})


# --- FreeU ----------------------------------------------------------------------------------------

def fourier_filter(x, threshold: int, scale: float):
    """Scale the lowest spatial frequencies (a centred (2*threshold)² square of the shifted spectrum)."""
    import torch

    spectrum = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    h, w = spectrum.shape[-2:]
    mask = torch.ones(spectrum.shape, device=x.device)
    ch, cw = h // 2, w // 2
    mask[..., ch - threshold:ch + threshold, cw - threshold:cw + threshold] = scale
    spectrum = torch.fft.ifftshift(spectrum * mask, dim=(-2, -1))
    return torch.fft.ifftn(spectrum, dim=(-2, -1)).real.to(x.dtype)


def _model_channels(model) -> int:
    return int(model.unet.config.block_out_channels[0])


def _skip_filter(hsp, scale):
    try:
        return fourier_filter(hsp, threshold=1, scale=scale)
    except RuntimeError:  # a device without FFT support
        return fourier_filter(hsp.cpu(), threshold=1, scale=scale).to(hsp.device)


class FreeU:
    CATEGORY = "model_patches/unet"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    DEFAULTS = (1.1, 1.2)

    @classmethod
    def INPUT_TYPES(cls):
        b1, b2 = cls.DEFAULTS
        return {"required": {"model": ("MODEL",), "b1": _float(b1, 0.0, 10.0, 0.01), "b2": _float(b2, 0.0, 10.0, 0.01),
                             "s1": _float(0.9, 0.0, 10.0, 0.01), "s2": _float(0.2, 0.0, 10.0, 0.01)}}

    @staticmethod
    def backbone_factor(h, b):
        return b

    def patch(self, model, b1, b2, s1, s2):
        mc = _model_channels(model)
        by_channels = {mc * 4: (b1, s1), mc * 2: (b2, s2)}
        factor = self.backbone_factor

        def output_block_patch(h, hsp, transformer_options):
            scales = by_channels.get(int(h.shape[1]))
            if scales is not None:
                half = h.shape[1] // 2
                h[:, :half] = h[:, :half] * factor(h, scales[0])
                hsp = _skip_filter(hsp, scales[1])
            return h, hsp

        m = model.clone()
        m.set_model_output_block_patch(output_block_patch)
        return (m,)


class FreeU_V2(FreeU):
    DEFAULTS = (1.3, 1.4)

    @staticmethod
    def backbone_factor(h, b):
        mean = h.mean(1).unsqueeze(1)
        flat = mean.view(mean.shape[0], -1)
        lo = flat.min(dim=-1, keepdim=True)[0][:, :, None, None]
        hi = flat.max(dim=-1, keepdim=True)[0][:, :, None, None]
        return (b - 1) * ((mean - lo) / (hi - lo)) + 1


# --- self-attention guidance -----------------------------------------------------------------------

def gaussian_blur_2d(img, kernel_size: int, sigma: float):
    import torch
    import torch.nn.functional as F

    half = (kernel_size - 1) * 0.5
    xs = torch.linspace(-half, half, steps=kernel_size)
    pdf = torch.exp(-0.5 * (xs / sigma).pow(2))
    k1 = (pdf / pdf.sum()).to(device=img.device, dtype=img.dtype)
    k2 = torch.mm(k1[:, None], k1[None, :]).expand(img.shape[-3], 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    img = F.pad(img, [pad, pad, pad, pad], mode="reflect")
    return F.conv2d(img, k2, groups=img.shape[-3])


def sag_blur_map(x0, attn, sigma: float = 3.0, threshold: float = 1.0):
    """Blur ``x0`` where the middle block's self-attention map (averaged over heads) is concentrated."""
    import torch.nn.functional as F

    _, hw1, hw2 = attn.shape
    b, _, lh, lw = x0.shape
    mask = attn.reshape(b, -1, hw1, hw2).mean(1).sum(1) > threshold
    total = mask.shape[-1]
    guess = round(math.sqrt((lh / lw) * total))
    rows = None
    for i in range(math.floor(math.sqrt(total) / 2)):  # the nearest divisor of the token count
        for cand in (guess + i, max(1, guess - i)):
            if total % cand == 0:
                rows = cand
                break
        if rows is not None:
            break
    if rows is None:
        raise ValueError("cannot recover the attention map's layout from its token count")
    mask = mask.reshape(b, rows, total // rows).unsqueeze(1).type(attn.dtype)
    mask = F.interpolate(mask, (lh, lw))
    blurred = gaussian_blur_2d(x0, kernel_size=9, sigma=sigma)
    return blurred * mask + x0 * (1 - mask)


class SelfAttentionGuidance:
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}), "scale": _float(0.5, -2.0, 5.0, 0.01),
                             "blur_sigma": _float(2.0, 0.0, 10.0, 0.1)}}

    def patch(self, model, scale, blur_sigma):
        from hearth.runtime.unet_patches import attention, attention_with_scores
        from hearth.sampling import guidance

        recorded = {}

        def attn_and_record(q, k, v, extra):
            heads = extra["n_heads"]
            rows = extra["cond_or_uncond"]
            if 1 not in rows:
                return attention(q, k, v, heads)
            out, sim = attention_with_scores(q, k, v, heads, extra["attn_precision"])
            per_chunk = heads * (q.shape[0] // len(rows))
            u = rows.index(1)
            recorded["scores"] = sim[per_chunk * u:per_chunk * (u + 1)]
            return out

        def post_cfg(args):
            result = args["denoised"]
            uncond = args["uncond"]
            if min(result.shape[2:]) <= 4 or uncond is None or "scores" not in recorded:
                return result
            uncond_pred, x = args["uncond_denoised"], args["input"]
            degraded = sag_blur_map(uncond_pred, recorded["scores"], blur_sigma, 1.0)
            (sag,) = guidance.calc_cond_batch(args["model"], [uncond], degraded + x - uncond_pred, args["sigma"],
                                              args["model_options"])
            return result + (degraded - sag) * scale

        m = model.clone()
        m.set_model_sampler_post_cfg_function(post_cfg, disable_cfg1_optimization=True)
        m.set_model_attn1_replace(attn_and_record, "middle", 0, 0)
        return (m,)


class PerturbedAttentionGuidance:
    CATEGORY = "model_patches/unet"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}), "scale": _float(3.0, 0.0, 100.0, 0.01, round=0.01)}}

    def patch(self, model, scale):
        from hearth.runtime.unet_patches import set_model_options_patch_replace
        from hearth.sampling import guidance

        def identity_attention(q, k, v, extra, mask=None):
            return v

        def post_cfg(args):
            result = args["denoised"]
            if scale == 0:
                return result
            options = set_model_options_patch_replace(args["model_options"], identity_attention, "attn1", "middle", 0)
            (perturbed,) = guidance.calc_cond_batch(args["model"], [args["cond"]], args["input"], args["sigma"],
                                                    options)
            return result + (args["cond_denoised"] - perturbed) * scale

        m = model.clone()
        m.set_model_sampler_post_cfg_function(post_cfg)
        return (m,)


# --- attention weight multipliers ------------------------------------------------------------------

class ScaleWeight:
    """A weight patch multiplying the (already patched) weight by a constant."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def apply(self, w, strength):
        return w * self.factor


def _scale_params(patcher, rules) -> None:
    """``rules``: [(predicate(name), factor)]; the first matching rule scales the parameter."""
    patches = {}
    for name in patcher.holder.module.state_dict().keys():
        for match, factor in rules:
            if match(name):
                if factor != 1.0:
                    patches[name] = ScaleWeight(factor)
                break
    if patches:
        patcher.add_patches(patches, 1.0)


def _ends(*suffixes):
    return lambda name: name.endswith(suffixes)


def _attention_rules(attn, q, k, v, out):
    return [(_ends(f"{attn}.{proj}.weight", f"{attn}.{proj}.bias"), factor)
            for proj, factor in (("to_q", q), ("to_k", k), ("to_v", v), ("to_out.0", out))]


def _multiplier_inputs(first):
    return {"required": {first[0]: (first[1], {}), **{n: _float(1.0, 0.0, 10.0, 0.01) for n in ("q", "k", "v", "out")}}}


class UNetSelfAttentionMultiply:
    CATEGORY = "_for_testing/attention_experiments"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    EXPERIMENTAL = True
    ATTN = "attn1"

    @classmethod
    def INPUT_TYPES(cls):
        return _multiplier_inputs(("model", "MODEL"))

    def patch(self, model, q, k, v, out):
        m = model.clone()
        _scale_params(m.patcher, _attention_rules(self.ATTN, q, k, v, out))
        return (m,)


class UNetCrossAttentionMultiply(UNetSelfAttentionMultiply):
    ATTN = "attn2"


class CLIPAttentionMultiply:
    CATEGORY = "_for_testing/attention_experiments"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "patch"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return _multiplier_inputs(("clip", "CLIP"))

    def patch(self, clip, q, k, v, out):
        rules = [(_ends("self_attn.q_proj.weight", "self_attn.q_proj.bias"), q),
                 (_ends("self_attn.k_proj.weight", "self_attn.k_proj.bias"), k),
                 (_ends("self_attn.v_proj.weight", "self_attn.v_proj.bias"), v),
                 (_ends("self_attn.out_proj.weight", "self_attn.out_proj.bias"), out)]
        c = clip.clone()
        for encoder in c.encoders:
            _scale_params(encoder.patcher, rules)
        return (c,)


class UNetTemporalAttentionMultiply:
    CATEGORY = "_for_testing/attention_experiments"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        names = ("self_structural", "self_temporal", "cross_structural", "cross_temporal")
        return {"required": {"model": ("MODEL", {}), **{n: _float(1.0, 0.0, 10.0, 0.01) for n in names}}}

    def patch(self, model, self_structural, self_temporal, cross_structural, cross_temporal):
        # Hearth's UNets have no temporal (".time_stack.") layers: only the structural factors find weights
        def rule(attn, temporal):
            ends = _ends(f"{attn}.to_out.0.weight", f"{attn}.to_out.0.bias")
            return lambda name: ends(name) and (".time_stack." in name) == temporal

        m = model.clone()
        _scale_params(m.patcher, [(rule("attn1", True), self_temporal), (rule("attn1", False), self_structural),
                                  (rule("attn2", True), cross_temporal), (rule("attn2", False), cross_structural)])
        return (m,)


# --- Kohya deep shrink ------------------------------------------------------------------------------

class PatchModelAddDownscale:
    CATEGORY = "model_patches/unet"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {}),
            "block_number": ("INT", {"default": 3, "min": 1, "max": 32, "step": 1}),
            "downscale_factor": _float(2.0, 0.1, 9.0, 0.001),
            "start_percent": _float(0.0, 0.0, 1.0, 0.001),
            "end_percent": _float(0.35, 0.0, 1.0, 0.001),
            "downscale_after_skip": ("BOOLEAN", {"default": True}),
            "downscale_method": ("COMBO", {"multiselect": False, "options": list(UPSCALE_METHODS)}),
            "upscale_method": ("COMBO", {"multiselect": False, "options": list(UPSCALE_METHODS)}),
        }}

    def patch(self, model, block_number, downscale_factor, start_percent, end_percent, downscale_after_skip,
              downscale_method, upscale_method):
        from hearth.sampling.guidance import common_upscale

        for method in (downscale_method, upscale_method):
            if method not in UPSCALE_METHODS:
                raise ValueError(f"unknown resize method {method!r}")
        ms = model.model_sampling
        sigma_start = ms.percent_to_sigma(start_percent)
        sigma_end = ms.percent_to_sigma(end_percent)

        def shrink(h, transformer_options):
            if transformer_options["block"][1] == block_number:
                sigma = transformer_options["sigmas"][0].item()
                if sigma_end <= sigma <= sigma_start:
                    h = common_upscale(h, round(h.shape[-1] * (1.0 / downscale_factor)),
                                       round(h.shape[-2] * (1.0 / downscale_factor)), downscale_method, "disabled")
            return h

        def restore(h, hsp, transformer_options):
            if h.shape[2] != hsp.shape[2]:
                h = common_upscale(h, hsp.shape[-1], hsp.shape[-2], upscale_method, "disabled")
            return h, hsp

        m = model.clone()
        if downscale_after_skip:
            m.set_model_input_block_patch_after_skip(shrink)
        else:
            m.set_model_input_block_patch(shrink)
        m.set_model_output_block_patch(restore)
        return (m,)


# --- token merging ------------------------------------------------------------------------------------

def _identity(x, mode=None):
    return x


def token_merge_functions(metric, w: int, h: int, sx: int, sy: int, r: int):
    """Bipartite soft matching (ToMe for SD): one random destination token per sy×sx cell, the ``r`` source
    tokens most similar to a destination are averaged into it. Returns (merge, unmerge)."""
    import torch

    B, N, _ = metric.shape
    if r <= 0 or w == 1 or h == 1:
        return _identity, _identity
    dev = metric.device
    with torch.no_grad():
        cells_h, cells_w = h // sy, w // sx
        pick = torch.randint(sy * sx, size=(cells_h, cells_w, 1), device=dev)
        cell = torch.zeros(cells_h, cells_w, sy * sx, device=dev, dtype=torch.int64)
        cell.scatter_(dim=2, index=pick, src=-torch.ones_like(pick, dtype=pick.dtype))
        cell = cell.view(cells_h, cells_w, sy, sx).transpose(1, 2).reshape(cells_h * sy, cells_w * sx)
        if cells_h * sy < h or cells_w * sx < w:
            grid = torch.zeros(h, w, device=dev, dtype=torch.int64)
            grid[:cells_h * sy, :cells_w * sx] = cell
        else:
            grid = cell
        order = grid.reshape(1, -1, 1).argsort(dim=1)  # destinations (-1) first, then sources
        n_dst = cells_h * cells_w
        src_pos, dst_pos = order[:, n_dst:, :], order[:, :n_dst, :]

        def split(x):
            c = x.shape[-1]
            return (torch.gather(x, 1, src_pos.expand(B, N - n_dst, c)),
                    torch.gather(x, 1, dst_pos.expand(B, n_dst, c)))

        unit = metric / metric.norm(dim=-1, keepdim=True)
        a, b = split(unit)
        scores = a @ b.transpose(-1, -2)
        r = min(a.shape[1], r)
        best, best_dst = scores.max(dim=-1)
        ranked = best.argsort(dim=-1, descending=True)[..., None]
        kept, merged = ranked[..., r:, :], ranked[..., :r, :]
        merged_dst = torch.gather(best_dst[..., None], -2, merged)

    def merge(x, mode="mean"):
        src, dst = split(x)
        n, t, c = src.shape
        keep = torch.gather(src, -2, kept.expand(n, t - r, c))
        src = torch.gather(src, -2, merged.expand(n, r, c))
        dst = dst.scatter_reduce(-2, merged_dst.expand(n, r, c), src, reduce=mode)
        return torch.cat([keep, dst], dim=1)

    def unmerge(x):
        n_kept = kept.shape[1]
        keep, dst = x[..., :n_kept, :], x[..., n_kept:, :]
        c = keep.shape[-1]
        src = torch.gather(dst, -2, merged_dst.expand(B, r, c))
        out = torch.zeros(B, N, c, device=x.device, dtype=x.dtype)
        out.scatter_(-2, dst_pos.expand(B, n_dst, c), dst)
        src_all = src_pos.expand(B, src_pos.shape[1], 1)
        out.scatter_(-2, torch.gather(src_all, 1, kept).expand(B, n_kept, c), keep)
        out.scatter_(-2, torch.gather(src_all, 1, merged).expand(B, r, c), src)
        return out

    return merge, unmerge


def _tome_functions(x, ratio: float, original_shape):
    _, _, oh, ow = original_shape
    downsample = int(math.ceil(math.sqrt((oh * ow) // x.shape[1])))
    if downsample > 1:  # only the full-resolution blocks are merged
        return _identity, _identity
    w, h = int(math.ceil(ow / downsample)), int(math.ceil(oh / downsample))
    return token_merge_functions(x, w, h, 2, 2, int(x.shape[1] * ratio))


class TomePatchModel:
    CATEGORY = "model_patches/unet"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}), "ratio": _float(0.3, 0.0, 1.0, 0.01)}}

    def patch(self, model, ratio):
        state = {}

        def merge_queries(q, k, v, extra):
            merge, state["unmerge"] = _tome_functions(q, ratio, extra["original_shape"])
            return merge(q), k, v

        def unmerge_output(n, extra):
            return state["unmerge"](n)

        m = model.clone()
        m.set_model_attn1_patch(merge_queries)
        m.set_model_attn1_output_patch(unmerge_output)
        return (m,)


# --- differential diffusion ----------------------------------------------------------------------------

class DifferentialDiffusion:
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {})}, "optional": {"strength": _float(1.0, 0.0, 1.0, 0.01)}}

    def apply(self, model, strength=1.0):
        def mask_function(sigma, denoise_mask, extra_options):
            return differential_mask(sigma, denoise_mask, extra_options, strength)

        m = model.clone()
        m.set_model_denoise_mask_function(mask_function)
        return (m,)


def differential_mask(sigma, denoise_mask, extra_options, strength=1.0):
    """Only the mask values above the step's progress threshold denoise at this step (binary, or blended)."""
    ms = extra_options["model"].inner_model.model_sampling
    sigmas = extra_options["sigmas"]
    sigma_to = ms.sigma_min
    if sigmas[-1] > sigma_to:
        sigma_to = sigmas[-1]
    ts_from, ts_to = ms.timestep(sigmas[0]), ms.timestep(sigma_to)
    threshold = (ms.timestep(sigma[0]) - ts_to) / (ts_from - ts_to)
    binary = (denoise_mask >= threshold).to(denoise_mask.dtype)
    if strength and strength < 1:
        return strength * binary + (1 - strength) * denoise_mask
    return binary


# --- InstructPix2Pix -------------------------------------------------------------------------------

class InstructPixToPixConditioning:
    CATEGORY = "conditioning/instructpix2pix"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"positive": ("CONDITIONING", {}), "negative": ("CONDITIONING", {}),
                             "vae": ("VAE", {}), "pixels": ("IMAGE", {})}}

    def encode(self, positive, negative, pixels, vae):
        import torch

        if pixels.ndim != 4:
            raise ValueError(f"pixels must be an IMAGE batch [B,H,W,C], got shape {tuple(pixels.shape)}")
        h8, w8 = (pixels.shape[1] // 8) * 8, (pixels.shape[2] // 8) * 8
        if h8 == 0 or w8 == 0:
            raise ValueError("the image must be at least 8×8 pixels")
        if (h8, w8) != tuple(pixels.shape[1:3]):
            dy, dx = (pixels.shape[1] % 8) // 2, (pixels.shape[2] % 8) // 2
            pixels = pixels[:, dy:h8 + dy, dx:w8 + dx, :]
        concat = vae.encode(pixels)
        outs = []
        for conditioning in (positive, negative):
            outs.append([[t[0], {**t[1], "concat_latent_image": concat}] for t in conditioning])
        return (outs[0], outs[1], {"samples": torch.zeros_like(concat)})


# --- torch.compile -------------------------------------------------------------------------------

class TorchCompileModel:
    """Compiles the diffusion network with ``torch.compile`` on its first use (per backend). Calls that carry
    block/attention patches run uncompiled. ``inductor`` on a CPU needs a C compiler: without one
    the node refuses clearly instead of failing in the middle of sampling."""

    CATEGORY = "_for_testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    EXPERIMENTAL = True
    BACKENDS = ("inductor", "cudagraphs")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {}),
                             "backend": ("COMBO", {"multiselect": False, "options": list(cls.BACKENDS)})}}

    def patch(self, model, backend):
        from hearth.runtime.unet_patches import LazyCompiled

        if backend not in self.BACKENDS:
            raise ValueError(f"unknown torch.compile backend {backend!r}")
        if backend == "inductor" and model.patcher.holder.device.type == "cpu" and not _have_c_compiler():
            raise RuntimeError("TorchCompileModel: the inductor backend needs a C compiler (cc) on a CPU-only "
                               "machine and none was found")
        m = model.clone()
        m.model_options["compiled_network"] = LazyCompiled(backend)
        return (m,)


def _have_c_compiler() -> bool:
    return any(shutil.which(c) for c in ("cc", "gcc", "clang"))


# --- hypernetworks ------------------------------------------------------------------------------------

_ACTIVATIONS = {"linear": "Identity", "relu": "ReLU", "leakyrelu": "LeakyReLU", "elu": "ELU", "swish": "Hardswish",
                "tanh": "Tanh", "sigmoid": "Sigmoid", "softsign": "Softsign", "mish": "Mish"}


def build_hypernetwork(sd) -> dict | None:
    """{context width: (key net, value net)} from an A1111 hypernetwork dict; None for an unknown activation."""
    import torch

    activation = sd.get("activation_func", "linear")
    layer_norm = bool(sd.get("is_layer_norm", False))
    dropout = bool(sd.get("use_dropout", False))
    activate_output = bool(sd.get("activate_output", False))
    last_layer_dropout = bool(sd.get("last_layer_dropout", False))
    if activation not in _ACTIVATIONS:
        return None
    nets = {}
    for key, pair in sd.items():
        try:
            dim = int(key)
        except (TypeError, ValueError):
            continue
        if not isinstance(pair, (list, tuple)) or len(pair) < 2:
            raise ValueError(f"hypernetwork entry {key!r} is not a pair of layer dicts")
        built = []
        for weights in pair[:2]:
            names = [k[:-len(".weight")] for k in weights if k.endswith(".weight")]
            layers, i = [], 0
            while i < len(names):
                last, penultimate = i == len(names) - 1, i == len(names) - 2
                w, b = weights[f"{names[i]}.weight"], weights[f"{names[i]}.bias"]
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                lin.load_state_dict({"weight": w, "bias": b})
                layers.append(lin)
                if activation != "linear" and (not last or activate_output):
                    layers.append(getattr(torch.nn, _ACTIVATIONS[activation])())
                if layer_norm:
                    i += 1
                    lw, lb = weights[f"{names[i]}.weight"], weights[f"{names[i]}.bias"]
                    ln = torch.nn.LayerNorm(lw.shape[0])
                    ln.load_state_dict({"weight": lw, "bias": lb})
                    layers.append(ln)
                if dropout and not last and (not penultimate or last_layer_dropout):
                    layers.append(torch.nn.Dropout(p=0.3))
                i += 1
            built.append(torch.nn.Sequential(*layers).eval())
        nets[dim] = built
    return nets


class HypernetworkPatch:
    """attn1/attn2 patch: adds the hypernetwork's transform of the attention's key and value inputs."""

    def __init__(self, nets: dict, strength: float) -> None:
        self.nets = nets
        self.strength = strength

    def __call__(self, q, k, v, extra_options):
        pair = self.nets.get(k.shape[-1])
        if pair is not None:
            kn, vn = pair
            first = next(kn.parameters(), None)
            if first is not None and (first.device != k.device or first.dtype != k.dtype):
                kn.to(device=k.device, dtype=k.dtype)
                vn.to(device=k.device, dtype=k.dtype)
            k = k + kn(k) * self.strength
            v = v + vn(v) * self.strength
        return q, k, v


class HypernetworkLoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_hypernetwork"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "hypernetwork_name": (current().folders.filenames("hypernetworks"),),
                             "strength": _float(1.0, -10.0, 10.0, 0.01)}}

    def load_hypernetwork(self, model, hypernetwork_name, strength):
        from hearth.runtime.files import load_any

        path = current().folders.full_path("hypernetworks", hypernetwork_name)
        if path is None:
            raise FileNotFoundError(f"Model in folder 'hypernetworks' with filename '{hypernetwork_name}' not found.")
        sd = load_any(path)
        if not isinstance(sd, dict):
            raise ValueError(f"{hypernetwork_name} is not a hypernetwork file")
        nets = build_hypernetwork(sd)
        m = model.clone()
        if nets is None:
            log.error("Unsupported hypernetwork %s (activation %r); the model is left unchanged", hypernetwork_name,
                      sd.get("activation_func"))
            return (m,)
        patch = HypernetworkPatch(nets, strength)
        m.set_model_attn1_patch(patch)
        m.set_model_attn2_patch(patch)
        return (m,)


NODE_CLASS_MAPPINGS = {
    "FreeU": FreeU,
    "FreeU_V2": FreeU_V2,
    "SelfAttentionGuidance": SelfAttentionGuidance,
    "PerturbedAttentionGuidance": PerturbedAttentionGuidance,
    "UNetSelfAttentionMultiply": UNetSelfAttentionMultiply,
    "UNetCrossAttentionMultiply": UNetCrossAttentionMultiply,
    "CLIPAttentionMultiply": CLIPAttentionMultiply,
    "UNetTemporalAttentionMultiply": UNetTemporalAttentionMultiply,
    "PatchModelAddDownscale": PatchModelAddDownscale,
    "TomePatchModel": TomePatchModel,
    "DifferentialDiffusion": DifferentialDiffusion,
    "InstructPixToPixConditioning": InstructPixToPixConditioning,
    "TorchCompileModel": TorchCompileModel,
    "HypernetworkLoader": HypernetworkLoader,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SelfAttentionGuidance": "Self-Attention Guidance",
    "PatchModelAddDownscale": "PatchModelAddDownscale (Kohya Deep Shrink)",
    "DifferentialDiffusion": "Differential Diffusion",
}

NODE_PYTHON_MODULES = {
    "SelfAttentionGuidance": "comfy_extras.nodes_sag",
    "PerturbedAttentionGuidance": "comfy_extras.nodes_pag",
    "UNetSelfAttentionMultiply": "comfy_extras.nodes_attention_multiply",
    "UNetCrossAttentionMultiply": "comfy_extras.nodes_attention_multiply",
    "CLIPAttentionMultiply": "comfy_extras.nodes_attention_multiply",
    "UNetTemporalAttentionMultiply": "comfy_extras.nodes_attention_multiply",
    "PatchModelAddDownscale": "comfy_extras.nodes_model_downscale",
    "TomePatchModel": "comfy_extras.nodes_tomesd",
    "DifferentialDiffusion": "comfy_extras.nodes_differential_diffusion",
    "InstructPixToPixConditioning": "comfy_extras.nodes_ip2p",
    "TorchCompileModel": "comfy_extras.nodes_torch_compile",
    "HypernetworkLoader": "comfy_extras.nodes_hypernetwork",
}
