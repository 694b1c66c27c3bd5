#!/usr/bin/env python3
"""DiT-XL/2 forward (batch 2, 4x32x32): Nodus beside torch and onnxruntime in one run.

    python benchmarks/dit_forward.py [--runs 5] [--threads 2] [--quick] [--work /tmp/nodus-bench]

Makes once (cached in --work) a random-init DiT-XL/2 diffusers folder and its ONNX
export, then times torch fp32, torch bf16 autocast, onnxruntime and Nodus with the same
threads and inputs in interleaved rounds, and writes the report to
benchmarks/results/dit_forward-<date>.md (--quick: a 4-layer DiT, report in --work).
"""

import argparse
import datetime
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))

INPUT_NAMES = ("sample", "timestep", "class_labels")
ENGINES = ("torch fp32", "torch bf16 autocast", "onnxruntime", "Nodus fp32")


def timed(function):
    """(function(), wall seconds)."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def make_inputs():
    rng = np.random.default_rng(0)
    return {
        "sample": rng.standard_normal((2, 4, 32, 32), dtype=np.float32),
        "timestep": np.array([999, 250], dtype=np.int64),
        "class_labels": np.array([207, 360], dtype=np.int64),
    }


def rel_max_error(value, reference):
    return float(np.abs(value - reference).max() / np.abs(reference).max())


# -- the model and its ONNX export (made once) ------------------------------------------


def prepare(work, layers):
    """The diffusers folder and the ONNX file of a random-init DiT-XL/2, made if missing."""
    import torch
    from diffusers import DiTTransformer2DModel

    folder, onnx_dir = work / f"dit-xl2-{layers}layers", work / f"dit-xl2-{layers}layers-onnx"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        model = DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4,
                                      out_channels=8, num_layers=layers, sample_size=32, patch_size=2,
                                      num_embeds_ada_norm=1000)
        model.save_pretrained(folder, safe_serialization=True)
    if not (onnx_dir / "export.json").exists():
        onnx_dir.mkdir(parents=True, exist_ok=True)
        model = DiTTransformer2DModel.from_pretrained(folder).eval()
        method = export_onnx(model, onnx_dir / "model.onnx")
        (onnx_dir / "export.json").write_text(json.dumps({"method": method}))
    return folder, onnx_dir / "model.onnx"


def export_onnx(model, path):
    """Exports with the dynamo exporter, else the legacy one (opset 17); returns which."""
    import onnx
    import torch

    class ForwardSample(torch.nn.Module):
        """model(...).sample with positional tensor inputs."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, sample, timestep, class_labels):
            return self.model(sample, timestep=timestep, class_labels=class_labels, return_dict=False)[0]

    args = tuple(torch.from_numpy(value) for value in make_inputs().values())
    names = dict(input_names=list(INPUT_NAMES), output_names=["out"])
    try:
        torch.onnx.export(ForwardSample().eval(), args, str(path), dynamo=True, external_data=True, **names)
        method = "torch.onnx.export(dynamo=True)"
    except Exception as error:  # noqa: BLE001 - any exporter failure means: try the other one
        print(f"dynamo export failed ({type(error).__name__}: {error}); using the legacy exporter")
        torch.onnx.export(ForwardSample().eval(), args, str(path), dynamo=False, opset_version=17, **names)
        method = "legacy torch.onnx.export(dynamo=False)"
    opset = max(entry.version for entry in onnx.load(str(path), load_external_data=False).opset_import
                if entry.domain in ("", "ai.onnx"))
    return f"{method}, opset {opset}, external data"


def count_gemm_flops(model, args):
    """GEMM FLOPs (2*M*N*K) of one forward: linears + patch conv, and attention matmuls."""
    import torch
    from diffusers.models.attention_processor import Attention

    flops = {"linear": 0, "attention": 0}

    def linear(module, _, out):
        flops["linear"] += 2 * out.numel() * module.in_features

    def conv(module, _, out):
        flops["linear"] += 2 * out.numel() * module.weight[0].numel()

    def attention(module, _, out):  # Q K^T and P V over self-attention
        batch, tokens, _ = out.shape
        flops["attention"] += 2 * 2 * batch * tokens * tokens * module.inner_dim

    hooks = {torch.nn.Linear: linear, torch.nn.Conv2d: conv, Attention: attention}
    handles = [module.register_forward_hook(hook) for module in model.modules()
               for kind, hook in hooks.items() if isinstance(module, kind)]
    with torch.inference_mode():
        model(*args, return_dict=False)
    for handle in handles:
        handle.remove()
    return flops


