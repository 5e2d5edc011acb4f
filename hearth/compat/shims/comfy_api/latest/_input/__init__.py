"""ComfyUI's ``comfy_api.latest._input``: the input value types. ``VideoInput`` is Hearth's VIDEO base
class (``hearth.media.video.Video``); ``ImageInput`` / ``MaskInput`` are ``torch.Tensor`` (imported on
first access); AUDIO and LATENT values are dicts."""
from hearth.compat.shims_support import lazy_attrs, module_getattr
from hearth.media.video import Video as VideoInput

AudioInput = dict
LatentInput = dict

__getattr__ = module_getattr("comfy_api.latest._input", lazy_attrs({"ImageInput": "torch:Tensor",
                                                                     "MaskInput": "torch:Tensor"}))

__all__ = ["ImageInput", "AudioInput", "MaskInput", "LatentInput", "VideoInput"]
