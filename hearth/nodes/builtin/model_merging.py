"""Model merging and saving nodes (ComfyUI's comfy_extras.nodes_model_merging and the SD1/SD2/SDXL block
merges of nodes_model_merging_model_specific).

Merges return clones whose weight patches combine the two inputs when the network runs (see
hearth/runtime/merge.py); nothing is copied and the inputs are unchanged. The save nodes write one
.safetensors file per value into the output folder under ComfyUI's ``<prefix>_NNNNN_`` counter, in the
original key layouts (hearth/runtime/save.py), with the workflow as metadata unless
--disable-metadata is set.

Importing this module does not import torch.
"""
from __future__ import annotations

import json
import os

from hearth.nodes.context import current

PYTHON_MODULE = "comfy_extras.nodes_model_merging"
_SPECIFIC = "comfy_extras.nodes_model_merging_model_specific"

_RATIO = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})
_MULTIPLIER = ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})
_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def _need(value, what: str):
    if value is None:
        raise ValueError(f"{what} input is missing (None); connect a loaded {what}")
    return value


# --- model merges ---------------------------------------------------------------------------------

class ModelMergeSimple:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    DESCRIPTION = "Blends two diffusion models: model1 * ratio + model2 * (1 - ratio)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "ratio": _RATIO}}

    def merge(self, model1, model2, ratio):
        from hearth.runtime import merge

        return (merge.merge_models(_need(model1, "MODEL"), _need(model2, "MODEL"),
                                   lambda _name: merge.simple_strengths(ratio)),)


class ModelSubtract:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    DESCRIPTION = "The difference of two diffusion models, scaled: (model1 - model2) * multiplier."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "multiplier": _MULTIPLIER}}

    def merge(self, model1, model2, multiplier):
        from hearth.runtime import merge

        return (merge.merge_models(_need(model1, "MODEL"), _need(model2, "MODEL"),
                                   lambda _name: merge.subtract_strengths(multiplier)),)


class ModelAdd:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    DESCRIPTION = "The sum of two diffusion models' weights (e.g. a model plus a difference)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",)}}

    def merge(self, model1, model2):
        from hearth.runtime import merge

        return (merge.merge_models(_need(model1, "MODEL"), _need(model2, "MODEL"),
                                   lambda _name: merge.ADD_STRENGTHS),)


class ModelMergeBlocks:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    DESCRIPTION = ("Blends two diffusion models with a ratio per block; each input names a weight-name prefix "
                   "and the longest matching prefix decides.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model1": ("MODEL",), "model2": ("MODEL",), "input": _RATIO, "middle": _RATIO,
                             "out": _RATIO}}

    def merge(self, model1, model2, **kwargs):
        from hearth.runtime import merge

        ratios = {k: float(v) for k, v in kwargs.items()}
        return (merge.merge_blocks(_need(model1, "MODEL"), _need(model2, "MODEL"), ratios),)


class ModelMergeSD1(ModelMergeBlocks):
    CATEGORY = "advanced/model_merging/model_specific"

    @classmethod
    def INPUT_TYPES(cls):
        args = {"model1": ("MODEL",), "model2": ("MODEL",), "time_embed.": _RATIO, "label_emb.": _RATIO}
        args.update({f"input_blocks.{i}.": _RATIO for i in range(12)})
        args.update({f"middle_block.{i}.": _RATIO for i in range(3)})
        args.update({f"output_blocks.{i}.": _RATIO for i in range(12)})
        args["out."] = _RATIO
        return {"required": args}


class ModelMergeSDXL(ModelMergeBlocks):
    CATEGORY = "advanced/model_merging/model_specific"

    @classmethod
    def INPUT_TYPES(cls):
        # no trailing dots on the block names, as in ComfyUI (SDXL has at most 9 blocks per side)
        args = {"model1": ("MODEL",), "model2": ("MODEL",), "time_embed.": _RATIO, "label_emb.": _RATIO}
        args.update({f"input_blocks.{i}": _RATIO for i in range(9)})
        args.update({f"middle_block.{i}": _RATIO for i in range(3)})
        args.update({f"output_blocks.{i}": _RATIO for i in range(9)})
        args["out."] = _RATIO
        return {"required": args}


# --- text encoder merges --------------------------------------------------------------------------

class CLIPMergeSimple:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"
    DESCRIPTION = "Blends two text encoders: clip1 * ratio + clip2 * (1 - ratio)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "ratio": _RATIO}}

    def merge(self, clip1, clip2, ratio):
        from hearth.runtime import merge

        return (merge.merge_clips(_need(clip1, "CLIP"), _need(clip2, "CLIP"), *merge.simple_strengths(ratio)),)


class CLIPSubtract:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"
    DESCRIPTION = "The difference of two text encoders, scaled: (clip1 - clip2) * multiplier."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",), "multiplier": _MULTIPLIER}}

    def merge(self, clip1, clip2, multiplier):
        from hearth.runtime import merge

        return (merge.merge_clips(_need(clip1, "CLIP"), _need(clip2, "CLIP"),
                                  *merge.subtract_strengths(multiplier)),)


class CLIPAdd:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "merge"
    DESCRIPTION = "The sum of two text encoders' weights."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip1": ("CLIP",), "clip2": ("CLIP",)}}

    def merge(self, clip1, clip2):
        from hearth.runtime import merge

        return (merge.merge_clips(_need(clip1, "CLIP"), _need(clip2, "CLIP"), *merge.ADD_STRENGTHS),)


