"""RebatchLatents / RebatchImages: list-in, list-out nodes."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.nodes.conftest import run_node  # noqa: E402


def test_rebatch_images(node_ctx):
    a = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 2, 2, 3)
    b = torch.full((2, 2, 2, 3), 9.0)
    cls = node_ctx.registry.get("RebatchImages")
    assert cls.INPUT_IS_LIST is True and cls.OUTPUT_IS_LIST == (True,)
    (batches,) = run_node(node_ctx, "RebatchImages", images=[a, b], batch_size=[2])
    assert [x.shape[0] for x in batches] == [2, 2, 1]
    assert [x[:, 0, 0, 0].tolist() for x in batches] == [[0.0, 1.0], [2.0, 9.0], [9.0]]
    (whole,) = run_node(node_ctx, "RebatchImages", images=[a, b], batch_size=[10])
    assert len(whole) == 1 and whole[0].shape == (5, 2, 2, 3)


def test_rebatch_latents(node_ctx):
    def latent(n, h=4, w=4, start=0.0, **extra):
        values = torch.arange(start, start + n).view(n, 1, 1, 1)
        return {"samples": values.expand(n, 4, h, w).contiguous(), **extra}

    mask = torch.zeros(2, 1, 32, 32)
    latents = [latent(3), latent(2, start=10, noise_mask=mask), latent(2, h=6, start=20, batch_index=[8, 9])]
    cls = node_ctx.registry.get("RebatchLatents")
    assert cls.INPUT_IS_LIST is True and cls.OUTPUT_IS_LIST == (True,)
    (out,) = run_node(node_ctx, "RebatchLatents", latents=latents, batch_size=[2])
    assert [o["samples"][:, 0, 0, 0].tolist() for o in out] == [[0.0, 1.0], [2.0, 10.0], [11.0], [20.0, 21.0]]
    assert [o["batch_index"] for o in out] == [[0, 1], [2, 3], [4], [8, 9]]
    # batches whose noise mask is all ones (none given) drop it; others keep it at 8x the latent size
    assert "noise_mask" not in out[0] and "noise_mask" not in out[3]
    assert out[1]["noise_mask"].shape == (2, 1, 32, 32) and out[1]["noise_mask"][0].eq(1).all()
    assert out[1]["noise_mask"][1].eq(0).all()
    (single,) = run_node(node_ctx, "RebatchLatents", latents=[latent(5)], batch_size=[5])
    assert len(single) == 1 and single[0]["samples"].shape[0] == 5
