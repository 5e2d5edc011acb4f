"""ComfyUI's ``latent_preview``: sampling callbacks that report progress and previews through
Hearth's engine (``report_progress``) with Hearth's previewers (``--preview-method``)."""
from __future__ import annotations

from hearth.compat import binding
from hearth.compat.shims_support import module_getattr, not_provided_class

MAX_PREVIEW_RESOLUTION = 512


def preview_to_image(latent_image):
    """An [H, W, 3] tensor in -1..1 as a PIL image."""
    import torch
    from PIL import Image

    ubyte = (((latent_image + 1.0) / 2.0).clamp(0, 1).mul(0xFF)).to(torch.uint8)
    return Image.fromarray(ubyte.cpu().numpy())


class LatentPreviewer:
    def decode_latent_to_preview(self, x0):
        raise NotImplementedError

    def decode_latent_to_preview_image(self, preview_format: str, x0):
        return preview_format, self.decode_latent_to_preview(x0), _preview_size()


class _Latent2RGB(LatentPreviewer):
    """Hearth's linear latent->RGB preview for a latent format."""

    def __init__(self, preview) -> None:
        self._preview = preview

    def decode_latent_to_preview(self, x0):
        return self._preview(x0)


Latent2RGBPreviewer = _Latent2RGB
TAESDPreviewerImpl = not_provided_class("latent_preview.TAESDPreviewerImpl", "TAESD previews are not in Hearth yet")


def _preview_size() -> int:
    return int(getattr(binding.app().config, "preview_size", MAX_PREVIEW_RESOLUTION))


class _FormatOnly:
    def __init__(self, latent_format) -> None:
        self.latent_format = latent_format


def get_previewer(device, latent_format):
    """A previewer for ``--preview-method`` (None when previews are off or the format has no projection)."""
    from hearth.runtime.preview import previewer_for

    app = binding.app()
    preview = previewer_for(_FormatOnly(latent_format), app.config, app.folders)
    return _Latent2RGB(preview) if preview is not None else None


def prepare_callback(model, steps: int, x0_output_dict=None):
    """callback(step, x0, x, total_steps) for a sampler: progress, preview, and x0 kept if asked."""
    from hearth.engine.progress import report_progress

    previewer = get_previewer(None, model.latent_format)
    size = _preview_size()

    def callback(step, x0, x, total_steps):
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        preview = None
        if previewer is not None:
            preview = ("JPEG", previewer.decode_latent_to_preview(x0), size)
        report_progress(step + 1, total_steps, preview)

    return callback


__getattr__ = module_getattr("latent_preview")
