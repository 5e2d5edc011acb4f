"""Post-processing nodes: blend, blur, sharpen, colour quantisation, scale to a pixel count, and Canny
edge detection (in plain torch: no kornia).

IMAGE values are float32 [batch, height, width, channels] in 0..1. torch is imported inside the
functions so the server starts without it.
"""
from __future__ import annotations

import math

from hearth.nodes.builtin.utility import UPSCALE_METHODS, gaussian_kernel, match_alpha, upscale

PYTHON_MODULE = "comfy_extras.nodes_post_processing"
NODE_PYTHON_MODULES = {"Canny": "comfy_extras.nodes_canny"}


class _V3Image:
    """Shared class attributes of the nodes ComfyUI declares with its v3 schema."""
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "execute"


class ImageBlend(_V3Image):
    MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image1": ("IMAGE", {}), "image2": ("IMAGE", {}),
                             "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
                             "blend_mode": ("COMBO", {"multiselect": False, "options": list(cls.MODES)})}}

    @staticmethod
    def _mix(a, b, mode: str):
        import torch

        if mode == "normal":
            return b
        if mode == "multiply":
            return a * b
        if mode == "screen":
            return 1 - (1 - a) * (1 - b)
        if mode == "overlay":
            return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
        if mode == "soft_light":  # the W3C soft-light formula
            d = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))
            return torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (d - a))
        if mode == "difference":
            return a - b
        raise ValueError(f"Unsupported blend mode: {mode}")

    def execute(self, image1, image2, blend_factor, blend_mode):
        import torch

        image1, image2 = match_alpha(image1, image2)
        image2 = image2.to(image1.device)
        if image1.shape != image2.shape:
            image2 = upscale(image2.permute(0, 3, 1, 2), image1.shape[2], image1.shape[1], "bicubic",
                             "center").permute(0, 2, 3, 1)
        mixed = self._mix(image1, image2, blend_mode)
        return (torch.clamp(image1 * (1 - blend_factor) + mixed * blend_factor, 0, 1),)


def _filter(image, kernel, radius: int):
    """Convolve each channel of [B, H, W, C] with a 2-D kernel, reflecting ``radius`` pixels at the borders."""
    import torch.nn.functional as F

    channels = image.shape[-1]
    x = F.pad(image.permute(0, 3, 1, 2), (radius, radius, radius, radius), mode="reflect")
    weights = kernel.to(x.dtype).expand(channels, 1, kernel.shape[0], kernel.shape[1])
    return F.conv2d(x, weights, groups=channels).permute(0, 2, 3, 1)


class ImageBlur(_V3Image):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})}}

    def execute(self, image, blur_radius, sigma):
        if blur_radius == 0:
            return (image,)
        kernel = gaussian_kernel(blur_radius * 2 + 1, sigma, device=image.device)
        return (_filter(image, kernel, blur_radius),)


class ImageSharpen(_V3Image):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                             "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}),
                             "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01})}}

    def execute(self, image, sharpen_radius, sigma, alpha):
        import torch

        if sharpen_radius == 0:
            return (image,)
        size = sharpen_radius * 2 + 1
        # Unsharp mask as one kernel: a negative gaussian with the centre raised so the weights sum to 1.
        kernel = (gaussian_kernel(size, sigma, device=image.device) * -(alpha * 10)).to(image.dtype)
        centre = size // 2
        kernel[centre, centre] = kernel[centre, centre] - kernel.sum() + 1.0
        return (torch.clamp(_filter(image, kernel, sharpen_radius), 0, 1),)


def _bayer_thresholds(order: int):
    """order x order ordered-dither offsets, in -0.5..0.5 (the classic recursive Bayer matrix)."""
    import numpy as np

    index = np.zeros((1, 1), dtype=np.int64)
    while index.shape[0] < order:
        index = np.block([[4 * index, 4 * index + 2], [4 * index + 3, 4 * index + 1]])
    return (index + 0.5) / (order * order) - 0.5


