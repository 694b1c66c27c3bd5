#!/usr/bin/env python3
"""Throughput of the nodule workflow through nodus.batch on the demo model: samples
per hour with 1 and 2 local workers and on a 2-node Ray cluster on loopback.

    python benchmarks/batch_throughput.py [--rows 48] [--steps 50] [--work /tmp/nodus-throughput]

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
(2 x rate with 1). Writes benchmarks/results/batch-throughput-<date>.md.
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


def write_manifest(folder, rows, steps):
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
                                     "model": os.path.join(REPOSITORY, "models", "nodule-demo"), "image": "cxr.png",
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
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "nodus-throughput"))
    options = parser.parse_args()
    shutil.rmtree(options.work, ignore_errors=True)
    os.makedirs(options.work)
    manifest = write_manifest(options.work, options.rows, options.steps)
    environment = dict(os.environ, PYTHONPATH=BINDINGS, RAY_AUTH_MODE="disabled")
    batch = [sys.executable, "-m", "nodus.batch", manifest, "--quiet"]
    results = []
    for label, workers, threads in (("local, 1 worker x 1 thread", 1, 1), ("local, 1 worker x 2 threads", 1, 2),
                                    ("local, 2 workers x 1 thread", 2, 1)):
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

    one = results[0]["per_hour"]
    date = datetime.date.today().isoformat()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    lines = [f"# nodus.batch throughput, nodule insertion on the demo model ({date})", "",
             f"`python benchmarks/batch_throughput.py --rows {options.rows} --steps {options.steps}`: {options.rows} "
             f"insert_nodule rows (480x480 16-bit PNG, {options.steps} DDIM steps, guidance 3.5, one LoRA), Nodus "
             f"{nodus.__version__}, {cpu}, {os.cpu_count()} cores, CPU level {nodus.cpu_level()}. Measured once per "
             "configuration on a shared 2-core machine (other sessions were building and testing at the same time): "
             "read the figures as indications, not medians.", "",
             "| configuration | wall (s) | samples per hour | median row time in its worker (s) | overhead per row (s) "
             "| scaling efficiency vs 1 CPU |", "|---|---:|---:|---:|---:|---:|"]
    for result in results:
        cpus = 1 if result is results[0] else 2
        efficiency = result["per_hour"] / (cpus * one)
        lines.append(f"| {result['label']} | {result['wall']:.1f} | {result['per_hour']:.0f} | {result['row_seconds']:.3f} "
                     f"| {result['overhead']:.3f} | {'' if cpus == 1 else f'{efficiency:.2f}'} |")
    local_two, ray_two = results[2], results[3]
    lines += ["", f"Ray's overhead per row beyond the 2 local workers: "
              f"{ray_two['overhead'] - local_two['overhead']:.3f} s, "
              f"{(ray_two['overhead'] - local_two['overhead']) / ray_two['row_seconds'] * 100:.0f}% of a row's time "
              "(wall time includes joining the cluster and the workers' model loads).", ""]
    output = os.path.join(REPOSITORY, "benchmarks", "results", f"batch-throughput-{date}.md")
    with open(output, "w") as stream:
        stream.write("\n".join(lines))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
