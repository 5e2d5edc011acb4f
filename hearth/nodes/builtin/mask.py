"""Mask nodes: conversions between images and masks, solid/cropped/composited/feathered/grown masks,
masked compositing of images and latents, LoadImageMask and MaskPreview.

MASK values are float32 [batch, height, width]; 1.0 marks the masked area. torch is imported inside the
functions so the server starts without it.
"""
from __future__ import annotations

import hashlib
import os

from hearth.nodes.builtin import image as image_nodes
from hearth.nodes.builtin.utility import MAX_RESOLUTION, match_alpha, repeat_to_batch_size
from hearth.nodes.context import current

PYTHON_MODULE = "comfy_extras.nodes_mask"
NODE_PYTHON_MODULES = {"LoadImageMask": "nodes"}


def composite(destination, source, x: int, y: int, mask=None, multiplier: int = 8, resize_source: bool = False):
    """Paste ``source`` onto ``destination`` (both [N, C, H, W]; modified in place and returned) with its
    top-left corner at (x, y) in pixels; ``multiplier`` is pixels per element (8 for latents).

    An optional mask ([H, W] or [N, H, W], any size: it is stretched over the source) blends the two.
    """
    import torch

    source = source.to(destination.device)
    if resize_source:
        source = torch.nn.functional.interpolate(source, size=tuple(destination.shape[-2:]), mode="bilinear")
    source = repeat_to_batch_size(source, destination.shape[0])
    src_h, src_w = source.shape[-2], source.shape[-1]
    dst_h, dst_w = destination.shape[-2], destination.shape[-1]
    x = max(-src_w * multiplier, min(x, dst_w * multiplier))
    y = max(-src_h * multiplier, min(y, dst_h * multiplier))
    left, top = x // multiplier, y // multiplier

    if mask is None:
        mask = torch.ones_like(source)
    else:
        mask = mask.to(destination.device, copy=True).reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
        mask = torch.nn.functional.interpolate(mask, size=(src_h, src_w), mode="bilinear")
        mask = repeat_to_batch_size(mask, source.shape[0])

    visible_w = dst_w - left + min(0, x)
    visible_h = dst_h - top + min(0, y)
    if visible_w <= 0 or visible_h <= 0:
        return destination
    mask = mask[:, :, :visible_h, :visible_w]
    region = destination[..., top:top + src_h, left:left + src_w]
    blended = mask * source[..., :visible_h, :visible_w] + (1.0 - mask) * region
    destination[..., top:top + src_h, left:left + src_w] = blended
    return destination


class LatentCompositeMasked:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"destination": ("LATENT",),
                             "source": ("LATENT",),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "resize_source": ("BOOLEAN", {"default": False})},
                "optional": {"mask": ("MASK",)}}

    def composite(self, destination, source, x, y, resize_source, mask=None):
        out = dict(destination)
        out["samples"] = composite(destination["samples"].clone(), source["samples"], x, y, mask, 8, resize_source)
        return (out,)


class ImageCompositeMasked:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"destination": ("IMAGE",),
                             "source": ("IMAGE",),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "resize_source": ("BOOLEAN", {"default": False})},
                "optional": {"mask": ("MASK",)}}

    def composite(self, destination, source, x, y, resize_source, mask=None):
        destination, source = match_alpha(destination, source)
        target = destination.clone().movedim(-1, 1)
        return (composite(target, source.movedim(-1, 1), x, y, mask, 1, resize_source).movedim(1, -1),)


class MaskToImage:
    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}}

    def mask_to_image(self, mask):
        gray = mask.reshape((-1, mask.shape[-2], mask.shape[-1])).unsqueeze(-1)
        return (gray.expand(-1, -1, -1, 3),)


class ImageToMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"
    CHANNELS = ["red", "green", "blue", "alpha"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "channel": (list(cls.CHANNELS),)}}

    def image_to_mask(self, image, channel):
        index = self.CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise ValueError(f"the image has no {channel} channel ({image.shape[-1]} channels)")
        return (image[..., index],)


class ImageColorToMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1,
                                               "display": "color"})}}

    def image_to_mask(self, image, color):
        import torch

        rgb = (torch.clamp(image[..., :3], 0, 1.0) * 255.0).round().to(torch.int64)
        packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
        return ((packed == color).float(),)


class SolidMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                             "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1})}}

    def solid(self, value, width, height):
        import torch

        return (torch.full((1, height, width), float(value), dtype=torch.float32),)


class InvertMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask):
        return (1.0 - mask,)


class CropMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1})}}

    def crop(self, mask, x, y, width, height):
        mask = mask.reshape((-1, mask.shape[-2], mask.shape[-1]))
        return (mask[:, y:y + height, x:x + width],)


class MaskComposite:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "combine"
    OPERATIONS = ["multiply", "add", "subtract", "and", "or", "xor"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"destination": ("MASK",),
                             "source": ("MASK",),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "operation": (list(cls.OPERATIONS),)}}

    def combine(self, destination, source, x, y, operation):
        import torch

        if operation not in self.OPERATIONS:
            raise ValueError(f"unknown mask operation {operation!r}")
        out = destination.reshape((-1, destination.shape[-2], destination.shape[-1])).clone()
        source = source.reshape((-1, source.shape[-2], source.shape[-1]))
        right = min(x + source.shape[-1], out.shape[-1])
        bottom = min(y + source.shape[-2], out.shape[-2])
        if right > x and bottom > y:
            dst = out[:, y:bottom, x:right]
            src = source[:, :bottom - y, :right - x]
            if operation == "multiply":
                result = dst * src
            elif operation == "add":
                result = dst + src
            elif operation == "subtract":
                result = dst - src
            else:
                a, b = dst.round().bool(), src.round().bool()
                logic = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}[operation]
                result = logic(a, b).float()
            out[:, y:bottom, x:right] = result
        return (torch.clamp(out, 0.0, 1.0),)


class FeatherMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "feather"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",),
                             "left": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "top": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "right": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "bottom": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    def feather(self, mask, left, top, right, bottom):
        out = mask.reshape((-1, mask.shape[-2], mask.shape[-1])).clone()
        height, width = out.shape[-2], out.shape[-1]
        left, right = min(left, width), min(right, width)
        top, bottom = min(top, height), min(bottom, height)
        # Each edge ramps linearly up from 1/n at the border over n pixels. The right and bottom ramps
        # are indexed as ComfyUI indexes them (column -i for i = 0..n-1, where -0 is the *first*
        # column), so that the same workflow gives the same mask.
        for i in range(left):
            out[:, :, i] *= (i + 1.0) / left
        for i in range(right):
            out[:, :, -i] *= (i + 1) / right
        for i in range(top):
            out[:, i, :] *= (i + 1.0) / top
        for i in range(bottom):
            out[:, -i, :] *= (i + 1) / bottom
        return (out,)


def _grow(mask, pixels: int, tapered: bool):
    """Grey dilation (pixels > 0) or erosion (pixels < 0) of [N, H, W], |pixels| times with a 3x3 square,
    or a plus-shaped neighbourhood when ``tapered``; borders repeat the edge pixels."""
    import torch
    import torch.nn.functional as F

    if pixels == 0:
        return mask.clone()
    dilate = pixels > 0
    steps = abs(pixels)
    height, width = mask.shape[-2], mask.shape[-1]
    x = mask.unsqueeze(1) if dilate else -mask.unsqueeze(1)  # erosion is dilation of the negation
    if not tapered:
        # |pixels| 3x3 steps with repeated borders = one square window clipped to the image.
        radius = min(steps, max(height, width))
        size = 2 * radius + 1
        padded = F.pad(x, (radius, radius, radius, radius), value=float("-inf"))
        x = F.max_pool2d(padded, kernel_size=size, stride=1)
    else:
        for _ in range(min(steps, height + width)):  # beyond h+w steps nothing changes
            p = F.pad(x, (1, 1, 1, 1), mode="replicate")
            x = torch.stack((p[..., 1:-1, 1:-1], p[..., :-2, 1:-1], p[..., 2:, 1:-1],
                             p[..., 1:-1, :-2], p[..., 1:-1, 2:])).amax(dim=0)
    x = x.squeeze(1)
    return x if dilate else -x


class GrowMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "expand_mask"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",),
                             "expand": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION,
                                                "step": 1}),
                             "tapered_corners": ("BOOLEAN", {"default": True})}}

    def expand_mask(self, mask, expand, tapered_corners):
        mask = mask.reshape((-1, mask.shape[-2], mask.shape[-1]))
        return (_grow(mask, int(expand), bool(tapered_corners)),)


class ThresholdMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",),
                             "value": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def image_to_mask(self, mask, value):
        return ((mask > value).float(),)


class MaskPreview(image_nodes.PreviewImage):
    CATEGORY = "mask"
    FUNCTION = "execute"
    DESCRIPTION = "Shows the mask as a grayscale image; the file is kept in the temp folder."
    compress_level = 4

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def execute(self, mask, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        gray = mask.reshape((-1, mask.shape[-2], mask.shape[-1])).unsqueeze(-1).expand(-1, -1, -1, 3)
        return self.save_images(gray, filename_prefix, prompt, extra_pnginfo)


def _input_file_names() -> list[str]:
    folder = current().folders.input
    try:
        return sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
    except FileNotFoundError:
        return []


class LoadImageMask:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    FUNCTION = "load_image"
    CHANNELS = ["alpha", "red", "green", "blue"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_input_file_names(), {"image_upload": True}),
                             "channel": (list(cls.CHANNELS),)}}

    def load_image(self, image, channel):
        import numpy as np
        import torch
        from PIL import ImageOps

        path = image_nodes.resolve_annotated(image)
        if path is None:
            raise FileNotFoundError(f"Invalid image file: {image}")
        with image_nodes.open_checked(path) as opened:
            picture = ImageOps.exif_transpose(opened)
            if picture.getbands() != ("R", "G", "B", "A"):
                if picture.mode == "I":
                    picture = picture.point(lambda v: v * (1 / 255))
                picture = picture.convert("RGBA")
            band = channel[0].upper()
            if band not in picture.getbands():
                return (torch.zeros((1, 64, 64), dtype=torch.float32),)
            values = torch.from_numpy(np.array(picture.getchannel(band)).astype(np.float32) / 255.0)
        if band == "A":
            values = 1.0 - values
        return (values.unsqueeze(0),)

    @classmethod
    def IS_CHANGED(cls, image, channel=None):
        path = image_nodes.resolve_annotated(image)
        if path is None:
            return ""
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if not isinstance(image, str) or image_nodes.resolve_annotated(image) is None:
            return f"Invalid image file: {image}"
        return True


NODE_CLASS_MAPPINGS = {
    "LatentCompositeMasked": LatentCompositeMasked,
    "ImageCompositeMasked": ImageCompositeMasked,
    "MaskToImage": MaskToImage,
    "ImageToMask": ImageToMask,
    "ImageColorToMask": ImageColorToMask,
    "SolidMask": SolidMask,
    "InvertMask": InvertMask,
    "CropMask": CropMask,
    "MaskComposite": MaskComposite,
    "FeatherMask": FeatherMask,
    "GrowMask": GrowMask,
    "ThresholdMask": ThresholdMask,
    "MaskPreview": MaskPreview,
    "LoadImageMask": LoadImageMask,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageToMask": "Convert Image to Mask",
    "MaskToImage": "Convert Mask to Image",
    "LoadImageMask": "Load Image (as Mask)",
}
