"""Hooks: weight changes (a LoRA, or another checkpoint's difference) that apply only to the conds carrying them.

A HOOKS value is a ``HookGroup``. Conditioning entries carry one under the option ``"hooks"`` (ComfyUI's
name; custom nodes read it). While sampling, conds are evaluated in groups of equal hook sets, and before
each group runs the model's weights are switched to base + that group's hook patches (``HookRun``).

A hook's strength can follow a schedule: a ``HookKeyframeGroup`` of ``HookKeyframe(strength, start_percent,
guarantee_steps)``. At each step the schedule moves to the last keyframe whose start (as a sigma) has been
reached, but only after the current keyframe was used for its ``guarantee_steps`` steps; a keyframe that
starts before the sampled range counts as guaranteeing nothing. Hook clones share their keyframe group, so
a schedule advances once per step however many conds carry the hook.

This module holds the data and the scheduling; turning a hook into weight patches is the model's business
(``model.hook_patcher``, see ``hearth.runtime.hooks``).
"""
from __future__ import annotations

import enum
import logging
import math

import torch

log = logging.getLogger(__name__)

# Key under which a sampling run keeps its HookRun in model_options.
RUN_KEY = "hearth_hook_run"


class EnumHookType(enum.Enum):
    Weight = "weight"
    ObjectPatch = "object_patch"
    AdditionalModels = "add_models"
    TransformerOptions = "transformer_options"
    Injections = "add_injections"


class EnumWeightTarget(enum.Enum):
    Model = "model"
    Clip = "clip"


class EnumHookScope(enum.Enum):
    AllConditioning = "all_conditioning"
    HookedOnly = "hooked_only"


class HookRef:
    """Identity shared by a hook and its clones (two hooks are the same hook when their refs are)."""

    def __init__(self) -> None:
        # Weight patches built for a given network, reused by every clone: {(holder id, target): patches}.
        self.patch_cache: dict = {}


# --- keyframes ---------------------------------------------------------------------------------------

class HookKeyframe:
    def __init__(self, strength: float, start_percent: float = 0.0, guarantee_steps: int = 1) -> None:
        self.strength = strength
        self.start_percent = float(start_percent)
        self.start_t = 999999999.9  # the start as a sigma, set when sampling begins
        self.guarantee_steps = guarantee_steps

    def get_effective_guarantee_steps(self, max_sigma) -> int:
        """A keyframe that starts before the sampled range (above its first sigma) guarantees no steps."""
        return 0 if self.start_t > max_sigma else self.guarantee_steps

    def clone(self) -> "HookKeyframe":
        c = HookKeyframe(self.strength, self.start_percent, self.guarantee_steps)
        c.start_t = self.start_t
        return c

    def __repr__(self) -> str:
        return f"HookKeyframe(strength={float(self.strength)}, start_percent={self.start_percent})"


