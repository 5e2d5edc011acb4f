"""Image nodes beyond the basics in image.py: scaling, batching, cropping, padding, stitching, rotating,
flipping, noise, image size, animated WEBP/PNG and SVG saving, and LoadImageOutput.

IMAGE values are float32 tensors [batch, height, width, channels] in 0..1. torch is imported inside
the functions so the server starts without it.
"""
from __future__ import annotations

import json
import os
import re

from hearth.nodes.builtin import image as image_nodes
from hearth.nodes.builtin.utility import MAX_RESOLUTION, UPSCALE_METHODS, rotation_quarters, upscale
from hearth.nodes.context import current
from hearth.paths import save_image_path

PYTHON_MODULE = "comfy_extras.nodes_images"
NODE_PYTHON_MODULES = {name: "nodes" for name in (
    "ImageScale", "ImageScaleBy", "ImageBatch", "ImagePadForOutpaint", "LoadImageOutput")}


def _scale_image(image, width: int, height: int, method: str, crop: str = "disabled"):
    return upscale(image.movedim(-1, 1), width, height, method, crop).movedim(1, -1)


def _to_pil(frame):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.clip(255.0 * frame.detach().cpu().float().numpy(), 0, 255).astype(np.uint8))


# --- core image nodes (ComfyUI's nodes.py) -------------------------------------------------------------
class ImageScale:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    # Custom node packs read these class attributes of ComfyUI's built-in class.
    upscale_methods = list(UPSCALE_METHODS)
    crop_methods = ["disabled", "center"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "upscale_method": (list(cls.upscale_methods),),
                             "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "crop": (list(cls.crop_methods),)}}

    def upscale(self, image, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return (image,)
        in_h, in_w = image.shape[1], image.shape[2]
        if width == 0:  # keep the aspect ratio
            width = max(1, round(in_w * height / in_h))
        elif height == 0:
            height = max(1, round(in_h * width / in_w))
        return (_scale_image(image, width, height, upscale_method, crop),)


class ImageScaleBy:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    upscale_methods = list(UPSCALE_METHODS)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "upscale_method": (list(cls.upscale_methods),),
                             "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, image, upscale_method, scale_by):
        width = round(image.shape[2] * scale_by)
        height = round(image.shape[1] * scale_by)
        return (_scale_image(image, width, height, upscale_method),)


class ImageBatch:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def batch(self, image1, image2):
        import torch

        if image1.shape[1:] != image2.shape[1:]:
            image2 = _scale_image(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
        return (torch.cat((image1, image2), dim=0),)


class ImagePadForOutpaint:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "expand_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "left": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "top": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "right": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "bottom": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
                             "feathering": ("INT", {"default": 40, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    def expand_image(self, image, left, top, right, bottom, feathering):
        import torch

        batch, height, width, channels = image.shape
        out = torch.full((batch, height + top + bottom, width + left + right, channels), 0.5, dtype=torch.float32)
        out[:, top:top + height, left:left + width, :] = image
        mask = torch.ones((height + top + bottom, width + left + right), dtype=torch.float32)
        inner = torch.zeros((height, width), dtype=torch.float32)
        if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
            # Distance of each original pixel to the nearest padded side; sides not padded don't count.
            rows = torch.arange(height, dtype=torch.float32)[:, None]
            cols = torch.arange(width, dtype=torch.float32)[None, :]
            far_h, far_w = torch.full_like(rows, float(height)), torch.full_like(cols, float(width))
            distance = torch.minimum(
                torch.minimum(rows if top else far_h, (height - rows) if bottom else far_h),
                torch.minimum(cols if left else far_w, (width - cols) if right else far_w))
            ramp = (feathering - distance) / feathering
            inner = torch.where(distance < feathering, ramp * ramp, inner)
        mask[top:top + height, left:left + width] = inner
        return (out, mask.unsqueeze(0))


class LoadImageOutput(image_nodes.LoadImage):
    DESCRIPTION = ("Loads an image from the output folder. Refreshing the list selects its first entry, "
                   "which makes it easy to iterate on a result.")
    EXPERIMENTAL = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("COMBO", {
            "image_upload": True,
            "image_folder": "output",
            "remote": {"route": "/internal/files/output", "refresh_button": True, "control_after_refresh": "first"},
        })}}


# --- ComfyUI's nodes_images ---------------------------------------------------------------------------
class ImageCrop:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
                             "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    def crop(self, image, width, height, x, y):
        x = min(x, image.shape[2] - 1)
        y = min(y, image.shape[1] - 1)
        return (image[:, y:y + height, x:x + width, :],)


class RepeatImageBatch:
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "amount": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def repeat(self, image, amount):
        return (image.repeat((amount, 1, 1, 1)),)


class ImageFromBatch:
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "frombatch"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095}),
                             "length": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def frombatch(self, image, batch_index, length):
        start = min(image.shape[0] - 1, batch_index)
        length = min(image.shape[0] - start, length)
        return (image[start:start + length].clone(),)


class ImageAddNoise:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                              "control_after_generate": True,
                                              "tooltip": "Seed of the gaussian noise (drawn on the CPU)."}),
                             "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def repeat(self, image, seed, strength):
        import torch

        generator = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(image.size(), generator=generator, device="cpu").to(image)
        return (torch.clamp(image + strength * noise, min=0.0, max=1.0),)


