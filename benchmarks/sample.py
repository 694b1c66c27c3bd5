#!/usr/bin/env python3
"""A full DiT-XL/2 sample at 256x256: Nodus (bf16 and fp32) beside diffusers' DiTPipeline in fp32.

    python benchmarks/sample.py [--runs 5] [--threads 2] [--steps 50] [--quick] [--work /tmp/nodus-bench]

One call is what a user waits for: 50 DDIM steps with classifier-free guidance 4.0 for one class
label (each step one DiT forward of batch 2, [cond, null]: forward.py's DiT workload), then the SD
VAE decode of the latent to 1x3x256x256. diffusers runs `DiTPipeline(...)(...)`; Nodus runs
`nodus.sample` then `vae.decode`, with the DiT and the VAE loaded in the same dtype. All start from
the same noise and read the same scheduler_config.json. The models are forward.py's random-init
folders in --work (made by its --prepare child if missing). Each engine gets one untimed 2-step
warm-up, then --runs interleaved rounds are timed; setup (load, first call, peak RSS) comes from
one fresh subprocess per engine. The report goes to benchmarks/results/sample-<date>.md (--quick:
DiT with 4 layers, 4 steps, report in --work). The issue's target: Nodus bf16 at most 0.5x the time of diffusers fp32.
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forward  # noqa: E402 - the models, machine description and timing helpers are shared with forward.py
from forward import REPO, WORKLOADS, interleaved, machine, memory, nodus_gemm, rel_max_error, timed  # noqa: E402

# Engine name -> the dtype Nodus loads the DiT and the VAE with (None: diffusers fp32, the reference).
ENGINES = {"diffusers fp32": None, "Nodus bf16": "bfloat16", "Nodus fp32": "float32"}
REFERENCE = "diffusers fp32"
TARGET = ("Nodus bf16", 0.5)  # the issue: Nodus bf16 at most 0.5x diffusers fp32

CLASS_LABELS = [207]
LATENT_SHAPE = (len(CLASS_LABELS), 4, 32, 32)  # forward.py's DiT: 4 latent channels, sample_size 32
SEED = 0
GUIDANCE = 4.0
WARMUP_STEPS = 2
# The DDIMScheduler of facebook/DiT-XL-2-256 (scheduler/scheduler_config.json; diffusers' defaults
# for the fields it predates, e.g. timestep_spacing "leading"), as Tests/Fixtures/scheduler-ddim.
DIT_DDIM = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon",
                timestep_spacing="leading")


# -- models and engines ----------------------------------------------------


def folders(args):
    """(the DiT folder, the VAE folder, the scheduler folder) in --work."""
    return (args.work / WORKLOADS["dit"].folder(args.quick), args.work / WORKLOADS["vae"].folder(args.quick),
            args.work / "scheduler-dit-ddim")


def prepare(args):
    """Makes missing model folders with forward.py's --prepare child (which also exports their ONNX) and
    writes the scheduler config both engines read."""
    from diffusers import DDIMScheduler

    for name in ("dit", "vae"):
        if not (args.work / WORKLOADS[name].folder(args.quick) / "config.json").exists():
            forward.run_child(args, "--prepare", "--workload", name)
    DDIMScheduler(**DIT_DDIM).save_config(folders(args)[2])


def noise_matches():
    """Whether Nodus' starting latent equals DiTPipeline's draw (torch.randn with a seeded CPU generator)."""
    import nodus
    import torch

    drawn = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(SEED)).numpy()
    return bool(np.array_equal(nodus.randn(LATENT_SHAPE, SEED), drawn))


def diffusers_engine(args):
    """(run(steps) -> {z, image, decode_s}, {part: load seconds}) for DiTPipeline in fp32."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.set_num_threads(args.threads)
    dit_folder, vae_folder, scheduler_folder = folders(args)

    def load():
        return DiTPipeline(transformer=DiTTransformer2DModel.from_pretrained(dit_folder).eval(),
                           vae=AutoencoderKL.from_pretrained(vae_folder).eval(),
                           scheduler=DDIMScheduler.from_pretrained(scheduler_folder))

    pipe, load_s = timed(load)
    pipe.set_progress_bar_config(disable=True)
    record = {}
    decode = pipe.vae.decode

    # DiTPipeline returns only the clamped [0, 1] image: the decode's input (z = latent / scaling_factor),
    # raw output and time are taken where the pipeline calls it, to compare with Nodus' decode.
    def recorded_decode(z, *rest, **options):
        out, seconds = timed(lambda: decode(z, *rest, **options))
        record.update(z=z.numpy().copy(), image=out.sample.numpy().copy(), decode_s=seconds)
        return out

    pipe.vae.decode = recorded_decode

    def run(steps):
        with torch.inference_mode():
            pipe(class_labels=CLASS_LABELS, guidance_scale=GUIDANCE, num_inference_steps=steps, output_type="pt",
                 generator=torch.Generator().manual_seed(SEED))
        return dict(record)

    return run, {"pipeline (DiT + VAE)": load_s}


