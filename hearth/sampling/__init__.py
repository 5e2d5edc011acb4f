"""Sampling: sigma schedules, samplers, noise, guidance — ComfyUI's names and semantics.

    model_sampling.py  noise parameterisations (discrete / distilled / continuous; eps, v, edm, x0, lcm, …)
    schedules.py       schedulers (simple, karras, normal, …, polyexponential, laplace, vp, table-driven)
    noise_tables.py    published noise-level tables (Align Your Steps, GITS, OptimalSteps)
    samplers.py        one function per sampler (euler … uni_pc), k-diffusion style
    noise.py           seeded noise exactly as ComfyUI draws it
    guidance.py        conditioning (areas, masks, timestep ranges) and classifier-free guidance
    ksampler.py        the one sampling mechanism: CFGGuider (GUIDER) + Sampler (SAMPLER) + sigmas;
                       KSampler = CFGGuider + sampler_object(name) + calculate_sigmas(...)
    custom.py          NOISE values, guider variants (basic, dual CFG, perp-neg), extra sampler functions
    latent_formats.py  latent formats a sampling patch can set (Playground v2.5)
    precision.py       the network's compute dtype (ModelComputeDtype)
"""
