"""Hooks (comfy_extras.nodes_hooks): weight hooks on the conds carrying them, keyframe schedules, CLIP hooks,
and the conditioning structures the hook nodes build. Tiny SD1.5 checkpoint + tiny LoRA (conftest.py)."""
from __future__ import annotations

import math

import pytest
import torch

from hearth.sampling import hooks as H
from tests.runtime import tiny
from tests.runtime.conftest import txt2img

STEPS = 6


def close(a, b) -> bool:
    """Equal up to float rounding (cond batches of different sizes round differently); the tiny random
    networks give latents of magnitude ~100."""
    return bool((a - b).abs().max() <= 2e-5 * max(1.0, float(a.abs().max())))


def differs(a, b) -> bool:
    return bool((a - b).abs().max() > 1e-4 * max(1.0, float(a.abs().max())))


def _latent(h, prompt, node="6"):
    return h.latent(h.run(prompt), node)


def _base(steps=STEPS, cfg=5.0, seed=3, sampler="euler"):
    return txt2img(steps=steps, cfg=cfg, seed=seed, sampler=sampler, scheduler="normal")


def _with_hook(strength_model=1.0, strength_clip=1.0, on="positive", keyframes=None, **kw):
    """txt2img with a LoRA hook attached to the positive cond (on="positive") or to both (on="both")."""
    p = _base(**kw)
    p["20"] = {"class_type": "CreateHookLora", "inputs": {"lora_name": "tiny_lora.safetensors",
                                                          "strength_model": strength_model,
                                                          "strength_clip": strength_clip}}
    hooks = ["20", 0]
    if keyframes:
        prev = None
        for n, (strength, start) in enumerate(keyframes):
            inputs = {"strength_mult": strength, "start_percent": start}
            if prev:
                inputs["prev_hook_kf"] = prev
            p[f"3{n}"] = {"class_type": "CreateHookKeyframe", "inputs": inputs}
            prev = [f"3{n}", 0]
        p["21"] = {"class_type": "SetHookKeyframes", "inputs": {"hooks": hooks, "hook_kf": prev}}
        hooks = ["21", 0]
    if on == "positive":
        p["22"] = {"class_type": "ConditioningSetProperties",
                   "inputs": {"cond_NEW": ["2", 0], "strength": 1.0, "set_cond_area": "default", "hooks": hooks}}
        p["5"]["inputs"]["positive"] = ["22", 0]
    else:
        p["22"] = {"class_type": "PairConditioningSetProperties",
                   "inputs": {"positive_NEW": ["2", 0], "negative_NEW": ["3", 0], "strength": 1.0,
                              "set_cond_area": "default", "hooks": hooks}}
        p["5"]["inputs"]["positive"] = ["22", 0]
        p["5"]["inputs"]["negative"] = ["22", 1]
    return p


def _with_lora_model(**kw):
    p = _base(**kw)
    p["40"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "tiny_lora.safetensors",
                                                               "strength_model": 1.0}}
    p["5"]["inputs"]["model"] = ["40", 0]
    return p


def test_lora_hook_on_positive_only(harness):
    plain = _latent(harness, _base())
    hooked = _latent(harness, _with_hook(on="positive"))
    whole = _latent(harness, _with_lora_model())
    assert hooked.shape == plain.shape and torch.isfinite(hooked).all()
    assert differs(hooked, plain)
    assert differs(hooked, whole)
    # the same hook on both conds is the LoRA on the whole model
    both = _latent(harness, _with_hook(on="both"))
    assert close(both, whole), (both - whole).abs().max()
    # after sampling the shared UNet is back to its own weights
    assert torch.equal(_latent(harness, _base(seed=4)), _latent(harness, _base(seed=4)))


def test_hook_strength_zero_is_no_hook(harness):
    plain = _latent(harness, _base())
    zero = _latent(harness, _with_hook(strength_model=0.0, strength_clip=1.0, on="positive"))
    assert close(zero, plain), (zero - plain).abs().max()
    # a keyframe multiplier of 0 all along is no hook either
    off = _latent(harness, _with_hook(on="positive", keyframes=[(0.0, 0.0)]))
    assert close(off, plain)


def _switch_step(steps: int, percent: float) -> int:
    """The first step whose sigma is at or below the keyframe's start: where the schedule switches."""
    from hearth.sampling.ksampler import calculate_sigmas
    from hearth.sampling.model_sampling import DiscreteSampling

    ms = DiscreteSampling("eps")
    sigmas = calculate_sigmas(ms, "euler", "normal", steps)
    start = ms.percent_to_sigma(percent)
    return next(i for i in range(steps) if float(sigmas[i]) <= start)


