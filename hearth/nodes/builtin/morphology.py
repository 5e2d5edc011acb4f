"""Morphology (erode, dilate, open, close, gradient, top/bottom hat with a square kernel) and the
RGB <-> YUV (JPEG YCbCr) split and merge nodes, in plain torch: no kornia.

IMAGE values are float32 [batch, height, width, channels] in 0..1. torch is imported inside the
functions so the server starts without it.
"""
from __future__ import annotations

PYTHON_MODULE = "comfy_extras.nodes_morphology"


def _window_max(x, size: int):
    """Max over a size x size window of [B, C, H, W]; pixels outside the image are ignored. For even
    sizes the window reaches one pixel further up/left than down/right."""
    import torch.nn.functional as F

    before, after = size // 2, size - size // 2 - 1
    padded = F.pad(x, (before, after, before, after), value=float("-inf"))
    # A square window is a row window followed by a column window: O(size) per pixel, not O(size^2).
    rows = F.max_pool2d(padded, kernel_size=(1, size), stride=1)
    return F.max_pool2d(rows, kernel_size=(size, 1), stride=1)


def dilate(x, size: int):
    return _window_max(x, size)


def erode(x, size: int):
    return -_window_max(-x, size)


class Morphology:
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "execute"
    OPERATIONS = ["erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "operation": ("COMBO", {"multiselect": False, "options": list(cls.OPERATIONS)}),
                             "kernel_size": ("INT", {"default": 3, "min": 3, "max": 999, "step": 1})}}

    def execute(self, image, operation, kernel_size):
        x = image.movedim(-1, 1)
        k = int(kernel_size)
        if operation == "erode":
            out = erode(x, k)
        elif operation == "dilate":
            out = dilate(x, k)
        elif operation == "open":
            out = dilate(erode(x, k), k)
        elif operation == "close":
            out = erode(dilate(x, k), k)
        elif operation == "gradient":
            out = dilate(x, k) - erode(x, k)
        elif operation == "top_hat":
            out = x - dilate(erode(x, k), k)
        elif operation == "bottom_hat":
            out = erode(dilate(x, k), k) - x
        else:
            raise ValueError(f"Invalid morphology operation {operation!r}; expected one of {self.OPERATIONS}")
        return (out.movedim(1, -1),)


class ImageRGBToYUV:
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE")
    RETURN_NAMES = ("Y", "U", "V")
    OUTPUT_TOOLTIPS = (None, None, None)
    FUNCTION = "execute"
    DESCRIPTION = "Splits an RGB image into its Y, Cb and Cr planes, each shown as a gray image."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {})}}

    def execute(self, image):
        r, g, b = image[..., 0:1], image[..., 1:2], image[..., 2:3]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        u = (b - y) * 0.564 + 0.5
        v = (r - y) * 0.713 + 0.5
        return (y.expand_as(image), u.expand_as(image), v.expand_as(image))


class ImageYUVToRGB:
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "execute"
    DESCRIPTION = "Merges Y, Cb and Cr planes (the mean of each input's channels) back into an RGB image."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"Y": ("IMAGE", {}), "U": ("IMAGE", {}), "V": ("IMAGE", {})}}

    def execute(self, Y, U, V):
        import torch

        y = Y.mean(dim=-1, keepdim=True)
        u = U.mean(dim=-1, keepdim=True) - 0.5
        v = V.mean(dim=-1, keepdim=True) - 0.5
        rgb = torch.cat((y + 1.403 * v, y - 0.714 * v - 0.344 * u, y + 1.773 * u), dim=-1)
        return (rgb.clamp(0, 1),)


NODE_CLASS_MAPPINGS = {
    "Morphology": Morphology,
    "ImageRGBToYUV": ImageRGBToYUV,
    "ImageYUVToRGB": ImageYUVToRGB,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "Morphology": "ImageMorphology",
}
