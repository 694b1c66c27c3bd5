#!/usr/bin/env python3
"""A whole SD-1.5-sized text-to-image generation: Nodus' Pipeline beside diffusers' StableDiffusionPipeline.

    python benchmarks/pipeline.py [--runs 2] [--threads 2] [--steps 25] [--quick] [--work /tmp/nodus-bench]

One call is what a user waits for: tokenize the prompt and the empty negative prompt, encode both
with CLIP ViT-L/14's text encoder, 25 DPM-Solver++ 2M steps at 512x512 with guidance 7.5 (each
step one UNet forward of batch 2), and the SD VAE decode. Every engine reads the same pipeline
folder in --work: forward.py's random-init SD-1.5 UNet and SD VAE, a random-init CLIP ViT-L/14 text
encoder, the real CLIP tokenizer (Tests/Fixtures/clip-tokenizer) and DPMSolverMultistepScheduler as
SD-1.5 configures it. diffusers runs in fp32 and under bf16 autocast; Nodus in fp32 and its bf16 mode.
Time to the first image (load + first call, peak RSS) comes from one fresh subprocess per engine;
then each engine runs --runs interleaved rounds in this process. The report goes to
benchmarks/results/pipeline-<date>.md (--quick: the small UNet, 4 steps at 256x256, report in --work).
The issue's targets: Nodus bf16 at most 0.6x diffusers fp32 and at most 0.8x diffusers bf16 autocast.
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forward  # noqa: E402 - the models, machine description and timing helpers are shared with forward.py
from forward import REPO, WORKLOADS, interleaved, machine, memory, nodus_gemm, rel_max_error, timed  # noqa: E402

# Engine name -> (library, dtype).
ENGINES = {"diffusers fp32": ("diffusers", "float32"), "diffusers bf16 autocast": ("diffusers", "bfloat16"),
           "Nodus fp32": ("nodus", "float32"), "Nodus bf16": ("nodus", "bfloat16")}
REFERENCE = "diffusers fp32"
TARGETS = [("Nodus bf16", "diffusers fp32", 0.6), ("Nodus bf16", "diffusers bf16 autocast", 0.8)]
PROMPT = "chest x-ray, frontal view, right lower lobe nodule"
GUIDANCE = 7.5
SEED = 0
# DPMSolverMultistepScheduler with SD-1.5's scheduler fields (runwayml/stable-diffusion-v1-5).
SD15_DPM = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                steps_offset=1,
                algorithm_type="dpmsolver++", solver_order=2, prediction_type="epsilon")


def folder(args):
    return args.work / ("sd15-pipeline-quick" if args.quick else "sd15-pipeline")


def prepare(args):
    """Assembles the pipeline folder from forward.py's UNet and VAE (made if missing), a random-init
    CLIP ViT-L/14 text encoder, the real tokenizer and the scheduler."""
    import torch
    from diffusers import DPMSolverMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    target = folder(args)
    for name in ("unet", "vae"):
        source = args.work / WORKLOADS[name].folder(args.quick)
        if not (source / "config.json").exists():
            forward.run_child(args, "--prepare", "--workload", name)
        link = target / name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source.resolve())
    if not (target / "text_encoder" / "config.json").exists():
        torch.manual_seed(7300)
        config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=768)
        CLIPTextModel(config).eval().save_pretrained(target / "text_encoder")
    if not (target / "tokenizer").exists():
        shutil.copytree(REPO / "Tests" / "Fixtures" / "clip-tokenizer", target / "tokenizer")
    DPMSolverMultistepScheduler(**SD15_DPM).save_config(target / "scheduler")
    (target / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]}, indent=2))


def size(args):
    return 256 if args.quick else 512


def diffusers_engine(args, dtype):
    """(run() -> images [1, H, W, 3], load seconds) for StableDiffusionPipeline."""
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(args.threads)
    pipe, load_s = timed(lambda: StableDiffusionPipeline.from_pretrained(folder(args), safety_checker=None,
                                                                         requires_safety_checker=False))
    pipe.set_progress_bar_config(disable=True)

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            images = pipe(PROMPT, num_inference_steps=args.steps, guidance_scale=GUIDANCE, height=size(args),
                          width=size(args), generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").images
        return images.astype("float32")

    return run, load_s


def nodus_engine(args, dtype):
    import nodus

    pipe, load_s = timed(lambda: nodus.Pipeline.from_pretrained(folder(args), dtype=dtype, threads=args.threads))

    def run():
        return pipe(PROMPT, num_inference_steps=args.steps, guidance_scale=GUIDANCE, height=size(args),
                    width=size(args), seed=SEED, output_type="np")

    return run, load_s


def engine(args, name):
    library, dtype = ENGINES[name]
    return (diffusers_engine if library == "diffusers" else nodus_engine)(args, dtype)


def child(args):
    """In a fresh process: load one engine and make the first image; prints the seconds and RSS."""
    run, load_s = engine(args, args.child)
    _, first_s = timed(run)
    print(json.dumps({"load_s": load_s, "first_image_s": first_s, **memory()}))


def run_child(args, name):
    command = [sys.executable, __file__, "--threads", str(args.threads), "--work", str(args.work),
               "--steps", str(args.steps), *(["--quick"] if args.quick else []), "--child", name]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"the {name} subprocess exited with {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prompt_encoding(args, rounds=20):
    """Seconds per engine of tokenizing one 77-token prompt and running CLIP ViT-L/14's text encoder on it
    (fp32), over interleaved rounds: transformers' CLIPTokenizer + CLIPTextModel, and Nodus'."""
    import nodus
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.set_num_threads(args.threads)
    prompt = ("a frontal chest x-ray of an adult patient with a 3.5 cm spiculated nodule in the right lower lobe, "
              "no pleural effusion or pneumothorax, normal cardiomediastinal silhouette, clear lungs, high resolution")
    tokenizer = CLIPTokenizer.from_pretrained(folder(args) / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(folder(args) / "text_encoder").eval()
    nodus_tokenizer = nodus.Tokenizer.from_pretrained(folder(args) / "tokenizer")
    nodus_encoder = nodus.load(folder(args) / "text_encoder", threads=args.threads)

    def transformers_call():
        ids = tokenizer([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        with torch.inference_mode():
            return encoder(ids).last_hidden_state.numpy()

    def nodus_call():
        return nodus_encoder.forward(input_ids=nodus_tokenizer([prompt]))

    engines = {"transformers": transformers_call, "Nodus": nodus_call}
    for call in engines.values():
        call()
    times = interleaved(engines, rounds)
    error = rel_max_error(nodus_call(), transformers_call())
    return {"times": times, "error": error, "tokens": len(tokenizer(prompt).input_ids)}


def benchmark(args):
    for part in ("unet", "vae", "text_encoder"):
        forward.warm_page_cache(folder(args) / part)
    print("prompt encoding (tokenizer + CLIP text encoder, fp32) ...")
    text = prompt_encoding(args)
    print("time to first image: one fresh subprocess per engine ...")
    setup = {}
    for name in ENGINES:
        setup[name] = run_child(args, name)
        print(f"  {name}: load {setup[name]['load_s']:.2f} s, first image {setup[name]['first_image_s']:.2f} s")
    runs, outputs = {}, {}
    for name in ENGINES:
        runs[name] = engine(args, name)[0]

    def keeping(name):
        def call():
            outputs[name] = runs[name]()
        return call

    print(f"{args.runs} interleaved rounds of a {args.steps}-step generation ...")
    times = interleaved({name: keeping(name) for name in ENGINES}, args.runs)
    errors = {name: rel_max_error(image, outputs[REFERENCE]) for name, image in outputs.items()}
    return {"setup": setup, "times": times, "errors": errors, "text": text}


def report(args, r, loads):
    import diffusers
    import nodus
    import torch
    import transformers

    medians = {name: statistics.median(seconds) for name, seconds in r["times"].items()}
    rows = [f"| {name} | {medians[name]:.2f} | {min(r['times'][name]):.2f} | "
            f"{medians[name] / medians[REFERENCE]:.2f} | {medians[name] / medians['diffusers bf16 autocast']:.2f} | "
            + ("reference" if name == REFERENCE else f"{r['errors'][name]:.1e}") + " |" for name in ENGINES]
    setup_rows = [f"| {name} | {s['load_s']:.2f} | {s['first_image_s']:.2f} | {s['load_s'] + s['first_image_s']:.2f} "
                  f"| {s['peak_rss'] / 1e9:.2f} |" for name, s in r["setup"].items()]
    verdicts = []
    for engine_name, against, bound in TARGETS:
        ratio = medians[engine_name] / medians[against]
        verdicts.append(f"* {engine_name} <= {bound}x {against}: {'**met**' if ratio <= bound else '**not met**'}, "
                        f"{ratio:.2f}x" + (" (--quick, not the target workload)" if args.quick else ""))
    load_text = (" / ".join(f"{value:.2f}" for value in loads[0]) + " before, "
                 + " / ".join(f"{value:.2f}" for value in loads[1]) + " after")
    text = r["text"]
    text_medians = {name: statistics.median(seconds) * 1000 for name, seconds in text["times"].items()}
    text_ratio = text_medians["Nodus"] / text_medians["transformers"]
    text_rows = [f"| {name} | {text_medians[name]:.1f} | {min(text['times'][name]) * 1000:.1f} |" for name in text_medians]
    return "\n".join([
        f"# Text to image, SD-1.5 sizes{' (--quick)' if args.quick else ''}: {args.steps} DPM-Solver++ 2M steps, "
        f"CFG {GUIDANCE}, {size(args)}x{size(args)}, {args.threads} threads: Nodus beside diffusers",
        "",
        f"* Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"* Machine: {machine()}",
        f"* Load average (1 / 5 / 15 min): {load_text}" + ("" if loads[0][0] < 0.5 else " (**loaded machine**: noisy)"),
        f"* Command: `{shlex.join(['python', os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])}`",
        f"* Versions: torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
        f"{transformers.__version__}, nodus {nodus.__version__} (`{os.path.relpath(nodus._lib.path, REPO)}`)",
        f"* Nodus GEMM: {nodus_gemm()}",
        f"* Pipeline folder (in --work, `{folder(args).name}`): random-init SD-1.5 UNet and SD VAE (forward.py's), "
        "random-init CLIP ViT-L/14 text encoder, the real CLIP tokenizer, DPMSolverMultistepScheduler "
        + ", ".join(f"{key} {value}" for key, value in SD15_DPM.items()),
        f"* Call: prompt {PROMPT!r}, negative prompt empty, seed {SEED} (diffusers: "
        "`generator=torch.Generator(\"cpu\").manual_seed(seed)`), output float32 [1, H, W, 3]; diffusers under "
        "`torch.inference_mode()` (bf16: also `torch.autocast(\"cpu\", torch.bfloat16)`); Nodus: "
        "`nodus.Pipeline.from_pretrained(folder, dtype=...)(...)`",
        f"* Timing: {args.runs} interleaved rounds (each engine once per round, rotating order), wall seconds of "
        "the whole call. Error: relative max error max|a - b| / max|b| of the last round's image against diffusers fp32",
        "",
        "| engine | median s | min s | / diffusers fp32 | / diffusers bf16 autocast | image error vs diffusers fp32 |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Targets:",
        *verdicts,
        "",
        "| engine (one fresh subprocess each, warm page cache) | load s | first image s | time to first image s "
        "| peak RSS GB |",
        "|---|---:|---:|---:|---:|",
        *setup_rows,
        "",
        f"Prompt encoding alone: tokenize one prompt ({text['tokens']} tokens before padding to 77) and run the CLIP "
        f"ViT-L/14 text encoder in fp32, {len(text['times']['Nodus'])} interleaved rounds (relative max error of the "
        f"hidden states {text['error']:.1e}):",
        "",
        "| engine | median ms | min ms |",
        "|---|---:|---:|",
        *text_rows,
        "",
        f"* Nodus <= 0.5x transformers: {'**met**' if text_ratio <= 0.5 else '**not met**'}, {text_ratio:.2f}x",
        "",
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="interleaved timed rounds (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    parser.add_argument("--steps", type=int, help="inference steps (default 25; 4 with --quick)")
    parser.add_argument("--quick", action="store_true", help="the small UNet, 4 steps at 256x256, to check the script")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nodus-bench"), help="cache folder for the models")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cpu = None  # forward.run_child passes --cpu through
    if args.steps is None:
        args.steps = 4 if args.quick else 25
    if args.child:
        child(args)
        return
    sys.stdout.reconfigure(line_buffering=True)
    load_before = os.getloadavg()
    prepare(args)
    result = benchmark(args)
    text = report(args, result, (load_before, os.getloadavg()))
    print("\n" + text)
    target = args.work if args.quick else REPO / "benchmarks" / "results"
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"pipeline-{datetime.date.today().isoformat()}{'-quick' if args.quick else ''}.md"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