class HookKeyframeGroup:
    """A strength schedule, plus the state of the sampling run walking it."""

    def __init__(self) -> None:
        self.keyframes: list[HookKeyframe] = []
        self._current_keyframe: HookKeyframe | None = None
        self._current_used_steps = 0
        self._current_index = 0
        self._current_strength = None
        self._curr_t = -1.0

    @property
    def strength(self) -> float:
        return self._current_keyframe.strength if self._current_keyframe is not None else 1.0

    def reset(self) -> None:
        # The sigma of the last step seen is kept, as ComfyUI keeps it: a run starting at the sigma where
        # the previous run of the same hooks stopped (a second KSamplerAdvanced stage after a sampler that
        # evaluates the next sigma) spends its first step on the first keyframe, as there.
        self._current_used_steps = 0
        self._current_index = 0
        self._current_strength = None
        self._set_first_as_current()

    def add(self, keyframe: HookKeyframe) -> None:
        self.keyframes.append(keyframe)
        self.keyframes.sort(key=lambda k: k.start_percent)  # stable: equal starts keep their order
        self._set_first_as_current()

    def _set_first_as_current(self) -> None:
        self._current_keyframe = self.keyframes[0] if self.keyframes else None

    def has_guarantee_steps(self) -> bool:
        return any(k.guarantee_steps > 0 for k in self.keyframes)

    def has_index(self, index: int) -> bool:
        return 0 <= index < len(self.keyframes)

    def is_empty(self) -> bool:
        return not self.keyframes

    def clone(self) -> "HookKeyframeGroup":
        c = HookKeyframeGroup()
        c.keyframes = [k.clone() for k in self.keyframes]
        c._set_first_as_current()
        return c

    def initialize_timesteps(self, model_sampling) -> None:
        for k in self.keyframes:
            k.start_t = float(model_sampling.percent_to_sigma(k.start_percent))

    def prepare_current_keyframe(self, curr_t: float, sample_sigmas) -> bool:
        """Advance the schedule to the step at sigma ``curr_t``; True when the strength changed."""
        if self.is_empty() or curr_t == self._curr_t:
            return False
        max_sigma = float(torch.max(sample_sigmas)) if sample_sigmas is not None else math.inf
        prev_index, prev_strength = self._current_index, self._current_strength
        if self._current_used_steps >= self._current_keyframe.get_effective_guarantee_steps(max_sigma):
            for i in range(self._current_index + 1, len(self.keyframes)):
                candidate = self.keyframes[i]
                if candidate.start_t < curr_t:  # sigmas fall as sampling goes on: not reached yet
                    break
                self._current_index = i
                self._current_strength = candidate.strength
                self._current_keyframe = candidate
                self._current_used_steps = 0
                if candidate.get_effective_guarantee_steps(max_sigma) > 0:
                    break
        self._current_used_steps += 1
        self._curr_t = curr_t
        return prev_index != self._current_index and prev_strength != self._current_strength


class InterpolationMethod:
    LINEAR = "linear"
    EASE_IN = "ease_in"
    EASE_OUT = "ease_out"
    EASE_IN_OUT = "ease_in_out"

    _LIST = [LINEAR, EASE_IN, EASE_OUT, EASE_IN_OUT]

    @classmethod
    def get_weights(cls, num_from: float, num_to: float, length: int, method: str, reverse: bool = False):
        """``length`` values from ``num_from`` to ``num_to`` (float32) along the given easing curve."""
        diff = num_to - num_from
        if method == cls.LINEAR:
            weights = torch.linspace(num_from, num_to, length)
        else:
            t = torch.linspace(0, 1, length)
            if method == cls.EASE_IN:
                weights = diff * t.pow(2) + num_from
            elif method == cls.EASE_OUT:
                weights = diff * (1 - (1 - t).pow(2)) + num_from
            elif method == cls.EASE_IN_OUT:
                weights = diff * ((1 - torch.cos(t * math.pi)) / 2) + num_from
            else:
                raise ValueError(f"Unknown interpolation method {method!r} (expected one of {cls._LIST}).")
        return weights.flip(dims=(0,)) if reverse else weights


# --- hooks --------------------------------------------------------------------------------------------

class Hook:
    def __init__(self, hook_type: EnumHookType | None = None, hook_ref: HookRef | None = None,
                 hook_id: str | None = None, hook_keyframe: HookKeyframeGroup | None = None,
                 hook_scope: EnumHookScope = EnumHookScope.AllConditioning) -> None:
        self.hook_type = hook_type
        self.hook_ref = hook_ref if hook_ref is not None else HookRef()
        self.hook_id = hook_id
        self.hook_keyframe = hook_keyframe if hook_keyframe is not None else HookKeyframeGroup()
        self.hook_scope = hook_scope

    @property
    def strength(self) -> float:
        return self.hook_keyframe.strength

    def initialize_timesteps(self, model_sampling) -> None:
        self.reset()
        self.hook_keyframe.initialize_timesteps(model_sampling)

    def reset(self) -> None:
        self.hook_keyframe.reset()

    def clone(self) -> "Hook":
        c = self.__class__.__new__(self.__class__)
        c.__dict__.update(self.__dict__)  # the keyframe group and ref are shared with the original
        return c

    def __eq__(self, other) -> bool:
        return self.__class__ == other.__class__ and self.hook_ref is other.hook_ref

    def __hash__(self) -> int:
        return hash(self.hook_ref)


