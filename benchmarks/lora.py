#!/usr/bin/env python3
"""LoRA speed on DiT-XL/2 (issue 4): Nodus beside diffusers + PEFT in one run.

    python benchmarks/lora.py [--runs 5] [--threads 2] [--work /tmp/nodus-bench]

Two seeded rank-32 adapters A and B (lora_alpha 32, to_q/to_k/to_v/to_out.0 of the 28
blocks: 112 Linears, diffusers file format) on the random-init DiT-XL/2 that
benchmarks/forward.py caches in --work. Times, in interleaved rounds after a warm-up:
adapter file load, fuse_lora / unfuse_lora of A, and the batch-2 forward (base, fused A,
unfused A+B at (0.7, 0.5)), with the page faults and CPU time of each; the first fuse_lora of
each side is reported on its own (Nodus maps the memory of its fused copies then, and reuses it
after). Checks Nodus A+B against diffusers A+B, and writes the report to
benchmarks/results/lora-<date>.md (lora-<date>-<HHMM>.md when that exists).
"""

import argparse
import datetime
import json
import os
import resource
import shlex
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np

import hide_avx512
from forward import REPO, WORKLOADS, machine, nodus_gemm, paths, prepare, rel_max_error, sgemm_peaks, timed

DIT = WORKLOADS["dit"]  # DiT-XL/2 (28 layers), batch 2
INPUT_NAMES = ("sample", "timestep", "class_labels")

RANK, ALPHA, LAYERS = 32, 32, 28
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
HIDDEN = 1152
AB_WEIGHTS = [0.7, 0.5]
GOALS = {"fuse": 0.6, "unfuse_ms": 5.0, "load_ms": 50.0, "forward": 1.08}


def make_adapter(path, seed):
    """A diffusers-format LoRA file (transformer.<module>.lora_A/B.weight + lora_adapter_metadata);
    A ~ kaiming-like N(0, 1/hidden), B ~ N(0, 0.02^2): each adapter moves the output visibly."""
    from peft import LoraConfig
    from safetensors.numpy import save_file

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    tensors = {}
    for block in range(LAYERS):
        for target in TARGETS:
            stem = f"transformer.transformer_blocks.{block}.attn1.{target}"
            tensors[f"{stem}.lora_A.weight"] = (rng.standard_normal((RANK, HIDDEN)) / HIDDEN**0.5).astype(np.float32)
            tensors[f"{stem}.lora_B.weight"] = (rng.standard_normal((HIDDEN, RANK)) * 0.02).astype(np.float32)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(TARGETS)).to_dict()
    config = {f"transformer.{key}": sorted(value) if isinstance(value, set) else value for key, value in config.items()}
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(config, indent=2, sort_keys=True)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def measured(function):
    """(wall seconds, minor page faults, CPU seconds of every thread) of function(), for the whole process."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = timed(function)[1]
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, after.ru_minflt - before.ru_minflt, cpu


def nodus_side(folder, adapters, inputs, threads):
    """The Nodus model with A and B loaded, and its measurements (each returns {label: seconds})."""
    import nodus

    model = nodus.load(folder, threads=threads)
    for name, path in adapters.items():
        model.load_lora_weights(path, name)

    def forward():
        return model.forward(**inputs)

    def load():
        result = measured(lambda: model.load_lora_weights(adapters["A"], "A-load"))
        model.delete_adapters(["A-load"])
        return {"Nodus load": result}

    def fuse_unfuse():
        model.set_adapters(["A"], [1.0])
        return {"Nodus fuse_lora": measured(lambda: model.fuse_lora(["A"])),
                "Nodus unfuse_lora": measured(model.unfuse_lora)}

    def forward_base():
        model.disable_lora()
        result = measured(forward)
        model.enable_lora()
        return {"Nodus forward base": result}

    def forward_fused():
        model.set_adapters(["A"], [1.0])
        model.fuse_lora(["A"])
        result = measured(forward)
        model.unfuse_lora()
        return {"Nodus forward fused A": result}

    def forward_unfused():
        model.set_adapters(["A", "B"], AB_WEIGHTS)
        return {"Nodus forward unfused A+B": measured(forward)}

    model.disable_lora()
    outputs = {"base": forward()}
    model.enable_lora()
    first = fuse_unfuse()["Nodus fuse_lora"]
    model.set_adapters(["A", "B"], AB_WEIGHTS)
    outputs["A+B"] = forward()
    return outputs, [load, fuse_unfuse, forward_base, forward_fused, forward_unfused], first


def diffusers_side(folder, adapters, inputs, threads):
    """diffusers' DiT with PeftAdapterMixin, A and B loaded, and its measurements."""
    import diffusers
    import torch
    from diffusers import DiTTransformer2DModel
    from diffusers.loaders.peft import PeftAdapterMixin

    class DiTWithLora(DiTTransformer2DModel, PeftAdapterMixin):
        """DiTTransformer2DModel with diffusers' model-level LoRA API (as tests/reference/make_lora_fixtures.py)."""

    torch.set_num_threads(threads)
    diffusers.utils.logging.set_verbosity_error()  # loading B lists A's lora_B keys as "missing" (they are loaded)
    for expected in ("Already found a `peft_config`", "Adapter A-load was active"):  # two adapters; load()
        warnings.filterwarnings("ignore", message=expected)
    model = DiTWithLora.from_pretrained(folder).eval()
    for name, path in adapters.items():
        model.load_lora_adapter(str(path), adapter_name=name, use_safetensors=True)
    sample, timestep, labels = (torch.from_numpy(inputs[name]) for name in INPUT_NAMES)

    def forward():
        with torch.inference_mode():
            return model(sample, timestep=timestep, class_labels=labels, return_dict=False)[0].numpy()

    def load():
        result = measured(lambda: model.load_lora_adapter(str(adapters["A"]), adapter_name="A-load",
                                                          use_safetensors=True))
        model.delete_adapters(["A-load"])
        return {"diffusers load": result}

    def fuse_unfuse():
        model.set_adapters(["A"], [1.0])
        return {"diffusers fuse_lora": measured(lambda: model.fuse_lora(lora_scale=1.0, adapter_names=["A"])),
                "diffusers unfuse_lora": measured(model.unfuse_lora)}

    def forward_unfused():
        model.set_adapters(["A", "B"], AB_WEIGHTS)
        return {"diffusers forward unfused A+B": measured(forward)}

    first = fuse_unfuse()["diffusers fuse_lora"]
    model.set_adapters(["A", "B"], AB_WEIGHTS)
    return {"A+B": forward()}, [load, fuse_unfuse, forward_unfused], first