def test_keyframes_switch_lora_off_matches_two_stage_run(harness):
    on = _latent(harness, _with_hook(on="both"))
    off = _latent(harness, _base())
    scheduled = _latent(harness, _with_hook(on="both", keyframes=[(1.0, 0.0), (0.0, 0.5)]))
    assert differs(scheduled, on) and differs(scheduled, off)
    k = _switch_step(STEPS, 0.5)
    assert 0 < k < STEPS
    # the same with two KSamplerAdvanced: LoRA model for steps [0, k), plain model for [k, end)
    p = _with_lora_model()
    common = {"noise_seed": 3, "steps": STEPS, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
              "positive": ["2", 0], "negative": ["3", 0]}
    p["5"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "model": ["40", 0], "add_noise": "enable", "latent_image": ["4", 0], "start_at_step": 0,
        "end_at_step": k, "return_with_leftover_noise": "enable"}}
    p["50"] = {"class_type": "KSamplerAdvanced", "inputs": {
        **common, "model": ["1", 0], "add_noise": "disable", "latent_image": ["5", 0], "start_at_step": k,
        "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
    p["6"]["inputs"]["samples"] = ["50", 0]
    two_stage = _latent(harness, p)
    assert close(scheduled, two_stage), (scheduled - two_stage).abs().max()


def test_interpolated_keyframes_run(harness):
    p = _with_hook(on="positive")
    p["60"] = {"class_type": "CreateHookKeyframesInterpolated", "inputs": {
        "strength_start": 1.0, "strength_end": 0.0, "interpolation": "ease_in_out", "start_percent": 0.0,
        "end_percent": 1.0, "keyframes_count": 4, "print_keyframes": True}}
    p["21"] = {"class_type": "SetHookKeyframes", "inputs": {"hooks": ["20", 0], "hook_kf": ["60", 0]}}
    p["22"]["inputs"]["hooks"] = ["21", 0]
    out = _latent(harness, p)
    assert torch.isfinite(out).all()
    assert differs(out, _latent(harness, _with_hook(on="positive")))


def test_model_as_lora_hook(harness, model_base):
    from safetensors.torch import save_file

    other = model_base / "models" / "checkpoints" / "sd15_other.safetensors"
    if not other.exists():
        save_file(tiny.sd15_checkpoint(seed=21), str(other))

    def with_model_hook(ckpt):
        p = _base()
        p["20"] = {"class_type": "CreateHookModelAsLoraModelOnly", "inputs": {"ckpt_name": ckpt,
                                                                              "strength_model": 1.0}}
        p["22"] = {"class_type": "PairConditioningSetProperties", "inputs": {
            "positive_NEW": ["2", 0], "negative_NEW": ["3", 0], "strength": 1.0, "set_cond_area": "default",
            "hooks": ["20", 0]}}
        p["5"]["inputs"]["positive"], p["5"]["inputs"]["negative"] = ["22", 0], ["22", 1]
        return p

    plain = _latent(harness, _base())
    same = _latent(harness, with_model_hook("sd15.safetensors"))
    assert close(same, plain)
    # at strength 1 on every cond the other checkpoint's UNet replaces the model's (text still encoded by ours)
    hooked = _latent(harness, with_model_hook("sd15_other.safetensors"))
    p = _base()
    p["70"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_other.safetensors"}}
    p["5"]["inputs"]["model"] = ["70", 0]
    direct = _latent(harness, p)
    assert differs(direct, plain)
    assert close(hooked, direct), (hooked - direct).abs().max()


def test_default_cond_alone_acts_like_a_plain_cond(harness):
    plain = _latent(harness, _base())
    p = _base()
    p["80"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["2", 0]}}
    p["81"] = {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["80", 0], "start": 0.0,
                                                                        "end": 0.0}}
    p["82"] = {"class_type": "ConditioningSetDefaultCombine", "inputs": {"cond": ["81", 0], "cond_DEFAULT": ["2", 0]}}
    p["5"]["inputs"]["positive"] = ["82", 0]
    out = _latent(harness, p)
    assert close(out, plain), (out - plain).abs().max()


# --- CLIP hooks ---------------------------------------------------------------------------------------------

def _run(ctx, class_type, **inputs):
    cls = ctx.registry.get(class_type)
    return getattr(cls(), cls.FUNCTION)(**inputs)


@pytest.fixture
def ctx(harness):
    from hearth.nodes.context import using

    c = harness.context()
    with using(c):
        yield c


def test_set_clip_hooks_changes_the_encoding(ctx):
    _model, clip, _vae = _run(ctx, "CheckpointLoaderSimple", ckpt_name="sd15.safetensors")
    (hooks,) = _run(ctx, "CreateHookLora", lora_name="tiny_lora.safetensors", strength_model=1.0, strength_clip=1.0)
    (plain,) = _run(ctx, "CLIPTextEncode", clip=clip, text="a cat")
    (hclip,) = _run(ctx, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False, hooks=hooks)
    (hooked,) = _run(ctx, "CLIPTextEncode", clip=hclip, text="a cat")
    _m, lclip = _run(ctx, "LoraLoader", model=_model, clip=clip, lora_name="tiny_lora.safetensors",
                     strength_model=1.0, strength_clip=1.0)
    (lora,) = _run(ctx, "CLIPTextEncode", clip=lclip, text="a cat")
    assert hooked[0][1]["hooks"] is hooks and "hooks" not in plain[0][1]
    assert (hooked[0][0] - plain[0][0]).abs().max() > 1e-3
    assert torch.equal(hooked[0][0], lora[0][0])
    # the original CLIP is untouched
    (again,) = _run(ctx, "CLIPTextEncode", clip=clip, text="a cat")
    assert torch.equal(again[0][0], plain[0][0])
    # apply_to_conds off: encoded with the hook, but the conds do not carry it
    (hclip2,) = _run(ctx, "SetClipHooks", clip=clip, apply_to_conds=False, schedule_clip=False, hooks=hooks)
    (c2,) = _run(ctx, "CLIPTextEncode", clip=hclip2, text="a cat")
    assert "hooks" not in c2[0][1] and torch.equal(c2[0][0], lora[0][0])
    # no hooks: the same CLIP back
    assert _run(ctx, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False)[0] is clip


def test_scheduled_clip_hooks_encode_once_per_range(ctx):
    _model, clip, _vae = _run(ctx, "CheckpointLoaderSimple", ckpt_name="sd15.safetensors")
    (hooks,) = _run(ctx, "CreateHookLora", lora_name="tiny_lora.safetensors", strength_model=1.0, strength_clip=1.0)
    (kf,) = _run(ctx, "CreateHookKeyframe", strength_mult=1.0, start_percent=0.0)
    (kf,) = _run(ctx, "CreateHookKeyframe", strength_mult=0.0, start_percent=0.4, prev_hook_kf=kf)
    (hooks,) = _run(ctx, "SetHookKeyframes", hooks=hooks, hook_kf=kf)
    (plain,) = _run(ctx, "CLIPTextEncode", clip=clip, text="a cat")
    (unscheduled,) = _run(ctx, "CLIPTextEncode", text="a cat",
                          clip=_run(ctx, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False,
                                    hooks=hooks)[0])
    (sclip,) = _run(ctx, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=True, hooks=hooks)
    (scheduled,) = _run(ctx, "CLIPTextEncode", clip=sclip, text="a cat")
    assert len(unscheduled) == 1 and "clip_start_percent" not in unscheduled[0][1]
    assert [(c[1]["clip_start_percent"], c[1]["clip_end_percent"]) for c in scheduled] == [(0.0, 0.4), (0.4, 1.0)]
    assert torch.equal(scheduled[0][0], unscheduled[0][0])  # strength 1 in the first range
    assert torch.equal(scheduled[1][0], plain[0][0])        # 0 in the second
    # the ranges become timestep ranges when sampling
    from hearth.sampling.guidance import calculate_start_end_timesteps
    from hearth.sampling.model_sampling import DiscreteSampling

    ms = DiscreteSampling("eps")
    conds = [dict(scheduled[1][1], start_percent=0.5)]
    calculate_start_end_timesteps(ms, conds)
    assert conds[0]["timestep_start"] == ms.percent_to_sigma(0.5)
    assert conds[0]["timestep_end"] == ms.percent_to_sigma(1.0)


def test_clip_hooks_sample(harness):
    p = _base()
    p["20"] = {"class_type": "CreateHookLora", "inputs": {"lora_name": "tiny_lora.safetensors", "strength_model": 1.0,
                                                          "strength_clip": 1.0}}
    p["23"] = {"class_type": "SetClipHooks", "inputs": {"clip": ["1", 1], "apply_to_conds": True,
                                                        "schedule_clip": True, "hooks": ["20", 0]}}
    p["2"]["inputs"]["clip"] = ["23", 0]
    out = _latent(harness, p)
    assert torch.isfinite(out).all() and differs(out, _latent(harness, _base()))


# --- structures -----------------------------------------------------------------------------------------------

def _cond(value=0.0):
    return [[torch.full((1, 2, 4), value), {"pooled_output": torch.zeros(1, 4)}]]


def test_combine_hooks(ctx):
    (a,) = _run(ctx, "CreateHookLora", lora_name="tiny_lora.safetensors", strength_model=1.0, strength_clip=0.5)
    (b,) = _run(ctx, "CreateHookLoraModelOnly", lora_name="tiny_lora.safetensors", strength_model=0.25)
    assert len(a) == 1 and a.hooks[0]._strength_clip == 0.5 and b.hooks[0]._strength_clip == 0
    (ab,) = _run(ctx, "CombineHooks2", hooks_A=a, hooks_B=b)
    assert len(ab) == 2 and ab.hooks[0] == a.hooks[0] and ab.hooks[1] == b.hooks[0]
    assert ab.hooks[0] is not a.hooks[0]  # clones, same identity
    assert _run(ctx, "CombineHooks2")[0] is None
    assert _run(ctx, "CombineHooks4", hooks_C=a)[0] is a
    (four,) = _run(ctx, "CombineHooks4", hooks_A=a, hooks_B=b, hooks_D=a)
    assert len(four) == 2  # the same hook only once
    (eight,) = _run(ctx, "CombineHooks8", hooks_A=a, hooks_H=b)
    assert len(eight) == 2
    # chaining with prev_hooks; both strengths 0 gives prev_hooks back
    (chained,) = _run(ctx, "CreateHookLora", lora_name="tiny_lora.safetensors", strength_model=1.0,
                      strength_clip=1.0, prev_hooks=a)
    assert len(chained) == 2 and chained.hooks[0] == a.hooks[0]
    assert _run(ctx, "CreateHookLora", lora_name="tiny_lora.safetensors", strength_model=0.0, strength_clip=0.0,
                prev_hooks=a)[0] is a
    with pytest.raises(FileNotFoundError):
        _run(ctx, "CreateHookLora", lora_name="../nope.safetensors", strength_model=1.0, strength_clip=1.0)


def test_conditioning_property_nodes(ctx):
    (hooks,) = _run(ctx, "CreateHookLoraModelOnly", lora_name="tiny_lora.safetensors", strength_model=1.0)
    (other,) = _run(ctx, "CreateHookLoraModelOnly", lora_name="tiny_lora.safetensors", strength_model=0.5)
    mask = torch.ones(8, 8)
    tr = _run(ctx, "ConditioningTimestepsRange", start_percent=0.2, end_percent=0.7)
    assert tr == ((0.2, 0.7), (0.0, 0.2), (0.7, 1.0))
    (c,) = _run(ctx, "ConditioningSetProperties", cond_NEW=_cond(), strength=0.8, set_cond_area="mask bounds",
                mask=mask, hooks=hooks, timesteps=tr[0])
    opts = c[0][1]
    assert opts["hooks"] is hooks and opts["mask"].shape == (1, 8, 8) and opts["set_area_to_bounds"] is True
    assert opts["mask_strength"] == 0.8 and (opts["start_percent"], opts["end_percent"]) == (0.2, 0.7)
    assert "strength" not in opts
    # no optional inputs: only copies
    (bare,) = _run(ctx, "ConditioningSetProperties", cond_NEW=_cond(), strength=1.0, set_cond_area="default")
    assert set(bare[0][1]) == {"pooled_output"}
    # hooks added to a cond that has hooks: the union, one new group shared by entries that shared one
    both = c + c
    (c2,) = _run(ctx, "ConditioningSetProperties", cond_NEW=both, strength=1.0, set_cond_area="default", hooks=other)
    assert c2[0][1]["hooks"] is c2[1][1]["hooks"] and len(c2[0][1]["hooks"]) == 2
    (combined,) = _run(ctx, "ConditioningSetPropertiesAndCombine", cond=_cond(1.0), cond_NEW=_cond(2.0),
                       strength=1.0, set_cond_area="default", hooks=hooks)
    assert len(combined) == 2 and "hooks" not in combined[0][1] and combined[1][1]["hooks"] is hooks
    assert float(combined[1][0][0, 0, 0]) == 2.0
    pos, neg = _run(ctx, "PairConditioningSetProperties", positive_NEW=_cond(1.0), negative_NEW=_cond(2.0),
                    strength=1.0, set_cond_area="default", hooks=hooks, timesteps=tr[1])
    assert pos[0][1]["hooks"] is hooks and neg[0][1]["hooks"] is hooks and neg[0][1]["end_percent"] == 0.2
    pos, neg = _run(ctx, "PairConditioningSetPropertiesAndCombine", positive=_cond(), negative=_cond(),
                    positive_NEW=_cond(1.0), negative_NEW=_cond(2.0), strength=0.5, set_cond_area="default",
                    mask=mask)
    assert len(pos) == len(neg) == 2 and neg[1][1]["mask_strength"] == 0.5 and "mask" not in neg[0][1]
    pos, neg = _run(ctx, "PairConditioningCombine", positive_A=_cond(1.0), negative_A=_cond(2.0),
                    positive_B=_cond(3.0), negative_B=_cond(4.0))
    assert [float(c[0][0, 0, 0]) for c in pos + neg] == [1.0, 3.0, 2.0, 4.0]
    assert all(set(c[1]) == {"pooled_output"} for c in pos + neg)
    pos, neg = _run(ctx, "PairConditioningSetDefaultCombine", positive=_cond(1.0), negative=_cond(2.0),
                    positive_DEFAULT=_cond(3.0), negative_DEFAULT=_cond(4.0), hooks=hooks)
    assert "default" not in pos[0][1] and pos[1][1]["default"] is True and neg[1][1]["hooks"] is hooks
    (single,) = _run(ctx, "ConditioningSetDefaultCombine", cond=_cond(1.0), cond_DEFAULT=_cond(3.0))
    assert single[1][1] == {"pooled_output": single[1][1]["pooled_output"], "default": True}


def test_keyframe_nodes(ctx):
    (kf,) = _run(ctx, "CreateHookKeyframe", strength_mult=0.5, start_percent=0.6)
    (kf2,) = _run(ctx, "CreateHookKeyframe", strength_mult=2.0, start_percent=0.1, prev_hook_kf=kf)
    assert len(kf.keyframes) == 1  # the input is not changed
    assert [(k.start_percent, k.strength, k.guarantee_steps) for k in kf2.keyframes] == [(0.1, 2.0, 1), (0.6, 0.5, 1)]
    (interp,) = _run(ctx, "CreateHookKeyframesInterpolated", strength_start=1.0, strength_end=0.0,
                     interpolation="ease_in", start_percent=0.0, end_percent=0.5, keyframes_count=3,
                     print_keyframes=False)
    assert [k.start_percent for k in interp.keyframes] == [0.0, 0.25, 0.5]
    assert [k.strength for k in interp.keyframes] == pytest.approx([1.0, 0.75, 0.0])
    assert [k.guarantee_steps for k in interp.keyframes] == [1, 0, 0]
    for method, f in (("linear", lambda t: 1 - t), ("ease_out", lambda t: 1 - (1 - (1 - t) ** 2)),
                      ("ease_in_out", lambda t: 1 - (1 - math.cos(t * math.pi)) / 2)):
        (k,) = _run(ctx, "CreateHookKeyframesInterpolated", strength_start=1.0, strength_end=0.0,
                    interpolation=method, start_percent=0.0, end_percent=1.0, keyframes_count=5,
                    print_keyframes=True)
        assert [x.strength for x in k.keyframes] == pytest.approx([f(i / 4) for i in range(5)], abs=1e-6)
    (fl,) = _run(ctx, "CreateHookKeyframesFromFloats", floats_strength=[0.0, 1.0, 0.5, 0.25], start_percent=0.2,
                 end_percent=0.8, print_keyframes=False)
    assert [k.start_percent for k in fl.keyframes] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert [k.strength for k in fl.keyframes] == [0.0, 1.0, 0.5, 0.25]
    (one,) = _run(ctx, "CreateHookKeyframesFromFloats", floats_strength=0.3, start_percent=0.5, end_percent=1.0)
    assert [(k.start_percent, k.strength) for k in one.keyframes] == [(0.5, 0.3)]
    with pytest.raises(TypeError):
        _run(ctx, "CreateHookKeyframesFromFloats", floats_strength="x", start_percent=0.0, end_percent=1.0)
    (hooks,) = _run(ctx, "CreateHookLoraModelOnly", lora_name="tiny_lora.safetensors", strength_model=1.0)
    (scheduled,) = _run(ctx, "SetHookKeyframes", hooks=hooks, hook_kf=kf2)
    assert scheduled is not hooks and scheduled.hooks[0] == hooks.hooks[0]
    assert scheduled.hooks[0].hook_keyframe is not kf2 and len(scheduled.hooks[0].hook_keyframe.keyframes) == 2
    assert hooks.hooks[0].hook_keyframe.is_empty()
    assert _run(ctx, "SetHookKeyframes", hooks=hooks)[0] is hooks


def test_keyframe_schedule_walk():
    """Which keyframe is current at each step: switch once a keyframe's sigma is reached and the current
    one has had its guaranteed steps; keyframes starting before the sampled range guarantee nothing."""
    from hearth.sampling.model_sampling import DiscreteSampling

    ms = DiscreteSampling("eps")
    sigmas = torch.tensor([ms.percent_to_sigma(p) for p in (0.01, 0.2, 0.4, 0.6, 0.8)] + [0.0])
    group = H.HookKeyframeGroup()
    for strength, start, guarantee in ((1.0, 0.0, 1), (0.5, 0.3, 3), (0.25, 0.35, 0), (0.0, 0.7, 1)):
        group.add(H.HookKeyframe(strength, start, guarantee))
    group.reset()
    group.initialize_timesteps(ms)
    seen = []
    for s in sigmas[:-1]:
        group.prepare_current_keyframe(float(s), sigmas)
        group.prepare_current_keyframe(float(s), sigmas)  # a second cond at the same step does not advance
        seen.append(group.strength)
    # at 40% both 0.3 and 0.35 have started; 0.3 guarantees 3 steps, so it holds even past 0.7
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.5]
    schedule = H.HookGroup()
    hook = H.WeightHook()
    hook.hook_keyframe = group
    schedule.add(hook)
    ranges = schedule.get_hooks_for_clip_schedule()
    assert [r for r, _ in ranges] == [(0.0, 0.3), (0.3, 0.35), (0.35, 0.7), (0.7, 1.0)]
    assert [kf.strength for _, ((h, kf),) in ranges] == [1.0, 0.5, 0.25, 0.0]