class WeightHook(Hook):
    """Weights (a LoRA state dict, or target weights of another checkpoint) added to the hooked conds' model.

    ``weights``/``weights_clip``: with ``need_weight_init`` a LoRA state dict (file key names) for both;
    without it ``{parameter name: target tensor}`` for the model and the text encoders respectively
    (a model used as a LoRA: its difference from the base weights is added).
    """

    def __init__(self, strength_model: float = 1.0, strength_clip: float = 1.0) -> None:
        super().__init__(EnumHookType.Weight, hook_scope=EnumHookScope.HookedOnly)
        self.weights = None
        self.weights_clip = None
        self.need_weight_init = True
        self._strength_model = strength_model
        self._strength_clip = strength_clip

    @property
    def strength_model(self) -> float:
        return self._strength_model * self.strength

    @property
    def strength_clip(self) -> float:
        return self._strength_clip * self.strength


class HookGroup:
    """An ordered set of hooks (by identity). Conds are grouped by the HookGroup *object* they carry."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self._hook_dict: dict[EnumHookType, list[Hook]] = {}

    def __len__(self) -> int:
        return len(self.hooks)

    def __repr__(self) -> str:
        return f"HookGroup({len(self.hooks)} hooks)"

    def add(self, hook: Hook) -> None:
        if hook not in self.hooks:
            self.hooks.append(hook)
            self._hook_dict.setdefault(hook.hook_type, []).append(hook)

    def remove(self, hook: Hook) -> None:
        if hook in self.hooks:
            self.hooks.remove(hook)
            self._hook_dict[hook.hook_type].remove(hook)

    def get_type(self, hook_type: EnumHookType) -> list[Hook]:
        return self._hook_dict.get(hook_type, [])

    def contains(self, hook: Hook) -> bool:
        return hook in self.hooks

    def is_subset_of(self, other: "HookGroup") -> bool:
        return set(self.hooks).issubset(set(other.hooks))

    def new_with_common_hooks(self, other: "HookGroup") -> "HookGroup":
        c = HookGroup()
        for hook in self.hooks:
            if other.contains(hook):
                c.add(hook.clone())
        return c

    def clone(self) -> "HookGroup":
        c = HookGroup()
        for hook in self.hooks:
            c.add(hook.clone())
        return c

    def clone_and_combine(self, other: "HookGroup | None") -> "HookGroup":
        c = self.clone()
        if other is not None:
            for hook in other.hooks:
                c.add(hook.clone())
        return c

    def set_keyframes_on_hooks(self, hook_kf: HookKeyframeGroup | None) -> None:
        hook_kf = HookKeyframeGroup() if hook_kf is None else hook_kf.clone()
        for hook in self.hooks:
            hook.hook_keyframe = hook_kf

    def reset(self) -> None:
        for hook in self.hooks:
            hook.reset()

    def get_hooks_for_clip_schedule(self):
        """[((start, end), [(weight hook, keyframe or None), ...]), ...]: the percent ranges over which every
        weight hook's strength is constant, for encoding text once per range."""
        per_hook: dict[WeightHook, list] = {}
        for hook in self.get_type(EnumHookType.Weight):
            kfs = hook.hook_keyframe.keyframes
            if not kfs:
                per_hook[hook] = [((0.0, 1.0), None)]
                continue
            ranges = []
            prev = kfs[0]
            for kf in kfs:
                if kf.start_percent > prev.start_percent and not math.isclose(kf.strength, prev.strength):
                    ranges.append(((prev.start_percent, kf.start_percent), prev))
                    prev = kf
                elif kf.start_percent == prev.start_percent:
                    prev = kf
            if not math.isclose(prev.start_percent, 1.0):
                ranges.append(((prev.start_percent, 1.0), prev))
            per_hook[hook] = ranges
        bounds = {0.0}
        for ranges in per_hook.values():
            for (a, b), _ in ranges:
                bounds.update((a, b))
        bounds = sorted(bounds)
        out = []
        for lo, hi in zip(bounds, bounds[1:]):
            chosen = []
            for hook, ranges in per_hook.items():
                kf = None
                for (a, b), stored in ranges:
                    if a < hi and b > lo:
                        kf = stored
                        break
                chosen.append((hook, kf))
            out.append(((lo, hi), chosen))
        return out

    @staticmethod
    def combine_all_hooks(hooks_list: list, require_count: int = 0) -> "HookGroup | None":
        actual = [g for g in hooks_list if g is not None]
        if len(actual) < require_count:
            raise ValueError(f"Need at least {require_count} hooks to combine, but only had {len(actual)}.")
        if not actual:
            return None
        if len(actual) == 1:
            return actual[0]
        final = actual[0].clone()
        for group in actual[1:]:
            final = final.clone_and_combine(group)
        return final


