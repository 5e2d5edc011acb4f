"""The Stable Diffusion model runtime: loading weights into MODEL / CLIP / VAE values and running them.

    files.py      safe weight-file reading (lazy safetensors; weights-only pickles, others refused)
    arch.py       architectures inferred from key names and shapes; original → library key maps
    families.py   what the weights do not say: latent format, text encoders, conditioning vector
    loader.py     family detection and building networks (diffusers UNet/VAE, our CLIP text model)
    model.py      MODEL: denoiser + noise parameterisation + conditioning inputs
    text.py       CLIP: tokenization, prompt weights, chunks, clip skip, embeddings
    tokenizer.py  CLIP BPE (bundled merges) and ComfyUI's prompt syntax
    vae.py        VAE: encode/decode, tiled, out-of-memory fallback
    patcher.py    shared modules with per-value weight patches (LoRA), undone without reloading
    merge.py      model / text encoder merges as patches (ComfyUI's model merging nodes)
    save.py       MODEL / CLIP / VAE back to files in the original key layouts
    lora.py       LoRA/LoCon/LoHa/LoKr adapters and key naming conventions
    memory.py     ModelManager: devices, precision, load/unload (services["model_manager"])
    preview.py    sampling previews (latent2rgb, TAESD)

Nothing here is imported at server start; node functions import it when a model node runs.
"""
