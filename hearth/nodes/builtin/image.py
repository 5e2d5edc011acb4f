"""Image nodes: EmptyImage, LoadImage, SaveImage, PreviewImage, ImageInvert.

IMAGE values are float32 tensors shaped [batch, height, width, channels] in 0..1; MASK values are
[batch, height, width]. torch is imported inside the functions so the server starts without it.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import string

from hearth.nodes.context import current
from hearth.paths import PathError, check_name, save_image_path

MAX_RESOLUTION = 16384
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".apng", ".jfif", ".avif",
                    ".mpo", ".ppm", ".pgm")


class EmptyImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
        }}

    def generate(self, width, height, batch_size=1, color=0):
        import torch

        rgb = torch.tensor([((color >> 16) & 0xFF) / 255.0, ((color >> 8) & 0xFF) / 255.0, (color & 0xFF) / 255.0],
                           dtype=torch.float32)
        return (rgb.expand(batch_size, height, width, 3).contiguous(),)


def _image_file_names(folder) -> list[str]:
    try:
        names = [f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))]
    except FileNotFoundError:
        return []
    return sorted(f for f in names if f.lower().endswith(IMAGE_EXTENSIONS))


def resolve_annotated(name: str):
    """'file.png', 'sub/file.png' or 'file.png [output]' -> a path inside its folder, or None."""
    from hearth.paths import safe_join

    folders = current().folders
    try:
        base_name, folder = folders.annotated(name)
        check_name(base_name)
        path = safe_join(folder, base_name)
    except PathError:
        return None
    return path if path.is_file() else None


def open_checked(path):
    """Image.open, refusing from the header alone any image larger than MAX_RESOLUTION on a side
    (a few KB of PNG can claim 20000x20000: gigabytes once decoded)."""
    from PIL import Image

    img = Image.open(path)
    width, height = img.size
    if width > MAX_RESOLUTION or height > MAX_RESOLUTION:
        img.close()
        raise ValueError(f"{os.path.basename(path)} is {width}x{height}; images larger than "
                         f"{MAX_RESOLUTION} pixels on a side are refused")
    return img


def load_image_tensors(path):
    """Every frame of an image file -> (IMAGE [n,h,w,3], MASK [n,h,w]). EXIF orientation, 16-bit,
    palette transparency and animated files are handled; frames of another size are skipped."""
    import numpy as np
    import torch
    from PIL import ImageOps, ImageSequence

    images, masks = [], []
    size = None
    with open_checked(path) as img:
        for frame in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            if size is None:
                size = rgb.size
            if rgb.size != size:
                continue
            images.append(torch.from_numpy(np.array(rgb).astype(np.float32) / 255.0))
            if "A" in frame.getbands():
                alpha = np.array(frame.getchannel("A")).astype(np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            elif frame.mode == "P" and "transparency" in frame.info:
                alpha = np.array(frame.convert("RGBA").getchannel("A")).astype(np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            else:
                masks.append(torch.zeros((64, 64), dtype=torch.float32))
            if img.format == "MPO":  # multi-picture JPEGs: the other pictures are not animation frames
                break
    if not images:
        raise ValueError(f"no frames could be read from {os.path.basename(path)}")
    if len(images) > 1:
        h, w = images[0].shape[:2]
        masks = [m if m.shape == (h, w) else torch.zeros((h, w)) for m in masks]
    return torch.stack(images), torch.stack(masks)


class LoadImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_image_file_names(current().folders.input), {"image_upload": True})}}

    def load_image(self, image):
        path = resolve_annotated(image)
        if path is None:
            raise FileNotFoundError(f"Invalid image file: {image}")
        return load_image_tensors(path)

    @classmethod
    def IS_CHANGED(cls, image):
        path = resolve_annotated(image)
        if path is None:
            return ""
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if not isinstance(image, str) or resolve_annotated(image) is None:
            return f"Invalid image file: {image}"
        return True


def _png_metadata(prompt, extra_pnginfo):
    from PIL.PngImagePlugin import PngInfo

    if current().config.disable_metadata:
        return None
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    if isinstance(extra_pnginfo, dict):
        for key, value in extra_pnginfo.items():
            info.add_text(str(key), json.dumps(value))
    return info


class SaveImage:
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    DESCRIPTION = "Saves the input images to the output folder."
    folder_type = "output"
    compress_level = 4

    def __init__(self):
        self.prefix_append = ""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to save."}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip":
                                                 "Prefix of the saved file names; may contain a subfolder and "
                                                 "%date:yyyy-MM-dd% style or %width%/%height% substitutions."})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def _folder(self):
        folders = current().folders
        return folders.output if self.folder_type == "output" else folders.temp

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        import numpy as np
        from PIL import Image

        filename_prefix = filename_prefix + self.prefix_append
        out_dir = self._folder()
        counters = current().folders.save_counters
        folder, filename, counter, subfolder, _ = save_image_path(filename_prefix, out_dir, images[0].shape[1],
                                                                  images[0].shape[0], counters)
        os.makedirs(folder, exist_ok=True)
        metadata = _png_metadata(prompt, extra_pnginfo)
        results = []
        for batch_number, image in enumerate(images):
            array = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
            if array.ndim == 3 and array.shape[2] == 1:
                array = array[:, :, 0]
            img = Image.fromarray(array)
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            img.save(os.path.join(folder, name), pnginfo=metadata, compress_level=self.compress_level)
            results.append({"filename": name, "subfolder": subfolder, "type": self.folder_type})
            counter += 1
        counters.saved(folder, filename, counter)
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    DESCRIPTION = "Shows the input images; they are kept in the temp folder."
    folder_type = "temp"
    compress_level = 1

    def __init__(self):
        self.prefix_append = "_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}


class ImageInvert:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image):
        return (1.0 - image,)


NODE_CLASS_MAPPINGS = {
    "EmptyImage": EmptyImage,
    "LoadImage": LoadImage,
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
    "ImageInvert": ImageInvert,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadImage": "Load Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "ImageInvert": "Invert Image",
}
