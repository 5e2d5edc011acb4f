"""Alpha compositing nodes: Porter-Duff composition of two images with their alpha masks, and splitting
an RGBA image into RGB + mask or joining them back.

Masks here are ComfyUI masks, 1 - alpha: 1.0 marks a transparent pixel. torch is imported inside the
functions so the server starts without it.
"""
from __future__ import annotations

from hearth.nodes.builtin.utility import upscale

PYTHON_MODULE = "comfy_extras.nodes_compositing"

PORTER_DUFF_MODES = ["ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
                     "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR"]


def porter_duff(src, src_a, dst, dst_a, mode: str):
    """Compose straight-alpha colours ``src`` over/with ``dst`` ([..., C]) whose alphas are ``src_a`` /
    ``dst_a`` ([..., 1]); returns (straight-alpha colour, alpha)."""
    import torch

    s, d = src * src_a, dst * dst_a  # premultiplied
    union = src_a + dst_a - src_a * dst_a
    if mode == "ADD":
        alpha, color = torch.clamp(src_a + dst_a, 0, 1), torch.clamp(s + d, 0, 1)
    elif mode == "CLEAR":
        alpha, color = torch.zeros_like(dst_a), torch.zeros_like(d)
    elif mode == "DARKEN":
        alpha, color = union, (1 - dst_a) * s + (1 - src_a) * d + torch.minimum(s, d)
    elif mode == "DST":
        alpha, color = dst_a, d
    elif mode == "DST_ATOP":
        alpha, color = src_a, src_a * d + (1 - dst_a) * s
    elif mode == "DST_IN":
        alpha, color = src_a * dst_a, d * src_a
    elif mode == "DST_OUT":
        alpha, color = (1 - src_a) * dst_a, (1 - src_a) * d
    elif mode == "DST_OVER":
        alpha, color = dst_a + (1 - dst_a) * src_a, d + (1 - dst_a) * s
    elif mode == "LIGHTEN":
        alpha, color = union, (1 - dst_a) * s + (1 - src_a) * d + torch.maximum(s, d)
    elif mode == "MULTIPLY":
        alpha, color = src_a * dst_a, s * d
    elif mode == "OVERLAY":
        alpha = union
        color = torch.where(2 * d < dst_a, 2 * s * d, src_a * dst_a - 2 * (dst_a - s) * (src_a - d))
    elif mode == "SCREEN":
        alpha, color = union, s + d - s * d
    elif mode == "SRC":
        alpha, color = src_a, s
    elif mode == "SRC_ATOP":
        alpha, color = dst_a, dst_a * s + (1 - src_a) * d
    elif mode == "SRC_IN":
        alpha, color = src_a * dst_a, s * dst_a
    elif mode == "SRC_OUT":
        alpha, color = (1 - dst_a) * src_a, (1 - dst_a) * s
    elif mode == "SRC_OVER":
        alpha, color = src_a + (1 - src_a) * dst_a, s + (1 - src_a) * d
    elif mode == "XOR":
        alpha, color = (1 - dst_a) * src_a + (1 - src_a) * dst_a, (1 - dst_a) * s + (1 - src_a) * d
    else:
        raise ValueError(f"unknown Porter-Duff mode {mode!r}")
    color = torch.where(alpha > 1e-5, color / alpha, torch.zeros_like(color))
    return torch.clamp(color, 0, 1), alpha


def _fit_hwc(x, height: int, width: int):
    """Resize one [H, W, C] plane (bicubic, centre crop) to height x width."""
    return upscale(x.permute(2, 0, 1).unsqueeze(0), width, height, "bicubic", "center").squeeze(0).permute(1, 2, 0)


class PorterDuffImageComposite:
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = (None, None)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("IMAGE", {}), "source_alpha": ("MASK", {}),
                             "destination": ("IMAGE", {}), "destination_alpha": ("MASK", {}),
                             "mode": ("COMBO", {"default": "DST", "multiselect": False,
                                                "options": list(PORTER_DUFF_MODES)})}}

    def execute(self, source, source_alpha, destination, destination_alpha, mode):
        import torch

        count = min(len(source), len(source_alpha), len(destination), len(destination_alpha))
        images, masks = [], []
        for i in range(count):
            src, dst = source[i], destination[i]
            if src.shape[2] != dst.shape[2]:
                raise ValueError("source and destination must have the same number of channels")
            src_a = 1.0 - source_alpha[i].unsqueeze(2)
            dst_a = 1.0 - destination_alpha[i].unsqueeze(2)
            height, width = dst.shape[0], dst.shape[1]
            if dst_a.shape[:2] != dst.shape[:2]:
                dst_a = _fit_hwc(dst_a, height, width)
            if src.shape != dst.shape:
                src = _fit_hwc(src, height, width)
            if src_a.shape != dst_a.shape:
                src_a = _fit_hwc(src_a, dst_a.shape[0], dst_a.shape[1])
            color, alpha = porter_duff(src, src_a, dst, dst_a, mode)
            images.append(color)
            masks.append(1.0 - alpha.squeeze(2))
        return (torch.stack(images), torch.stack(masks))


class SplitImageWithAlpha:
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = (None, None)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {})}}

    def execute(self, image):
        import torch

        if image.shape[-1] > 3:
            alpha = image[..., 3]
        else:
            alpha = torch.ones_like(image[..., 0])
        return (image[..., :3], 1.0 - alpha)


class JoinImageWithAlpha:
    CATEGORY = "mask/compositing"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {}), "alpha": ("MASK", {})}}

    def execute(self, image, alpha):
        import torch

        count = min(len(image), len(alpha))
        mask = alpha.reshape((-1, 1, alpha.shape[-2], alpha.shape[-1]))
        mask = torch.nn.functional.interpolate(mask, size=(image.shape[1], image.shape[2]), mode="bilinear")
        opacity = 1.0 - mask[:count, 0].unsqueeze(-1)
        return (torch.cat((image[:count, ..., :3], opacity.to(image.dtype)), dim=-1),)


NODE_CLASS_MAPPINGS = {
    "PorterDuffImageComposite": PorterDuffImageComposite,
    "SplitImageWithAlpha": SplitImageWithAlpha,
    "JoinImageWithAlpha": JoinImageWithAlpha,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PorterDuffImageComposite": "Porter-Duff Image Composite",
    "SplitImageWithAlpha": "Split Image with Alpha",
    "JoinImageWithAlpha": "Join Image with Alpha",
}