# -- engines: each returns a callable running one forward to a numpy array --------------


def torch_engines(folder, inputs, threads):
    import torch
    from diffusers import DiTTransformer2DModel

    torch.set_num_threads(threads)
    model = DiTTransformer2DModel.from_pretrained(folder).eval()
    sample, timestep, labels = (torch.from_numpy(inputs[name]) for name in INPUT_NAMES)

    def fp32():
        with torch.inference_mode():
            return model(sample, timestep=timestep, class_labels=labels, return_dict=False)[0].numpy()

    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(sample, timestep=timestep, class_labels=labels, return_dict=False)[0].float().numpy()

    return model, fp32, bf16


def onnxruntime_engine(path, inputs, threads):
    """(the forward, session creation seconds)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session, seconds = timed(lambda: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
    feed = {item.name: inputs[item.name] for item in session.get_inputs()}
    return (lambda: session.run(None, feed)[0]), seconds


def nodus_engine(folder, inputs, threads):
    import nodus

    model = nodus.load(folder, threads=threads)
    return lambda: model.forward(**inputs)


def child(kind, folder, threads):
    """In a fresh process: load + 1 forward; prints load / first-forward seconds and peak RSS."""
    inputs = make_inputs()
    if kind == "nodus":
        import nodus  # noqa: F401 - imports (and the library) are loaded before the clock starts
        forward, load_s = timed(lambda: nodus_engine(folder, inputs, threads))
    else:
        from diffusers import DiTTransformer2DModel  # noqa: F401
        (_, forward, _), load_s = timed(lambda: torch_engines(folder, inputs, threads))
    _, first_s = timed(forward)
    print(json.dumps({"load_s": load_s, "first_forward_s": first_s, **memory()}))


def memory():
    """Peak and current RSS in bytes, from /proc/self/status. The peak is VmHWM, not ru_maxrss:
    Linux folds the parent's RSS at the fork into ru_maxrss at exec."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[name].split()[0]) * 1024 for key, name in (("peak_rss", "VmHWM"), ("rss", "VmRSS"))}


