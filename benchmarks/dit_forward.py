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
import os
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

    inputs = {name: torch.from_numpy(value) for name, value in make_inputs().items()}
    args = dict(args=(inputs.pop("sample"),), kwargs={**inputs, "return_dict": False},
                input_names=list(INPUT_NAMES), output_names=["out"])
    try:
        torch.onnx.export(model, f=str(path), dynamo=True, external_data=True, **args)
        method = "torch.onnx.export(dynamo=True)"
    except Exception as error:  # noqa: BLE001 - any exporter failure means: try the other one
        print(f"dynamo export failed ({type(error).__name__}: {error}); using the legacy exporter")
        torch.onnx.export(model, f=str(path), dynamo=False, opset_version=17, **args)
        method = "legacy torch.onnx.export(dynamo=False)"
    graph = onnx.load(str(path), load_external_data=False)
    opset = max(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))
    external = any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in graph.graph.initializer)
    return f"{method}, opset {opset}, weights {'in external data' if external else 'inside the .onnx'}"


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


def ort_session(model, threads):
    """A CPU onnxruntime session (ORT_ENABLE_ALL) on a path or serialized model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def onnxruntime_engine(path, inputs, threads):
    """(the forward, session creation seconds)."""
    session, seconds = timed(lambda: ort_session(str(path), threads))
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


def sgemm_peaks(threads, size=1152, runs=30):
    """Best GFLOP/s of an fp32 size^3 matmul on `threads` threads: torch.mm and onnxruntime's MatMul."""
    import torch
    from onnx import TensorProto, helper, numpy_helper

    a, b = np.random.default_rng(1).standard_normal((2, size, size), dtype=np.float32)
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [size, size])  # noqa: E731
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm", [value("a")], [value("c")],
                              [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort_session(model.SerializeToString(), threads)
    torch.set_num_threads(threads)
    matmuls = {"torch.mm (MKL)": lambda: torch.mm(torch.from_numpy(a), torch.from_numpy(b)),
               "onnxruntime MatMul (MLAS)": lambda: session.run(None, {"a": a})}
    for matmul in matmuls.values():
        matmul()
    best = {name: min(timed(matmul)[1] for _ in range(runs)) for name, matmul in matmuls.items()}
    return {name: 2 * size**3 / seconds / 1e9 for name, seconds in best.items()}


def interleaved(engines, runs):
    """Seconds per engine over `runs` rounds; each round runs every engine once, order rotating."""
    names, times = list(engines), {name: [] for name in engines}
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(engines[name])[1])
        print(f"  round {round_index + 1}/{runs}: " + ", ".join(f"{name} {times[name][-1]:.2f}s" for name in names))
    return times


def machine():
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    family = f"CPU family {cpu['CPU family']}, model {cpu['Model']}"
    return f"{cpu['Model name']} ({family}), {cpu['CPU(s)']} CPUs (lscpu)"


def benchmark(args):
    """Runs everything; returns the numbers the report needs."""
    import torch

    folder, onnx_path = prepare(args.work, 4 if args.quick else 28)
    print("child processes: 3 Nodus loads, 1 torch load ...")
    warm_page_cache(folder)
    nodus_runs = [run_child("nodus", folder, args.threads) for _ in range(3)]
    result = {
        "export": json.loads((onnx_path.parent / "export.json").read_text())["method"],
        "weight_bytes": sum(path.stat().st_size for path in folder.glob("*.safetensors")),
        "nodus_child": {key: statistics.median(run[key] for run in nodus_runs) for key in nodus_runs[0]},
        "torch_child": run_child("torch", folder, args.threads),
    }
    inputs = make_inputs()
    model, torch_fp32, torch_bf16 = torch_engines(folder, inputs, args.threads)
    result["flops"] = count_gemm_flops(model, tuple(torch.from_numpy(inputs[name]) for name in INPUT_NAMES))
    print("onnxruntime session ...")
    ort_forward, result["ort_session_s"] = onnxruntime_engine(onnx_path, inputs, args.threads)
    engines = dict(zip(ENGINES, (torch_fp32, torch_bf16, ort_forward, nodus_engine(folder, inputs, args.threads))))

    result["peaks_before"] = sgemm_peaks(args.threads)
    print("warm-up ...")
    outputs = {name: forward() for name, forward in engines.items()}
    result["errors"] = {name: rel_max_error(out, outputs["torch fp32"]) for name, out in outputs.items()}
    if (ort_error := result["errors"]["onnxruntime"]) > 1e-3:
        print(f"WARNING: onnxruntime differs from torch fp32: relative max error {ort_error:.1e}")
    result["times"] = interleaved(engines, args.runs)
    result["peaks_after"] = sgemm_peaks(args.threads)
    return result


