#!/usr/bin/env python3
"""Throughput of the nodule workflow through nodus.batch, on the demo model or on a
DiT-XL/2-sized one: samples per hour with 1 and 2 local workers and on a 2-node Ray
cluster on loopback.

    python benchmarks/batch_throughput.py [--model demo|dit-xl2] [--rows 48] [--steps 50]
        [--work /tmp/nodus-throughput]

`--model dit-xl2` builds (once, in --cache) the seed's model with random weights:
DiT-XL/2 (28 layers, hidden 1152, 16 heads) over 9 input channels (noisy latent, mask,
masked-image latent), 32x32 latents of 256x256 patches, Stable Diffusion's VAE, and a
rank-8 LoRA on every attention projection; radiographs are standardised to 960 as in the
seed. Building needs the benchmark venv (`make .venv-bench/bin/python`: diffusers).

Each configuration runs the same manifest (insert_nodule rows on a synthetic 480x480
16-bit radiograph, 50 DDIM steps, a LoRA, one seed per row) into a fresh folder:
  * local, 1 worker x 1 thread (one CPU: the scaling baseline);
  * local, 1 worker x 2 threads (both cores in one process);
  * local, 2 workers x 1 thread;
  * Ray, a head and a worker node of 1 CPU each, started as separate processes on
    loopback (`ray start --block`), rows as tasks of 1 CPU / 1 thread.
Wall time includes starting the workers and loading the model (and joining the cluster
for Ray). Per-row overhead = wall x workers / rows - the median time a row spends in
its worker (the result line's "seconds"). Scaling efficiency = rate with 2 CPUs /
(2 x rate with 1). Writes benchmarks/results/batch-throughput-<model>[-two-cpus]-steps<N>-<date>.md.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINDINGS = os.path.join(REPOSITORY, "bindings", "python")
sys.path.insert(0, BINDINGS)

import nodus  # noqa: E402
from nodus import medical  # noqa: E402


XL_BUILDER = """
import sys
from diffusers import AutoencoderKL, DiTTransformer2DModel
import torch
torch.manual_seed(0)
folder = sys.argv[1]
DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=9, out_channels=4, num_layers=28,
                      sample_size=32, patch_size=2, num_embeds_ada_norm=1000).save_pretrained(folder + "/dit")
AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
              up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
              latent_channels=4, sample_size=256).save_pretrained(folder + "/vae")
