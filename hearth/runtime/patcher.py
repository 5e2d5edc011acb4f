"""Weight patches (LoRA and friends) on shared modules, applied on demand and undone without reloading.

A loaded network lives once in a ``ModuleHolder``. Any number of ``Patcher`` values point at it, each
with its own list of patches; cloning a patcher copies only that list. Before a patcher's module runs,
``activate()`` makes the holder's weights equal to *its* base weights + patches: the original tensors
are kept aside (not copied) and patched tensors put in their place, so switching to another patch set,
or back to none, is a reassignment and never a reload from disk.

A patch is ``(strength, adapter, strength_model)``: the weight built so far is first multiplied by
``strength_model`` and the adapter then adds its own change at ``strength`` (ComfyUI's
``add_patches(patches, strength_patch, strength_model)``). Model merges use this with
``WeightOf`` adapters, which stand for another patcher's weight (its original tensor plus its own
patches, computed when needed), so merging never copies a network.
"""
from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

import torch

log = logging.getLogger(__name__)

_ids = itertools.count(1)


def apply_patches(weight: torch.Tensor, plist, key: str = "") -> torch.Tensor:
    """``weight`` (float32, owned by the caller) with a list of ``(strength, adapter, strength_model)``."""
    for entry in plist:
        strength, adapter = entry[0], entry[1]
        strength_model = entry[2] if len(entry) > 2 else 1.0
        if strength_model != 1.0:
            weight = weight * strength_model
        weight = adapter.apply(weight, strength)
    return weight


class ModuleHolder:
    """A torch module shared by every patcher derived from the same load."""

    def __init__(self, module: torch.nn.Module, name: str, role: str) -> None:
        self.module = module
        self.name = name
        self.role = role  # unet | text | vae
        # module prefixes (ending in ".") built as exact identities with no weights in the file (arch.padding())
        self.padding: tuple[str, ...] = ()
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

    def keys(self) -> list[str]:
        return list(self._params)

    def original(self, key: str) -> torch.Tensor:
        """The unpatched tensor of a parameter, whichever patcher's weights the module holds now."""
        original = self.backup.get(key)
        return original if original is not None else self._params[key].data

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


class WeightOf:
    """A patch standing for another patcher's weight of one parameter: that module's original tensor
    with the patches the other patcher had when this was made (ComfyUI's ``get_key_patches`` entry).
    Applied at ``strength`` it adds ``strength * weight``; a weight of another shape is left out."""

    def __init__(self, holder: "ModuleHolder", key: str, patches: tuple = ()) -> None:
        self.holder = holder
        self.key = key
        self.patches = tuple(patches)

    @property
    def shape(self) -> torch.Size:
        return self.holder.original(self.key).shape

    def weight(self, device=None) -> torch.Tensor:
        original = self.holder.original(self.key)
        w = original.to(device or original.device, torch.float32, copy=True)
        return apply_patches(w, self.patches, self.key)

    def apply(self, w: torch.Tensor, strength: float) -> torch.Tensor:
        if strength == 0.0:
            return w
        if tuple(self.shape) != tuple(w.shape):
            log.warning("shapes differ for %s (%s != %s): weight not merged", self.key, tuple(self.shape),
                        tuple(w.shape))
            return w
        return w + strength * self.weight(w.device)


class Patcher:
    """A view of a shared module with its own weight patches:
    ``{param name: [(strength, adapter, strength_model), ...]}``."""

    def __init__(self, holder: ModuleHolder) -> None:
        self.holder = holder
        self.patches: dict[str, list[tuple[float, Any]]] = {}
        self._signature: tuple = ()

    def clone(self) -> "Patcher":
        other = Patcher(self.holder)
        other.patches = {k: list(v) for k, v in self.patches.items()}
        other._signature = self._signature
        return other

    def add_patches(self, patches: dict[str, Any], strength: float = 1.0, strength_model: float = 1.0) -> list[str]:
        """Add adapters for the given parameter names (those the module has); returns the names used.
        ``strength_model`` scales the weight as built so far before the adapter adds its change."""
        used = []
        for key, adapter in patches.items():
            if not self.holder.has(key):
                continue
            self.patches.setdefault(key, []).append((strength, adapter, strength_model))
            used.append(key)
        if used:
            self._signature = self._signature + ((next(_ids), tuple(used)),)
        return used

    def key_patches(self, keys=None) -> dict[str, WeightOf]:
        """This patcher's weight of each parameter (all, or ``keys``) as patches another patcher can add:
        the original tensors are referenced, not copied, and the patch lists are taken as they are now."""
        names = self.holder.keys() if keys is None else [k for k in keys if self.holder.has(k)]
        return {k: WeightOf(self.holder, k, tuple(self.patches.get(k, ()))) for k in names}

    def patched_weight(self, key: str, device=None) -> torch.Tensor:
        """One parameter as this patcher would make it (float32), without touching the shared module."""
        return WeightOf(self.holder, key, tuple(self.patches.get(key, ()))).weight(device)

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
                    weight = apply_patches(original.to(torch.float32, copy=True), plist, key)
                    holder.backup[key] = original
                    if holder.storage_dtype is not None:
                        weight = weight.to(holder.storage_dtype)
                    p.data = weight.to(original.dtype)
            holder.applied = self._signature

    def __call__(self, *args, **kwargs):
        self.activate()
        return self.holder.module(*args, **kwargs)
