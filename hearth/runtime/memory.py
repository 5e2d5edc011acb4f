"""The model manager: where weights live, in what precision, and when they leave.

* ``device``: the compute device (the first CUDA device unless ``--cpu`` or none is present).
* Precision per role, per device: on the CPU everything runs in float32; on a GPU the UNet and text
  encoders default to float16 and the VAE to bfloat16 where supported (else float32). The flags
  ``--force-fp32/--force-fp16``, ``--fp32/--fp16/--bf16/--fp64-unet``, ``--fp32/--fp16/--bf16-vae``,
  ``--fp32/--fp16/--bf16-text-enc`` and ``--cpu-vae`` override that.
* ``load(holder, ...)`` moves a network to the compute device when it is about to run, unloading the
  least recently used ones first when memory is short; ``unload_all()`` (POST /free) moves everything
  back and drops patched copies.
* Loaded files are shared: loading the same file again (same size and mtime) returns the same modules,
  for as long as something still uses them.
"""
from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any

from hearth.allocator import keep_freed_memory, return_freed_memory

log = logging.getLogger(__name__)

GIB = 1024 ** 3


class ModelManager:
    def __init__(self, config: Any = None) -> None:
        # Cheap to construct (no torch import): the App may create it at start-up.
        self.config = config
        self.flags = dict(getattr(config, "precision", {}) or {})
        self.cpu_only = bool(getattr(config, "cpu", False))
        self.keep_loaded = getattr(config, "vram_mode", None) in ("gpu_only", "highvram")
        self._device = None
        self._loaded: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._files: dict[tuple, weakref.ref] = {}

    @property
    def device(self):
        if self._device is None:
            import torch

            keep_freed_memory()  # first model work of this process (see hearth.allocator)
            if not self.cpu_only and torch.cuda.is_available():
                self._device = torch.device("cuda", torch.cuda.current_device())
            else:
                self._device = torch.device("cpu")
        return self._device

    @property
    def offload_device(self):
        import torch

        return torch.device("cpu")

    # --- precision ------------------------------------------------------------------------------
    def dtype_for(self, role: str):
        import torch

        f = self.flags
        if self.device_for(role).type == "cpu" or "force_fp32" in f:
            if role == "unet" and "fp64_unet" in f:
                return torch.float64
            return torch.float32
        if role == "unet":
            for flag, dt in (("fp64_unet", torch.float64), ("fp32_unet", torch.float32), ("bf16_unet", torch.bfloat16),
                             ("fp16_unet", torch.float16)):
                if flag in f:
                    return dt
            return torch.float16
        if role == "vae":
            for flag, dt in (("fp32_vae", torch.float32), ("bf16_vae", torch.bfloat16), ("fp16_vae", torch.float16)):
                if flag in f:
                    return dt
            if "force_fp16" in f:
                return torch.float16
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        for flag, dt in (("fp32_text_enc", torch.float32), ("bf16_text_enc", torch.bfloat16),
                         ("fp16_text_enc", torch.float16)):
            if flag in f:
                return dt
        return torch.float16

    def storage_dtype(self, role: str):
        """The precision weights are rounded to when stored, if coarser than the compute precision.

        ComfyUI keeps text encoders in float16 even on the CPU (computing in float32 with the weights
        cast up); rounding the same way keeps prompt embeddings identical to its results.
        """
        import torch

        if role == "text" and self.device_for(role).type == "cpu" and not (
                {"fp32_text_enc", "bf16_text_enc"} & set(self.flags)):
            return torch.float16
        return None

    def device_for(self, role: str):
        import torch

        if role == "vae" and "cpu_vae" in self.flags:
            return torch.device("cpu")
        return self.device

    # --- shared files ---------------------------------------------------------------------------
    def cached(self, key: tuple):
        ref = self._files.get(key)
        return ref() if ref is not None else None

    def remember(self, key: tuple, value: Any) -> None:
        self._files[key] = weakref.ref(value)

    # --- placement ------------------------------------------------------------------------------
    def free_memory(self, device=None) -> int:
        import torch

        device = device or self.device
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
        import psutil

        return int(psutil.virtual_memory().available)

    def load(self, holder, extra_required: int = 0):
        """Make ``holder`` resident on its compute device; returns the device."""
        device = self.device_for(holder.role)
        with self._lock:
            if device.type != "cpu" and holder.device != device:
                need = holder.size_bytes() + extra_required + 512 * 1024 ** 2
                for other_id in list(self._loaded):
                    if self.free_memory(device) >= need:
                        break
                    other = self._loaded[other_id]
                    if other is holder:
                        continue
                    self._offload(other)
                holder.move(device)
            if device.type != "cpu":  # on the CPU there is nothing to offload to; values own their weights
                self._loaded.pop(holder.id, None)
                self._loaded[holder.id] = holder
        return device

    def _offload(self, holder) -> None:
        holder.restore()
        holder.move(self.offload_device)
        self._loaded.pop(holder.id, None)
        log.info("unloaded %s", holder.name)

    def unload_all(self) -> None:
        with self._lock:
            for holder in list(self._loaded.values()):
                self._offload(holder)
            self._loaded.clear()
        self.release_freed()

    def release_freed(self) -> None:
        """Hand memory that nothing uses any more back to the system (cached allocator blocks included)."""
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return_freed_memory()

    def loaded_models(self) -> list[str]:
        return [h.name for h in self._loaded.values()]

    # --- /system_stats ---------------------------------------------------------------------------
    def device_stats(self) -> list[dict]:
        import psutil
        import torch

        dev = self.device
        if dev.type == "cuda":
            free, total = torch.cuda.mem_get_info(dev)
            stats = torch.cuda.memory_stats(dev)
            reserved = stats.get("reserved_bytes.all.current", 0)
            active = stats.get("active_bytes.all.current", 0)
            name = f"{dev} {torch.cuda.get_device_name(dev)} : cudaMallocAsync"
            return [{"name": name, "type": "cuda", "index": dev.index, "vram_total": int(total),
                     "vram_free": int(free + reserved - active), "torch_vram_total": int(reserved),
                     "torch_vram_free": int(reserved - active)}]
        vm = psutil.virtual_memory()
        return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": int(vm.total),
                 "vram_free": int(vm.available), "torch_vram_total": int(vm.total),
                 "torch_vram_free": int(vm.available)}]


def get_manager(services: dict | None = None, config: Any = None) -> ModelManager:
    """The manager registered in the node context's services, created on first use."""
    if services is None:
        from hearth.nodes.context import maybe_current

        ctx = maybe_current()
        if ctx is not None:
            services, config = ctx.services, ctx.config
    if services is None:
        global _fallback
        if _fallback is None:
            _fallback = ModelManager(config)
        return _fallback
    manager = services.get("model_manager")
    if manager is None:
        manager = ModelManager(config)
        services["model_manager"] = manager
    return manager


_fallback: ModelManager | None = None