def nodus_engine(args, dtype):
    """(run(steps) -> {z, image, decode_s}, {part: load seconds}) for nodus.sample + vae.decode."""
    import nodus

    dit_folder, vae_folder, scheduler_folder = folders(args)
    dit, dit_s = timed(lambda: nodus.load(dit_folder, dtype=dtype, threads=args.threads))
    vae, vae_s = timed(lambda: nodus.load(vae_folder, dtype=dtype, threads=args.threads))
    scheduler = nodus.Scheduler.from_config(scheduler_folder / "scheduler_config.json")
    noise = nodus.randn(LATENT_SHAPE, SEED)
    scale = vae.config["scaling_factor"]

    def run(steps):
        # DiTPipeline starts from the unscaled draw (DDIM's init_noise_sigma is 1 anyway): so does this.
        latent = nodus.sample(dit, scheduler, steps=steps, guidance_scale=GUIDANCE, init_noise=noise,
                              class_labels=CLASS_LABELS)
        z = latent / scale
        image, decode_s = timed(lambda: vae.decode(z))
        return {"z": z, "image": image, "decode_s": decode_s}

    return run, {"DiT": dit_s, "VAE": vae_s}


def engine(args, name):
    dtype = ENGINES[name]
    return diffusers_engine(args) if dtype is None else nodus_engine(args, dtype)


# -- setup in fresh subprocesses ---------------------------------------------


def child(args):
    """In a fresh process: load one engine, run one warm-up call; prints load and first-call seconds and RSS.
    The engine imports only its own packages (a Nodus child has no torch in its RSS), outside the clock."""
    run, loads = engine(args, args.child)
    _, first_s = timed(lambda: run(WARMUP_STEPS))
    print(json.dumps({"load_s": loads, "first_call_s": first_s, **memory()}))


def run_child(args, name):
    command = [sys.executable, __file__, "--threads", str(args.threads), "--work", str(args.work),
               *(["--quick"] if args.quick else []), "--child", name]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"the {name} subprocess exited with {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the benchmark -----------------------------------------------------------


def benchmark(args):
    """Setup per engine (subprocesses), then warm-up and interleaved timed rounds in this process."""
    for folder in folders(args)[:2]:
        forward.warm_page_cache(folder)
    print(f"setup: one fresh subprocess per engine (load + a {WARMUP_STEPS}-step call) ...")
    setup = {name: run_child(args, name) for name in ENGINES}
    noise_equal = noise_matches()
    runs = {}
    for name in ENGINES:
        print(f"{name}: load and {WARMUP_STEPS}-step warm-up ...")
        runs[name] = engine(args, name)[0]
        runs[name](WARMUP_STEPS)
    outputs, decode_s = {}, {name: [] for name in ENGINES}

    def keeping(name):
        """A timed call that keeps the engine's last output and its decode seconds."""
        def call():
            outputs[name] = runs[name](args.steps)
            decode_s[name].append(outputs[name]["decode_s"])
        return call

    print(f"{args.runs} interleaved rounds of {args.steps}-step samples + decode ...")
    times = interleaved({name: keeping(name) for name in ENGINES}, args.runs)
    reference = outputs[REFERENCE]
    errors = {name: {part: rel_max_error(out[part], reference[part]) for part in ("image", "z")}
              for name, out in outputs.items()}
    if (fp32_error := errors["Nodus fp32"]["image"]) > 1e-3:
        print(f"WARNING: Nodus fp32 differs from diffusers fp32: relative max error {fp32_error:.1e}")
    return {"setup": setup, "times": times, "errors": errors, "decode_s": decode_s, "noise_equal": noise_equal,
            "image_shape": "x".join(map(str, reference["image"].shape))}


# -- the report ------------------------------------------------------------


def load_average(before, after):
    text = (" / ".join(f"{value:.2f}" for value in before) + " before, " + " / ".join(f"{value:.2f}" for value in after)
            + " after (which includes this run's own threads)")
    return text if before[0] < 0.5 else text + " (**taken on a loaded machine**: timings are noisy)"


