"""ComfyUI's ``comfy.samplers``: the sampler and scheduler names Hearth offers (lists packs put in
their INPUT_TYPES, read without importing torch) and ``KSampler`` over Hearth's sampling
(``hearth.sampling.ksampler``)."""
from __future__ import annotations

from hearth.compat.shims_support import module_getattr
from hearth.sampling.names import KSAMPLER_NAMES, SAMPLER_NAMES, SCHEDULER_NAMES

KSAMPLER_NAMES = list(KSAMPLER_NAMES)
SAMPLER_NAMES = list(SAMPLER_NAMES)
SCHEDULER_NAMES = list(SCHEDULER_NAMES)


def calculate_sigmas(model_sampling, scheduler_name: str, steps: int):
    from hearth.sampling.schedules import calculate_sigmas as hearth_calculate_sigmas

    return hearth_calculate_sigmas(model_sampling, scheduler_name, steps)


class KSampler:
    """ComfyUI's KSampler object: sigmas for (steps, scheduler, denoise), then ``sample``."""

    SCHEDULERS = SCHEDULER_NAMES
    SAMPLERS = SAMPLER_NAMES
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = {"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"}

    def __init__(self, model, steps: int, device=None, sampler=None, scheduler=None, denoise=None,
                 model_options=None):
        if sampler not in SAMPLER_NAMES:
            sampler = SAMPLER_NAMES[0]
        if scheduler not in SCHEDULER_NAMES:
            scheduler = SCHEDULER_NAMES[0]
        self.model = model
        self.device = device
        self.sampler = sampler
        self.scheduler = scheduler
        self.model_options = dict(model_options or {})
        self.set_steps(steps, denoise)

    def calculate_sigmas(self, steps: int):
        from hearth.sampling.ksampler import calculate_sigmas as hearth_calculate_sigmas

        return hearth_calculate_sigmas(self.model.model_sampling, self.sampler, self.scheduler, steps, 1.0)

    def set_steps(self, steps: int, denoise=None) -> None:
        from hearth.sampling.ksampler import calculate_sigmas as hearth_calculate_sigmas

        self.steps = steps
        self.sigmas = hearth_calculate_sigmas(self.model.model_sampling, self.sampler, self.scheduler, steps,
                                              1.0 if denoise is None else denoise)

    def sample(self, noise, positive, negative, cfg, latent_image=None, start_step=None, last_step=None,
               force_full_denoise=False, denoise_mask=None, sigmas=None, callback=None, disable_pbar=False,
               seed=None):
        from hearth.sampling.ksampler import sample_with_sigmas, step_range

        sigmas = step_range(self.sigmas if sigmas is None else sigmas, start_step, last_step, force_full_denoise)
        if sigmas is None:
            return latent_image
        # as in ComfyUI, the run uses the model's own model_options (patches), not KSampler's
        return sample_with_sigmas(self.model, noise, positive, negative, cfg, self.sampler, sigmas, latent_image,
                                  noise_mask=denoise_mask, callback=callback, seed=seed)


def _ksampler_attr(name: str):
    def get():
        from hearth.sampling import ksampler

        return getattr(ksampler, name)

    return get


def _guidance_attr(name: str):
    def get():
        from hearth.sampling import guidance

        return getattr(guidance, name)

    return get


# Hearth's one sampling mechanism (hearth.sampling.ksampler), loaded on first use so that importing this
# module stays torch-free: CFGGuider (packs subclass it), KSAMPLER/Sampler objects, sampler_object/ksampler,
# sample(), and the guidance helpers custom guiders call.
__getattr__ = module_getattr("comfy.samplers", {
    "CFGGuider": _ksampler_attr("CFGGuider"),
    "KSAMPLER": _ksampler_attr("Sampler"),
    "Sampler": _ksampler_attr("Sampler"),
    "KSamplerX0Inpaint": _ksampler_attr("Denoiser"),
    "sampler_object": _ksampler_attr("sampler_object"),
    "ksampler": _ksampler_attr("ksampler"),
    "sample": _ksampler_attr("guided_sample"),
    "calc_cond_batch": _guidance_attr("calc_cond_batch"),
    "cfg_function": _guidance_attr("cfg_function"),
    "sampling_function": _guidance_attr("sampling_function"),
    "encode_model_conds": _guidance_attr("encode_model_conds"),
})
