"""Latent nodes that need no model, run on small latents; outputs checked for shape and values."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.nodes.conftest import run_node  # noqa: E402


def numbered(batch=4, channels=4, height=8, width=8):
    values = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1)
    return {"samples": values.expand(batch, channels, height, width).contiguous()}


def test_latent_from_batch(node_ctx):
    latent = numbered(4)
    latent["noise_mask"] = torch.arange(2, dtype=torch.float32).view(2, 1, 1, 1).expand(2, 1, 64, 64)
    (out,) = run_node(node_ctx, "LatentFromBatch", samples=latent, batch_index=1, length=2)
    assert out["samples"][:, 0, 0, 0].tolist() == [1.0, 2.0]
    assert out["batch_index"] == [1, 2]
    assert out["noise_mask"][:, 0, 0, 0].tolist() == [1.0, 0.0]  # masks repeat cyclically over the batch
    (tail,) = run_node(node_ctx, "LatentFromBatch", samples=dict(numbered(3), batch_index=[7, 8, 9]),
                       batch_index=10, length=5)
    assert tail["samples"].shape[0] == 1 and tail["batch_index"] == [9]
    assert "noise_mask" not in tail


def test_repeat_latent_batch(node_ctx):
    latent = dict(numbered(2), batch_index=[3, 4], noise_mask=torch.rand(2, 1, 64, 64))
    (out,) = run_node(node_ctx, "RepeatLatentBatch", samples=latent, amount=3)
    assert out["samples"][:, 0, 0, 0].tolist() == [0.0, 1.0] * 3
    assert out["batch_index"] == [3, 4, 5, 6, 7, 8]
    assert out["noise_mask"].shape == (6, 1, 64, 64) and torch.equal(out["noise_mask"][4:], latent["noise_mask"])
    single_mask = dict(numbered(2), noise_mask=torch.rand(1, 1, 64, 64))
    (kept,) = run_node(node_ctx, "RepeatLatentBatch", samples=single_mask, amount=2)
    assert kept["noise_mask"].shape == (1, 1, 64, 64) and "batch_index" not in kept


def test_set_latent_noise_mask(node_ctx):
    latent = numbered(1)
    (out,) = run_node(node_ctx, "SetLatentNoiseMask", samples=latent, mask=torch.ones(64, 64))
    assert out["noise_mask"].shape == (1, 1, 64, 64) and "noise_mask" not in latent


def test_latent_composite(node_ctx):
    to = {"samples": torch.zeros(1, 4, 8, 8)}
    frm = {"samples": torch.ones(1, 4, 4, 4)}
    (out,) = run_node(node_ctx, "LatentComposite", samples_to=to, samples_from=frm, x=48, y=16, feather=0)
    s = out["samples"]
    assert s[:, :, 2:6, 6:8].eq(1).all() and s.sum() == 4 * 4 * 2  # clipped at the right edge
    assert to["samples"].sum() == 0
    (feathered,) = run_node(node_ctx, "LatentComposite", samples_to=to, samples_from=frm, x=16, y=16, feather=16)
    f = feathered["samples"][0, 0]
    # 2-element ramps on every side that borders the target: 1/2, 1 from each edge inwards
    assert torch.allclose(f[2:6, 2:6], torch.tensor([[0.25, 0.5, 0.5, 0.25], [0.5, 1, 1, 0.5],
                                                     [0.5, 1, 1, 0.5], [0.25, 0.5, 0.5, 0.25]]))
    (corner,) = run_node(node_ctx, "LatentComposite", samples_to=to, samples_from=frm, x=0, y=0, feather=16)
    c = corner["samples"][0, 0]
    # at the corner only the right and bottom edges border the target
    assert c[0, :4].tolist() == [1.0, 1.0, 1.0, 0.5] and c[3, 3] == 0.25 and c[:, 4:].eq(0).all()


def test_latent_blend(node_ctx):
    a = {"samples": torch.full((1, 4, 4, 4), 2.0)}
    b = {"samples": torch.full((1, 4, 4, 4), 4.0)}
    (out,) = run_node(node_ctx, "LatentBlend", samples1=a, samples2=b, blend_factor=0.25)
    assert torch.allclose(out["samples"], torch.full((1, 4, 4, 4), 2 * 0.25 + 4 * 0.75))
    (resized,) = run_node(node_ctx, "LatentBlend", samples1=a, samples2={"samples": torch.full((1, 4, 2, 2), 4.0)},
                          blend_factor=0.5)
    assert resized["samples"].shape == (1, 4, 4, 4) and torch.allclose(resized["samples"], torch.tensor(3.0))


def test_latent_rotate_flip_crop(node_ctx):
    grid = {"samples": torch.arange(6, dtype=torch.float32).view(1, 1, 2, 3)}
    (r90,) = run_node(node_ctx, "LatentRotate", samples=grid, rotation="90 degrees")
    assert r90["samples"][0, 0].tolist() == [[3.0, 0.0], [4.0, 1.0], [5.0, 2.0]]
    (r270,) = run_node(node_ctx, "LatentRotate", samples=grid, rotation="270 degrees")
    assert r270["samples"][0, 0].tolist() == [[2.0, 5.0], [1.0, 4.0], [0.0, 3.0]]
    (fx,) = run_node(node_ctx, "LatentFlip", samples=grid, flip_method="x-axis: vertically")
    assert fx["samples"][0, 0].tolist() == [[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]
    (fy,) = run_node(node_ctx, "LatentFlip", samples=grid, flip_method="y-axis: horizontally")
    assert fy["samples"][0, 0].tolist() == [[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]
    big = {"samples": torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16)}
    (crop,) = run_node(node_ctx, "LatentCrop", samples=big, width=64, height=128, x=16, y=8)
    assert crop["samples"].shape == (1, 1, 16 - 1, 8)  # height clipped at the bottom
    assert crop["samples"][0, 0, 0, 0] == 1 * 16 + 2
    (far,) = run_node(node_ctx, "LatentCrop", samples=big, width=64, height=64, x=512, y=512)
    assert far["samples"].shape == (1, 1, 8, 8) and far["samples"][0, 0, 0, 0] == 8 * 16 + 8


def test_latent_arithmetic(node_ctx):
    a = {"samples": torch.full((2, 4, 4, 4), 3.0), "batch_index": [1, 2]}
    b = {"samples": torch.full((1, 4, 2, 2), 1.0)}
    (add,) = run_node(node_ctx, "LatentAdd", samples1=a, samples2=b)
    assert add["samples"].shape == (2, 4, 4, 4) and torch.allclose(add["samples"], torch.tensor(4.0))
    assert add["batch_index"] == [1, 2]
    (sub,) = run_node(node_ctx, "LatentSubtract", samples1=a, samples2=b)
    assert torch.allclose(sub["samples"], torch.tensor(2.0))
    (mul,) = run_node(node_ctx, "LatentMultiply", samples=a, multiplier=-0.5)
    assert torch.allclose(mul["samples"], torch.tensor(-1.5))


def test_latent_interpolate(node_ctx):
    x = torch.zeros(1, 4, 2, 2)
    x[:, 0] = 2.0
    y = torch.zeros(1, 4, 2, 2)
    y[:, 1] = 4.0
    (one,) = run_node(node_ctx, "LatentInterpolate", samples1={"samples": x}, samples2={"samples": y}, ratio=1.0)
    assert torch.allclose(one["samples"], x)
    (half,) = run_node(node_ctx, "LatentInterpolate", samples1={"samples": x}, samples2={"samples": y}, ratio=0.5)
    # direction halfway between the unit vectors, magnitude halfway between 2 and 4
    expected = torch.zeros(1, 4, 2, 2)
    expected[:, 0] = expected[:, 1] = 3.0 / 2 ** 0.5
    assert torch.allclose(half["samples"], expected, atol=1e-6)
    batch = torch.randn(3, 4, 2, 2)
    (per_item,) = run_node(node_ctx, "LatentInterpolate", samples1={"samples": batch},
                           samples2={"samples": batch * 2}, ratio=0.5)
    assert torch.allclose(per_item["samples"], batch * 1.5, atol=1e-5)  # each batch entry on its own


def test_latent_concat_and_cut(node_ctx):
    a = {"samples": torch.zeros(2, 4, 3, 5)}
    b = {"samples": torch.ones(1, 4, 3, 2)}
    (x,) = run_node(node_ctx, "LatentConcat", samples1=a, samples2=b, dim="x")
    assert x["samples"].shape == (2, 4, 3, 7) and x["samples"][..., 5:].eq(1).all()
    (neg,) = run_node(node_ctx, "LatentConcat", samples1=a, samples2=b, dim="-x")
    assert neg["samples"][..., :2].eq(1).all() and neg["samples"][..., 2:].eq(0).all()
    (y,) = run_node(node_ctx, "LatentConcat", samples1=a, samples2={"samples": torch.ones(2, 4, 1, 5)}, dim="-y")
    assert y["samples"].shape == (2, 4, 4, 5) and y["samples"][:, :, 0].eq(1).all()
    video = {"samples": torch.arange(5, dtype=torch.float32).view(1, 1, 5, 1, 1).expand(1, 16, 5, 2, 3)}
    (t,) = run_node(node_ctx, "LatentConcat", samples1=video, samples2=video, dim="t")
    assert t["samples"].shape == (1, 16, 10, 2, 3)
    (cut,) = run_node(node_ctx, "LatentCut", samples=video, dim="t", index=1, amount=2)
    assert cut["samples"][0, 0, :, 0, 0].tolist() == [1.0, 2.0]
    (last,) = run_node(node_ctx, "LatentCut", samples=video, dim="t", index=-2, amount=5)
    assert last["samples"][0, 0, :, 0, 0].tolist() == [3.0, 4.0]
    (clamped,) = run_node(node_ctx, "LatentCut", samples=video, dim="x", index=99, amount=9)
    assert clamped["samples"].shape == (1, 16, 5, 2, 1)
    (ycut,) = run_node(node_ctx, "LatentCut", samples=a, dim="y", index=0, amount=2)
    assert ycut["samples"].shape == (2, 4, 2, 5)


def test_latent_batch_and_seed_behavior(node_ctx):
    a = {"samples": torch.zeros(2, 4, 4, 4)}
    b = {"samples": torch.ones(1, 4, 2, 2), "batch_index": [7]}
    (out,) = run_node(node_ctx, "LatentBatch", samples1=a, samples2=b)
    assert out["samples"].shape == (3, 4, 4, 4) and out["samples"][2].eq(1).all()
    assert out["batch_index"] == [0, 1, 7]
    (fixed,) = run_node(node_ctx, "LatentBatchSeedBehavior", samples=out, seed_behavior="fixed")
    assert fixed["batch_index"] == [0, 0, 0]
    (random,) = run_node(node_ctx, "LatentBatchSeedBehavior", samples=out, seed_behavior="random")
    assert "batch_index" not in random and out["batch_index"] == [0, 1, 7]
    (default,) = run_node(node_ctx, "LatentBatchSeedBehavior", samples=a, seed_behavior="fixed")
    assert default["batch_index"] == [0, 0]


def test_latent_operations(node_ctx):
    torch.manual_seed(0)
    latent = torch.randn(2, 4, 8, 8)
    (tonemap,) = run_node(node_ctx, "LatentOperationTonemapReinhard", multiplier=1.0)
    mapped = tonemap(latent=latent)
    assert mapped.shape == latent.shape
    norms_in = torch.linalg.vector_norm(latent, dim=1)
    norms_out = torch.linalg.vector_norm(mapped, dim=1)
    assert torch.all(norms_out < norms_in)  # Reinhard compresses every magnitude
    cos = torch.nn.functional.cosine_similarity(latent, mapped, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)  # directions are kept
    (applied,) = run_node(node_ctx, "LatentApplyOperation", samples={"samples": latent, "batch_index": [0, 1]},
                          operation=tonemap)
    assert torch.allclose(applied["samples"], mapped) and applied["batch_index"] == [0, 1]

    (sharpen,) = run_node(node_ctx, "LatentOperationSharpen", sharpen_radius=2, sigma=1.0, alpha=0.5)
    sharp = sharpen(latent=latent)
    assert sharp.shape == latent.shape
    (identity,) = run_node(node_ctx, "LatentOperationSharpen", sharpen_radius=2, sigma=1.0, alpha=0.0)
    assert torch.allclose(identity(latent=latent), latent, atol=1e-5)
    flat = torch.ones(1, 4, 6, 6)
    assert torch.allclose(sharpen(latent=flat), flat, atol=1e-5)  # nothing to sharpen in a flat latent


def test_latent_apply_operation_cfg(node_ctx):
    class FakeModel:
        def __init__(self):
            self.pre_cfg = []

        def clone(self):
            copy = FakeModel()
            copy.pre_cfg = list(self.pre_cfg)
            return copy

        def set_model_sampler_pre_cfg_function(self, fn):
            self.pre_cfg.append(fn)

    model = FakeModel()
    (patched,) = run_node(node_ctx, "LatentApplyOperationCFG", model=model,
                          operation=lambda latent, **kw: latent * 2)
    assert model.pre_cfg == [] and len(patched.pre_cfg) == 1
    cond, uncond = torch.full((1, 4, 2, 2), 3.0), torch.full((1, 4, 2, 2), 1.0)
    out = patched.pre_cfg[0]({"conds_out": [cond, uncond]})
    assert torch.allclose(out[0], torch.tensor(5.0)) and torch.equal(out[1], uncond)  # (3-1)*2 + 1
    only = patched.pre_cfg[0]({"conds_out": [cond]})
    assert torch.allclose(only[0], torch.tensor(6.0))


def test_latent_apply_operation_cfg_on_model_options(node_ctx):
    class OptionsModel:  # Hearth's models keep sampler hooks in model_options
        def __init__(self, options):
            self.model_options = options

        def clone(self):
            return OptionsModel(dict(self.model_options))

    first = object()
    model = OptionsModel({"sampler_pre_cfg_function": [first], "other": 1})
    (patched,) = run_node(node_ctx, "LatentApplyOperationCFG", model=model, operation=lambda latent, **kw: -latent)
    hooks = patched.model_options["sampler_pre_cfg_function"]
    assert hooks[0] is first and len(hooks) == 2 and patched.model_options["other"] == 1
    assert model.model_options["sampler_pre_cfg_function"] == [first]
    out = hooks[1]({"conds_out": [torch.full((1, 4, 1, 1), 3.0), torch.full((1, 4, 1, 1), 1.0)]})
    assert torch.allclose(out[0], torch.tensor(-1.0))  # -(3 - 1) + 1