def create_hook_lora(lora, strength_model: float, strength_clip: float) -> HookGroup:
    group = HookGroup()
    hook = WeightHook(strength_model, strength_clip)
    hook.weights = lora
    group.add(hook)
    return group


def create_hook_model_as_lora(weights_model, weights_clip, strength_model: float, strength_clip: float) -> HookGroup:
    group = HookGroup()
    hook = WeightHook(strength_model, strength_clip)
    hook.weights = weights_model
    hook.weights_clip = weights_clip
    hook.need_weight_init = False
    group.add(hook)
    return group


# --- conditioning helpers (ComfyUI's option names) ----------------------------------------------------

def _set_values(conditioning, values: dict):
    return [[t[0], {**t[1], **values}] for t in conditioning]


def set_hooks_for_conditioning(cond, hooks: HookGroup | None, append_hooks: bool = True, cache: dict | None = None):
    """Attach ``hooks`` to every entry; entries that already carry hooks get the union (one combined
    group per distinct existing group, so entries that shared a group still share one)."""
    if hooks is None:
        return cond
    cache = {} if cache is None else cache
    out = []
    for t in cond:
        opts = t[1].copy()
        existing = opts.get("hooks")
        if not append_hooks or existing is None:
            opts["hooks"] = hooks
        else:
            key = (id(existing), id(hooks))
            if key not in cache:
                cache[key] = (existing, hooks, existing.clone_and_combine(hooks))
            opts["hooks"] = cache[key][2]
        out.append([t[0], opts])
    return out


def set_timesteps_for_conditioning(cond, timestep_range):
    if timestep_range is None:
        return cond
    return _set_values(cond, {"start_percent": timestep_range[0], "end_percent": timestep_range[1]})


def set_mask_for_conditioning(cond, mask, set_cond_area: str, strength: float):
    if mask is None:
        return cond
    if mask.ndim < 3:
        mask = mask.unsqueeze(0)
    return _set_values(cond, {"mask": mask, "set_area_to_bounds": set_cond_area != "default",
                              "mask_strength": strength})


def combine_conditioning(conds: list) -> list:
    out = []
    for c in conds:
        out.extend(c)
    return out


def set_conds_props(conds: list, strength: float, set_cond_area: str, mask=None, hooks=None, timesteps_range=None,
                    append_hooks: bool = True) -> list:
    cache: dict = {}
    out = []
    for c in conds:
        c = set_hooks_for_conditioning(c, hooks, append_hooks, cache)
        c = set_mask_for_conditioning(c, mask, set_cond_area, strength)
        out.append(set_timesteps_for_conditioning(c, timesteps_range))
    return out


def set_conds_props_and_combine(conds: list, new_conds: list, strength: float = 1.0, set_cond_area: str = "default",
                                mask=None, hooks=None, timesteps_range=None, append_hooks: bool = True) -> list:
    cache: dict = {}
    out = []
    for c, new in zip(conds, new_conds):
        new = set_hooks_for_conditioning(new, hooks, append_hooks, cache)
        new = set_mask_for_conditioning(new, mask, set_cond_area, strength)
        new = set_timesteps_for_conditioning(new, timesteps_range)
        out.append(combine_conditioning([c, new]))
    return out


