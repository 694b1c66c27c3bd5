#!/usr/bin/env python3
"""Forward speed of DiT-XL/2, the SD-1.5 UNet and the SD VAE decoder: Nodus beside torch and onnxruntime.

    python benchmarks/forward.py [--workload dit|unet|vae|medsyn2|all] [--runs 5] [--threads 2] [--quick]
                                 [--work /tmp/nodus-bench]

For each workload (SPEC section 6), makes once (cached in --work, in a subprocess) a
random-init diffusers folder and its ONNX export, then times torch fp32, torch bf16
autocast, onnxruntime and Nodus (fp32 and bf16) with the same threads and inputs in interleaved rounds,
and writes one report with a section per workload to benchmarks/results/forward-<date>.md
(one workload: forward-<workload>-<date>.md; --quick: small variants, report in --work).

A workload is a `Workload`: how to make its random-init model, its inputs, its torch call
(which is also what is exported to ONNX) and its Nodus call. Everything else is shared.
"""

import argparse
import datetime
import gc
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import hide_avx512

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))

ENGINES = ("torch fp32", "torch bf16 autocast", "onnxruntime", "Nodus fp32", "Nodus bf16", "Nodus ONNX fp32")
# Nodus in each precision, by engine name: the `dtype` it loads with, and the engine it is held against in the
# summary (the targets: fp32 against torch fp32 and onnxruntime, bf16 against torch bf16 autocast).
NODUS_DTYPES = {"Nodus fp32": "float32", "Nodus bf16": "bfloat16"}


# -- the workloads ---------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One model to time. The callables take `quick` (the small variant that checks the script)."""

    name: str
    label: str  # its row in the summary
    title: Callable[[bool], str]  # the report's heading
    folder: Callable[[bool], str]  # the diffusers folder's name in --work
    onnx_folder: Callable[[bool], str]  # the ONNX export's folder in --work
    diffusers_class: str  # what from_pretrained loads
    make: Callable[[bool], object]  # the random-init model (seeded)
    inputs: Callable[[bool], dict]  # name -> numpy array, in the torch call's (and the ONNX graph's) order
    call: Callable[[object, dict], object]  # torch: (model, name -> tensor) -> output tensor
    nodus_call: Callable[[object, dict], np.ndarray]  # Nodus: (model, name -> numpy array) -> output
    # Loads the saved folder when the class is not in diffusers (default: diffusers.<diffusers_class>).
    loader: Callable[[Path], object] | None = None


def dit_make(quick):
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                 num_layers=4 if quick else 28, sample_size=32, patch_size=2,
                                 num_embeds_ada_norm=1000)


def dit_inputs(quick):
    rng = np.random.default_rng(0)
    return {
        "sample": rng.standard_normal((2, 4, 32, 32), dtype=np.float32),
        "timestep": np.array([999, 250], dtype=np.int64),
        "class_labels": np.array([207, 360], dtype=np.int64),
    }


SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
    use_linear_projection=False,
)
# --quick: two levels of 32 / 64 channels, one layer per block, same inputs at 32x32.
SD15_UNET_QUICK = {**SD15_UNET, "sample_size": 32, "block_out_channels": (32, 64), "layers_per_block": 1,
                   "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                   "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D")}


def unet_make(quick):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**(SD15_UNET_QUICK if quick else SD15_UNET))


def unet_inputs(quick):
    rng = np.random.default_rng(0)
    size = 32 if quick else 64
    return {
        "sample": rng.standard_normal((2, 4, size, size), dtype=np.float32),
        "timestep": np.array([999, 250], dtype=np.int64),
        "encoder_hidden_states": rng.standard_normal((2, 77, 768), dtype=np.float32),
    }


SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)


def vae_make(quick):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**SD_VAE)  # --quick: the same model, decoding a 32x32 latent


def vae_inputs(quick):
    size = 32 if quick else 64
    return {"latent": np.random.default_rng(0).standard_normal((1, 4, size, size), dtype=np.float32)}