def rounds(measurements, runs):
    """(seconds, page faults, CPU seconds) per label and round; each round runs every measurement once, order rotating."""
    results = {}
    for round_index in range(runs):
        shift = round_index % len(measurements)
        for measure in measurements[shift:] + measurements[:shift]:
            for label, result in measure().items():
                results.setdefault(label, []).append(result)
        print(f"  round {round_index + 1}/{runs}: " + ", ".join(f"{label} {values[-1][0] * 1e3:.0f}ms"
                                                                 for label, values in results.items()))
    return results


def benchmark(args):
    prepare(DIT, args.work, quick=False)
    folder = paths(DIT, args.work, quick=False)[0]
    adapters = {name: make_adapter(args.work / f"dit-xl2-lora-r{RANK}-{name}.safetensors", seed)
                for name, seed in (("A", 4000), ("B", 4001))}
    inputs = DIT.inputs(False)
    print("loading Nodus and diffusers, adapters A and B ...")
    nodus_out, nodus_measures, nodus_first = nodus_side(folder, adapters, inputs, args.threads)
    torch_out, torch_measures, torch_first = diffusers_side(folder, adapters, inputs, args.threads)
    result = {"error": rel_max_error(nodus_out["A+B"], torch_out["A+B"]),
              "effect": rel_max_error(nodus_out["A+B"], nodus_out["base"]),
              "file_mb": adapters["A"].stat().st_size / 1e6,
              "peaks_before": sgemm_peaks(args.threads), "first_fuse": {"Nodus": nodus_first, "diffusers": torch_first}}
    measurements = nodus_measures + torch_measures
    print("warm-up ...")
    rounds(measurements, 1)
    result["times"] = rounds(measurements, args.runs)
    result["peaks_after"] = sgemm_peaks(args.threads)
    return result


