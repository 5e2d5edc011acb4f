"""Model families: what the weights alone do not say.

A family fixes the latent format (scale factor, preview colours), the text encoders and how their output
is read (which layer, final norm or not, padding token), how the extra conditioning vector is built, and
the attention-head convention. SD3 and Flux slot in as further ``Family`` values with their own
``kind`` (the runtime dispatches on it when building the denoiser).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hearth.runtime.tokenizer import END_TOKEN


@dataclass(frozen=True)
class LatentFormat:
    scale_factor: float
    channels: int = 4
    rgb_factors: tuple = ()
    rgb_bias: tuple | None = None
    taesd_decoder: str | None = None

    def process_in(self, latent):
        return latent * self.scale_factor

    def process_out(self, latent):
        return latent / self.scale_factor


SD15_LATENT = LatentFormat(0.18215, rgb_factors=((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
                                                 (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)),
                           taesd_decoder="taesd_decoder")
SDXL_LATENT = LatentFormat(0.13025, rgb_factors=((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068),
                                                 (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)),
                           rgb_bias=(0.1084, -0.0175, -0.0011), taesd_decoder="taesdxl_decoder")


@dataclass(frozen=True)
class EncoderSpec:
    """How one text encoder's output is used."""

    name: str                     # clip_l | clip_h | clip_g (also the embedding key and the LoRA slot)
    layer_idx: int | None         # default layer: None = last (normed), negative = hidden state index
    final_norm_on_hidden: bool    # apply the final layer norm to an intermediate layer's output
    pad_token: int
    activation: str
    projected_pooled: bool = True


CLIP_L_SD1 = EncoderSpec("clip_l", None, True, END_TOKEN, "quick_gelu", projected_pooled=False)
CLIP_H_SD2 = EncoderSpec("clip_h", -2, True, 0, "gelu")
CLIP_L_SDXL = EncoderSpec("clip_l", -2, False, END_TOKEN, "quick_gelu")
CLIP_G_SDXL = EncoderSpec("clip_g", -2, False, 0, "gelu")


@dataclass(frozen=True)
class Family:
    name: str
    latent: LatentFormat
    encoders: tuple[EncoderSpec, ...]   # in the order their outputs are concatenated
    adm: str | None = None              # None | "sdxl" | "sdxl_refiner" | "unclip"
    num_head_channels: int = -1
    num_heads: int = -1
    kind: str = "unet"                  # unet (SD1/SD2/SDXL); later: mmdit (SD3), flux
    upcast_attention: bool = False
    extra: dict = field(default_factory=dict)


SD15 = Family("sd15", SD15_LATENT, (CLIP_L_SD1,), num_heads=8)
SD2 = Family("sd2", SD15_LATENT, (CLIP_H_SD2,), num_head_channels=64, upcast_attention=True)
# SD2.x unCLIP: an SD2 model whose class (ADM) input is a noise-augmented CLIP image embedding
SD2_UNCLIP = Family("sd2_unclip", SD15_LATENT, (CLIP_H_SD2,), adm="unclip", num_head_channels=64,
                    upcast_attention=True)
SDXL = Family("sdxl", SDXL_LATENT, (CLIP_L_SDXL, CLIP_G_SDXL), adm="sdxl", num_head_channels=64)
SDXL_REFINER = Family("sdxl_refiner", SDXL_LATENT, (CLIP_G_SDXL,), adm="sdxl_refiner", num_head_channels=64)

FAMILIES = {f.name: f for f in (SD15, SD2, SD2_UNCLIP, SDXL, SDXL_REFINER)}
