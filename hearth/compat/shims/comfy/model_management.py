"""ComfyUI's ``comfy.model_management`` over Hearth's model manager (``hearth.runtime.memory``) and
the engine's interrupt flag.

Devices and dtypes are the manager's (so ``--cpu``, ``--force-fp32``, ``--fp16-vae`` … mean the same
for packs as for Hearth's own nodes); loading and unloading go through it too.
"""
from __future__ import annotations

import enum
from hearth.compat import binding
from hearth.compat.shims_support import NotProvidedError, module_getattr
from hearth.engine.progress import ProcessingInterrupted

# Packs catch (and raise) this to stop a prompt; it is the engine's own interrupt exception.
InterruptProcessingException = ProcessingInterrupted


class VRAMState(enum.Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


class CPUState(enum.Enum):
    GPU = 0
    CPU = 1
    MPS = 2


def _manager():
    from hearth.runtime.memory import get_manager

    app = binding.app()
    return get_manager(app.node_context.services, app.config)


def _torch():
    import torch

    return torch


# --- devices and dtypes ----------------------------------------------------------------------------
def get_torch_device():
    return _manager().device


def get_torch_device_name(device) -> str:
    if getattr(device, "type", None) == "cuda":
        return f"{device} {_torch().cuda.get_device_name(device)}"
    return str(getattr(device, "type", device))


def intermediate_device():
    cfg = binding.app().config
    return get_torch_device() if getattr(cfg, "vram_mode", None) == "gpu_only" else _torch().device("cpu")


def intermediate_dtype():
    return _torch().float32


def unet_offload_device():
    return _manager().offload_device


def text_encoder_offload_device():
    return _manager().offload_device


def vae_offload_device():
    return _manager().offload_device


def unet_inital_load_device(parameters: int = 0, dtype=None):
    return _manager().offload_device


def text_encoder_initial_device(load_device=None, offload_device=None, model_size: int = 0):
    return _manager().offload_device


def text_encoder_device():
    return _manager().device_for("text")


def vae_device():
    return _manager().device_for("vae")


def unet_dtype(device=None, model_params: int = 0, supported_dtypes=None, weight_dtype=None):
    return _manager().dtype_for("unet")


def unet_manual_cast(weight_dtype, inference_device, supported_dtypes=None):
    return None if weight_dtype == _manager().dtype_for("unet") else weight_dtype


def vae_dtype(device=None, allowed_dtypes=None):
    return _manager().dtype_for("vae")


def text_encoder_dtype(device=None):
    return _manager().dtype_for("text")


def is_device_cpu(device) -> bool:
    return getattr(device, "type", device) == "cpu"


def is_device_cuda(device) -> bool:
    return getattr(device, "type", device) == "cuda"


def is_device_mps(device) -> bool:
    return getattr(device, "type", device) == "mps"


def is_intel_xpu() -> bool:
    return False


def is_directml_enabled() -> bool:
    return False


def is_nvidia() -> bool:
    return get_torch_device().type == "cuda" and _torch().version.cuda is not None


def is_amd() -> bool:
    return get_torch_device().type == "cuda" and getattr(_torch().version, "hip", None) is not None


def xformers_enabled() -> bool:
    return False


def xformers_enabled_vae() -> bool:
    return False


def pytorch_attention_enabled() -> bool:
    return True


def sage_attention_enabled() -> bool:
    return False


def flash_attention_enabled() -> bool:
    return False


def device_supports_non_blocking(device) -> bool:
    return False


def should_use_fp16(device=None, model_params: int = 0, prioritize_performance: bool = True,
                    manual_cast: bool = False) -> bool:
    return _manager().dtype_for("unet") == _torch().float16


def should_use_bf16(device=None, model_params: int = 0, prioritize_performance: bool = True,
                    manual_cast: bool = False) -> bool:
    return _manager().dtype_for("unet") == _torch().bfloat16


def supports_dtype(device, dtype) -> bool:
    torch = _torch()
    if dtype == torch.float32:
        return True
    return not is_device_cpu(device) or dtype in (torch.bfloat16,)


def get_autocast_device(dev) -> str:
    return getattr(dev, "type", "cuda")


def cast_to(weight, dtype=None, device=None, non_blocking: bool = False, copy: bool = False):
    if device is None or weight.device == device:
        if not copy and (dtype is None or weight.dtype == dtype):
            return weight
        return weight.to(dtype=dtype, copy=copy)
    return weight.to(device=device, dtype=dtype, non_blocking=non_blocking, copy=copy)


def cast_to_device(tensor, device, dtype, copy: bool = False):
    return cast_to(tensor, dtype=dtype, device=device, copy=copy)


# --- memory ---------------------------------------------------------------------------------------
def get_free_memory(dev=None, torch_free_too: bool = False):
    free = _manager().free_memory(dev)
    return (free, free) if torch_free_too else free


def get_total_memory(dev=None, torch_total_too: bool = False):
    torch = _torch()
    dev = dev or get_torch_device()
    if dev.type == "cuda":
        total = torch.cuda.mem_get_info(dev)[1]
    else:
        import psutil

        total = psutil.virtual_memory().total
    return (total, total) if torch_total_too else total


def soft_empty_cache(force: bool = False) -> None:
    torch = _torch()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def unload_all_models() -> None:
    _manager().unload_all()


def free_memory(memory_required: int, device, keep_loaded=()) -> None:
    manager = _manager()
    if manager.free_memory(device) < memory_required:
        manager.unload_all()


def load_models_gpu(models, memory_required: int = 0, force_patch_weights: bool = False,
                    minimum_memory_required=None, force_full_load: bool = False) -> None:
    """Make Hearth runtime models resident on their device (``prepare()``); others are refused loudly."""
    for model in models:
        prepare = getattr(model, "prepare", None)
        if callable(prepare):
            prepare()
            continue
        raise NotProvidedError(
            f"comfy.model_management.load_models_gpu: {type(model).__name__} is not a Hearth runtime model "
            "(ComfyUI ModelPatcher objects are not provided)")


def load_model_gpu(model) -> None:
    load_models_gpu([model])


def loaded_models(only_currently_used: bool = False) -> list:
    return list(_manager().loaded_models())


# --- interrupts -----------------------------------------------------------------------------------
def interrupt_current_processing(value: bool = True) -> None:
    interrupt = binding.app().worker.interrupt
    interrupt.set() if value else interrupt.clear()


def processing_interrupted() -> bool:
    return binding.app().worker.interrupt.is_set()


def throw_exception_if_processing_interrupted() -> None:
    from hearth.engine.progress import check_interrupt

    check_interrupt()
    if processing_interrupted():
        raise InterruptProcessingException()


def _vram_state() -> VRAMState:
    mode = getattr(binding.app().config, "vram_mode", None)
    return {"gpu_only": VRAMState.SHARED, "highvram": VRAMState.HIGH_VRAM, "lowvram": VRAMState.LOW_VRAM,
            "novram": VRAMState.NO_VRAM}.get(mode, VRAMState.NORMAL_VRAM)


def _cpu_state() -> CPUState:
    return CPUState.CPU if get_torch_device().type == "cpu" else CPUState.GPU


def _oom_exception():
    return _torch().cuda.OutOfMemoryError


__getattr__ = module_getattr("comfy.model_management", {
    "vram_state": _vram_state,
    "set_vram_to": _vram_state,
    "cpu_state": _cpu_state,
    "OOM_EXCEPTION": _oom_exception,
    "current_loaded_models": lambda: loaded_models(),
    "DISABLE_SMART_MEMORY": lambda: False,
})