def report(args, r):
    import diffusers
    import peft
    import torch

    import nodus

    times = {label: [seconds for seconds, _, _ in values] for label, values in r["times"].items()}
    faults = {label: statistics.median(count for _, count, _ in values) for label, values in r["times"].items()}
    cpu = {label: statistics.median(seconds for _, _, seconds in values) * 1e3 for label, values in r["times"].items()}
    med = {label: statistics.median(seconds) for label, seconds in times.items()}
    ms = {label: seconds * 1e3 for label, seconds in med.items()}
    fuse_ratio = med["Nodus fuse_lora"] / med["diffusers fuse_lora"]
    forward_ratio = med["Nodus forward unfused A+B"] / med["Nodus forward fused A"]
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    rows = [f"| {label} | {ms[label]:.1f} | {min(times[label]) * 1e3:.1f} | {max(times[label]) * 1e3:.1f} "
            f"| {cpu[label]:.1f} | {faults[label]:.0f} |" for label in times]
    first = ", ".join(f"{side} {seconds * 1e3:.1f} ms wall, {cpu_seconds * 1e3:.1f} ms CPU, {count} page faults"
                      for side, (seconds, count, cpu_seconds) in r["first_fuse"].items())
    peaks = ", ".join(f"{name} {r['peaks_before'][name]:.0f} / {r['peaks_after'][name]:.0f}"
                      for name in r["peaks_before"])
    return "\n".join([
        f"# LoRA on DiT-XL/2: rank {RANK}, alpha {ALPHA}, {LAYERS * len(TARGETS)} Linears "
        f"({', '.join(TARGETS)}), {args.threads} threads",
        "",
        f"* Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"* Machine: {machine()}",
        f"* Command: `{shlex.join(['python', os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])}`",
        f"* Versions: torch {torch.__version__}, diffusers {diffusers.__version__}, peft {peft.__version__}, "
        f"nodus {nodus.__version__}",
        f"* Nodus GEMM: {nodus_gemm()}",
        f"* Adapters: 2 seeded random files in diffusers format, {r['file_mb']:.1f} MB each (float32); "
        "diffusers side: `DiTWithLora(DiTTransformer2DModel, PeftAdapterMixin)`",
        f"* sgemm peak, fp32 1152^3 on {args.threads} threads, best of 30, GFLOP/s before / after "
        f"the timed rounds (a check on machine noise): {peaks}",
        "",
        f"1 warm-up round, then {args.runs} interleaved rounds (each round runs every measurement once, "
        "in rotating order). Load: `load_lora_weights` / `load_lora_adapter` of A's file under a new name, "
        "deleted after. fuse: A at 1.0, then unfuse. Forward: batch 2 (4x32x32), A+B at (0.7, 0.5).",
        "",
        "| measurement | median ms | min ms | max ms | median CPU ms (all threads) | minor page faults (median) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"* First fuse_lora of each side, before the rounds (Nodus maps the memory of its fused copies then; "
        f"later fuses rewrite it): {first}",
        "",
        "| issue 4 target | measured | |",
        "|---|---:|---|",
        f"| fuse_lora <= {GOALS['fuse']}x diffusers | {fuse_ratio:.2f}x | "
        f"{verdict(fuse_ratio <= GOALS['fuse'])} |",
        f"| unfuse_lora <= {GOALS['unfuse_ms']:.0f} ms | {ms['Nodus unfuse_lora']:.1f} ms | "
        f"{verdict(ms['Nodus unfuse_lora'] <= GOALS['unfuse_ms'])} |",
        f"| adapter file load <= {GOALS['load_ms']:.0f} ms | {ms['Nodus load']:.1f} ms | "
        f"{verdict(ms['Nodus load'] <= GOALS['load_ms'])} |",
        f"| unfused A+B forward <= {GOALS['forward']}x fused A | {forward_ratio:.3f}x | "
        f"{verdict(forward_ratio <= GOALS['forward'])} |",
        "",
        f"* fuse_lora CPU time (all threads), Nodus / diffusers: "
        f"{cpu['Nodus fuse_lora'] / cpu['diffusers fuse_lora']:.2f}x (less sensitive to other load on the machine)",
        f"* Nodus / diffusers (medians): load {med['Nodus load'] / med['diffusers load']:.2f}x, "
        f"unfuse {med['Nodus unfuse_lora'] / med['diffusers unfuse_lora']:.2f}x, forward A+B "
        f"{med['Nodus forward unfused A+B'] / med['diffusers forward unfused A+B']:.2f}x; "
        f"Nodus unfused A+B / base forward {med['Nodus forward unfused A+B'] / med['Nodus forward base']:.3f}x",
        f"* Accuracy: Nodus A+B vs diffusers A+B, relative max error {r['error']:.1e} "
        f"(A+B moves the output by {r['effect']:.1e} relative max from the base)",
        "",
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads for everyone (default 2)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nodus-bench"), help="cache folder (model, adapters)")
    hide_avx512.add_option(parser)
    args = parser.parse_args()
    hide_avx512.apply(args)
    sys.stdout.reconfigure(line_buffering=True)
    text = report(args, benchmark(args))
    print("\n" + text)
    folder = REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now()
    stem = f"lora{hide_avx512.suffix()}-{now.date().isoformat()}"
    path = folder / f"{stem}.md"
    if path.exists():  # a second report on the same day keeps the first
        path = folder / f"{stem}-{now.strftime('%H%M')}.md"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