# Issue 16's MedSyn2-shaped model: latent 4x16x32x32 plus a 4-channel mask latent, 2,048 tokens of 2x2x2
# patches, hidden 384 (6 heads of 64), 8 layers, 128 text tokens of width 768 (tests/reference/medsyn2.py).
MEDSYN2 = dict(in_channels=8, out_channels=4, patch_size=2, num_layers=8, num_attention_heads=6, attention_head_dim=64,
               cross_attention_dim=768, sample_size=(16, 32, 32))


def medsyn2_class():
    sys.path.insert(0, str(REPO / "tests" / "reference"))
    from medsyn2 import MedSyn2Transformer3DModel

    return MedSyn2Transformer3DModel


def medsyn2_make(quick):
    return medsyn2_class()(**{**MEDSYN2, "num_layers": 2 if quick else 8})


def medsyn2_inputs(quick):
    rng = np.random.default_rng(0)
    return {
        "sample": rng.standard_normal((1, 8, 16, 32, 32), dtype=np.float32),
        "timestep": np.array([700.0], dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((1, 128, 768), dtype=np.float32),
    }


WORKLOADS = {
    "dit": Workload(
        name="dit",
        label="DiT-XL/2 forward",
        title=lambda quick: f"DiT-XL/2{' with 4 layers (--quick)' if quick else ''} forward, batch 2 (4x32x32)",
        folder=lambda quick: f"dit-xl2-{4 if quick else 28}layers",
        onnx_folder=lambda quick: f"dit-xl2-{4 if quick else 28}layers-onnx",
        diffusers_class="DiTTransformer2DModel",
        make=dit_make,
        inputs=dit_inputs,
        call=lambda model, x: model(x["sample"], timestep=x["timestep"], class_labels=x["class_labels"],
                                    return_dict=False)[0],
        nodus_call=lambda model, x: model.forward(**x),
    ),
    "unet": Workload(
        name="unet",
        label="SD-1.5 UNet forward",
        title=lambda quick: ("UNet (SD-1.5 config with 2 levels of 32/64 channels, 1 layer per block: --quick) "
                             "forward, batch 2 (4x32x32), context 77x768" if quick else
                             "SD-1.5 UNet forward, batch 2 (4x64x64), context 77x768"),
        folder=lambda quick: "sd15-unet-quick" if quick else "sd15-unet",
        onnx_folder=lambda quick: "sd15-unet-quick-onnx" if quick else "sd15-unet-onnx",
        diffusers_class="UNet2DConditionModel",
        make=unet_make,
        inputs=unet_inputs,
        call=lambda model, x: model(x["sample"], x["timestep"], encoder_hidden_states=x["encoder_hidden_states"],
                                    return_dict=False)[0],
        nodus_call=lambda model, x: model.forward(**x),
    ),
    "vae": Workload(
        name="vae",
        label="SD VAE decode",
        title=lambda quick: (f"SD VAE decode 1x4x{32 if quick else 64}x{32 if quick else 64} -> "
                             f"1x3x{256 if quick else 512}x{256 if quick else 512}{' (--quick)' if quick else ''}"),
        folder=lambda quick: "sd-vae",
        onnx_folder=lambda quick: f"sd-vae-decode{32 if quick else 64}-onnx",
        diffusers_class="AutoencoderKL",
        make=vae_make,
        inputs=vae_inputs,
        call=lambda model, x: model.decode(x["latent"], return_dict=False)[0],
        nodus_call=lambda model, x: model.decode(x["latent"]),
    ),
    "medsyn2": Workload(
        name="medsyn2",
        label="MedSyn2-shaped 3D DiT forward",
        title=lambda quick: (f"MedSyn2-shaped 3D DiT ({2 if quick else 8} layers, hidden 384) forward, batch 1: "
                             "latent 4x16x32x32 + mask 4x16x32x32 (2,048 tokens), text 128x768"),
        folder=lambda quick: f"medsyn2-{2 if quick else 8}layers",
        onnx_folder=lambda quick: f"medsyn2-{2 if quick else 8}layers-onnx",
        diffusers_class="MedSyn2Transformer3DModel",
        make=medsyn2_make,
        inputs=medsyn2_inputs,
        call=lambda model, x: model(x["sample"], x["timestep"], x["encoder_hidden_states"], return_dict=False)[0],
        nodus_call=lambda model, x: model.forward(**x),
        loader=lambda folder: medsyn2_class().from_pretrained(folder),
    ),
}


# -- shared machinery ------------------------------------------------------


def timed(function):
    """(function(), wall seconds)."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def gigabytes(count):
    return f"{count / 1e9:.2f}" if count >= 1e8 else f"{count / 1e9:.3g}"


def rel_max_error(value, reference):
    return float(np.abs(value - reference).max() / np.abs(reference).max())


def failure(error):
    """A one-line description of an exception, for the report."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def paths(workload, work, quick):
    """(the diffusers folder, the ONNX folder)."""
    return work / workload.folder(quick), work / workload.onnx_folder(quick)


def prepare(workload, work, quick):
    """Makes the diffusers folder and the ONNX export if missing (in this process)."""
    import torch

    folder, onnx_dir = paths(workload, work, quick)
    if not (folder / "config.json").exists():
        print(f"[{workload.name}] making the random-init model in {folder} ...")
        torch.manual_seed(0)
        partial = folder.with_name(folder.name + ".partial")  # renamed when complete
        workload.make(quick).save_pretrained(partial, safe_serialization=True)
        partial.rename(folder)
    if not (onnx_dir / "export.json").exists():
        print(f"[{workload.name}] exporting ONNX to {onnx_dir} ...")
        onnx_dir.mkdir(parents=True, exist_ok=True)
        model = torch_model(workload, folder)
        try:
            method, seconds = timed(lambda: export_onnx(workload, model, quick, onnx_dir / "model.onnx"))
            record = {"method": f"{method}; export took {seconds:.0f} s"}
        except Exception as error:  # noqa: BLE001 - reported in the table instead of stopping the suite
            record = {"error": f"export failed with both exporters ({failure(error)}); delete {onnx_dir} to retry"}
        (onnx_dir / "export.json").write_text(json.dumps(record))


def exported(workload, model, names):
    """The module that is exported: forward(*inputs in order) = the workload's torch call."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return workload.call(self.model, dict(zip(names, tensors)))

    return Exported().eval()


def export_onnx(workload, model, quick, path):
    """Exports with the dynamo exporter, else the legacy one (opset 17); returns which."""
    import onnx
    import torch

    inputs = workload.inputs(quick)
    module = exported(workload, model, list(inputs))
    args = dict(args=tuple(torch.from_numpy(value) for value in inputs.values()), input_names=list(inputs),
                output_names=["out"])
    try:
        torch.onnx.export(module, f=str(path), dynamo=True, external_data=True, **args)
        method = "torch.onnx.export(dynamo=True)"
    except Exception as error:  # noqa: BLE001 - any exporter failure means: try the other one
        print(f"dynamo export failed ({failure(error)}); using the legacy exporter")
        for leftover in path.parent.iterdir():
            leftover.unlink()
        torch.onnx.export(module, f=str(path), dynamo=False, opset_version=17, **args)
        method = f"legacy torch.onnx.export(dynamo=False) (the dynamo exporter failed: {failure(error)})"
    graph = onnx.load(str(path), load_external_data=False)
    opset = max(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))
    external = any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in graph.graph.initializer)
    return f"{method}, opset {opset}, weights {'in external data' if external else 'inside the .onnx'}"


def count_flops(workload, model, tensors):
    """FLOPs of one forward (a multiply-add is 2): convolutions (2 * output elements * in_channels/groups
    * kh * kw), linears (2 * output elements * in_features), and attention matmuls Q K^T and P V
    (2 * 2 * B * Nq * Nk * inner, self- and cross-attention)."""
    import torch
    from diffusers.models.attention_processor import Attention

    flops = {"convolutions": 0, "linears": 0, "attention": 0}

    def conv(module, _, out):
        flops["convolutions"] += 2 * out.numel() * module.weight[0].numel()

    def linear(module, _, out):
        flops["linears"] += 2 * out.numel() * module.in_features

    def attention(module, args, kwargs, _):
        hidden = args[0] if args else kwargs["hidden_states"]
        context = args[1] if len(args) > 1 else kwargs.get("encoder_hidden_states", kwargs.get("context"))
        batch, queries = hidden.shape[0], hidden.shape[2:].numel() if hidden.ndim == 4 else hidden.shape[1]
        keys = queries if context is None else context.shape[1]
        inner = getattr(module, "inner_dim", None) or module.to_q.out_features
        flops["attention"] += 2 * 2 * batch * queries * keys * inner

    handles = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            handles.append(module.register_forward_hook(conv))
        elif isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(linear))
        elif isinstance(module, Attention) or type(module).__name__ == "GatedAttention":
            handles.append(module.register_forward_hook(attention, with_kwargs=True))
    with torch.inference_mode():
        workload.call(model, tensors)
    for handle in handles:
        handle.remove()
    return flops


def torch_model(workload, folder):
    import diffusers

    if workload.loader:
        return workload.loader(folder).eval()
    return getattr(diffusers, workload.diffusers_class).from_pretrained(folder).eval()


def torch_engines(workload, folder, inputs, threads):
    """(the model, its fp32 forward, its bf16 autocast forward, the input tensors)."""
    import torch

    torch.set_num_threads(threads)
    model = torch_model(workload, folder)
    tensors = {name: torch.from_numpy(value) for name, value in inputs.items()}

    def fp32():
        with torch.inference_mode():
            return workload.call(model, tensors).numpy()

    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return workload.call(model, tensors).float().numpy()

    return model, fp32, bf16, tensors


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


def nodus_engine(workload, folder, inputs, threads, dtype):
    import nodus

    model = nodus.load(folder, threads=threads, dtype=dtype)
    return lambda: workload.nodus_call(model, inputs)


def nodus_onnx_engine(path, inputs, threads):
    """Nodus running the same ONNX export onnxruntime runs."""
    import nodus

    model = nodus.load(str(path), threads=threads)

    def forward():
        result = model.forward(**inputs)
        return result["out"] if isinstance(result, dict) else result

    return forward


def child(kind, workload, quick, folder, threads, dtype):
    """In a fresh process: load + 1 forward; prints load / first-forward seconds and peak RSS."""
    inputs = workload.inputs(quick)
    if kind == "nodus-onnx":
        import nodus  # noqa: F401
        forward, load_s = timed(lambda: nodus_onnx_engine(folder, inputs, threads))
    elif kind == "nodus":
        import nodus  # noqa: F401 - imports (and the library) are loaded before the clock starts
        forward, load_s = timed(lambda: nodus_engine(workload, folder, inputs, threads, dtype))
    else:
        import diffusers  # noqa: F401
        (_, forward, _, _), load_s = timed(lambda: torch_engines(workload, folder, inputs, threads))
    _, first_s = timed(forward)
    print(json.dumps({"load_s": load_s, "first_forward_s": first_s, **memory()}))


def memory():
    """Peak and current RSS in bytes, from /proc/self/status. The peak is VmHWM, not ru_maxrss:
    Linux folds the parent's RSS at the fork into ru_maxrss at exec."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[name].split()[0]) * 1024 for key, name in (("peak_rss", "VmHWM"), ("rss", "VmRSS"))}


def run_child(args, *extra):
    """Runs this script with `extra` arguments; returns its last stdout line as JSON (None with --prepare)."""
    command = [sys.executable, __file__, "--threads", str(args.threads), "--work", str(args.work),
               *(["--cpu", args.cpu] if args.cpu else []),
               *(["--quick"] if args.quick else []), *extra]
    if extra[0] == "--prepare":
        subprocess.run(command, check=True)
        return None
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]  # the exception, for a traceback
        raise RuntimeError(f"the subprocess ({shlex.join(extra[:2])}) exited with {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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


# Between two engines' runs: onnxruntime's and OpenMP's worker threads spin for a while after a
# run, and on 2 cores they take time from whichever engine runs next (measured: Nodus 0.38-0.40 s
# right after onnxruntime, 0.36-0.37 s after this pause; onnxruntime unchanged).
SETTLE_SECONDS = 0.2


def interleaved(engines, runs):
    """Seconds per engine over `runs` rounds; each round runs every engine once, order rotating,
    with SETTLE_SECONDS between runs."""
    names, times = list(engines), {name: [] for name in engines}
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(SETTLE_SECONDS)
            times[name].append(timed(engines[name])[1])
        print(f"  round {round_index + 1}/{runs}: " + ", ".join(f"{name} {times[name][-1]:.2f}s" for name in names))
    return times


def busy_share(seconds=2.0):
    """The share of all CPUs' time spent outside idle and iowait over `seconds`: mostly other
    processes' work. (The load average also counts tasks asleep in the kernel.)"""
    def sample():
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, and idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle) / max(total_after - total, 1)


