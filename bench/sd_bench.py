"""Side-by-side parity of Hearth's Stable Diffusion runtime with ComfyUI on random-weight checkpoints.

    python bench/sd_bench.py --comfy /work/comfyui/ComfyUI --comfy-python /work/comfyui/venv/bin/python

It writes an SD1.5-compatible checkpoint with random weights (a real-size CLIP-L and VAE, which ComfyUI
needs, and a two-level UNet with SD1.5's widths, which ComfyUI detects as SD1.5), runs the same API-format
workflows through Hearth's engine and through ComfyUI's own executor (in its own Python), and reports the
largest absolute difference of the SaveLatent outputs per case, with the time each side took.

Nothing is downloaded. The checkpoint (~0.7 GB) is cached under --work. ComfyUI code is only run, never
copied. Use --cases to pick cases by substring, --quick for a handful.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
            "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
            "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
            "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
            "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
            "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde",
            "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]
SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
              "kl_optimal"]
CKPT = "bench_sd15.safetensors"
LORA = "bench_lora.safetensors"


def make_models(models: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from tests.runtime import tiny

    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    (models / "loras").mkdir(parents=True, exist_ok=True)
    path = models / "checkpoints" / CKPT
    if not path.exists():
        g = torch.Generator().manual_seed(2024)
        spec = tiny.UNetSpec(mc=320, mult=(1, 2), num_res=(1, 1), down_depth=(1, 0), middle_depth=1, context=768)
        sd = tiny.materialise(tiny.unet_shapes(spec), g, "model.diffusion_model.")
        sd.update(tiny.materialise(tiny.vae_shapes(ch=128, mult=(1, 2, 4, 4), num_res=2, z=4), g, "first_stage_model."))
        sd.update(tiny.materialise(tiny.hf_clip_shapes(hidden=768, layers=12, inner=3072), g,
                                   "cond_stage_model.transformer."))
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    lora = models / "loras" / LORA
    if not lora.exists():
        g = torch.Generator().manual_seed(7)
        out = {}
        for name, o, i in (("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320),
                           ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 320, 768),
                           ("lora_unet_output_blocks_3_1_proj_out", 320, 320),
                           ("lora_te_text_model_encoder_layers_3_self_attn_v_proj", 768, 768)):
            out[f"{name}.lora_down.weight"] = 0.05 * torch.randn((8, i), generator=g)
            out[f"{name}.lora_up.weight"] = 0.05 * torch.randn((o, 8), generator=g)
            out[f"{name}.alpha"] = torch.tensor(4.0)
        save_file(out, str(lora))


def t2i(sampler="euler", scheduler="karras", steps=5, cfg=6.5, seed=42, batch=1, text="a (red:1.3) cat, ((masterpiece))",
        negative="blurry, (ugly:0.8)", denoise=1.0, size=64):
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": cfg,
                                                   "sampler_name": sampler, "scheduler": scheduler,
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": denoise}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "bench/out"}},
    }


def cases(quick: bool) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for s in (["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc"] if quick else SAMPLERS):
        out[f"sampler:{s}"] = t2i(sampler=s)
    for sch in (["normal", "simple"] if quick else SCHEDULERS):
        out[f"scheduler:{sch}"] = t2i(sampler="euler", scheduler=sch)
    out["cfg1"] = t2i(cfg=1.0)
    out["batch2"] = t2i(batch=2, sampler="euler_ancestral")
    out["long_prompt"] = t2i(text="a photo of a cat sitting on a mat, " * 12)
    p = t2i(sampler="dpmpp_2m")
    p["6"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["1", 1], "stop_at_clip_layer": -2}}
    p["2"]["inputs"]["clip"] = ["6", 0]
    p["3"]["inputs"]["clip"] = ["6", 0]
    out["clip_skip"] = p
    p = t2i(sampler="dpmpp_2m")
    p["7"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["5", 0], "upscale_method": "bislerp",
                                                          "scale_by": 1.5}}
    p["8"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 3, "steps": 5, "cfg": 6.5,
                                                   "sampler_name": "dpmpp_2m", "scheduler": "karras",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["7", 0], "denoise": 0.55}}
    p["9"]["inputs"]["samples"] = ["8", 0]
    out["hires_fix"] = p
    p = t2i(sampler="euler")
    p["10"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
    p["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["1", 2]}}
    p["12"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 5, "steps": 5, "cfg": 6.5,
                                                    "sampler_name": "euler", "scheduler": "normal",
                                                    "positive": ["2", 0], "negative": ["3", 0],
                                                    "latent_image": ["11", 0], "denoise": 0.6}}
    p["9"]["inputs"]["samples"] = ["12", 0]
    out["img2img_vae_roundtrip"] = p
    p = t2i()
    p["13"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
    p["14"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["13", 0], "vae": ["1", 2]}}
    p["9"]["inputs"]["samples"] = ["14", 0]
    out["vae_decode_encode"] = p
    p = t2i(sampler="euler")
    p["15"] = {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": LORA,
                                                      "strength_model": 0.8, "strength_clip": 1.0}}
    p["5"]["inputs"]["model"] = ["15", 0]
    p["2"]["inputs"]["clip"] = ["15", 1]
    p["3"]["inputs"]["clip"] = ["15", 1]
    out["lora"] = p
    p = t2i(sampler="euler")
    p["16"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog", "clip": ["1", 1]}}
    p["17"] = {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["16", 0], "width": 64, "height": 64,
                                                               "x": 0, "y": 0, "strength": 1.0}}
    p["18"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["2", 0], "conditioning_2": ["17", 0]}}
    p["19"] = {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["18", 0], "start": 0.0,
                                                                        "end": 0.7}}
    p["20"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["19", 0], "conditioning_2": ["2", 0]}}
    p["5"]["inputs"]["positive"] = ["20", 0]
    out["conditioning_area_range"] = p
    p = t2i(sampler="euler", size=96)
    p["21"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["1", 0], "add_noise": "enable", "noise_seed": 8, "steps": 6, "cfg": 6.5, "sampler_name": "dpmpp_2m",
        "scheduler": "karras", "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
        "start_at_step": 2, "end_at_step": 5, "return_with_leftover_noise": "enable"}}
    p["9"]["inputs"]["samples"] = ["21", 0]
    out["ksampler_advanced"] = p
    return out


# --- running ---------------------------------------------------------------------------------------

def run_hearth(base: Path, prompts: dict[str, dict]) -> dict[str, tuple[str, float]]:
    import torch
    from safetensors.torch import load_file

    from hearth.config import Config
    from hearth.engine import CachePolicy, Engine, Interrupt
    from hearth.nodes.builtin import register_builtin_nodes
    from hearth.nodes.context import NodeContext, using
    from hearth.nodes.registry import NodeRegistry
    from hearth.paths import Folders

    cfg = Config(base_directory=base / "hearth", cpu=True)
    folders = Folders.from_config(cfg)
    folders.create()
    folders.add_model_path("checkpoints", base / "models" / "checkpoints", first=True)
    folders.add_model_path("loras", base / "models" / "loras", first=True)
    registry = NodeRegistry()
    register_builtin_nodes(registry)
    engine = Engine(registry, CachePolicy())
    ctx = NodeContext(cfg, folders, registry, {})
    results = {}
    with using(ctx):
        for name, prompt in prompts.items():
            prompt = json.loads(json.dumps(prompt))
            validation = engine.validate(prompt)
            assert validation.ok, (name, validation.error, validation.node_errors)
            t = time.perf_counter()
            outcome = engine.execute(name, prompt, {}, validation.outputs, lambda e: None, Interrupt())
            elapsed = time.perf_counter() - t
            if outcome.status != "success":
                results[name] = (None, elapsed, str(outcome.error))
                continue
            entry = outcome.outputs["9"]["latents"][0]
            path = folders.output / entry["subfolder"] / entry["filename"]
            results[name] = (str(path), elapsed, None)
    del torch, load_file
    return results


COMFY_DRIVER = textwrap.dedent('''
    import json, os, sys, time, asyncio
    comfy_dir, base, prompts_file, result_file = sys.argv[1:5]
    sys.path.insert(0, comfy_dir)
    os.chdir(comfy_dir)
    import comfy.options
    comfy.options.enable_args_parsing()
    sys.argv = ["main.py", "--cpu", "--output-directory", os.path.join(base, "comfy", "output"),
                "--disable-all-custom-nodes"]
    import folder_paths
    folder_paths.set_output_directory(os.path.join(base, "comfy", "output"))
    folder_paths.add_model_folder_path("checkpoints", os.path.join(base, "models", "checkpoints"), is_default=True)
    folder_paths.add_model_folder_path("loras", os.path.join(base, "models", "loras"), is_default=True)
    import execution, nodes

    class Server:
        client_id = None
        last_node_id = None
        def send_sync(self, *a, **k):
            pass

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    executor = execution.PromptExecutor(Server(), cache_type=False)
    prompts = json.load(open(prompts_file))
    results = {}
    for name, prompt in prompts.items():
        valid = asyncio.run(execution.validate_prompt(name, prompt, None))
        if not valid[0]:
            results[name] = [None, 0.0, json.dumps(valid[1])[:500]]
            continue
        t = time.perf_counter()
        executor.execute(prompt, name, {}, valid[2])
        elapsed = time.perf_counter() - t
        out = executor.history_result.get("outputs", {}).get("9")
        if not executor.success or not out:
            results[name] = [None, elapsed, "failed"]
            continue
        entry = out["latents"][0]
        results[name] = [os.path.join(folder_paths.get_output_directory(), entry["subfolder"], entry["filename"]),
                         elapsed, None]
    json.dump(results, open(result_file, "w"))
''')


def run_comfy(comfy: Path, python: str, base: Path, prompts: dict[str, dict]) -> dict:
    (base / "comfy" / "output").mkdir(parents=True, exist_ok=True)
    prompts_file = base / "prompts.json"
    prompts_file.write_text(json.dumps(prompts))
    driver = base / "comfy_driver.py"
    driver.write_text(COMFY_DRIVER)
    result_file = base / "comfy_results.json"
    proc = subprocess.run([python, str(driver), str(comfy), str(base), str(prompts_file), str(result_file)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ComfyUI driver failed:\n{proc.stderr[-4000:]}")
    return {k: tuple(v) for k, v in json.loads(result_file.read_text()).items()}


PARITY_TARGET = 1e-3  # max |Δ| / std of ComfyUI's latent, per case


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfy", default="/work/comfyui/ComfyUI")
    ap.add_argument("--comfy-python", default="/work/comfyui/venv/bin/python")
    ap.add_argument("--work", default=str(REPO / "bench" / "results" / "sd_bench"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases", nargs="*", default=None, help="only cases whose name contains one of these")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0 = default)")
    args = ap.parse_args(argv)

    base = Path(args.work).resolve()
    base.mkdir(parents=True, exist_ok=True)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    from safetensors.torch import load_file

    if args.threads:
        torch.set_num_threads(args.threads)
    make_models(base / "models")
    prompts = cases(args.quick)
    if args.cases:
        prompts = {k: v for k, v in prompts.items() if any(c in k for c in args.cases)}
    t = time.perf_counter()
    comfy = run_comfy(Path(args.comfy), args.comfy_python, base, prompts)
    comfy_total = time.perf_counter() - t
    t = time.perf_counter()
    hearth = run_hearth(base, prompts)
    hearth_total = time.perf_counter() - t

    print(f"{'case':34} {'max|Δ|':>10} {'mean|Δ|':>10} {'max|x|':>8} {'Δ/std':>9} {'comfy s':>8} {'hearth s':>8}")
    worst = worst_rel = 0.0
    over = []
    report = {}
    for name in prompts:
        cpath, ctime, cerr = comfy.get(name, (None, 0.0, "missing"))
        hpath, htime, herr = hearth.get(name, (None, 0.0, "missing"))
        if cerr or herr:
            print(f"{name:34} {'ERROR':>10}  comfy={cerr} hearth={herr}")
            report[name] = {"error": {"comfy": cerr, "hearth": herr}}
            continue
        a = load_file(cpath)["latent_tensor"].float()
        b = load_file(hpath)["latent_tensor"].float()
        if a.shape != b.shape:
            print(f"{name:34} shape {tuple(a.shape)} vs {tuple(b.shape)}")
            report[name] = {"error": "shape"}
            continue
        d = (a - b).abs()
        # the target: max |Δ| at most 1e-3 of the latent's standard deviation, per case
        rel = d.max().item() / max(a.std().item(), 1e-12)
        worst, worst_rel = max(worst, d.max().item()), max(worst_rel, rel)
        if rel > PARITY_TARGET:
            over.append(name)
        report[name] = {"max_abs_diff": d.max().item(), "mean_abs_diff": d.mean().item(),
                        "max_abs": a.abs().max().item(), "std": a.std().item(), "max_diff_over_std": rel,
                        "comfy_s": ctime, "hearth_s": htime}
        print(f"{name:34} {d.max().item():10.2e} {d.mean().item():10.2e} {a.abs().max().item():8.3f} {rel:9.2e} "
              f"{ctime:8.3f} {htime:8.3f}")
    print(f"\nworst max|Δ| {worst:.3e}; worst max|Δ|/std {worst_rel:.3e} (target <= {PARITY_TARGET:g}); "
          f"cases over the target: {', '.join(over) or 'none'}")
    print(f"wall time (incl. loading) comfy {comfy_total:.1f}s hearth {hearth_total:.1f}s")
    (base / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