class SaveAnimatedWEBP:
    CATEGORY = "image/animation"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    METHODS = {"default": 4, "fastest": 0, "slowest": 6}
    folder_type = "output"

    def __init__(self):
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                             "lossless": ("BOOLEAN", {"default": True}),
                             "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                             "method": (list(cls.METHODS),)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, fps, filename_prefix, lossless, quality, method, num_frames=0, prompt=None,
                    extra_pnginfo=None):
        ctx = current()
        out_dir = ctx.folders.output if self.folder_type == "output" else ctx.folders.temp
        folder, filename, counter, subfolder, _ = save_image_path(filename_prefix + self.prefix_append, out_dir,
                                                                  images[0].shape[1], images[0].shape[0])
        os.makedirs(folder, exist_ok=True)
        frames = [_to_pil(frame) for frame in images]
        exif = frames[0].getexif()
        if not ctx.config.disable_metadata:
            # The tags ComfyUI's frontend reads a workflow back from: 0x0110 (Model) holds the prompt,
            # 0x010F (Make) downwards hold the extra_pnginfo entries.
            if prompt is not None:
                exif[0x0110] = "prompt:" + json.dumps(prompt)
            if isinstance(extra_pnginfo, dict):
                tag = 0x010F
                for key, value in extra_pnginfo.items():
                    exif[tag] = f"{key}:{json.dumps(value)}"
                    tag -= 1
        per_file = num_frames or len(frames)
        results = []
        for start in range(0, len(frames), per_file):
            name = f"{filename}_{counter:05}_.webp"
            frames[start].save(os.path.join(folder, name), format="WEBP", save_all=True,
                               duration=int(1000.0 / fps), append_images=frames[start + 1:start + per_file],
                               exif=exif, lossless=bool(lossless), quality=int(quality),
                               method=self.METHODS.get(method, 4))
            results.append({"filename": name, "subfolder": subfolder, "type": self.folder_type})
            counter += 1
        return {"ui": {"images": results, "animated": (per_file != 1,)}}


class SaveAnimatedPNG:
    CATEGORY = "image/animation"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    folder_type = "output"

    def __init__(self):
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                             "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                             "compress_level": ("INT", {"default": 4, "min": 0, "max": 9})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, fps, compress_level, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        from PIL.PngImagePlugin import PngInfo

        ctx = current()
        out_dir = ctx.folders.output if self.folder_type == "output" else ctx.folders.temp
        folder, filename, counter, subfolder, _ = save_image_path(filename_prefix + self.prefix_append, out_dir,
                                                                  images[0].shape[1], images[0].shape[0])
        os.makedirs(folder, exist_ok=True)
        frames = [_to_pil(frame) for frame in images]
        info = None
        if not ctx.config.disable_metadata:
            # APNG keeps text chunks before the first frame only, so the workflow goes into private
            # "comf" chunks after the image data, each "key\0json" (what ComfyUI writes and reads).
            info = PngInfo()
            entries = []
            if prompt is not None:
                entries.append(("prompt", prompt))
            if isinstance(extra_pnginfo, dict):
                entries.extend(extra_pnginfo.items())
            for key, value in entries:
                info.add(b"comf", str(key).encode("latin-1") + b"\0" + json.dumps(value).encode("latin-1"),
                         after_idat=True)
        name = f"{filename}_{counter:05}_.png"
        frames[0].save(os.path.join(folder, name), format="PNG", pnginfo=info, compress_level=int(compress_level),
                       save_all=True, duration=int(1000.0 / fps), append_images=frames[1:])
        return {"ui": {"images": [{"filename": name, "subfolder": subfolder, "type": self.folder_type}],
                       "animated": (True,)}}


def _svg_documents(svg) -> list[str]:
    """The SVG documents of an SVG value: an object whose ``data`` is a list of BytesIO (ComfyUI's
    shape), or a str/bytes/BytesIO, or a list of those."""
    items = getattr(svg, "data", svg)
    if not isinstance(items, (list, tuple)):
        items = [items]
    documents = []
    for item in items:
        if hasattr(item, "getvalue"):
            item = item.getvalue()
        elif hasattr(item, "read"):
            item.seek(0)
            item = item.read()
        documents.append(item.decode("utf-8") if isinstance(item, (bytes, bytearray)) else str(item))
    return documents


