"""Sampling previews: TAESD (when its decoder is in models/vae_approx) or a linear latent→RGB projection.

``--preview-method`` none | auto | latent2rgb | taesd. ``auto`` means latent2rgb (as ComfyUI 0.3.64);
``taesd`` uses ``taesd_decoder.*`` (SD1/SD2) or ``taesdxl_decoder.*`` (SDXL) and falls back to
latent2rgb when the file is absent.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_taesd_cache: dict = {}


def _taesd_decoder(latent_channels: int = 4):
    """The Tiny AutoEncoder for SD decoder (Bohan Ou, MIT): a small conv stack, 8× upsampling."""
    import torch
    from torch import nn

    class Clamp(nn.Module):
        def forward(self, x):
            return torch.tanh(x / 3) * 3

    class Block(nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(n_in, n_out, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(n_out, n_out, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(n_out, n_out, 3, padding=1))
            self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
            self.fuse = nn.ReLU()

        def forward(self, x):
            return self.fuse(self.conv(x) + self.skip(x))

    def conv(a, b, **kw):
        return nn.Conv2d(a, b, 3, padding=1, **kw)

    layers = [Clamp(), conv(latent_channels, 64), nn.ReLU()]
    for _ in range(3):
        layers += [Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False)]
    layers += [Block(64, 64), conv(64, 3)]
    return nn.Sequential(*layers)


def _load_taesd(folders, name: str):
    if folders is None:
        return None
    folder = folders.folder("vae_approx")
    if folder is None:
        return None
    matches = [f for f in folders.filenames("vae_approx") if f.startswith(name + ".")]
    if not matches:
        return None
    path = folders.full_path("vae_approx", matches[0])
    key = str(path)
    if key not in _taesd_cache:
        from hearth.runtime.files import load_state_dict

        try:
            decoder = _taesd_decoder()
            decoder.load_state_dict(dict(load_state_dict(path)))
            _taesd_cache[key] = decoder.eval().requires_grad_(False)
        except Exception as exc:  # a bad preview file must not break sampling
            log.warning("TAESD decoder %s not usable: %s", matches[0], exc)
            _taesd_cache[key] = None
    return _taesd_cache[key]


def previewer_for(model, config, folders=None):
    """A function x0 (model-space latent batch) → PIL image, or None when previews are off."""
    method = getattr(config, "preview_method", "none")
    if method == "none":
        return None
    import torch

    fmt = model.latent_format
    if method == "taesd" and fmt.taesd_decoder:
        decoder = _load_taesd(folders, fmt.taesd_decoder)
        if decoder is not None:
            def taesd_preview(x0):
                from PIL import Image

                with torch.inference_mode():
                    x = decoder(x0[:1].detach().float().cpu())[0].clamp(0, 1)
                return Image.fromarray((x.movedim(0, -1) * 255).to(torch.uint8).numpy())

            return taesd_preview
    if not fmt.rgb_factors:
        return None
    factors = torch.tensor(fmt.rgb_factors).transpose(0, 1)
    bias = torch.tensor(fmt.rgb_bias) if fmt.rgb_bias else None

    def preview(x0):
        from PIL import Image

        x = x0[0].detach().float().cpu()
        rgb = torch.nn.functional.linear(x.movedim(0, -1), factors, bias)
        ubyte = (((rgb + 1.0) / 2.0).clamp(0, 1) * 255).to(torch.uint8)
        return Image.fromarray(ubyte.numpy())

    return preview