def machine():
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    family = f"CPU family {cpu['CPU family']}, model {cpu['Model']}"
    return f"{cpu['Model name']} ({family}), {cpu['CPU(s)']} CPUs (lscpu){hide_avx512.note()}"


def nodus_gemm():
    """Which CPU level and matrix products Nodus runs (chosen once at load; NODUS_CPU lowers it)."""
    import nodus

    level, supported = nodus.cpu_level(), nodus.cpu_level(supported=True)
    forced = f" (forced by NODUS_CPU={os.environ['NODUS_CPU']})" if os.environ.get("NODUS_CPU") else ""
    text = f"CPU level {level}{forced}, this CPU supports up to {supported}; "
    if level.startswith("avx512"):
        return text + "Nodus' own AVX-512 kernels (packed weights, patches read from the image); OpenBLAS unused"
    coretype = os.environ.get("OPENBLAS_CORETYPE", "(unset: auto-detected)")
    return text + f"products below AVX-512 as this build has them; OPENBLAS_CORETYPE={coretype}"


def attempt(result, name, function):
    """function(), or None with the failure recorded under result["failed"][name]."""
    try:
        return function()
    except Exception as error:  # noqa: BLE001 - a failing engine is reported, the others still run
        print(f"  {name} failed: {failure(error)}")
        result["failed"][name] = failure(error)
        return None