def set_default_conds_and_combine(conds: list, new_conds: list, hooks=None, timesteps_range=None,
                                  append_hooks: bool = True) -> list:
    """Mark ``new_conds`` as defaults (``"default": True``: used only where no other cond of the same side
    covers the latent) and append them."""
    cache: dict = {}
    out = []
    for c, new in zip(conds, new_conds):
        new = set_hooks_for_conditioning(new, hooks, append_hooks, cache)
        new = _set_values(new, {"default": True})
        new = set_timesteps_for_conditioning(new, timesteps_range)
        out.append(combine_conditioning([c, new]))
    return out


# --- sampling ------------------------------------------------------------------------------------------

class HookRun:
    """The hooks of one sampling run: registered on the model, scheduled per step, applied per cond group."""

    def __init__(self, model, registered: HookGroup, switching: bool = False) -> None:
        self.model = model
        self.registered = registered
        self._patchers: dict = {}
        # With several cond groups the weights switch back and forth every step: keep computed weights
        # while memory allows (the model decides; ComfyUI's "max speed" hook mode).
        room = getattr(model, "hook_memory_room", None)
        self._room = room() if switching and room is not None else None

    @classmethod
    def prepare(cls, model, conds: dict[str, list[dict]]) -> "HookRun | None":
        """Register the weight hooks the conds carry; drop from the conds the hooks that cannot apply.
        None when no cond carries hooks (conds are then left exactly as they were)."""
        found = HookGroup()
        for cond_list in conds.values():
            for c in cond_list:
                if c.get("hooks") is not None:
                    for hook in c["hooks"].hooks:
                        found.add(hook)
        if not len(found):
            return None
        registered = HookGroup()
        if getattr(model, "hook_patcher", None) is not None:
            for hook in found.get_type(EnumHookType.Weight):
                registered.add(hook)
        for hook in found.hooks:
            if not registered.contains(hook):
                log.warning("hook of type %s is not supported here; ignored", hook.hook_type.value)
        replaced: dict[int, HookGroup | None] = {}
        for cond_list in conds.values():
            for c in cond_list:
                hooks = c.get("hooks")
                if hooks is None or hooks.is_subset_of(registered):
                    continue
                if id(hooks) not in replaced:
                    common = hooks.new_with_common_hooks(registered)
                    replaced[id(hooks)] = common if len(common) else None
                c["hooks"] = replaced[id(hooks)]
        if not len(registered):
            return None
        groups = {id(c.get("hooks")) for cond_list in conds.values() for c in cond_list}
        return cls(model, registered, switching=len(groups) > 1)

    def initialize_timesteps(self, conds: dict[str, list[dict]]) -> None:
        for cond_list in conds.values():
            for c in cond_list:
                if c.get("hooks") is not None:
                    for hook in c["hooks"].hooks:
                        hook.initialize_timesteps(self.model.model_sampling)

    def prepare_keyframes(self, timestep, hooks: HookGroup, model_options: dict) -> None:
        curr_t = float(timestep[0])
        for hook in hooks.hooks:
            hook.hook_keyframe.prepare_current_keyframe(curr_t, model_options.get("sample_sigmas"))

    def apply(self, hooks: HookGroup | None) -> None:
        """Switch the model's weights to base + ``hooks`` at their current strengths."""
        if hooks is None and self._room is None:
            self.model.patcher.activate()
            return
        weight_hooks = [] if hooks is None else [(h, float(h.strength)) for h in hooks.get_type(EnumHookType.Weight)]
        key = tuple(id(h.hook_ref) for h, _ in weight_hooks)
        strengths = tuple(s for _, s in weight_hooks)
        entry = self._patchers.get(key)
        if entry is None or entry[0] != strengths:  # a keyframe changed: the old weights are of no more use
            if self._room is None:
                patcher = self.model.hook_patcher(weight_hooks)
            else:
                patcher = self.model.hook_patcher(weight_hooks, self._room)
            entry = self._patchers[key] = (strengths, patcher)
        entry[1].activate()

    def finish(self) -> None:
        self._patchers.clear()
        self.model.patcher.activate()