class ImageQuantize(_V3Image):
    DITHERS = ["none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "colors": ("INT", {"default": 256, "min": 1, "max": 256, "step": 1}),
                             "dither": ("COMBO", {"multiselect": False, "options": list(cls.DITHERS)})}}

    @staticmethod
    def _ordered_dither(picture, palette, order: int):
        import numpy as np
        from PIL import Image

        spread = 2 * 256 / (len(palette.getpalette()) // 3)
        offsets = spread * _bayer_thresholds(order) + 0.5
        pixels = np.asarray(picture).astype(np.float32)
        h, w = pixels.shape[:2]
        tiled = np.tile(offsets, (math.ceil(h / order), math.ceil(w / order)))[:h, :w, None]
        dithered = np.clip(pixels + tiled, 0, 255).astype(np.uint8)
        return Image.fromarray(dithered).quantize(palette=palette, dither=Image.Dither.NONE)

    def execute(self, image, colors, dither):
        import numpy as np
        import torch
        from PIL import Image

        if dither not in self.DITHERS:
            raise ValueError(f"unknown dither {dither!r}")
        result = image.clone()
        for b in range(image.shape[0]):
            rgb = torch.clamp(image[b, ..., :3] * 255, 0, 255).to(torch.uint8).cpu().numpy()
            picture = Image.fromarray(rgb, mode="RGB")
            palette = picture.quantize(colors=colors)  # a palette image to map onto (Pillow issue 5836)
            if dither == "none":
                quantized = picture.quantize(palette=palette, dither=Image.Dither.NONE)
            elif dither == "floyd-steinberg":
                quantized = picture.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
            else:
                quantized = self._ordered_dither(picture, palette, int(dither.split("-")[-1]))
            values = torch.from_numpy(np.array(quantized.convert("RGB")).astype(np.float32) / 255.0)
            result[b, ..., :3] = values.to(result.dtype)
        return (result,)


class ImageScaleToTotalPixels(_V3Image):
    CATEGORY = "image/upscaling"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "upscale_method": ("COMBO", {"multiselect": False, "options": list(UPSCALE_METHODS)}),
                             "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01})}}

    def execute(self, image, upscale_method, megapixels):
        height, width = image.shape[1], image.shape[2]
        scale = math.sqrt(int(megapixels * 1024 * 1024) / (width * height))
        new_w, new_h = round(width * scale), round(height * scale)
        return (upscale(image.movedim(-1, 1), new_w, new_h, upscale_method, "disabled").movedim(1, -1),)


# --- Canny ----------------------------------------------------------------------------------------------
# Neighbour offsets (dy, dx) for gradient directions in 45 degree steps, 0 = +x, counting towards +y.
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def _shifted(x, dy: int, dx: int):
    """x[..., i + dy, j + dx] with zeros outside the image."""
    import torch.nn.functional as F

    padded = F.pad(x, (1, 1, 1, 1))
    h, w = x.shape[-2], x.shape[-1]
    return padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def canny(images, low_threshold: float, high_threshold: float):
    """Canny edges of [B, C, H, W] images (C = 1, 3 or 4) -> [B, 1, H, W] of 0/1.

    Luma (BT.601 weights), 5x5 gaussian blur (sigma 1, reflected borders), Sobel gradients (replicated
    borders), non-maximum suppression along the gradient rounded to 45 degrees, double threshold and
    hysteresis: weak edges survive when connected to strong ones.
    """
    import torch
    import torch.nn.functional as F

    if not 0 < low_threshold <= high_threshold < 1:
        raise ValueError(f"Canny thresholds must satisfy 0 < low <= high < 1 (got {low_threshold}, {high_threshold})")
    x = images
    if x.shape[1] >= 3:
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    elif x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    dtype = x.dtype

    taps = torch.exp(-(torch.arange(5, dtype=dtype) - 2) ** 2 / 2.0)
    taps = taps / taps.sum()
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), taps.view(1, 1, 1, 5))
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), taps.view(1, 1, 5, 1))

    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=dtype)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3))
    gy = F.conv2d(padded, sobel.t().contiguous().view(1, 1, 3, 3))
    magnitude = torch.sqrt(gx * gx + gy * gy + 1e-6)
    sector = torch.round(torch.atan2(gy, gx) * (4 / math.pi))

    # Non-maximum suppression: keep pixels larger than both neighbours along the gradient.
    rises = torch.cat([magnitude - _shifted(magnitude, dy, dx) for dy, dx in _DIRECTIONS], dim=1)
    forward = torch.gather(rises, 1, (sector % 8).long())
    backward = torch.gather(rises, 1, ((sector + 4) % 8).long())
    magnitude = magnitude * (torch.minimum(forward, backward) > 0)

    strong = magnitude > high_threshold
    weak = (magnitude > low_threshold) & ~strong
    while True:  # grow strong edges into touching weak pixels until nothing changes
        near = F.max_pool2d(strong.to(dtype), kernel_size=3, stride=1, padding=1) > 0
        grown = strong | (weak & near)
        if torch.equal(grown, strong):
            break
        weak = weak & ~grown
        strong = grown
    return strong.to(dtype)


class Canny:
    CATEGORY = "image/preprocessors"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}),
                             "low_threshold": ("FLOAT", {"default": 0.4, "min": 0.01, "max": 0.99, "step": 0.01}),
                             "high_threshold": ("FLOAT", {"default": 0.8, "min": 0.01, "max": 0.99, "step": 0.01})}}

    def execute(self, image, low_threshold, high_threshold):
        edges = canny(image.movedim(-1, 1), low_threshold, high_threshold)
        return (edges.repeat(1, 3, 1, 1).movedim(1, -1),)

    detect_edge = execute  # the function name older ComfyUI versions used


NODE_CLASS_MAPPINGS = {
    "ImageBlend": ImageBlend,
    "ImageBlur": ImageBlur,
    "ImageQuantize": ImageQuantize,
    "ImageSharpen": ImageSharpen,
    "ImageScaleToTotalPixels": ImageScaleToTotalPixels,
    "Canny": Canny,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
