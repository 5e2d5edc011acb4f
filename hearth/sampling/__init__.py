"""Sampling: sigma schedules, samplers, noise, guidance — ComfyUI's names and semantics.

    model_sampling.py  the discrete noise parameterisation (sigmas, timesteps, eps / v prediction)
    schedules.py       schedulers (simple, karras, normal, …)
    samplers.py        one function per sampler (euler … uni_pc), k-diffusion style
    noise.py           seeded noise exactly as ComfyUI draws it
    guidance.py        conditioning (areas, masks, timestep ranges) and classifier-free guidance
    ksampler.py        one KSampler run: schedule + noise + mask + guidance + sampler
"""