def run_child(kind, folder, threads):
    command = [sys.executable, __file__, "--child", kind, "--threads", str(threads), "--model", str(folder)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def warm_page_cache(folder):
    for path in folder.iterdir():
        with open(path, "rb") as file:
            while file.read(1 << 26):
                pass


def sgemm_peak(threads, size=1152, runs=30):
    """Best GFLOP/s of torch.mm fp32 size^3 with `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    return 2 * size**3 / min(timed(lambda: torch.mm(a, b))[1] for _ in range(runs)) / 1e9


def interleaved(engines, runs):
    """Seconds per engine over `runs` rounds; each round runs every engine once, order rotating."""
    names, times = list(engines), {name: [] for name in engines}
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(engines[name])[1])
        print(f"  round {round_index + 1}/{runs}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)
    return times


# -- the run ------------------------------------------------------------------------------


def machine():
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    return f"{fields['Model name']}, {fields['CPU(s)']} CPUs (lscpu)"


def benchmark(args):
    import diffusers
    import onnxruntime
    import torch

    import nodus

    layers = 4 if args.quick else 28
    folder, onnx_path = prepare(args.work, layers)
    export = json.loads((onnx_path.parent / "export.json").read_text())["method"]
    weight_bytes = sum(path.stat().st_size for path in folder.glob("*.safetensors"))

    print("child processes: Nodus load x3, torch load (peak RSS) ...", flush=True)
    warm_page_cache(folder)
    nodus_children = [run_child("nodus", folder, args.threads) for _ in range(3)]
    torch_child = run_child("torch", folder, args.threads)

    inputs = make_inputs()
    model, torch_fp32, torch_bf16 = torch_engines(folder, inputs, args.threads)
    flops = count_gemm_flops(model, tuple(torch.from_numpy(inputs[name]) for name in INPUT_NAMES))
    total_flops = sum(flops.values())
    print("onnxruntime session ...", flush=True)
    ort_forward, ort_session_s = onnxruntime_engine(onnx_path, inputs, args.threads)
    engines = dict(zip(ENGINES, (torch_fp32, torch_bf16, ort_forward, nodus_engine(folder, inputs, args.threads))))

    peak_before = sgemm_peak(args.threads)
    print("warm-up ...", flush=True)
    outputs = {name: forward() for name, forward in engines.items()}
    errors = {name: rel_max_error(out, outputs["torch fp32"]) for name, out in outputs.items()}
    if errors["onnxruntime"] > 1e-3:
        print(f"WARNING: onnxruntime differs from torch fp32 (relative max error {errors['onnxruntime']:.1e})")
    times = interleaved(engines, args.runs)
    peak_after = sgemm_peak(args.threads)

    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    nodus_median = medians["Nodus fp32"]
    rows = [f"| {name} | {medians[name]:.3f} | {min(times[name]):.3f} | {nodus_median / medians[name]:.2f} "
            f"| {total_flops / medians[name] / 1e9:.0f} | {errors[name]:.1e} |" for name in ENGINES]
    nodus_child = {key: statistics.median(run[key] for run in nodus_children) for key in nodus_children[0]}
    title = "DiT-XL/2" if layers == 28 else f"DiT-XL/2 with {layers} layers (--quick)"
    report = "\n".join([
        f"# {title} forward, batch 2 (4x32x32), {args.threads} threads",
        "",
        f"* Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"* Machine: {machine()}",
        f"* Command: `{shlex.join([sys.executable, *sys.argv])}`",
        f"* Versions: torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, nodus {nodus.__version__}",
        f"* ONNX: {export}",
        f"* Forward GEMM FLOPs (2*M*N*K): {total_flops / 1e9:.1f} GFLOP = linears + patch conv "
        f"{flops['linear'] / 1e9:.1f} + attention matmuls {flops['attention'] / 1e9:.1f}",
        f"* sgemm peak (torch.mm fp32 1152x1152x1152, {args.threads} threads, best of 30): "
        f"{peak_before:.0f} GFLOP/s before the timed rounds, {peak_after:.0f} after (a check on machine noise)",
        "",
        f"1 warm-up run each, then {args.runs} interleaved rounds (each round runs every engine once, "
        "in rotating order); same inputs, `torch.inference_mode()`.",
        "",
        "| engine | median s | min s | Nodus / engine (medians) | GFLOP/s (median) | rel. max error vs torch fp32 |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| setup | seconds |",
        "|---|---:|",
        f"| Nodus `nodus.load` (median of 3 fresh subprocesses, warm page cache) | {nodus_child['load_s']:.3f} |",
        f"| Nodus first forward after load (plan building + 1 forward, median of 3) | {nodus_child['first_forward_s']:.3f} |",
        f"| torch `from_pretrained` (1 fresh subprocess, warm page cache) | {torch_child['load_s']:.3f} |",
        f"| onnxruntime session creation (`ORT_ENABLE_ALL`) | {ort_session_s:.3f} |",
        "",
        f"| memory: own subprocess, load + 1 fp32 forward (weights {weight_bytes / 1e9:.2f} GB) "
        "| peak RSS GB | RSS after GB |",
        "|---|---:|---:|",
        f"| Nodus (median of 3) | {nodus_child['peak_rss'] / 1e9:.2f} | {nodus_child['rss'] / 1e9:.2f} |",
        f"| torch (diffusers `from_pretrained`, no accelerate) | {torch_child['peak_rss'] / 1e9:.2f} "
        f"| {torch_child['rss'] / 1e9:.2f} |",
        "",
    ])
    print("\n" + report)
    out_dir = args.work if args.quick else REPO / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"dit_forward-{datetime.date.today().isoformat()}{'-quick' if args.quick else ''}.md"
    out_path.write_text(report)
    print(f"wrote {out_path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    parser.add_argument("--quick", action="store_true", help="a 4-layer DiT, to check the script")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nodus-bench"), help="cache folder for the models")
    parser.add_argument("--child", choices=("nodus", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.threads)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
