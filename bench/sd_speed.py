"""Stable Diffusion speed and memory side by side with ComfyUI, on one full-size random-weight SD1.5 checkpoint.

    python bench/sd_speed.py --comfy /work/comfyui/ComfyUI --comfy-python /work/comfyui/venv/bin/python

Both servers' executors run the same API-format workflows, each side in a fresh process of its own (its own
Python and torch), alternating Hearth, ComfyUI, Hearth, ... for --rounds rounds. Figures, from the wall time of
whole prompts (so lazy work is counted wherever it happens):

- checkpoint load: time to the first sampler step of the first prompt (load + text encode + setup) minus the
  same for the next prompt, which has a new text (the encoder runs again, nothing is loaded);
- seconds per step at 64² and 256² (cfg 7, so two network evaluations per step): the median time between
  consecutive progress events of one sampler run (its first step, with the setup, left out);
- VAE decode at 256²: the VAEDecode node's time in a prompt whose sampler is cached;
- peak RSS of the process (ru_maxrss) at the end.

``--preimport`` imports Hearth's model code (diffusers, transformers) before the first prompt, as ComfyUI does
at start-up; without it Hearth's first load includes those imports (~6 s here), which it defers to keep start-up
fast and idle memory low.

``--threads N`` sets torch's threads on both sides (OMP_NUM_THREADS): with other work on the machine,
one thread per side is far steadier than two threads fighting for two cores.

The checkpoint is an SD1.5 single file in the original key layout with random fp16 weights at full size
(UNet 860M, CLIP-L, VAE), written once under --work (~2 GB). Nothing is downloaded; ComfyUI code is only run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CKPT = "speed_sd15.safetensors"
TARGETS = {"load_s": 0.5, "s_per_it_64": 0.8, "s_per_it_256": 0.8, "peak_rss_mib": 0.8}


def make_checkpoint(models: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    from tests.runtime import tiny

    path = models / "checkpoints" / CKPT
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1505)
    spec = tiny.UNetSpec(mc=320, mult=(1, 2, 4, 4), num_res=(2, 2, 2, 2), down_depth=(1, 1, 1, 0), middle_depth=1,
                         context=768)
    sd = tiny.materialise(tiny.unet_shapes(spec), g, "model.diffusion_model.")
    sd.update(tiny.materialise(tiny.vae_shapes(ch=128, mult=(1, 2, 4, 4), num_res=2, z=4), g, "first_stage_model."))
    sd.update(tiny.materialise(tiny.hf_clip_shapes(hidden=768, layers=12, inner=3072), g,
                               "cond_stage_model.transformer."))
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    tmp = path.with_suffix(".tmp")
    save_file(sd, str(tmp))
    tmp.rename(path)
    return path


def t2i(text: str, steps: int, size: int, seed: int = 1, decode: bool = False) -> dict:
    p = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "speed/out"}},
    }
    if decode:
        p["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}}
        p["7"] = {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}}
    return p


def workflows(steps64: int, steps256: int) -> dict[str, dict]:
    return {
        "cold": t2i("a cat", 1, 64),
        "warm": t2i("a dog", 1, 64),
        "s64": t2i("a cat", steps64, 64, seed=2),
        "s256": t2i("a cat", steps256, 256, seed=3),
        "decode256": t2i("a cat", steps256, 256, seed=3, decode=True),
    }


def _first_progress(events: list) -> float:
    start = events[0][0]
    return next(t for t, kind, _ in events if kind == "progress") - start


def _step_time(events: list) -> float:
    """Median time between consecutive sampler steps (the first step, which includes setup, left out)."""
    ticks = [t for t, kind, _ in events if kind == "progress"]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    return statistics.median(gaps)


def _node_time(events: list, node: str) -> float:
    for i, (t, kind, n) in enumerate(events):
        if kind == "executing" and n == node:
            later = [t2 for t2, k2, _ in events[i + 1:] if k2 == "executing"]
            return later[0] - t
    raise KeyError(node)


def figures(res: dict) -> dict[str, float]:
    ev = res["events"]
    return {
        "load_s": _first_progress(ev["cold"]) - _first_progress(ev["warm"]),
        "first_prompt_s": res["times"]["cold"],
        "s_per_it_64": _step_time(ev["s64"]),
        "s_per_it_256": _step_time(ev["s256"]),
        "vae_decode_256_s": _node_time(ev["decode256"], "6"),
        "peak_rss_mib": res["rss_mib"],
    }


_COMMON = '''
import json, os, resource, sys, time
'''

HEARTH_DRIVER = _COMMON + textwrap.dedent('''
    repo, base, prompts_file, result_file = sys.argv[1:5]
    sys.path.insert(0, repo)
    from pathlib import Path
    from hearth.config import Config
    from hearth.engine import CachePolicy, Engine, Interrupt
    from hearth.nodes.builtin import register_builtin_nodes
    from hearth.nodes.context import NodeContext, using
    from hearth.nodes.registry import NodeRegistry
    from hearth.paths import Folders

    cfg = Config(base_directory=Path(base) / "hearth", cpu=True)
    folders = Folders.from_config(cfg)
    folders.create()
    folders.add_model_path("checkpoints", Path(base) / "models" / "checkpoints", first=True)
    registry = NodeRegistry()
    register_builtin_nodes(registry)
    engine = Engine(registry, CachePolicy())
    services = {}  # the model manager is created on first use
    if os.environ.get("SD_SPEED_PREIMPORT"):  # as ComfyUI, which imports its model code at start-up
        import diffusers.models.autoencoders.autoencoder_kl  # noqa: F401
        import diffusers.models.unets.unet_2d_condition  # noqa: F401
        import transformers.models.clip.modeling_clip  # noqa: F401
    times, events = {}, {}

    def recorder(log):
        def emit(e):
            kind = type(e).__name__
            if kind == "Executing":
                log.append((time.perf_counter(), "executing", e.node))
            elif kind == "Progress":
                log.append((time.perf_counter(), "progress", e.node))
        return emit

    with using(NodeContext(cfg, folders, registry, services)):
        for name, prompt in json.load(open(prompts_file)).items():
            v = engine.validate(prompt)
            assert v.ok, (name, v.error, v.node_errors)
            log = events[name] = []
            t = time.perf_counter()
            log.append((t, "start", None))
            outcome = engine.execute(name, prompt, {}, v.outputs, recorder(log), Interrupt())
            times[name] = time.perf_counter() - t
            assert outcome.status == "success", (name, outcome.error)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump({"times": times, "events": events, "rss_mib": rss}, open(result_file, "w"))
''')

COMFY_DRIVER = _COMMON + textwrap.dedent('''
    import asyncio
    comfy_dir, base, prompts_file, result_file = sys.argv[1:5]
    sys.path.insert(0, comfy_dir)
    os.chdir(comfy_dir)
    import comfy.options
    comfy.options.enable_args_parsing()
    sys.argv = ["main.py", "--cpu", "--output-directory", os.path.join(base, "comfy", "output"),
                "--temp-directory", os.path.join(base, "comfy"), "--disable-all-custom-nodes"]
    import folder_paths
    folder_paths.set_output_directory(os.path.join(base, "comfy", "output"))
    folder_paths.set_temp_directory(os.path.join(base, "comfy", "temp"))
    folder_paths.add_model_folder_path("checkpoints", os.path.join(base, "models", "checkpoints"), is_default=True)
    import execution, nodes

    log = []

    class Server:
        client_id = None
        last_node_id = None
        def send_sync(self, event, data, sid=None):
            if event in ("executing", "progress") and isinstance(data, dict):
                log.append((time.perf_counter(), event, data.get("node")))

    import comfy.utils

    def progress_hook(value, total, preview_image, prompt_id=None, node_id=None):
        log.append((time.perf_counter(), "progress", node_id))

    comfy.utils.set_progress_bar_global_hook(progress_hook)  # what ComfyUI's main.py installs
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    executor = execution.PromptExecutor(Server(), cache_type=False)
    times, events = {}, {}
    for name, prompt in json.load(open(prompts_file)).items():
        valid = asyncio.run(execution.validate_prompt(name, prompt, None))
        assert valid[0], (name, valid[1])
        log.clear()
        t = time.perf_counter()
        log.append((t, "start", None))
        executor.execute(prompt, name, {"client_id": "bench"}, valid[2])
        events[name] = list(log)
        times[name] = time.perf_counter() - t
        assert executor.success, name
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump({"times": times, "events": events, "rss_mib": rss}, open(result_file, "w"))
''')


FLOOR_DRIVER = textwrap.dedent('''
    import math, sys, time, torch
    from safetensors import safe_open
    with safe_open(sys.argv[1], framework="pt") as f:
        n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    t = time.perf_counter()
    torch.empty(n, dtype=torch.float32).fill_(0)
    print(time.perf_counter() - t, n)
''')


def fault_floor(python: str, ckpt: Path) -> float:
    """Seconds to first-touch float32 memory for every weight of the checkpoint (both sides must, on the CPU).

    Loading for fp32 compute writes that much fresh memory whatever else it does, so this is a floor for
    either server's load time on this machine.
    """
    proc = subprocess.run([python, "-c", FLOOR_DRIVER, str(ckpt)], capture_output=True, text=True, check=True)
    return float(proc.stdout.split()[0])


def run_side(label: str, python: str, driver_text: str, first_arg: str, base: Path, prompts: dict) -> dict:
    work = base / label
    work.mkdir(parents=True, exist_ok=True)
    (work / "prompts.json").write_text(json.dumps(prompts))
    driver = work / "driver.py"
    driver.write_text(driver_text)
    result = work / "result.json"
    result.unlink(missing_ok=True)
    proc = subprocess.run([python, str(driver), first_arg, str(base), str(work / "prompts.json"), str(result)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} driver failed:\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfy", default="/work/comfyui/ComfyUI")
    ap.add_argument("--comfy-python", default="/work/comfyui/venv/bin/python")
    ap.add_argument("--no-comfy", action="store_true", help="Hearth alone")
    ap.add_argument("--work", default=str(REPO / "bench" / "results" / "sd_speed"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps64", type=int, default=8)
    ap.add_argument("--steps256", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: torch's default)")
    ap.add_argument("--preimport", action="store_true", help="Hearth imports its model code before the first prompt")
    ap.add_argument("--json", default=None, help="write every round's figures here")
    args = ap.parse_args(argv)

    base = Path(args.work).resolve()
    ckpt = make_checkpoint(base / "models")
    prompts = workflows(args.steps64, args.steps256)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    if args.preimport:
        os.environ["SD_SPEED_PREIMPORT"] = "1"
    sides = [("Hearth", sys.executable, HEARTH_DRIVER, str(REPO))]
    if not args.no_comfy:
        sides.append(("ComfyUI", args.comfy_python, COMFY_DRIVER, str(Path(args.comfy).resolve())))
    rounds: dict[str, list[dict]] = {label: [] for label, *_ in sides}
    floors = []
    for r in range(args.rounds):
        floors.append(fault_floor(sys.executable, ckpt))
        print(f"round {r + 1} page-fault floor for the fp32 weights: {floors[-1]:.3f} s", flush=True)
        for label, python, driver, first in sides:
            res = run_side(label, python, driver, first, base, prompts)
            figs = figures(res)
            rounds[label].append(figs)
            print(f"round {r + 1} {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in figs.items()), flush=True)

    med = {label: {k: statistics.median(f[k] for f in runs) for k in runs[0]} for label, runs in rounds.items()}
    print(f"\n{'figure':22} {'Hearth':>10} " + (f"{'ComfyUI':>10} {'ratio':>7} {'target':>7}" if len(sides) > 1 else ""))
    for key in med["Hearth"]:
        line = f"{key:22} {med['Hearth'][key]:10.3f} "
        if len(sides) > 1:
            other = med["ComfyUI"][key]
            ratio = med["Hearth"][key] / other if other else float("nan")
            target = TARGETS.get(key)
            verdict = "" if target is None else ("PASS" if ratio <= target else "MISS")
            line += f"{other:10.3f} {ratio:7.3f} {('<= ' + str(target)) if target else '':>7} {verdict}"
        print(line)
    print(f"(medians of {args.rounds} rounds; times in s, RSS in MiB; ratio = Hearth / ComfyUI)")
    print(f"first touch of the fp32 weights' memory alone (a floor for either load): {statistics.median(floors):.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": rounds, "median": med, "fault_floor_s": floors}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