def benchmark(args, workload):
    """Times one workload; returns the numbers its report section needs (and holds no model)."""
    import torch

    folder, onnx_dir = paths(workload, args.work, args.quick)
    print(f"[{workload.name}] child processes: 3 Nodus loads per precision, 1 torch load ...")
    warm_page_cache(folder)
    result = {"failed": {}, "weight_bytes": sum(path.stat().st_size for path in folder.glob("*.safetensors"))}
    export = json.loads((onnx_dir / "export.json").read_text())
    result["export"] = export.get("method") or export["error"]
    child_args = ("--workload", workload.name, "--model", str(folder))
    result["nodus_child"] = {}
    for engine, dtype in NODUS_DTYPES.items():
        runs = attempt(result, f"{engine} child", lambda: [run_child(args, "--child", "nodus", "--dtype", dtype,
                                                                     *child_args) for _ in range(3)])
        if runs:
            result["nodus_child"][engine] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    if "error" not in export:
        warm_page_cache(onnx_dir)  # as the diffusers folder above: the table says "warm page cache"
        onnx_args = ("--workload", workload.name, "--model", str(onnx_dir / "model.onnx"))
        runs = attempt(result, "Nodus ONNX fp32 child",
                       lambda: [run_child(args, "--child", "nodus-onnx", *onnx_args) for _ in range(3)])
        if runs:
            result["nodus_child"]["Nodus ONNX fp32"] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result["torch_child"] = attempt(result, "torch child", lambda: run_child(args, "--child", "torch", *child_args))

    inputs = workload.inputs(args.quick)
    model, torch_fp32, torch_bf16, tensors = torch_engines(workload, folder, inputs, args.threads)
    result["flops"] = count_flops(workload, model, tensors)
    engines = {"torch fp32": torch_fp32}
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        engines["torch bf16 autocast"] = torch_bf16
    else:  # oneDNN would run its reference loops: minutes per UNet forward, and no comparison worth having
        result["skipped"] = {"torch bf16 autocast": "oneDNN has no bf16 kernels for this CPU "
                                                    "(`torch.ops.mkldnn._is_mkldnn_bf16_supported()` is False)"}
    if "error" in export:
        result["failed"]["onnxruntime"] = export["error"]
    else:
        print(f"[{workload.name}] onnxruntime session ...")
        session = attempt(result, "onnxruntime", lambda: onnxruntime_engine(onnx_dir / "model.onnx", inputs,
                                                                            args.threads))
        if session:
            engines["onnxruntime"], result["ort_session_s"] = session
    for engine, dtype in NODUS_DTYPES.items():
        engines[engine] = attempt(result, engine, lambda: nodus_engine(workload, folder, inputs, args.threads, dtype))
    if "error" not in export:
        engines["Nodus ONNX fp32"] = attempt(result, "Nodus ONNX fp32",
                                             lambda: nodus_onnx_engine(onnx_dir / "model.onnx", inputs, args.threads))
    engines = {name: forward for name, forward in engines.items() if forward is not None}

    result["peaks_before"] = sgemm_peaks(args.threads)
    print(f"[{workload.name}] warm-up ...")
    outputs = {name: attempt(result, name, forward) for name, forward in engines.items()}
    outputs = {name: out for name, out in outputs.items() if out is not None}
    engines = {name: forward for name, forward in engines.items() if name in outputs}
    result["errors"] = {name: rel_max_error(out, outputs["torch fp32"]) for name, out in outputs.items()}
    if (ort_error := result["errors"].get("onnxruntime", 0)) > 1e-3:
        print(f"WARNING: onnxruntime differs from torch fp32: relative max error {ort_error:.1e}")
    result["output_shape"] = "x".join(map(str, outputs["torch fp32"].shape))
    result["times"] = interleaved(engines, args.runs)
    result["peaks_after"] = sgemm_peaks(args.threads)
    return result


