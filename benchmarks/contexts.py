#!/usr/bin/env python3
"""Serving one model to two threads: two run contexts of one model beside two loaded models.

    python benchmarks/contexts.py [--model /tmp/nodus-bench/dit-xl2-28layers] [--forwards 4] [--runs 3]

Each setup runs in a fresh process: two Python threads, each doing --forwards forwards of a DiT-XL/2
batch 2 (the C calls release the GIL), each on its own context (threads=1) of one model, or each on
its own model (threads=1). Reports wall seconds per setup (median of --runs), forwards per second and
peak RSS (VmHWM), and their ratios. The model folder is what `make bench` makes (a random-init
DiT-XL/2); the report goes to benchmarks/results/contexts-<date>.md.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))


def peak_rss():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmHWM"].split()[0]) * 1024


def child(args):
    import nodus

    rng = np.random.default_rng(0)
    inputs = dict(sample=rng.standard_normal((2, 4, 32, 32), dtype=np.float32), timestep=np.array([999, 250]),
                  class_labels=np.array([207, 360]))
    if args.child == "contexts":
        model = nodus.load(args.model, threads=1)
        runners = [model.context(threads=1) for _ in range(2)]
    else:
        runners = [nodus.load(args.model, threads=1) for _ in range(2)]
    for runner in runners:  # plans built and weights packed before the clock starts
        runner.forward(**inputs)

    def work(runner):
        for _ in range(args.forwards):
            runner.forward(**inputs)

    threads = [threading.Thread(target=work, args=(runner,)) for runner in runners]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss": peak_rss()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="/tmp/nodus-bench/dit-xl2-28layers")
    parser.add_argument("--forwards", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=("contexts", "models"))
    args = parser.parse_args()
    if args.child:
        return child(args)
    results = {"contexts": [], "models": []}
    for _ in range(args.runs):  # interleaved
        for setup in results:
            command = [sys.executable, __file__, "--child", setup, "--model", args.model, "--forwards", str(args.forwards)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            results[setup].append(json.loads(done.stdout.strip().splitlines()[-1]))
    import nodus

    rows, medians = [], {}
    for setup, label in (("contexts", "one model, two contexts"), ("models", "two models")):
        seconds = statistics.median(result["seconds"] for result in results[setup])
        rss = statistics.median(result["peak_rss"] for result in results[setup])
        medians[setup] = (seconds, rss)
        rows.append(f"| {label} | {seconds:.2f} | {2 * args.forwards / seconds:.2f} | {rss / 1e9:.2f} |")
    with open("/proc/cpuinfo") as info:
        cpu = next(line.split(":")[1].strip() for line in info if line.startswith("model name"))
    lines = ["# Serving one model to two threads: contexts beside separate models", "",
             f"* Date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
             f"* Machine: {cpu}, {os.cpu_count()} CPUs, Nodus CPU level {nodus.cpu_level()}; load average "
             f"{' / '.join(f'{value:.2f}' for value in os.getloadavg())} after",
             f"* Command: `python benchmarks/contexts.py {' '.join(sys.argv[1:])}`",
             f"* Workload: DiT-XL/2 (random init) forward, batch 2; two threads x {args.forwards} forwards, each thread "
             f"on its own context (threads=1) of one model, or on its own model (threads=1); fresh process per setup, "
             f"median of {args.runs} interleaved runs", "",
             "| setup | seconds | forwards / s | peak RSS GB |", "|---|---:|---:|---:|", *rows, "",
             f"Contexts / models: time {medians['contexts'][0] / medians['models'][0]:.2f}x, peak RSS "
             f"{medians['contexts'][1] / medians['models'][1]:.2f}x (the issue's bound: at most 0.6x at the same speed)."]
    target = REPO / "benchmarks" / "results" / f"contexts-{datetime.date.today():%Y-%m-%d}.md"
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
