"""ComfyUI's ``comfy.clip_vision`` over ``hearth.runtime.clip_vision``.

``load(path)`` gives Hearth's CLIP_VISION value (``ClipVisionModel`` names its class): its
``encode_image(image, crop=True)`` returns an ``Output`` with ComfyUI's keys (last_hidden_state,
image_embeds, penultimate_hidden_states, all_hidden_states for SigLIP, mm_projected), and
``clip_preprocess`` is Hearth's (same resize, crop and normalisation).
"""
from __future__ import annotations

from hearth.compat import binding
from hearth.compat.shims_support import lazy_attrs, module_getattr, not_provided


def _manager():
    from hearth.runtime.memory import get_manager

    app = binding.app()
    return get_manager(app.node_context.services, app.config)


def load(ckpt_path):
    from hearth.runtime.clip_vision import load as hearth_load

    return hearth_load(ckpt_path, _manager())


def clip_preprocess(image, size=224, mean=(0.48145466, 0.4578275, 0.40821073),
                    std=(0.26862954, 0.26130258, 0.27577711), crop=True):
    from hearth.runtime.clip_vision import clip_preprocess as hearth_preprocess

    return hearth_preprocess(image, size, list(mean), list(std), crop)


def convert_to_transformers(sd, prefix):
    from hearth.runtime.clip_vision import to_hf_layout

    return to_hf_layout(sd, prefix)


load_clipvision_from_sd = not_provided("comfy.clip_vision.load_clipvision_from_sd",
                                       "load CLIP vision models from a file path with load")

__getattr__ = module_getattr("comfy.clip_vision", lazy_attrs({
    "ClipVisionModel": "hearth.runtime.clip_vision:ClipVision",
    "Output": "hearth.runtime.clip_vision:Output",
}))