# -- the report ------------------------------------------------------------


def medians(r):
    return {name: statistics.median(seconds) for name, seconds in r["times"].items()}


def ratio(r, nodus, name):
    """Nodus (in the precision `nodus` names) / engine `name`, of the medians, as text."""
    m = medians(r)
    return f"{m[nodus] / m[name]:.2f}" if nodus in m and name in m else "n/a"


# The summary's ratio columns: (Nodus engine, the engine it is held against).
SUMMARY_RATIOS = (("Nodus fp32", "torch fp32"), ("Nodus fp32", "onnxruntime"), ("Nodus bf16", "torch bf16 autocast"),
                  ("Nodus ONNX fp32", "Nodus fp32"), ("Nodus ONNX fp32", "onnxruntime"))


def summary(args, results):
    """Medians of every workload side by side, the targets' ratios, the bf16 error and Nodus' peak RSS."""
    def cell(r, name):
        if name in r.get("skipped", {}):
            return "skipped"
        return f"{medians(r)[name]:.3f}" if name in r["times"] else "failed"

    def rss(r, engine):
        child = r["nodus_child"].get(engine)
        return f"{child['peak_rss'] / 1e9:.2f}" if child else "failed"

    def row(name, r):
        error = r["errors"].get("Nodus bf16")
        return (f"| {WORKLOADS[name].label} | " + " | ".join(cell(r, engine) for engine in ENGINES)
                + " | " + " | ".join(ratio(r, nodus, other) for nodus, other in SUMMARY_RATIOS)
                + f" | {'n/a' if error is None else f'{error:.1e}'} | {rss(r, 'Nodus fp32')} / {rss(r, 'Nodus bf16')} |")

    return [
        "| workload | " + " | ".join(f"{name} median s" for name in ENGINES) + " | "
        + " | ".join(f"{nodus} / {other}" for nodus, other in SUMMARY_RATIOS)
        + " | Nodus bf16 error vs torch fp32 | Nodus peak RSS GB, fp32 / bf16 |",
        "|---|" + "---:|" * (len(ENGINES) + len(SUMMARY_RATIOS) + 2),
        *[row(name, r) for name, r in results.items()],
    ]