class SaveSVGNode:
    CATEGORY = "image/save"
    RETURN_TYPES = ()
    FUNCTION = "save_svg"
    OUTPUT_NODE = True
    DESCRIPTION = "Writes SVG documents to the output folder."
    folder_type = "output"

    def __init__(self):
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"svg": ("SVG",),
                             "filename_prefix": ("STRING", {"default": "svg/ComfyUI", "tooltip":
                                                 "Prefix of the saved file names; it may name a subfolder and "
                                                 "use %date:yyyy-MM-dd% style substitutions."})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_svg(self, svg, filename_prefix="svg/ComfyUI", prompt=None, extra_pnginfo=None):
        ctx = current()
        out_dir = ctx.folders.output if self.folder_type == "output" else ctx.folders.temp
        folder, filename, counter, subfolder, _ = save_image_path(filename_prefix + self.prefix_append, out_dir)
        os.makedirs(folder, exist_ok=True)
        metadata = {}
        if not ctx.config.disable_metadata:
            if prompt is not None:
                metadata["prompt"] = prompt
            if isinstance(extra_pnginfo, dict):
                metadata.update(extra_pnginfo)
        block = ""
        if metadata:
            block = "\n  <metadata>\n    <![CDATA[\n" + json.dumps(metadata, indent=2) + "\n    ]]>\n  </metadata>\n"
        results = []
        for number, document in enumerate(_svg_documents(svg)):
            if block:  # right after the opening <svg ...> tag
                document = re.sub(r"(<svg[^>]*>)", lambda m: m.group(1) + block, document, count=1)
            name = f"{filename.replace('%batch_num%', str(number))}_{counter:05}_.svg"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(document.encode("utf-8"))
            results.append({"filename": name, "subfolder": subfolder, "type": self.folder_type})
            counter += 1
        return {"ui": {"images": results}}


class ImageStitch:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "stitch"
    DESCRIPTION = ("Places image2 next to image1 (right, below, left or above), optionally resizing it to "
                   "image1's height/width and separating the two with a coloured gap. Without image2, "
                   "image1 passes through.")
    COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0),
              "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE",),
                             "direction": (["right", "down", "left", "up"], {"default": "right"}),
                             "match_image_size": ("BOOLEAN", {"default": True}),
                             "spacing_width": ("INT", {"default": 0, "min": 0, "max": 1024, "step": 2}),
                             "spacing_color": (["white", "black", "red", "green", "blue"], {"default": "white"})},
                "optional": {"image2": ("IMAGE",)}}

    @staticmethod
    def _pad_centered(image, axis: int, size: int, value: float):
        import torch.nn.functional as F

        missing = size - image.shape[axis]
        if missing <= 0:
            return image
        before, after = missing // 2, missing - missing // 2
        pad = (0, 0, before, after) if axis == 2 else (0, 0, 0, 0, before, after)
        return F.pad(image, pad, mode="constant", value=value)

    def stitch(self, image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
        import torch

        if image2 is None:
            return (image1,)
        horizontal = direction in ("left", "right")
        batch = max(image1.shape[0], image2.shape[0])  # the shorter batch repeats its last image
        if image1.shape[0] < batch:
            image1 = torch.cat([image1, image1[-1:].repeat(batch - image1.shape[0], 1, 1, 1)])
        if image2.shape[0] < batch:
            image2 = torch.cat([image2, image2[-1:].repeat(batch - image2.shape[0], 1, 1, 1)])

        if match_image_size:
            h1, w1 = image1.shape[1:3]
            h2, w2 = image2.shape[1:3]
            if horizontal:
                size = (int(h1 * (w2 / h2)), h1)
            else:
                size = (w1, int(w1 / (w2 / h2)))
            image2 = _scale_image(image2, size[0], size[1], "lanczos")
        else:
            # Shapes across the seam must agree: pad the smaller one, centred. Named colours pad black.
            pad_value = 1.0 if spacing_color == "white" else 0.0
            axis = 1 if horizontal else 2
            size = max(image1.shape[axis], image2.shape[axis])
            image1 = self._pad_centered(image1, axis, size, pad_value)
            image2 = self._pad_centered(image2, axis, size, pad_value)

        channels = max(image1.shape[-1], image2.shape[-1])  # missing channels are filled with 1 (opaque)
        if image1.shape[-1] < channels:
            image1 = torch.cat([image1, torch.ones(*image1.shape[:-1], channels - image1.shape[-1],
                                                   device=image1.device)], dim=-1)
        if image2.shape[-1] < channels:
            image2 = torch.cat([image2, torch.ones(*image2.shape[:-1], channels - image2.shape[-1],
                                                   device=image2.device)], dim=-1)

        parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
        if spacing_width > 0:
            spacing_width += spacing_width % 2
            if horizontal:
                shape = (batch, max(image1.shape[1], image2.shape[1]), spacing_width, channels)
            else:
                shape = (batch, spacing_width, max(image1.shape[2], image2.shape[2]), channels)
            gap = torch.zeros(shape, device=image1.device)
            color = self.COLORS[spacing_color]
            for c in range(min(3, channels)):
                gap[..., c] = color[c]
            if channels == 4:
                gap[..., 3] = 1.0
            parts.insert(1, gap)
        return (torch.cat(parts, dim=2 if horizontal else 1),)


class ResizeAndPadImage:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "resize_and_pad"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "target_width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "target_height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
                             "padding_color": (["white", "black"],),
                             "interpolation": (["area", "bicubic", "nearest-exact", "bilinear", "lanczos"],)}}

    def resize_and_pad(self, image, target_width, target_height, padding_color, interpolation):
        import torch

        batch, height, width, channels = image.shape
        scale = min(target_width / width, target_height / height)
        new_w, new_h = int(width * scale), int(height * scale)
        resized = upscale(image.permute(0, 3, 1, 2), new_w, new_h, interpolation, "disabled")
        fill = 0.0 if padding_color == "black" else 1.0
        canvas = torch.full((batch, channels, target_height, target_width), fill, dtype=image.dtype,
                            device=image.device)
        top, left = (target_height - new_h) // 2, (target_width - new_w) // 2
        canvas[:, :, top:top + new_h, left:left + new_w] = resized
        return (canvas.permute(0, 2, 3, 1),)


