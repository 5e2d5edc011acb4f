"""The dtype a model's network computes in (ModelComputeDtype)."""
from __future__ import annotations

import contextlib

import torch


def compute_dtype(name, weight_dtype, device):
    """Run the network in ``name``'s dtype (ModelComputeDtype): autocast to fp16/bf16; fp32 needs fp32 weights."""
    wanted = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(name)
    if wanted is None or wanted == weight_dtype:
        return contextlib.nullcontext()
    if wanted == torch.float32:
        raise ValueError(f"ModelComputeDtype fp32: the weights are loaded in {weight_dtype}; load the model in "
                         "fp32 to compute in fp32")
    return torch.autocast(device_type=torch.device(device).type, dtype=wanted)