def section(args, workload, r):
    """The Markdown section of one workload."""
    flops, gb = sum(r["flops"].values()), 1e9
    m = medians(r)
    rows = []
    for name in ENGINES:
        if name in r["times"]:
            rows.append(f"| {name} | {m[name]:.3f} | {min(r['times'][name]):.3f} | "
                        + " | ".join(ratio(r, nodus, name) for nodus in NODUS_DTYPES)
                        + f" | {flops / m[name] / 1e9:.0f} | {r['errors'][name]:.1e} |")
        elif reason := r.get("skipped", {}).get(name):
            rows.append(f"| {name} | skipped: {reason} | | | | | |")
        else:
            rows.append(f"| {name} | failed: {r['failed'].get(name, 'not run').replace('|', '/')} | | | | | |")
    before, after = r["peaks_before"], r["peaks_after"]
    peaks = ", ".join(f"{name} {before[name]:.0f} / {after[name]:.0f}" for name in before)
    setup, memory_rows = [], []
    for engine in (*NODUS_DTYPES, "Nodus ONNX fp32"):
        if nodus := r["nodus_child"].get(engine):
            setup += [f"| {engine}: `nodus.load` (median of 3 fresh subprocesses, warm page cache) "
                      f"| {nodus['load_s']:.3f} |",
                      f"| {engine}: first forward after load (plans built, weights packed, 1 forward; median of 3) "
                      f"| {nodus['first_forward_s']:.3f} |"]
            memory_rows.append(f"| {engine} (median of 3) | {nodus['peak_rss'] / gb:.2f} | {nodus['rss'] / gb:.2f} |")
        else:
            setup.append(f"| {engine} subprocess: failed ({r['failed'].get(f'{engine} child')}) | |")
    if torch_child := r.get("torch_child"):
        setup.append(f"| torch `from_pretrained` (1 fresh subprocess, warm page cache) | {torch_child['load_s']:.3f} |")
        memory_rows.append(f"| torch (diffusers `from_pretrained`, no accelerate) | "
                           f"{torch_child['peak_rss'] / gb:.2f} | {torch_child['rss'] / gb:.2f} |")
    else:
        setup.append(f"| torch subprocess: failed ({r['failed'].get('torch child')}) | |")
    if "ort_session_s" in r:
        setup.append(f"| onnxruntime session creation (`ORT_ENABLE_ALL`) | {r['ort_session_s']:.3f} |")
    inputs = workload.inputs(args.quick).items()
    shapes = ", ".join(f"{name} {list(value.shape)} {value.dtype}" for name, value in inputs)
    f = r["flops"]
    return [
        f"## {workload.title(args.quick)}, {args.threads} threads",
        "",
        f"* Model: random-init diffusers `{workload.diffusers_class}` in "
        f"`{workload.folder(args.quick)}` under --work ({gigabytes(r['weight_bytes'])} GB of weights), "
        f"inputs {shapes}, "
        f"output {r['output_shape']}",
        f"* ONNX: {r['export']}",
        f"* Forward FLOPs (a multiply-add is 2): {flops / 1e9:.1f} GFLOP = convolutions {f['convolutions'] / 1e9:.1f} "
        f"+ linears {f['linears'] / 1e9:.1f} + attention matmuls {f['attention'] / 1e9:.1f}",
        f"* sgemm peak, fp32 1152x1152x1152 on {args.threads} threads, best of 30, GFLOP/s before / after "
        f"the timed rounds (a check on machine noise): {peaks}",
        "",
        "| engine | median s | min s | Nodus fp32 / engine | Nodus bf16 / engine (medians, < 1: Nodus faster) "
        "| GFLOP/s (median) | rel. max error vs torch fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "| setup | seconds |",
        "|---|---:|",
        *setup,
        "",
        f"| memory: own subprocess, load + 1 forward (weights {gigabytes(r['weight_bytes'])} GB in float32) "
        "| peak RSS GB | RSS after GB |",
        "|---|---:|---:|",
        *memory_rows,
        "",
    ]


