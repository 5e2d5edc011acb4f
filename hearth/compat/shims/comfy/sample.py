"""ComfyUI's ``comfy.sample``: seeded noise and KSampler runs over Hearth's sampling."""
from __future__ import annotations

from hearth.compat.shims_support import module_getattr


def prepare_noise(latent_image, seed: int, noise_inds=None):
    from hearth.sampling.noise import prepare_noise as hearth_prepare_noise

    return hearth_prepare_noise(latent_image, seed, noise_inds)


def fix_empty_latent_channels(model, latent_image):
    """An all-zero latent with the wrong channel count becomes the model's (as KSampler does)."""
    import torch

    from hearth.sampling.guidance import repeat_to_batch_size

    channels = model.latent_format.channels
    if latent_image.shape[1] != channels and torch.count_nonzero(latent_image) == 0:
        latent_image = repeat_to_batch_size(latent_image, channels, dim=1)
    return latent_image


def sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0,
           disable_noise=False, start_step=None, last_step=None, force_full_denoise=False, noise_mask=None,
           sigmas=None, callback=None, disable_pbar=False, seed=None):
    from hearth.sampling.ksampler import ksample, sample_with_sigmas

    if sigmas is not None:
        return sample_with_sigmas(model, noise, positive, negative, cfg, sampler_name, sigmas, latent_image,
                                  noise_mask=noise_mask, callback=callback, seed=seed).cpu()
    return ksample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                   denoise=denoise, start_step=start_step, last_step=last_step,
                   force_full_denoise=force_full_denoise, noise_mask=noise_mask, callback=callback,
                   seed=seed).cpu()


def sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, latent_image, noise_mask=None,
                  callback=None, disable_pbar=False, seed=None):
    from hearth.sampling.ksampler import guided_sample

    return guided_sample(model, noise, positive, negative, cfg, None, sampler, sigmas, latent_image=latent_image,
                         denoise_mask=noise_mask, callback=callback, disable_pbar=disable_pbar, seed=seed).cpu()


def cleanup_additional_models(models) -> None:
    return None  # Hearth keeps no per-sampling extra models to release


__getattr__ = module_getattr("comfy.sample")