class GetImageSize:
    CATEGORY = "image"
    RETURN_TYPES = ("INT", "INT", "INT")
    RETURN_NAMES = ("width", "height", "batch_size")
    FUNCTION = "get_size"
    DESCRIPTION = "Outputs the width, height and batch size of an image and shows them on the node."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    def get_size(self, image, unique_id=None):
        batch, height, width = int(image.shape[0]), int(image.shape[1]), int(image.shape[2])
        if unique_id:
            from hearth.engine.progress import send_text  # only while a prompt runs

            send_text(str(unique_id), f"width: {width}, height: {height}\n batch size: {batch}")
        return (width, height, batch)


class ImageRotate:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "rotate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "rotation": (["none", "90 degrees", "180 degrees", "270 degrees"],)}}

    def rotate(self, image, rotation):
        import torch

        return (torch.rot90(image, k=rotation_quarters(rotation), dims=[2, 1]),)


class ImageFlip:
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "flip"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "flip_method": (["x-axis: vertically", "y-axis: horizontally"],)}}

    def flip(self, image, flip_method):
        import torch

        if flip_method.startswith("x"):
            image = torch.flip(image, dims=[1])
        elif flip_method.startswith("y"):
            image = torch.flip(image, dims=[2])
        return (image,)


class ImageScaleToMaxDimension:
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    # ComfyUI lists "bilinear" twice; the list is kept as the frontend knows it.
    METHODS = ["area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",),
                             "upscale_method": (list(cls.METHODS),),
                             "largest_size": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    def upscale(self, image, upscale_method, largest_size):
        height, width = image.shape[1], image.shape[2]
        if height > width:
            width, height = round(width / height * largest_size), largest_size
        elif width > height:
            width, height = largest_size, round(height / width * largest_size)
        else:
            width = height = largest_size
        return (_scale_image(image, width, height, upscale_method),)


NODE_CLASS_MAPPINGS = {
    "ImageScale": ImageScale,
    "ImageScaleBy": ImageScaleBy,
    "ImageBatch": ImageBatch,
    "ImagePadForOutpaint": ImagePadForOutpaint,
    "LoadImageOutput": LoadImageOutput,
    "ImageCrop": ImageCrop,
    "RepeatImageBatch": RepeatImageBatch,
    "ImageFromBatch": ImageFromBatch,
    "ImageAddNoise": ImageAddNoise,
    "SaveAnimatedWEBP": SaveAnimatedWEBP,
    "SaveAnimatedPNG": SaveAnimatedPNG,
    "SaveSVGNode": SaveSVGNode,
    "ImageStitch": ImageStitch,
    "ResizeAndPadImage": ResizeAndPadImage,
    "GetImageSize": GetImageSize,
    "ImageRotate": ImageRotate,
    "ImageFlip": ImageFlip,
    "ImageScaleToMaxDimension": ImageScaleToMaxDimension,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageScale": "Upscale Image",
    "ImageScaleBy": "Upscale Image By",
    "ImageBatch": "Batch Images",
    "ImagePadForOutpaint": "Pad Image for Outpainting",
    "LoadImageOutput": "Load Image (from Outputs)",
    "ImageCrop": "Image Crop",
    "ImageStitch": "Image Stitch",
    "GetImageSize": "Get Image Size",
}
