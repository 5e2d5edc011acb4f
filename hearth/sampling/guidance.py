"""Conditioning and classifier-free guidance, with ComfyUI's semantics.

A CONDITIONING value is a list of ``[tensor, options]`` pairs. Each pair becomes one "cond": its text
embedding plus optional ``area`` (latent-space box, or a percentage box), ``strength``, ``mask`` (with
``mask_strength`` and ``set_area_to_bounds``), ``start_percent``/``end_percent`` (a timestep range),
``pooled_output`` and size options for SDXL, and ``concat_latent_image``/``concat_mask`` for inpainting
models. At each step every active cond is evaluated on its area, weighted by its mask × strength and the
results averaged per pixel; positive and negative predictions are then mixed with the CFG scale. With a
CFG of 1 the negative prediction is skipped.
"""
from __future__ import annotations

import collections
import math
import uuid

import torch


# --- helpers ------------------------------------------------------------------------------------

def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    if tensor.shape[dim] > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    if tensor.shape[dim] < batch_size:
        reps = [1] * dim + [math.ceil(batch_size / tensor.shape[dim])] + [1] * (tensor.ndim - 1 - dim)
        return tensor.repeat(reps).narrow(dim, 0, batch_size)
    return tensor


def resize_to_batch_size(tensor: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Stretch or shrink a batch by picking evenly spaced items (used for conditioning images)."""
    n = tensor.shape[0]
    if n == batch_size:
        return tensor
    if batch_size <= 1:
        return tensor[:batch_size]
    out = torch.empty([batch_size] + list(tensor.shape)[1:], dtype=tensor.dtype, device=tensor.device)
    if batch_size < n:
        scale = (n - 1) / (batch_size - 1)
        for i in range(batch_size):
            out[i] = tensor[min(round(i * scale), n - 1)]
    else:
        scale = n / batch_size
        for i in range(batch_size):
            out[i] = tensor[min(math.floor((i + 0.5) * scale), n - 1)]
    return out


def reshape_mask(mask: torch.Tensor, shape) -> torch.Tensor:
    """A [B,H,W]/[B,1,H,W] mask scaled bilinearly to a latent shape [B,C,h,w] (channels and batch repeated)."""
    mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
    mask = torch.nn.functional.interpolate(mask, size=tuple(shape[2:]), mode="bilinear")
    if mask.shape[1] < shape[1]:
        mask = mask.repeat((1, shape[1], 1, 1))[:, :shape[1]]
    return repeat_to_batch_size(mask, shape[0])


def common_upscale(samples: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """Resize [B,C,H,W] to (height, width) with torch interpolation or bislerp, optional center crop."""
    if crop == "center":
        old_w, old_h = samples.shape[-1], samples.shape[-2]
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        samples = samples.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)
    if method == "bislerp":
        return bislerp(samples, width, height)
    if method == "lanczos":
        return _lanczos(samples, width, height)
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=method)


def _lanczos(samples, width, height):
    import numpy as np
    from PIL import Image

    images = [Image.fromarray(np.clip(255.0 * im.movedim(0, -1).cpu().numpy(), 0, 255).astype(np.uint8))
              for im in samples]
    images = [im.resize((width, height), resample=Image.Resampling.LANCZOS) for im in images]
    out = torch.stack([torch.from_numpy(np.array(im).astype(np.float32) / 255.0).movedim(-1, 0) for im in images])
    return out.to(samples.device, samples.dtype)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resize where each 1-D blend is a spherical interpolation of the channel vectors."""

    def slerp(b1, b2, r):
        c = b1.shape[-1]
        n1 = torch.norm(b1, dim=-1, keepdim=True)
        n2 = torch.norm(b2, dim=-1, keepdim=True)
        u1, u2 = b1 / n1, b2 / n2
        u1[n1.expand(-1, c) == 0.0] = 0.0
        u2[n2.expand(-1, c) == 0.0] = 0.0
        dot = (u1 * u2).sum(1)
        omega = torch.acos(dot)
        so = torch.sin(omega)
        res = (torch.sin((1.0 - r.squeeze(1)) * omega) / so).unsqueeze(1) * u1 \
            + (torch.sin(r.squeeze(1) * omega) / so).unsqueeze(1) * u2
        res *= (n1 * (1.0 - r) + n2 * r).expand(-1, c)
        res[dot > 1 - 1e-5] = b1[dot > 1 - 1e-5]
        res[dot < 1e-5 - 1] = (b1 * (1.0 - r) + b2 * r)[dot < 1e-5 - 1]
        return res

    def bilinear_data(length_old, length_new, device):
        c1 = torch.arange(length_old, dtype=torch.float32, device=device).reshape((1, 1, 1, -1))
        c1 = torch.nn.functional.interpolate(c1, size=(1, length_new), mode="bilinear")
        ratios = c1 - c1.floor()
        c1 = c1.to(torch.int64)
        c2 = torch.arange(length_old, dtype=torch.float32, device=device).reshape((1, 1, 1, -1)) + 1
        c2[:, :, :, -1] -= 1
        c2 = torch.nn.functional.interpolate(c2, size=(1, length_new), mode="bilinear").to(torch.int64)
        return ratios, c1, c2

    orig_dtype = samples.dtype
    samples = samples.float()
    n, c, h, w = samples.shape
    ratios, c1, c2 = bilinear_data(w, width, samples.device)
    c1, c2 = c1.expand((n, c, h, -1)), c2.expand((n, c, h, -1))
    ratios = ratios.expand((n, 1, h, -1))
    p1 = samples.gather(-1, c1).movedim(1, -1).reshape((-1, c))
    p2 = samples.gather(-1, c2).movedim(1, -1).reshape((-1, c))
    result = slerp(p1, p2, ratios.movedim(1, -1).reshape((-1, 1))).reshape(n, h, width, c).movedim(-1, 1)
    ratios, c1, c2 = bilinear_data(h, height, samples.device)
    c1 = c1.reshape((1, 1, -1, 1)).expand((n, c, -1, width))
    c2 = c2.reshape((1, 1, -1, 1)).expand((n, c, -1, width))
    ratios = ratios.reshape((1, 1, -1, 1)).expand((n, 1, -1, width))
    p1 = result.gather(-2, c1).movedim(1, -1).reshape((-1, c))
    p2 = result.gather(-2, c2).movedim(1, -1).reshape((-1, c))
    result = slerp(p1, p2, ratios.movedim(1, -1).reshape((-1, 1))).reshape(n, height, width, c).movedim(-1, 1)
    return result.to(orig_dtype)


# --- model conditioning inputs -----------------------------------------------------------------

class CondRegular:
    """A per-sample model input (e.g. SDXL's vector ``y``), repeated to the batch."""

    def __init__(self, cond: torch.Tensor) -> None:
        self.cond = cond

    def _copy(self, cond):
        return self.__class__(cond)

    def process_cond(self, batch_size: int, area=None):
        return self._copy(repeat_to_batch_size(self.cond, batch_size))

    def can_concat(self, other) -> bool:
        return self.cond.shape == other.cond.shape

    def concat(self, others):
        return torch.cat([self.cond] + [o.cond for o in others])


class CondNoiseShape(CondRegular):
    """A latent-shaped input (inpainting's concat channels): cropped to the cond's area."""

    def process_cond(self, batch_size: int, area=None):
        data = self.cond
        if area is not None:
            dims = len(area) // 2
            for i in range(dims):
                data = data.narrow(i + 2, area[i + dims], area[i])
        return self._copy(repeat_to_batch_size(data, batch_size))


class CondCrossAttn(CondRegular):
    """Text embeddings; of different token lengths they batch together by repetition to a common length."""

    def can_concat(self, other) -> bool:
        s1, s2 = self.cond.shape, other.cond.shape
        if s1 != s2:
            if s1[0] != s2[0] or s1[2] != s2[2]:
                return False
            if math.lcm(s1[1], s2[1]) // min(s1[1], s2[1]) > 4:
                return False
        return True

    def concat(self, others):
        conds = [self.cond] + [o.cond for o in others]
        length = self.cond.shape[1]
        for c in conds[1:]:
            length = math.lcm(length, c.shape[1])
        return torch.cat([c.repeat(1, length // c.shape[1], 1) if c.shape[1] < length else c for c in conds])


# --- preparing conds for a sampling run ----------------------------------------------------------

def convert_cond(cond: list) -> list[dict]:
    out = []
    for tensor, options in cond:
        entry = dict(options)
        entry["model_conds"] = dict(entry.get("model_conds", {}))
        if tensor is not None:
            entry["cross_attn"] = tensor
        entry["uuid"] = uuid.uuid4()
        out.append(entry)
    return out


def _mask_bounds(mask: torch.Tensor):
    if torch.max(mask != 0) == False:  # noqa: E712 - tensor comparison
        return None
    y, x = torch.where(mask)
    return int(torch.min(x)), int(torch.min(y)), int(torch.max(x)), int(torch.max(y))


def resolve_areas_and_masks(conds: list[dict], dims, device) -> None:
    """Turn percentage areas into latent boxes and scale masks to the latent size (in place)."""
    for i, c in enumerate(conds):
        if "area" in c and c["area"][0] == "percentage":
            a = c["area"][1:]
            half = len(a) // 2
            area = tuple(max(1, round(a[d] * dims[d])) for d in range(len(dims))) + \
                tuple(round(a[d + half] * dims[d]) for d in range(len(dims)))
            c = dict(c, area=area)
            conds[i] = c
        if "mask" in c:
            mask = c["mask"].to(device=device)
            if mask.ndim == len(dims):
                mask = mask.unsqueeze(0)
            if tuple(mask.shape[1:]) != tuple(dims):
                mask = common_upscale(mask.unsqueeze(1), dims[-1], dims[-2], "bilinear", "none").squeeze(1)
            c = dict(c)
            if c.get("set_area_to_bounds", False):
                bounds = torch.max(torch.abs(mask), dim=0).values
                box = _mask_bounds(bounds)
                if box is None:
                    c["area"] = (8, 8, 0, 0)
                else:
                    x0, y0, x1, y1 = box
                    c["area"] = (max(8, y1 - y0 + 1), max(8, x1 - x0 + 1), y0, x0)
            c["mask"] = mask
            conds[i] = c


def calculate_start_end_timesteps(model_sampling, conds: list[dict]) -> None:
    for i, c in enumerate(conds):
        if "clip_start_percent" in c:  # one range of a scheduled CLIP-hook encoding, within the cond's own
            start = model_sampling.percent_to_sigma(max(c["clip_start_percent"], c.get("start_percent", 0.0)))
            end = model_sampling.percent_to_sigma(min(c["clip_end_percent"], c.get("end_percent", 1.0)))
        else:
            start = model_sampling.percent_to_sigma(c["start_percent"]) if "start_percent" in c else None
            end = model_sampling.percent_to_sigma(c["end_percent"]) if "end_percent" in c else None
        if start is not None or end is not None:
            c = dict(c)
            if start is not None:
                c["timestep_start"] = start
            if end is not None:
                c["timestep_end"] = end
            conds[i] = c


def _add_area_dims(area, num_dims):
    area = list(area)
    while len(area) // 2 < num_dims:
        area = [2147483648] + area[:len(area) // 2] + [0] + area[len(area) // 2:]
    return area


def create_cond_with_same_area_if_none(conds: list[dict], c: dict) -> None:
    """Give the other side an area cond matching ``c`` so cond and uncond cover the same regions."""
    if "area" not in c:
        return

    def inside(a, cmp):
        a, cmp = _add_area_dims(a, len(cmp) // 2), _add_area_dims(cmp, len(a) // 2)
        al, cl = len(a) // 2, len(cmp) // 2
        for i in range(min(al, cl)):
            if a[al + i] < cmp[cl + i]:
                return False
        for i in range(min(al, cl)):
            if a[i] + a[al + i] > cmp[i] + cmp[cl + i]:
                return False
        return True

    c_area = c["area"]
    smallest = None
    for x in conds:
        if "area" in x:
            if inside(c_area, x["area"]):
                if smallest is None or "area" not in smallest:
                    smallest = x
                elif math.prod(smallest["area"][:len(smallest["area"]) // 2]) > math.prod(x["area"][:len(x["area"]) // 2]):
                    smallest = x
        elif smallest is None:
            smallest = x
    if smallest is None:
        return
    if "area" in smallest and smallest["area"] == c_area:
        return
    out = dict(c)
    out["model_conds"] = dict(smallest["model_conds"])
    conds.append(out)


def process_conds(model, noise, conds: dict[str, list[dict]], device, latent_image=None, denoise_mask=None,
                  seed=None) -> dict[str, list[dict]]:
    for k in conds:
        conds[k] = conds[k][:]
        resolve_areas_and_masks(conds[k], noise.shape[2:], device)
    for k in conds:
        calculate_start_end_timesteps(model.model_sampling, conds[k])
    for k in conds:
        conds[k] = encode_model_conds(model, conds[k], noise, device, k, latent_image=latent_image,
                                      denoise_mask=denoise_mask, seed=seed)
    for k in conds:
        for c in conds[k]:
            for kk in conds:
                if k != kk:
                    create_cond_with_same_area_if_none(conds[kk], c)
    if any(c.get("gligen") is not None for v in conds.values() for c in (v or [])):
        from hearth.runtime.gligen import prepare_conds

        prepare_conds(conds)
    prepare_controls(model, conds)
    return conds


def prepare_controls(model, conds: dict[str, list[dict]]) -> None:
    """Give each ControlNet a per-run copy (``bind``), the same copy wherever the same control appears;
    then give the negative side the positive conds' controls marked ``control_apply_to_uncond``."""
    bound: dict[int, object] = {}
    for k in conds:
        for i, c in enumerate(conds[k]):
            control = c.get("control")
            if control is not None:
                if id(control) not in bound:
                    bound[id(control)] = control.bind(model)
                conds[k][i] = dict(c, control=bound[id(control)])
    positive = conds.get("positive")
    if positive is None:
        return
    for k in conds:
        if k != "positive":
            _fill_uncond_controls([c for c in positive if c.get("control_apply_to_uncond", False)], conds[k])


def _fill_uncond_controls(conds: list[dict], uncond: list[dict]) -> None:
    cond_controls = [c["control"] for c in conds if "area" not in c and c.get("control") is not None]
    uncond_other = []
    for i, c in enumerate(uncond):
        if "area" not in c:
            if c.get("control") is not None:
                return  # the negative side already has its own controls
            uncond_other.append((c, i))
    if not uncond_other:
        return
    for n, control in enumerate(cond_controls):
        c, i = uncond_other[n % len(uncond_other)]
        if c.get("control") is not None:
            uncond.append(dict(c, control=control))
        else:
            uncond[i] = dict(c, control=control)


def encode_model_conds(model, conds: list[dict], noise, device, prompt_type: str, **kwargs) -> list[dict]:
    for i, c in enumerate(conds):
        params = dict(c)
        params["device"] = device
        params["noise"] = noise
        params["width"] = params.get("width", noise.shape[3] * 8)
        params["height"] = params.get("height", noise.shape[2] * 8)
        params["prompt_type"] = params.get("prompt_type", prompt_type)
        for k, v in kwargs.items():
            params.setdefault(k, v)
        out = model.extra_conds(**params)
        c = dict(c)
        c["model_conds"] = {**c["model_conds"], **out}
        conds[i] = c
    return conds


# --- evaluating conds at one step -----------------------------------------------------------------

_CondObj = collections.namedtuple("_CondObj", ["input_x", "mult", "conditioning", "area", "control", "uuid"])


def get_area_and_mult(c: dict, x_in: torch.Tensor, timestep_in: torch.Tensor):
    dims = tuple(x_in.shape[2:])
    area = None
    strength = 1.0
    if "timestep_start" in c and timestep_in[0] > c["timestep_start"]:
        return None
    if "timestep_end" in c and timestep_in[0] < c["timestep_end"]:
        return None
    if "area" in c:
        area = _add_area_dims(list(c["area"]), len(dims))
        if len(area) // 2 > len(dims):
            area = area[:len(dims)] + area[len(area) // 2:(len(area) // 2) + len(dims)]
    if "strength" in c:
        strength = c["strength"]
    input_x = x_in
    if area is not None:
        for i in range(len(dims)):
            area[i] = min(input_x.shape[i + 2] - area[len(dims) + i], area[i])
            input_x = input_x.narrow(i + 2, area[len(dims) + i], area[i])
    if "mask" in c:
        mask = c["mask"][:input_x.shape[0]]
        if area is not None:
            for i in range(len(dims)):
                mask = mask.narrow(i + 1, area[len(dims) + i], area[i])
        mask = mask * c.get("mask_strength", 1.0)
        mask = mask.unsqueeze(1).repeat((input_x.shape[0] // mask.shape[0], input_x.shape[1]) + (1,) * (mask.ndim - 1))
    else:
        mask = torch.ones_like(input_x)
    mult = mask * strength
    if "mask" not in c and area is not None:
        fuzz = 8
        for i in range(len(dims)):
            rr = min(fuzz, mult.shape[2 + i] // 4)
            if area[len(dims) + i] != 0:
                for t in range(rr):
                    mult.narrow(i + 2, t, 1).mul_((1.0 / rr) * (t + 1))
            if area[i] + area[len(dims) + i] < x_in.shape[i + 2]:
                for t in range(rr):
                    mult.narrow(i + 2, area[i] - 1 - t, 1).mul_((1.0 / rr) * (t + 1))
    conditioning = {k: v.process_cond(batch_size=x_in.shape[0], area=area) for k, v in c["model_conds"].items()}
    return _CondObj(input_x, mult, conditioning, area, c.get("control"), c["uuid"])


def _can_concat(c1: _CondObj, c2: _CondObj) -> bool:
    if c1.input_x.shape != c2.input_x.shape:
        return False
    if c1.control is not c2.control:  # only conds with the very same control (or none) share a batch
        return False
    a, b = c1.conditioning, c2.conditioning
    if a is b:
        return True
    if a.keys() != b.keys():
        return False
    return all(a[k].can_concat(b[k]) for k in a)


def _cond_cat(c_list):
    grouped: dict[str, list] = {}
    for c in c_list:
        for k, v in c.items():
            grouped.setdefault(k, []).append(v)
    return {k: v[0].concat(v[1:]) for k, v in grouped.items()}


def _add_default_conds(groups: dict, defaults: list[list[dict]], x_in, timestep, hooked) -> None:
    """Default conds ("default" option) act where the other conds of their side leave weight uncovered."""
    remaining = [torch.ones_like(x_in) for _ in defaults]
    for to_run in groups.values():
        for p, i in to_run:
            if not defaults[i]:
                continue
            target = remaining[i]
            if p.area is not None:
                dims = len(p.area) // 2
                for d in range(dims):
                    target = target.narrow(d + 2, p.area[d + dims], p.area[d])
            target -= p.mult
    for i, mult in enumerate(remaining):
        if not defaults[i]:
            continue
        torch.nn.functional.relu(mult, inplace=True)
        if torch.max(mult) == 0.0:
            continue
        for c in defaults[i]:
            p = get_area_and_mult(c, x_in, timestep)
            if p is not None:
                hooked(groups, c, p._replace(mult=mult), i)


def calc_cond_batch(model, conds: list, x_in: torch.Tensor, timestep: torch.Tensor, model_options: dict):
    """Weighted average of every active cond's prediction, per cond list (e.g. [positive, negative]).

    Conds carrying hooks (``hearth.sampling.hooks``) run in groups of equal hooks, the model's weights
    switched to each group's before it runs."""
    from hearth.sampling.hooks import RUN_KEY

    hook_run = model_options.get(RUN_KEY)

    def hooked(groups, c, p, i):
        hooks = c.get("hooks") if hook_run is not None else None
        if hooks is not None:
            hook_run.prepare_keyframes(timestep, hooks, model_options)
        groups.setdefault(hooks, []).append((p, i))

    out_conds, out_counts, groups, defaults = [], [], {}, []
    for i, cond in enumerate(conds):
        out_conds.append(torch.zeros_like(x_in))
        out_counts.append(torch.ones_like(x_in) * 1e-37)
        defaults.append([])
        if cond is None:
            continue
        for c in cond:
            if "default" in c:
                defaults[i].append(c)
                continue
            p = get_area_and_mult(c, x_in, timestep)
            if p is not None:
                hooked(groups, c, p, i)
    if any(defaults):
        _add_default_conds(groups, defaults, x_in, timestep, hooked)
    for hooks, to_run in groups.items():
        if hook_run is not None:
            hook_run.apply(hooks)
        _run_cond_group(model, to_run, x_in, timestep, model_options, out_conds, out_counts)
    return [oc / cnt for oc, cnt in zip(out_conds, out_counts)]


def _run_cond_group(model, to_run: list, x_in, timestep, model_options: dict, out_conds: list, out_counts: list):
    max_batch = model_options.get("max_cond_batch", 64)
    while to_run:
        first = to_run[0][0]
        batch = [x for x in range(len(to_run)) if _can_concat(to_run[x][0], first)]
        batch.reverse()
        batch = batch[:max_batch]
        input_x, mult, cond_list, areas, which, uuids = [], [], [], [], [], []
        control = None
        for x in batch:
            p, idx = to_run.pop(x)
            control = p.control
            input_x.append(p.input_x)
            mult.append(p.mult)
            cond_list.append(p.conditioning)
            areas.append(p.area)
            which.append(idx)
            uuids.append(p.uuid)
        n = len(which)
        merged = _cond_cat(cond_list)
        # model patches (hearth/runtime/unet_patches.py) see which rows are cond/uncond and the sigmas
        merged["transformer_options"] = {**model_options.get("transformer_options", {}),
                                         "cond_or_uncond": which[:], "uuids": uuids, "sigmas": timestep}
        x_batch, t_batch = torch.cat(input_x), torch.cat([timestep] * n)
        if control is not None:
            merged["control"] = control.get_control(x_batch, t_batch, merged, n)
        if "model_function_wrapper" in model_options:
            output = model_options["model_function_wrapper"](
                model.apply_model, {"input": x_batch, "timestep": t_batch, "c": merged, "cond_or_uncond": which[:]})
        else:
            output = model.apply_model(x_batch, t_batch, **merged)
        output = output.chunk(n)
        for o in range(n):
            a = areas[o]
            if a is None:
                out_conds[which[o]] += output[o] * mult[o]
                out_counts[which[o]] += mult[o]
            else:
                oc, ocn = out_conds[which[o]], out_counts[which[o]]
                dims = len(a) // 2
                for i in range(dims):
                    oc = oc.narrow(i + 2, a[i + dims], a[i])
                    ocn = ocn.narrow(i + 2, a[i + dims], a[i])
                oc += output[o] * mult[o]
                ocn += mult[o]


def cfg_function(model, cond_pred, uncond_pred, cond_scale, x, timestep, model_options, cond=None, uncond=None):
    if "sampler_cfg_function" in model_options:
        args = {"cond": x - cond_pred, "uncond": x - uncond_pred, "cond_scale": cond_scale, "timestep": timestep,
                "input": x, "sigma": timestep, "cond_denoised": cond_pred, "uncond_denoised": uncond_pred,
                "model": model, "model_options": model_options}
        result = x - model_options["sampler_cfg_function"](args)
    else:
        result = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    for fn in model_options.get("sampler_post_cfg_function", []):
        result = fn({"denoised": result, "cond": cond, "uncond": uncond, "cond_scale": cond_scale, "model": model,
                     "uncond_denoised": uncond_pred, "cond_denoised": cond_pred, "sigma": timestep,
                     "model_options": model_options, "input": x})
    return result


def sampling_function(model, x, timestep, uncond, cond, cond_scale, model_options: dict):
    """The guided denoised estimate at one step; the uncond pass is skipped at CFG 1."""
    if math.isclose(cond_scale, 1.0) and not model_options.get("disable_cfg1_optimization", False):
        uncond_ = None
    else:
        uncond_ = uncond
    conds = [cond, uncond_]
    if "sampler_calc_cond_batch_function" in model_options:
        out = model_options["sampler_calc_cond_batch_function"](
            {"conds": conds, "input": x, "sigma": timestep, "model": model, "model_options": model_options})
    else:
        out = calc_cond_batch(model, conds, x, timestep, model_options)
    for fn in model_options.get("sampler_pre_cfg_function", []):
        out = fn({"conds": conds, "conds_out": out, "cond_scale": cond_scale, "timestep": timestep, "input": x,
                  "sigma": timestep, "model": model, "model_options": model_options})
    return cfg_function(model, out[0], out[1], cond_scale, x, timestep, model_options, cond, uncond_)
