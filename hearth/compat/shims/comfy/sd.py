"""ComfyUI's ``comfy.sd``: checkpoint, UNet, text-encoder and LoRA loading through Hearth's runtime
(``hearth.runtime.loader`` / ``apply_lora``), which detects the architecture from the weights.

``comfy.sd.VAE``, ``comfy.sd.CLIP`` and ``comfy.sd.StyleModel`` are Hearth's runtime classes (for
isinstance checks); their constructors are Hearth's, not ComfyUI's. ``load_style_model`` and
``load_gligen`` load through hearth.runtime.style_model / gligen. (ComfyUI has no
``comfy.sd.load_controlnet``: ControlNets load through ``comfy.controlnet.load_controlnet``.)
"""
from __future__ import annotations

import enum

from hearth.compat import binding
from hearth.compat.shims_support import lazy_attrs, module_getattr, not_provided


class CLIPType(enum.Enum):
    STABLE_DIFFUSION = 1
    STABLE_CASCADE = 2
    SD3 = 3
    STABLE_AUDIO = 4
    HUNYUAN_DIT = 5
    FLUX = 6
    MOCHI = 7
    LTXV = 8
    HUNYUAN_VIDEO = 9
    PIXART = 10
    COSMOS = 11
    LUMINA2 = 12
    WAN = 13
    HIDREAM = 14
    CHROMA = 15
    ACE = 16
    OMNIGEN2 = 17
    QWEN_IMAGE = 18
    HUNYUAN_IMAGE = 19


def _manager():
    from hearth.runtime.memory import get_manager

    app = binding.app()
    return get_manager(app.node_context.services, app.config)


def _embedding_dirs(embedding_directory):
    if embedding_directory is None:
        folder = binding.app().folders.folder("embeddings")
        return list(folder.paths) if folder else []
    if isinstance(embedding_directory, (str, bytes)) or not hasattr(embedding_directory, "__iter__"):
        return [embedding_directory]
    return list(embedding_directory)


def load_checkpoint_guess_config(ckpt_path, output_vae=True, output_clip=True, output_clipvision=False,
                                 embedding_directory=None, output_model=True, model_options=None,
                                 te_model_options=None):
    """(MODEL, CLIP, VAE, CLIP_VISION) from a single-file checkpoint; CLIP_VISION is the image encoder an
    unCLIP checkpoint carries when ``output_clipvision`` (else None, as in ComfyUI)."""
    from hearth.runtime import loader

    if output_clipvision:
        from hearth.runtime import unclip

        model, clip, vae, vision = unclip.load_checkpoint(ckpt_path, _manager(), _embedding_dirs(embedding_directory))
        return (model if output_model else None), (clip if output_clip else None), (vae if output_vae else None), \
            vision

    model, clip, vae = loader.load_checkpoint(ckpt_path, _manager(), _embedding_dirs(embedding_directory),
                                              output_clip=output_clip, output_vae=output_vae)
    return (model if output_model else None), clip, vae, None


def load_checkpoint(config_path=None, ckpt_path=None, output_vae=True, output_clip=True, embedding_directory=None,
                    state_dict=None, config=None):
    """The YAML config is not needed: Hearth reads the architecture from the weights."""
    if ckpt_path is None:
        raise ValueError("comfy.sd.load_checkpoint: ckpt_path is required (state_dict loading is not supported)")
    model, clip, vae, _ = load_checkpoint_guess_config(ckpt_path, output_vae, output_clip,
                                                       embedding_directory=embedding_directory)
    return model, clip, vae


def load_diffusion_model(unet_path, model_options=None):
    from hearth.runtime import loader

    return loader.load_unet(unet_path, _manager())


load_unet = load_diffusion_model


def load_clip(ckpt_paths, embedding_directory=None, clip_type=CLIPType.STABLE_DIFFUSION, model_options=None):
    from hearth.runtime import loader

    type_name = clip_type.name.lower() if isinstance(clip_type, CLIPType) else str(clip_type)
    return loader.load_clip(list(ckpt_paths), type_name, _manager(), _embedding_dirs(embedding_directory))


def load_lora_for_models(model, clip, lora, strength_model, strength_clip):
    from hearth.runtime.apply_lora import apply_lora

    return apply_lora(model, clip, lora, strength_model, strength_clip)


def _vae_class():
    from hearth.runtime.vae import VAE

    return VAE


def _clip_class():
    from hearth.runtime.text import CLIP

    return CLIP


load_diffusion_model_state_dict = not_provided("comfy.sd.load_diffusion_model_state_dict",
                                               "load from a file path with load_diffusion_model")
load_unet_state_dict = not_provided("comfy.sd.load_unet_state_dict", "load from a file path with load_unet")
load_state_dict_guess_config = not_provided("comfy.sd.load_state_dict_guess_config",
                                            "load from a file path with load_checkpoint_guess_config")
load_text_encoder_state_dicts = not_provided("comfy.sd.load_text_encoder_state_dicts",
                                             "load from file paths with load_clip")


def load_style_model(ckpt_path):
    """A STYLE_MODEL (T2I style adapter or Flux Redux) from a file, as StyleModelLoader loads it."""
    from hearth.runtime import style_model

    return style_model.load(ckpt_path)


def load_gligen(ckpt_path):
    """A GLIGEN value from a file, as GLIGENLoader loads it."""
    from hearth.runtime import gligen

    return gligen.load(ckpt_path, _manager())


__getattr__ = module_getattr("comfy.sd", {"VAE": _vae_class, "CLIP": _clip_class,
                                          **lazy_attrs({"StyleModel": "hearth.runtime.style_model:StyleModel"})})