def test_keeping_patcher_switches_back_without_recomputing():
    from hearth.runtime import lora as L
    from hearth.runtime.hooks import KeepingPatcher
    from hearth.runtime.patcher import ModuleHolder, Patcher

    lin = torch.nn.Linear(4, 4)
    base_w = lin.weight.detach().clone()
    holder = ModuleHolder(lin, "lin", "unet")
    base = Patcher(holder)
    base.add_patches({"weight": L.Diff(torch.ones(4, 4))}, 1.0)
    calls = []

    class Counting(L.Diff):
        def apply(self, w, strength):
            calls.append(strength)
            return super().apply(w, strength)

    for room in (lambda n: True, lambda n: False):
        calls.clear()
        plain = KeepingPatcher(base, room)
        hooked = KeepingPatcher(base, room)
        hooked.add_patches({"weight": Counting(torch.full((4, 4), 2.0))}, 0.5)
        for _ in range(3):
            hooked.activate()
            assert torch.allclose(lin.weight, base_w + 2)
            plain.activate()
            assert torch.allclose(lin.weight, base_w + 1)
        assert len(calls) == (1 if room(0) else 3)
        base.activate()  # the plain patcher's weights are the base patcher's
        assert torch.allclose(lin.weight, base_w + 1)
    holder.restore()
    assert torch.equal(lin.weight, base_w)


def test_sdxl_encode_carries_clip_hooks(ctx):
    model, clip, _vae = _run(ctx, "CheckpointLoaderSimple", ckpt_name="sdxl.safetensors")
    (hooks,) = _run(ctx, "CreateHookModelAsLora", ckpt_name="sdxl.safetensors", strength_model=1.0,
                    strength_clip=1.0)
    assert set(hooks.hooks[0].weights_clip) == {"clip_l", "clip_g"}
    (hclip,) = _run(ctx, "SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False, hooks=hooks)
    args = dict(width=1024, height=1024, crop_w=0, crop_h=0, target_width=1024, target_height=1024,
                text_g="a cat", text_l="a cat")
    (plain,) = _run(ctx, "CLIPTextEncodeSDXL", clip=clip, **args)
    (hooked,) = _run(ctx, "CLIPTextEncodeSDXL", clip=hclip, **args)
    assert "hooks" not in plain[0][1] and hooked[0][1]["hooks"] is hooks and hooked[0][1]["target_width"] == 1024
    assert close(hooked[0][0], plain[0][0])  # the model's own weights as a LoRA change nothing