"""


def prepare_xl_model(cache):
    """The DiT-XL/2 nodule model of the module docstring in `cache` (built on first use)."""
    folder = os.path.join(cache, "nodule-dit-xl2")
    if os.path.exists(os.path.join(folder, "workflow.json")):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    subprocess.run([os.path.join(REPOSITORY, ".venv-bench", "bin", "python"), "-c", XL_BUILDER, folder], check=True)
    shutil.copytree(os.path.join(REPOSITORY, "models", "nodule-demo", "scheduler"), os.path.join(folder, "scheduler"))
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    lora = {}
    for layer in range(28):
        for projection in ("to_q", "to_k", "to_v", "to_out.0"):
            key = f"transformer.transformer_blocks.{layer}.attn1.{projection}"
            lora[f"{key}.lora_A.weight"] = (rng.standard_normal((8, 1152)) / 34).astype(np.float32)
            lora[f"{key}.lora_B.weight"] = (rng.standard_normal((1152, 8)) / 100).astype(np.float32)
    save_file(lora, os.path.join(folder, "lora-calcified.safetensors"))
    with open(os.path.join(folder, "workflow.json"), "w") as stream:
        json.dump({"standard_size": 960, "class_label": 0, "guidance_scale": 3.5}, stream)
    return folder


def write_manifest(folder, rows, steps, model):
    from nodus.workflows.follow_up import SD_DDIM  # noqa: F401 - the package imports cleanly

    height = width = 480
    y, x = np.mgrid[0:height, 0:width] / 480.0
    brightness = 0.75 - sum(0.45 / (1 + np.exp((((x - side) / 0.17) ** 2 + ((y - 0.5) / 0.33) ** 2 - 1) * 12))
                            for side in (0.3, 0.7))
    brightness = brightness + 0.01 * np.random.default_rng(0).standard_normal((height, width))
    medical.write_png(os.path.join(folder, "cxr.png"), brightness=np.clip(brightness, 0, 1), bits=16)
    path = os.path.join(folder, "jobs.jsonl")
    with open(path, "w") as stream:
        for index in range(rows):
            stream.write(json.dumps({"id": f"row-{index}", "workflow": "insert_nodule",
                                     "model": model, "image": "cxr.png",
                                     "center": [120 + index % 40, 240], "diameter": 30,
                                     "adapters": {"calcified": 0.7}, "seed": index, "steps": steps}) + "\n")
    return path


def measure(label, workers, command, environment, out, rows):
    started = time.perf_counter()
    subprocess.run(command, check=True, env=environment, capture_output=True)
    wall = time.perf_counter() - started
    with open(os.path.join(out, "results.jsonl")) as stream:
        lines = [json.loads(line) for line in stream]
    assert len(lines) == rows and all(line["status"] == "ok" for line in lines), label
    in_worker = statistics.median(line["seconds"] for line in lines)
    return {"label": label, "workers": workers, "wall": wall, "per_hour": rows / wall * 3600,
            "row_seconds": in_worker, "overhead": wall * workers / rows - in_worker}


def start_cluster(environment, folder):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
                            start_new_session=True)
    for _ in range(240):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.5)
    worker = subprocess.Popen([ray, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                               "--num-cpus=1", "--disable-usage-stats", "--block"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
                              start_new_session=True)
    time.sleep(8)  # the worker node registers
    return port, [worker, head]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["demo", "dit-xl2"], default="demo")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "nodus-throughput"))
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "nodus-bench"))
    parser.add_argument("--only-two-cpus", action="store_true",
                        help="only 2 local workers and Ray (Ray's overhead at long rows, without the 1-CPU runs)")
    options = parser.parse_args()
    shutil.rmtree(options.work, ignore_errors=True)
    os.makedirs(options.work)
    model = (os.path.join(REPOSITORY, "models", "nodule-demo") if options.model == "demo"
             else prepare_xl_model(options.cache))
    manifest = write_manifest(options.work, options.rows, options.steps, model)
    load = os.getloadavg()[0]
    environment = dict(os.environ, PYTHONPATH=BINDINGS, RAY_AUTH_MODE="disabled")
    batch = [sys.executable, "-m", "nodus.batch", manifest, "--quiet"]
    results = []
    local = (("local, 1 worker x 1 thread", 1, 1), ("local, 1 worker x 2 threads", 1, 2),
             ("local, 2 workers x 1 thread", 2, 1))
    for label, workers, threads in local[2:] if options.only_two_cpus else local:
        out = os.path.join(options.work, f"local-{workers}-{threads}")
        results.append(measure(label, workers, batch + ["--out", out, "--workers", str(workers), "--threads",
                                                        str(threads)], environment, out, options.rows))
        print(results[-1], flush=True)
    session = tempfile.mkdtemp(prefix="nodus-ray-", dir="/tmp")
    port, nodes = start_cluster(environment, session)
    try:
        out = os.path.join(options.work, "ray")
        results.append(measure("Ray, 2 nodes x 1 CPU (loopback)", 2,
                               batch + ["--out", out, "--ray", f"127.0.0.1:{port}", "--workers", "2"],
                               environment, out, options.rows))
        print(results[-1], flush=True)
    finally:
        for node in nodes:
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(session, ignore_errors=True)

    one = None if options.only_two_cpus else results[0]["per_hour"]
    date = datetime.date.today().isoformat()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    size = "480x480 16-bit PNG" + (", standardised to 960" if options.model == "dit-xl2" else "")
    lines = [f"# nodus.batch throughput, nodule insertion on the {options.model} model ({date})", "",
             f"`python benchmarks/batch_throughput.py --model {options.model} --rows {options.rows} --steps "
             f"{options.steps}{' --only-two-cpus' if options.only_two_cpus else ''}`: {options.rows} insert_nodule rows ({size}, {options.steps} DDIM steps, guidance 3.5, "
             f"one LoRA), Nodus {nodus.__version__}, {cpu}, {os.cpu_count()} cores, CPU level {nodus.cpu_level()}. "
             f"Measured once per configuration; load average over the minute before the run: {load:.2f}.", "",
             "| configuration | wall (s) | samples per hour | median row time in its worker (s) | overhead per row (s) "
             "| scaling efficiency vs 1 CPU |", "|---|---:|---:|---:|---:|---:|"]
    for result in results:
        cpus = 1 if one is not None and result is results[0] else 2
        efficiency = "" if one is None or cpus == 1 else f"{result['per_hour'] / (cpus * one):.2f}"
        lines.append(f"| {result['label']} | {result['wall']:.1f} | {result['per_hour']:.0f} | {result['row_seconds']:.3f} "
                     f"| {result['overhead']:.3f} | {efficiency} |")
    local_two, ray_two = results[-2], results[-1]
    lines += ["", f"Ray's overhead per row beyond the 2 local workers: "
              f"{ray_two['overhead'] - local_two['overhead']:.3f} s, "
              f"{(ray_two['overhead'] - local_two['overhead']) / ray_two['row_seconds'] * 100:.0f}% of a row's time "
              "(wall time includes joining the cluster and the workers' model loads).", ""]
    name = f"{options.model}{'-two-cpus' if options.only_two_cpus else ''}-steps{options.steps}"
    output = os.path.join(REPOSITORY, "benchmarks", "results", f"batch-throughput-{name}-{date}.md")
    with open(output, "w") as stream:
        stream.write("\n".join(lines))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
