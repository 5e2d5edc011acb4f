"""ComfyUI's ``node_helpers``."""
from __future__ import annotations

import hashlib

from hearth.compat.shims_support import module_getattr
from hearth.nodes.builtin.sd import conditioning_set_values as _conditioning_set_values


def conditioning_set_values(conditioning, values=None, append: bool = False):
    """A copy of the conditioning with ``values`` set (or, with ``append``, added to existing ones)."""
    return _conditioning_set_values(conditioning, values or {}, append)


def pillow(fn, arg):
    """Call a PIL function, retrying with truncated images allowed when PIL rejects the file."""
    from PIL import ImageFile, UnidentifiedImageError

    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return fn(arg)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def hasher():
    """The hash constructor named by --default-hashing-function."""
    from comfy.cli_args import args

    return getattr(hashlib, args.default_hashing_function)


def string_to_torch_dtype(string: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(string)


def image_alpha_fix(destination, source):
    """Make two [..., C] images agree on having an alpha channel (an opaque one is added when needed)."""
    import torch

    if destination.shape[-1] < source.shape[-1]:
        source = source[..., :destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        destination = torch.nn.functional.pad(destination, (0, 1))
        destination[..., -1] = 1.0
    return destination, source


__getattr__ = module_getattr("node_helpers")
