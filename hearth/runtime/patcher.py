"""Weight patches (LoRA and friends) on shared modules, applied on demand and undone without reloading.

A loaded network lives once in a ``ModuleHolder``. Any number of ``Patcher`` values point at it, each
with its own list of patches; cloning a patcher copies only that list. Before a patcher's module runs,
``activate()`` makes the holder's weights equal to *its* base weights + patches: the original tensors
are kept aside (not copied) and patched tensors put in their place, so switching to another patch set,
or back to none, is a reassignment and never a reload from disk.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any

import torch

_ids = itertools.count(1)


class ModuleHolder:
    """A torch module shared by every patcher derived from the same load."""

    def __init__(self, module: torch.nn.Module, name: str, role: str) -> None:
        self.module = module
        self.name = name
        self.role = role  # unet | text | vae
        self.storage_dtype = None  # patched weights are rounded through this precision (see ModelManager)
        self.backup: dict[str, torch.Tensor] = {}
        self.applied: tuple | None = None
        self.lock = threading.RLock()
        self.id = next(_ids)
        self._params = dict(module.named_parameters())

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.module.parameters():
            return p.dtype
        return torch.float32

    def size_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.module.parameters())

    def param(self, key: str) -> torch.nn.Parameter | None:
        return self._params.get(key)

    def has(self, key: str) -> bool:
        return key in self._params

    def restore(self) -> None:
        """Put the original weights back (patched copies are dropped)."""
        with self.lock:
            for key, original in self.backup.items():
                p = self._params[key]
                p.data = original.to(p.device)
            self.backup.clear()
            self.applied = None

    def move(self, device: torch.device) -> None:
        with self.lock:
            if self.device != torch.device(device):
                self.module.to(device)


class Patcher:
    """A view of a shared module with its own weight patches: ``{param name: [(strength, adapter), ...]}``."""

    def __init__(self, holder: ModuleHolder) -> None:
        self.holder = holder
        self.patches: dict[str, list[tuple[float, Any]]] = {}
        self._signature: tuple = ()

    def clone(self) -> "Patcher":
        other = Patcher(self.holder)
        other.patches = {k: list(v) for k, v in self.patches.items()}
        other._signature = self._signature
        return other

    def add_patches(self, patches: dict[str, Any], strength: float = 1.0) -> list[str]:
        """Add adapters for the given parameter names (those the module has); returns the names used."""
        used = []
        for key, adapter in patches.items():
            if not self.holder.has(key):
                continue
            self.patches.setdefault(key, []).append((strength, adapter))
            used.append(key)
        if used:
            self._signature = self._signature + ((next(_ids), tuple(used)),)
        return used

    @property
    def signature(self) -> tuple:
        return self._signature

    def activate(self) -> None:
        """Make the shared module's weights this patcher's weights (on whatever device it is now)."""
        holder = self.holder
        with holder.lock:
            if holder.applied == self._signature and (self._signature or not holder.backup):
                return
            holder.restore()
            if not self.patches:
                holder.applied = self._signature
                return
            with torch.no_grad():
                for key, plist in self.patches.items():
                    p = holder.param(key)
                    original = p.data
                    weight = original.to(torch.float32, copy=True)
                    for strength, adapter in plist:
                        weight = adapter.apply(weight, strength)
                    holder.backup[key] = original
                    if holder.storage_dtype is not None:
                        weight = weight.to(holder.storage_dtype)
                    p.data = weight.to(original.dtype)
            holder.applied = self._signature

    def __call__(self, *args, **kwargs):
        self.activate()
        return self.holder.module(*args, **kwargs)
