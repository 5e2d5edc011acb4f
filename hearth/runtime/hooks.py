"""Weight hooks on Hearth's networks: a hook's LoRA (or model difference) as patches on a Patcher.

``hearth.sampling.hooks`` holds the hook data and schedules; here a WeightHook becomes adapters for one
network (UNet or a text encoder), built once per network and kept on the hook's shared ref, and a
Patcher is made of a base patcher + those adapters at a strength. Nothing here changes a shared module
until the returned patcher is activated.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from hearth.runtime import lora as L
from hearth.runtime.patcher import Patcher
from hearth.sampling import hooks as H

log = logging.getLogger(__name__)


class ModelAsLoRA:
    """Adds ``strength × (target − original)``, original being the network's own unpatched weight."""

    def __init__(self, target: torch.Tensor, holder, key: str) -> None:
        self.target, self.holder, self.key = target, holder, key

    def apply(self, w: torch.Tensor, strength: float) -> torch.Tensor:
        if tuple(self.target.shape) != tuple(w.shape):
            log.warning("model-as-LoRA weight %s of shape %s does not fit %s; skipped", self.key,
                        tuple(self.target.shape), tuple(w.shape))
            return w
        original = self.holder.backup.get(self.key)
        if original is None:  # while a patcher is being activated the parameter still holds the original
            original = self.holder.param(self.key).data
        diff = self.target.to(w.device, torch.float32) - original.to(w.device, torch.float32)
        return w + strength * diff


def original_weights(holder) -> dict[str, torch.Tensor]:
    """The holder's parameters without any patch applied (the tensors themselves, not copies)."""
    with holder.lock:
        out = {}
        for key, p in holder.module.named_parameters():
            out[key] = holder.backup.get(key, p.data)
        return out


def _unet_adapters(model, hook: H.WeightHook) -> dict[str, Any]:
    holder = model.patcher.holder
    cache_key = (holder.id, "unet")
    cached = hook.hook_ref.patch_cache.get(cache_key)
    if cached is not None:
        return cached
    if hook.need_weight_init:
        params = list(holder.module.state_dict().keys())
        key_map = {"unet": L.unet_lora_names(params, model.ldm_to_diffusers)}
        patches, _unused = L.build_patches(hook.weights or {}, key_map)
        adapters = patches["unet"]
    else:
        adapters = {k: ModelAsLoRA(v, holder, k) for k, v in (hook.weights or {}).items() if holder.has(k)}
    hook.hook_ref.patch_cache[cache_key] = adapters
    return adapters


def _clip_adapters(clip, hook: H.WeightHook) -> dict[str, dict[str, Any]]:
    """{encoder name: {parameter: adapter}} for a CLIP value's text encoders."""
    out: dict[str, dict[str, Any]] = {}
    slots = L.clip_slots([e.spec.name for e in clip.encoders])
    for e in clip.encoders:
        holder = e.patcher.holder
        cache_key = (holder.id, "clip")
        cached = hook.hook_ref.patch_cache.get(cache_key)
        if cached is None:
            if hook.need_weight_init:
                params = list(holder.module.state_dict().keys())
                key_map = {e.spec.name: L.clip_lora_names(e.spec.name, params, slots.get(e.spec.name, []))}
                patches, _unused = L.build_patches(hook.weights or {}, key_map)
                cached = patches[e.spec.name]
            else:
                weights = (hook.weights_clip or {}).get(e.spec.name, {})
                cached = {k: ModelAsLoRA(v, holder, k) for k, v in weights.items() if holder.has(k)}
            hook.hook_ref.patch_cache[cache_key] = cached
        out[e.spec.name] = cached
    return out


class KeepingPatcher(Patcher):
    """A patcher that keeps the weights it computed, so that switching back to it (cond groups with other
    hooks run in between, every step) is a reassignment rather than a recomputation. It keeps them only
    while ``room(bytes)`` agrees; the kept tensors are those the module held, not copies."""

    def __init__(self, base: Patcher, room) -> None:
        super().__init__(base.holder)
        self.patches = {k: list(v) for k, v in base.patches.items()}
        self._signature = base.signature
        self._room = room
        self._kept: dict[str, torch.Tensor] | None = None

    def activate(self) -> None:
        holder = self.holder
        with holder.lock:
            if holder.applied == self._signature and (self._signature or not holder.backup):
                return
            kept = self._kept
            if kept is None or any(holder.param(k).device != t.device for k, t in kept.items()):
                super().activate()
                weights = {k: holder.param(k).data for k in self.patches}
                size = sum(t.numel() * t.element_size() for t in weights.values())
                self._kept = weights if size == 0 or self._room(size) else None
                return
            holder.restore()
            for key, weight in kept.items():
                p = holder.param(key)
                holder.backup[key] = p.data
                p.data = weight
            holder.applied = self._signature

    def release(self) -> None:
        self._kept = None


def model_hook_patcher(model, weighted_hooks: list[tuple[H.WeightHook, float]], room=None) -> Patcher:
    """A clone of ``model``'s patcher with each hook's patches at ``strength_model × keyframe strength``.

    With ``room`` (a callable deciding whether ``n`` more bytes may be kept) the patcher keeps its
    computed weights for reuse (``KeepingPatcher``)."""
    patcher = model.patcher.clone() if room is None else KeepingPatcher(model.patcher, room)
    for hook, kf_strength in weighted_hooks:
        patcher.add_patches(_unet_adapters(model, hook), hook._strength_model * kf_strength)
    return patcher


def memory_room(model, reserve: int = 2 * 1024 ** 3):
    """A ``room`` callable: keep patched weights while the model's device keeps ``reserve`` bytes free
    after one more set of that size is allocated (the kept set stays when another set is applied)."""

    def room(size: int) -> bool:
        try:
            free = model.manager.free_memory(model.patcher.holder.device)
        except Exception:  # noqa: BLE001 - no estimate: do not keep
            return False
        return free - size >= reserve

    return room


def clip_hook_schedule(clip, hooks: H.HookGroup, scheduled: bool) -> list:
    """What CLIP encoding needs to apply ``hooks``: ``[(percent range or None, {encoder: [(adapters, strength)]})]``.

    Unscheduled: one entry at each hook's ``strength_clip``. Scheduled: one entry per range over which
    every hook's keyframe strength is constant (an entry's conds then only act in that range)."""
    weight_hooks = hooks.get_type(H.EnumHookType.Weight)
    adapters = [(hook, _clip_adapters(clip, hook)) for hook in weight_hooks]

    def patches_at(strengths: dict) -> dict[str, list]:
        out: dict[str, list] = {}
        for hook, per_encoder in adapters:
            s = hook._strength_clip * strengths.get(hook, 1.0)
            for name, a in per_encoder.items():
                if a and s != 0:
                    out.setdefault(name, []).append((a, s))
        return out

    if not scheduled:
        return [(None, patches_at({}))]
    schedule = []
    for t_range, chosen in hooks.get_hooks_for_clip_schedule():
        strengths = {hook: (float(kf.strength) if kf is not None else 1.0) for hook, kf in chosen}
        schedule.append((t_range, patches_at(strengths)))
    return schedule