def report(args, results, loads):
    """The Markdown report: common header, summary, a section per workload."""
    import diffusers
    import onnxruntime
    import torch

    try:
        import nodus
        nodus_version = f"nodus {nodus.__version__} (`{os.path.relpath(nodus._lib.path, REPO)}`)"
    except ImportError as error:
        nodus_version = f"nodus: {failure(error)}"
    before, after, busy = loads
    load_text = " / ".join(f"{value:.2f}" for value in before) + " before, " + \
        " / ".join(f"{value:.2f}" for value in after) + " after (which includes this run's own threads); " + \
        f"CPU busy in the 2 s before the run (other processes, and any of this script's threads): {busy:.0%}"
    return "\n".join([
        f"# Nodus beside torch and onnxruntime: {', '.join(WORKLOADS[name].label for name in results)}"
        f"{' (--quick variants)' if args.quick else ''}, {args.threads} threads",
        "",
        f"* Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"* Machine: {machine()}",
        f"* Load average (1 / 5 / 15 min): {load_text}"
        + ("" if busy < 0.05 else " (**taken on a loaded machine**: other processes were running; timings are noisy)"),
        f"* Command: `{shlex.join(['python', os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])}`",
        f"* Versions: torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, {nodus_version}",
        f"* Nodus GEMM: {nodus_gemm()}",
        f"* Per workload: 1 warm-up run each, then {args.runs} interleaved rounds (each round runs every engine "
        f"once, in rotating order, {SETTLE_SECONDS} s apart so that one engine's spinning worker threads are idle "
        "before the next starts); same inputs, `torch.inference_mode()`. onnxruntime: CPU EP, "
        "`ORT_ENABLE_ALL`; everyone on the same threads.",
        "",
        *summary(args, results),
        "",
        *[line for name, r in results.items() for line in section(args, WORKLOADS[name], r)],
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=(*WORKLOADS, "all"), default="all", help="what to time (default all)")
    parser.add_argument("--runs", type=int, default=5, help="interleaved timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="small variants (DiT 4 layers, a 2-level UNet, VAE at 32x32 latent), to check the script")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nodus-bench"), help="cache folder for the models")
    parser.add_argument("--child", choices=("nodus", "nodus-onnx", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--cpu", choices=("avx512_bf16", "avx512", "avx2", "baseline"),
                        help="run Nodus at this CPU level (NODUS_CPU; it can only lower the level)")
    hide_avx512.add_option(parser)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    hide_avx512.apply(args)
    if args.cpu:
        os.environ["NODUS_CPU"] = args.cpu  # before nodus loads, here and in every subprocess
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    if args.child:
        child(args.child, WORKLOADS[args.workload], args.quick, args.model, args.threads, args.dtype)
        return
    if args.prepare:
        for name in names:
            prepare(WORKLOADS[name], args.work, args.quick)
        return
    sys.stdout.reconfigure(line_buffering=True)
    load_before, busy = os.getloadavg(), busy_share()
    run_child(args, "--prepare", "--workload", args.workload)  # untimed; its memory goes with the subprocess
    results = {}
    for name in names:
        results[name] = benchmark(args, WORKLOADS[name])
        gc.collect()
    text = report(args, results, (load_before, os.getloadavg(), busy))
    print("\n" + text)
    folder = args.work if args.quick else REPO / "benchmarks" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    stem = ("forward" if args.workload == "all" else f"forward-{args.workload}") + hide_avx512.suffix() \
        + (f"-{args.cpu}" if args.cpu else "")
    path = folder / f"{stem}-{datetime.date.today().isoformat()}{'-quick' if args.quick else ''}.md"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
