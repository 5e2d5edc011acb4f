"""Weight adapters and the patcher's apply/undo."""
from __future__ import annotations

import pytest
import torch

from hearth.runtime import lora as L
from hearth.runtime.patcher import ModuleHolder, Patcher


def test_adapter_maths():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, generator=g)
    up, down = torch.randn(6, 2, generator=g), torch.randn(2, 4, generator=g)
    assert torch.allclose(L.LoRA(up, down, alpha=1.0).apply(w, 0.5), w + 0.5 * 0.5 * up @ down)
    assert torch.allclose(L.LoRA(up, down).apply(w, 1.0), w + up @ down)
    a1, b1, a2, b2 = (torch.randn(6, 2, generator=g), torch.randn(2, 4, generator=g),
                      torch.randn(6, 2, generator=g), torch.randn(2, 4, generator=g))
    assert torch.allclose(L.LoHa(a1, b1, a2, b2, alpha=2.0).apply(w, 1.0), w + (a1 @ b1) * (a2 @ b2))
    k1, k2 = torch.randn(2, 2, generator=g), torch.randn(3, 2, generator=g)
    assert torch.allclose(L.LoKr(k1, k2).apply(w, 1.0), w + torch.kron(k1, k2))
    d = torch.randn(6, 4, generator=g)
    assert torch.allclose(L.Diff(d).apply(w, 2.0), w + 2 * d)
    # LoCon: conv up/down
    wc = torch.randn(8, 4, 3, 3, generator=g)
    cu, cd = torch.randn(8, 2, 1, 1, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    expected = wc + (cu.flatten(1) @ cd.flatten(1)).reshape(wc.shape)
    assert torch.allclose(L.LoRA(cu, cd).apply(wc, 1.0), expected, atol=1e-6)


def test_lora_key_formats():
    sd = {"lora_unet_a_b.lora_up.weight": torch.ones(2, 1), "lora_unet_a_b.lora_down.weight": torch.ones(1, 2),
          "unet.c.processor.to_q.lora_B.weight": torch.ones(2, 1), "unet.c.processor.to_q.lora_A.weight": torch.ones(1, 2),
          "x.hada_w1_a": torch.ones(2, 1), "x.hada_w1_b": torch.ones(1, 2), "x.hada_w2_a": torch.ones(2, 1),
          "x.hada_w2_b": torch.ones(1, 2), "y.diff": torch.ones(2, 2), "y.diff_b": torch.ones(2), "junk": torch.ones(1)}
    key_maps = {"t": {"lora_unet_a_b": "a.b", "unet.c.processor.to_q": "c.to_q", "x": "x", "y": "y"}}
    patches, unused = L.build_patches(sd, key_maps)
    assert set(patches["t"]) == {"a.b.weight", "c.to_q.weight", "x.weight", "y.weight", "y.bias"}
    assert unused == ["junk"]


def test_patchers_share_a_module_and_undo_cleanly():
    lin = torch.nn.Linear(4, 4)
    base = lin.weight.detach().clone()
    holder = ModuleHolder(lin, "lin", "unet")
    plain = Patcher(holder)
    a = plain.clone()
    a.add_patches({"weight": L.Diff(torch.ones(4, 4))}, 1.0)
    b = a.clone()
    b.add_patches({"weight": L.Diff(torch.ones(4, 4))}, 0.5)
    a.activate()
    assert torch.allclose(lin.weight, base + 1)
    b.activate()
    assert torch.allclose(lin.weight, base + 1.5)
    plain.activate()
    assert torch.equal(lin.weight, base)
    a.activate()
    assert torch.allclose(lin.weight, base + 1)
    holder.restore()
    assert torch.equal(lin.weight, base)
    assert not plain.patches and len(a.patches["weight"]) == 1 and len(b.patches["weight"]) == 2
    assert a.add_patches({"nope.weight": L.Diff(torch.ones(1))}, 1.0) == []


# ComfyUI 0.3.64's weight_decompose on the same seeded tensors (ad-hoc run of comfy.weight_adapter.base):
# every 7th element of the patched 8x6 weight, magnitude per output / per input channel, strength 1 and 0.6.
_DORA_REFERENCE = {
    ("out", 1.0): [-0.38739, -0.51359, 0.42233, 0.34402, -0.83685, 0.41401, 0.56608],
    ("out", 0.6): [-0.56049, -0.66561, 0.34556, 0.51924, -1.3267, 1.16774, 0.99602],
    ("in", 1.0): [-0.12813, -0.239, 0.48495, 0.67658, -0.39638, 0.25069, 0.31685],
    ("in", 0.6): [-0.40493, -0.50086, 0.38313, 0.71878, -1.06242, 1.06975, 0.84649],
}


@pytest.mark.parametrize("axis,strength", sorted(_DORA_REFERENCE))
def test_dora_matches_comfyui(axis, strength):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(8, 6, generator=g)
    up, down = torch.randn(8, 2, generator=g), torch.randn(2, 6, generator=g)
    out_axis, in_axis = torch.rand(8, 1, generator=g) + 0.5, torch.rand(1, 6, generator=g) + 0.5
    # through the file reader: kohya names with alpha (scale alpha / rank = 0.5) and dora_scale
    sd = {"m.lora_up.weight": up, "m.lora_down.weight": down, "m.alpha": torch.tensor(1.0),
          "m.dora_scale": out_axis if axis == "out" else in_axis}
    adapter = L._adapter_for("m", sd, set())["weight"]
    patched = adapter.apply(w.clone(), strength)
    assert torch.allclose(patched.flatten()[::7], torch.tensor(_DORA_REFERENCE[(axis, strength)]), atol=1e-4)
    plain = L.LoRA(up, down, alpha=1.0).apply(w.clone(), strength)
    assert not torch.allclose(patched, plain)