def table(r):
    medians = {name: statistics.median(seconds) for name, seconds in r["times"].items()}
    rows = []
    for name in ENGINES:
        ratio = "1.00" if name == REFERENCE else f"{medians[name] / medians[REFERENCE]:.2f}"
        error = "reference" if name == REFERENCE else f"{r['errors'][name]['image']:.1e}"
        latent = "reference" if name == REFERENCE else f"{r['errors'][name]['z']:.1e}"
        decode = statistics.median(r["decode_s"][name])
        rows.append(f"| {name} | {medians[name]:.2f} | {min(r['times'][name]):.2f} | {decode:.2f} | {ratio} "
                    f"| {error} | {latent} |")
    return [
        "| engine | median s | min s | of which VAE decode s (median) | Nodus / diffusers fp32 (medians) "
        "| image error vs diffusers fp32 | final latent error |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ], medians


def setup_table(setup):
    rows = []
    for name, child in setup.items():
        loads = ", ".join(f"{part} {seconds:.3f}" for part, seconds in child["load_s"].items())
        rows.append(f"| {name} | {loads} | {child['first_call_s']:.2f} | {child['peak_rss'] / 1e9:.2f} |")
    return [
        "| engine (one fresh subprocess each, warm page cache) | load s "
        f"| first call s ({WARMUP_STEPS} steps + decode: plans built, weights packed) "
        "| peak RSS GB (VmHWM, load + first call) |",
        "|---|---|---:|---:|",
        *rows,
    ]


def verdict(args, medians):
    name, bound = TARGET
    ratio = medians[name] / medians[REFERENCE]
    met = "**met**" if ratio <= bound else "**not met**"
    scope = " (on the --quick variant, not the target workload)" if args.quick else ""
    return f"Target: {name} <= {bound}x diffusers fp32: {met}, {ratio:.2f}x{scope}."


def report(args, r, loads):
    import diffusers
    import nodus
    import torch

    dit_folder, vae_folder, scheduler_folder = folders(args)
    rows, medians = table(r)
    layers = "4 layers, --quick" if args.quick else "28 layers"
    return "\n".join([
        f"# DiT-XL/2 ({layers}) sample, {args.steps} DDIM steps, CFG {GUIDANCE}, batch {len(CLASS_LABELS)}, "
        f"+ SD VAE decode at 256x256: Nodus beside diffusers, {args.threads} threads",
        "",
        f"* Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"* Machine: {machine()}",
        f"* Load average (1 / 5 / 15 min): {load_average(*loads)}",
        f"* Command: `{shlex.join(['python', os.path.relpath(sys.argv[0], forward.REPO), *sys.argv[1:]])}`",
        f"* Versions: torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"nodus {nodus.__version__} (`{os.path.relpath(nodus._lib.path, forward.REPO)}`)",
        f"* Nodus GEMM: {nodus_gemm()}",
        f"* Models: random-init (forward.py) `{dit_folder}` (DiTTransformer2DModel, learned sigma) and "
        f"`{vae_folder}` (AutoencoderKL, scaling_factor 0.18215); Nodus loads both in the dtype its row names",
        f"* Scheduler: `{scheduler_folder}/scheduler_config.json`, read by both: DDIMScheduler "
        + ", ".join(f"{key} {value}" for key, value in DIT_DDIM.items()) + " (facebook/DiT-XL-2-256's)",
        f"* Call: class labels {CLASS_LABELS} (null class 1000 for guidance), guidance {GUIDANCE}, {args.steps} steps, "
        f"then decode to {r['image_shape']}. diffusers: `DiTPipeline(...)(..., output_type=\"pt\")` under "
        "`torch.inference_mode()`; Nodus: `nodus.sample` + `vae.decode(latent / scaling_factor)`",
        f"* Noise: `nodus.randn({LATENT_SHAPE}, seed={SEED})` for Nodus, DiTPipeline's own draw from "
        f"`torch.Generator().manual_seed({SEED})`; equal bit for bit: {'yes' if r['noise_equal'] else '**no**'}",
        f"* Timing: per engine one untimed {WARMUP_STEPS}-step warm-up (builds Nodus' plans and packs its weights), "
        f"then {args.runs} interleaved rounds (each engine once per round, rotating order); wall seconds of the "
        "whole call (sampling loop + decode). Errors: relative max error max|a - b| / max|b| of the last round's "
        "raw decoded image and of the final latent (the decode's input)",
        "",
        *rows,
        "",
        verdict(args, medians),
        "",
        *setup_table(r["setup"]),
        "",
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    parser.add_argument("--steps", type=int, help="sampling steps (default 50; 4 with --quick)")
    parser.add_argument("--quick", action="store_true", help="DiT with 4 layers and 4 steps, to check the script")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nodus-bench"), help="cache folder for the models")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 4 if args.quick else 50
    if args.child:
        child(args)
        return
    sys.stdout.reconfigure(line_buffering=True)
    load_before = os.getloadavg()
    prepare(args)
    result = benchmark(args)
    text = report(args, result, (load_before, os.getloadavg()))
    print("\n" + text)
    folder = args.work if args.quick else REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"sample-{datetime.date.today().isoformat()}{'-quick' if args.quick else ''}.md"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
