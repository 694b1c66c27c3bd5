"""Runs the libFuzzer targets of Fuzz/ and reports executions and time per target.

    python3 Fuzz/run_fuzzers.py --binaries DIR --corpus DIR (--seconds N | --runs N) [--seed S] TARGET ...

Each target runs on its corpus folder (which grows), one target per core at a time. A crash,
hang (one input over 10 s), leak or out-of-memory (over 2 GB) stops that target with its
input saved as DIR/../fuzz-artifacts/<target>-crash-... and fails the run. With --runs, a
target that ends before N executions fails too. Standard library only.
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time



def corpus_bytes(folder):
    return sum(entry.stat().st_size for entry in os.scandir(folder)) if os.path.isdir(folder) else 0


def run(target, arguments):
    artifacts = os.path.join(os.path.dirname(os.path.abspath(arguments.corpus)), "fuzz-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    log_path = os.path.join(artifacts, f"{target}.log")
    limit = f"-runs={arguments.runs}" if arguments.runs else f"-max_total_time={arguments.seconds}"
    seed = [f"-seed={arguments.seed}"] if arguments.seed else []
    command = [os.path.join(arguments.binaries, f"fuzz-{target}"), limit, *seed, "-timeout=10", "-rss_limit_mb=2048",
               "-print_final_stats=1", f"-artifact_prefix={artifacts}/{target}-",
               os.path.join(arguments.corpus, target)]
    # Swift's backtracer would stop to symbolicate a crash; libFuzzer's own handler saves the input.
    environment = dict(os.environ, SWIFT_BACKTRACE="enable=no")
    start = time.monotonic()
    with open(log_path, "w") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=environment).returncode
    seconds = time.monotonic() - start
    with open(log_path, errors="replace") as log:
        text = log.read()
    found = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    executions = int(found.group(1)) if found else 0
    problem = None
    if status != 0:
        kind = re.search(r"ERROR: \w+: ([^\n]{1,60})", text)
        saved = re.search(r"Test unit written to (\S+)", text)
        problem = (f"{kind.group(1).strip() if kind else 'failed'} (exit {status}): "
                   f"{saved.group(1) if saved else 'no input saved'}, log {log_path}")
    elif arguments.runs and executions < arguments.runs:
        problem = f"only {executions} executions, see {log_path}"
    return target, executions, seconds, problem


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binaries", required=True)
    parser.add_argument("--corpus", required=True)
    limit = parser.add_mutually_exclusive_group(required=True)
    limit.add_argument("--seconds", type=int)
    limit.add_argument("--runs", type=int)
    parser.add_argument("--seed", type=int, help="libFuzzer's random seed, so a run can be repeated (default: new each run)")
    parser.add_argument("targets", nargs="+")
    arguments = parser.parse_args()
    # Bigger corpora run slower: start those first, so the cores finish at about the same time.
    targets = sorted(arguments.targets, key=lambda target: -corpus_bytes(os.path.join(arguments.corpus, target)))

    lanes = max(1, min(os.cpu_count() or 1, len(targets)))
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(lanes) as pool:
        results = list(pool.map(lambda target: run(target, arguments), targets))
    print(f"{'target':<18} {'executions':>12} {'seconds':>8}  result")
    for target, executions, seconds, problem in results:
        print(f"{target:<18} {executions:>12} {seconds:>8.1f}  {problem or 'no crash, hang, leak or OOM'}")
    print(f"{len(results)} targets, {sum(r[1] for r in results)} executions in {time.monotonic() - start:.0f} s "
          f"on {lanes} cores")
    return 1 if any(problem for *_, problem in results) else 0


if __name__ == "__main__":
    sys.exit(main())