# --- saving ---------------------------------------------------------------------------------------

def _workflow_metadata(prompt, extra_pnginfo) -> dict[str, str]:
    """prompt / extra_pnginfo entries as JSON strings, or nothing with --disable-metadata."""
    if current().config.disable_metadata:
        return {}
    meta = {"prompt": json.dumps(prompt) if prompt is not None else ""}
    if isinstance(extra_pnginfo, dict):
        for key, value in extra_pnginfo.items():
            meta[str(key)] = json.dumps(value)
    return meta


def _target(filename_prefix: str) -> tuple[str, str, int]:
    """(folder, file name, counter) for the next ``<prefix>_NNNNN_.safetensors`` inside output/."""
    from hearth.paths import save_image_path

    if not isinstance(filename_prefix, str) or not filename_prefix.strip():
        raise ValueError("filename_prefix must not be empty")
    folder, filename, counter, _sub, _ = save_image_path(filename_prefix, current().folders.output)
    if filename in ("", ".", ".."):
        raise ValueError(f"filename_prefix {filename_prefix!r} names a folder, not a file")
    return folder, filename, counter


def save_checkpoint(model, clip, vae, filename_prefix, prompt=None, extra_pnginfo=None) -> str:
    """Write a checkpoint (ComfyUI's save_checkpoint); returns the path written."""
    from hearth.runtime import save

    folder, filename, counter = _target(filename_prefix)
    metadata = save.modelspec_metadata(model, f"{filename} {counter}")
    metadata.update(_workflow_metadata(prompt, extra_pnginfo))
    sd = save.checkpoint_state_dict(model, clip, vae)
    path = os.path.join(folder, f"{filename}_{counter:05}_.safetensors")
    save.write_safetensors(sd, path, metadata)
    return path


class CheckpointSave:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    DESCRIPTION = "Writes the model, text encoders and VAE as one checkpoint file in the output folder."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "clip": ("CLIP",), "vae": ("VAE",),
                             "filename_prefix": ("STRING", {"default": "checkpoints/ComfyUI"})},
                "hidden": dict(_HIDDEN)}

    def save(self, model, clip, vae, filename_prefix, prompt=None, extra_pnginfo=None):
        save_checkpoint(_need(model, "MODEL"), clip, vae, filename_prefix, prompt, extra_pnginfo)
        return {}


class ModelSave:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    DESCRIPTION = "Writes the diffusion model alone (original key layout) to the output folder."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",),
                             "filename_prefix": ("STRING", {"default": "diffusion_models/ComfyUI"})},
                "hidden": dict(_HIDDEN)}

    def save(self, model, filename_prefix, prompt=None, extra_pnginfo=None):
        save_checkpoint(_need(model, "MODEL"), None, None, filename_prefix, prompt, extra_pnginfo)
        return {}


class CLIPSave:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    DESCRIPTION = "Writes each text encoder of a CLIP to its own file (<prefix>_clip_l, <prefix>_clip_g, ...)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip": ("CLIP",), "filename_prefix": ("STRING", {"default": "clip/ComfyUI"})},
                "hidden": dict(_HIDDEN)}

    def save(self, clip, filename_prefix, prompt=None, extra_pnginfo=None):
        from hearth.runtime import save

        metadata = _workflow_metadata(prompt, extra_pnginfo)
        if metadata:
            metadata = {"format": "pt", **metadata}
        _target(filename_prefix)  # refuse a bad prefix before any work
        for name, sd in save.clip_file_state_dicts(_need(clip, "CLIP")):
            folder, filename, counter = _target(f"{filename_prefix}_{name}")
            save.write_safetensors(sd, os.path.join(folder, f"{filename}_{counter:05}_.safetensors"), metadata)
        return {}


class VAESave:
    CATEGORY = "advanced/model_merging"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    DESCRIPTION = "Writes a VAE (original autoencoder key names) to the output folder."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",), "filename_prefix": ("STRING", {"default": "vae/ComfyUI_vae"})},
                "hidden": dict(_HIDDEN)}

    def save(self, vae, filename_prefix, prompt=None, extra_pnginfo=None):
        from hearth.runtime import save

        folder, filename, counter = _target(filename_prefix)
        sd = save.vae_state_dict(_need(vae, "VAE"))
        save.write_safetensors(sd, os.path.join(folder, f"{filename}_{counter:05}_.safetensors"),
                               _workflow_metadata(prompt, extra_pnginfo))
        return {}


NODE_CLASS_MAPPINGS = {
    "ModelMergeSimple": ModelMergeSimple,
    "ModelMergeBlocks": ModelMergeBlocks,
    "ModelMergeSubtract": ModelSubtract,
    "ModelMergeAdd": ModelAdd,
    "CheckpointSave": CheckpointSave,
    "CLIPMergeSimple": CLIPMergeSimple,
    "CLIPMergeSubtract": CLIPSubtract,
    "CLIPMergeAdd": CLIPAdd,
    "CLIPSave": CLIPSave,
    "VAESave": VAESave,
    "ModelSave": ModelSave,
    "ModelMergeSD1": ModelMergeSD1,
    "ModelMergeSD2": ModelMergeSD1,  # SD2 has SD1's blocks
    "ModelMergeSDXL": ModelMergeSDXL,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CheckpointSave": "Save Checkpoint",
}

NODE_PYTHON_MODULES = {"ModelMergeSD1": _SPECIFIC, "ModelMergeSD2": _SPECIFIC, "ModelMergeSDXL": _SPECIFIC}