def report(args, r):
    """The Markdown report."""
    import diffusers
    import onnxruntime
    import torch

    import nodus

    flops, gb = sum(r["flops"].values()), 1e9
    medians = {name: statistics.median(seconds) for name, seconds in r["times"].items()}
    rows = [f"| {name} | {medians[name]:.3f} | {min(r['times'][name]):.3f} "
            f"| {medians['Nodus fp32'] / medians[name]:.2f} | {flops / medians[name] / 1e9:.0f} "
            f"| {r['errors'][name]:.1e} |" for name in ENGINES]
    before, after = r["peaks_before"], r["peaks_after"]
    peaks = ", ".join(f"{name} {before[name]:.0f} / {after[name]:.0f}" for name in before)
    nodus_child, torch_child = r["nodus_child"], r["torch_child"]
    return "\n".join([
        f"# DiT-XL/2{' with 4 layers (--quick)' if args.quick else ''} forward, batch 2 (4x32x32), "
        f"{args.threads} threads",
        "",
        f"* Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"* Machine: {machine()}",
        f"* Command: `{shlex.join([sys.executable, *sys.argv])}`",
        f"* Versions: torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, nodus {nodus.__version__}",
        f"* Nodus GEMM: OpenBLAS, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset: auto-detected)')}",
        f"* ONNX: {r['export']}",
        f"* Forward GEMM FLOPs (2*M*N*K): {flops / 1e9:.1f} GFLOP = linears + patch conv "
        f"{r['flops']['linear'] / 1e9:.1f} + attention matmuls {r['flops']['attention'] / 1e9:.1f}",
        f"* sgemm peak, fp32 1152x1152x1152 on {args.threads} threads, best of 30, GFLOP/s before / after "
        f"the timed rounds (a check on machine noise): {peaks}",
        "",
        f"1 warm-up run each, then {args.runs} interleaved rounds (each round runs every engine once, "
        "in rotating order); same inputs, `torch.inference_mode()`.",
        "",
        "| engine | median s | min s | Nodus / engine (medians, < 1: Nodus faster) | GFLOP/s (median) | rel. max error vs torch fp32 |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| setup | seconds |",
        "|---|---:|",
        f"| Nodus `nodus.load` (median of 3 fresh subprocesses, warm page cache) | {nodus_child['load_s']:.3f} |",
        "| Nodus first forward after load (plans built + 1 forward, median of 3) "
        f"| {nodus_child['first_forward_s']:.3f} |",
        f"| torch `from_pretrained` (1 fresh subprocess, warm page cache) | {torch_child['load_s']:.3f} |",
        f"| onnxruntime session creation (`ORT_ENABLE_ALL`) | {r['ort_session_s']:.3f} |",
        "",
        f"| memory: own subprocess, load + 1 fp32 forward (weights {r['weight_bytes'] / gb:.2f} GB) "
        "| peak RSS GB | RSS after GB |",
        "|---|---:|---:|",
        f"| Nodus (median of 3) | {nodus_child['peak_rss'] / gb:.2f} | {nodus_child['rss'] / gb:.2f} |",
        f"| torch (diffusers `from_pretrained`, no accelerate) | {torch_child['peak_rss'] / gb:.2f} "
        f"| {torch_child['rss'] / gb:.2f} |",
        "",
    ])


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
        return
    sys.stdout.reconfigure(line_buffering=True)
    text = report(args, benchmark(args))
    print("\n" + text)
    folder = args.work if args.quick else REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"dit_forward-{datetime.date.today().isoformat()}{'-quick' if args.quick else ''}.md"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
