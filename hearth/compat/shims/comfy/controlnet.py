"""ComfyUI's ``comfy.controlnet`` over ``hearth.runtime.controlnet``.

``load_controlnet(path, model=None)`` loads a ControlNet, Control-LoRA or T2I-Adapter file (ldm or
diffusers layout, SD1.x/SD2.x/SDXL) as Hearth's ControlNetLoader does; the classes (``ControlBase``,
``ControlNet``, ``ControlLora``, ``T2IAdapter``) are Hearth's, so isinstance checks work and the control
object offers ComfyUI's ``copy()``, ``set_cond_hint(hint, strength, timestep_percent_range, vae,
extra_concat)``, ``set_previous_controlnet``, ``set_extra_arg``, ``strength``,
``timestep_percent_range``, ``previous_controlnet``, ``cond_hint_original``. Loading from an in-memory
state dict and the SD3/Flux/HunyuanDiT ControlNets are not provided.
"""
from __future__ import annotations

import enum

from hearth.compat import binding
from hearth.compat.shims_support import lazy_attrs, module_getattr, not_provided


class StrengthType(enum.Enum):
    CONSTANT = 1
    LINEAR_UP = 2


def _manager():
    from hearth.runtime.memory import get_manager

    app = binding.app()
    return get_manager(app.node_context.services, app.config)


def load_controlnet(ckpt_path, model=None, model_options=None):
    """A CONTROL_NET value from a file (``model``: the MODEL a 'difference' ControlNet is made against)."""
    from hearth.runtime.controlnet import load_controlnet as hearth_load

    return hearth_load(ckpt_path, _manager(), model)


def broadcast_image_to(tensor, target_batch_size, batched_number):
    from hearth.runtime.controlnet import broadcast_image_to as hearth_broadcast

    return hearth_broadcast(tensor, target_batch_size, batched_number)


load_controlnet_state_dict = not_provided("comfy.controlnet.load_controlnet_state_dict",
                                          "load ControlNets from a file path with load_controlnet")
load_t2i_adapter = not_provided("comfy.controlnet.load_t2i_adapter",
                                "load T2I-Adapters from a file path with load_controlnet")

__getattr__ = module_getattr("comfy.controlnet", lazy_attrs({
    "ControlBase": "hearth.runtime.controlnet:ControlBase",
    "ControlNet": "hearth.runtime.controlnet:ControlNet",
    "ControlLora": "hearth.runtime.controlnet:ControlLora",
    "T2IAdapter": "hearth.runtime.controlnet:T2IAdapter",
}))
