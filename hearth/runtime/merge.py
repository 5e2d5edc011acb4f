"""Model and text-encoder merges as weight patches (ComfyUI's model merging nodes).

Nothing is copied: the result is a clone of the first value whose patches say, per parameter,
``weight = weight * strength_model + strength_patch * other`` where ``other`` is the second value's
weight *with its own patches* (a LoRA'd second model merges as LoRA'd), computed when the network runs.

Keys are matched the way ComfyUI matches them, by their original (LDM) UNet names: each MODEL carries
``ldm_to_diffusers``, so two UNets of different layouts pair up by what the parameters are, not by
where diffusers happens to put them. Keys only one model has are left alone; keys whose shapes differ
get the scaling but not the other model's weight (ComfyUI does the same). Text encoders pair up by
encoder name (clip_l, clip_g, clip_h) and then by parameter name.

Block merges pick a ratio per key by the longest matching prefix of its original name
(``input_blocks.4.`` wins over ``input_blocks.``); keys no prefix matches use the first ratio given.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# (strength_patch, strength_model) for a ratio / multiplier — ComfyUI's conventions per node:
#   simple / blocks: model1 * ratio + model2 * (1 - ratio)   (ratio 1.0 keeps model 1)
#   subtract:        (model1 - model2) * multiplier
#   add:             model1 + model2


def simple_strengths(ratio: float) -> tuple[float, float]:
    return 1.0 - ratio, ratio


def subtract_strengths(multiplier: float) -> tuple[float, float]:
    return -multiplier, multiplier


ADD_STRENGTHS = (1.0, 1.0)


def _ldm_map(model) -> dict[str, str]:
    from hearth.runtime.save import SaveError, unet_ldm_map

    try:
        return unet_ldm_map(model)
    except SaveError:
        return {}


def _pairs(model1, model2) -> list[tuple[str, str, str]]:
    """(original name for the ratio lookup, model1 parameter, model2 parameter) for every parameter both
    models have."""
    holder1 = model1.patcher.holder
    map1, map2 = _ldm_map(model1), _ldm_map(model2)
    if map1 and map2:
        return [(ldm, map1[ldm], dif2) for ldm, dif2 in map2.items() if ldm in map1 and holder1.has(map1[ldm])]
    # no original names for one of them: pair by parameter name
    inverse1 = {v: k for k, v in map1.items()}
    return [(inverse1.get(k, k), k, k) for k in model2.patcher.holder.keys() if holder1.has(k)]


def longest_prefix_ratio(name: str, ratios: Mapping[str, float], default: float) -> float:
    """The ratio of the longest prefix in ``ratios`` that ``name`` starts with (``default`` if none)."""
    best, best_len = default, 0
    for prefix, value in ratios.items():
        if name.startswith(prefix) and len(prefix) > best_len:
            best, best_len = value, len(prefix)
    return best


def merge_models(model1, model2, strengths_for: Callable[[str], tuple[float, float]]):
    """A clone of ``model1`` with ``model2``'s weights patched in; ``strengths_for(original key name)``
    gives (strength_patch, strength_model) per key."""
    out = model1.clone()
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    pairs = _pairs(model1, model2)
    source = model2.patcher.key_patches([p[2] for p in pairs])
    for name, key1, key2 in pairs:
        if key2 in source:
            groups.setdefault(tuple(strengths_for(name)), {})[key1] = source[key2]
    for (strength_patch, strength_model), patches in groups.items():
        out.patcher.add_patches(patches, strength_patch, strength_model)
    return out


def merge_blocks(model1, model2, ratios: Mapping[str, float]):
    """ModelMergeBlocks and the per-family block merges: ``ratios`` maps key prefixes (original names,
    in the order the node lists them) to ratios; the first one is the default."""
    if not ratios:
        raise ValueError("no block ratios given")
    default = next(iter(ratios.values()))
    return merge_models(model1, model2,
                        lambda name: simple_strengths(longest_prefix_ratio(name, ratios, default)))


_CLIP_SKIP_SUFFIXES = (".position_ids", ".logit_scale")


def merge_clips(clip1, clip2, strength_patch: float, strength_model: float):
    """A clone of ``clip1`` with ``clip2``'s text encoder weights patched in (encoders paired by name)."""
    out = clip1.clone()
    for enc in out.encoders:
        other = clip2.encoder(enc.spec.name)
        if other is None:
            continue
        names = [k for k in other.patcher.holder.keys()
                 if not k.endswith(_CLIP_SKIP_SUFFIXES) and enc.patcher.holder.has(k)]
        patches = other.patcher.key_patches(names)
        if patches:
            enc.patcher.add_patches(patches, strength_patch, strength_model)
    return out
