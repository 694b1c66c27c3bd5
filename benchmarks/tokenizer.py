#!/usr/bin/env python3
"""CLIP tokenizer speed (issue 15): nodus.Tokenizer beside transformers' CLIPTokenizer and
CLIPTokenizerFast (in transformers 5 one class, backed by Hugging Face tokenizers; both are timed, as
named) on prompts of about 77 tokens, in one interleaved run.

    .venv-bench/bin/python benchmarks/tokenizer.py [--rounds 15] [--calls 200]

Every engine loads Tests/Fixtures/clip-tokenizer (SD-1.5's tokenizer folder: the real 49408-token
vocabulary) and encodes with the Stable Diffusion pipelines' call, `tokenizer(prompt,
padding="max_length", max_length=77, truncation=True)` (transformers with return_tensors="np", so both
return an int64 array). Workloads:
  * same prompt: one 77-token prompt again and again (BPE caches warm on both sides);
  * fresh words: 77-token prompts of random 4-letter words never seen before (a new set every round,
    the same for every engine), so every word goes through BPE (cold caches on both sides);
  * 64 prompts: a list of 64 different prompts of 60-90 tokens in one call;
  * long prompt: a 300-word report, truncated to 77.
Each round runs every engine `--calls` times per workload, engines interleaved round by round; the
report gives the medians over rounds of the time per call, checks that all engines return the same ids,
and writes benchmarks/results/tokenizer-<date>.md. One thread (tokenization is serial on every side).
"""

import argparse
import datetime
import os
import platform
import random
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
FOLDER = os.path.join(REPO, "Tests", "Fixtures", "clip-tokenizer")

SENTENCES = [
    "a frontal chest x-ray of an adult patient with a 3.5 cm spiculated nodule in the right lower lobe",
    "no pleural effusion or pneumothorax, normal cardiomediastinal silhouette, clear lungs",
    "mild degenerative changes of the thoracic spine, small anterior osteophytes at T8-T10",
    "surgical clips project over the right upper quadrant, consistent with prior cholecystectomy",
    "high resolution, detailed, sharp focus, professional radiograph, 512x512, grayscale",
    "(calcified granuloma:1.2), ground-glass opacity, [motion blur], lateral view, portable AP film",
    "the trachea is midline; heart size is normal; the hila are not enlarged; costophrenic angles sharp",
    "Right-sided central venous catheter terminates at the cavoatrial junction. No free air.",
]
PROMPT = SENTENCES[0] + ", " + SENTENCES[1] + ", " + SENTENCES[4] + ", chest film"  # 77 tokens with BOS/EOS
REPORT = " ".join(SENTENCES * 3)  # about 300 words


def machine():
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    return f"{cpu.get('Model name', platform.processor())}, {cpu.get('CPU(s)', '?')} CPUs (lscpu)"


def fresh_prompts(rng, count):
    """`count` prompts of 30 random 4-letter words (about 75 tokens with BOS/EOS)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [" ".join("".join(rng.choice(letters) for _ in range(4)) for _ in range(30)) for _ in range(count)]


def prompts64():
    result = []
    for index in range(64):
        first, second, third = (SENTENCES[(index + k * 3) % len(SENTENCES)] for k in range(3))
        result.append(f"{first}, {second}, {third} #{index}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import tokenizers
    import transformers
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    import nodus

    loads = {}
    start = time.perf_counter()
    nodus_tok = nodus.Tokenizer.from_pretrained(FOLDER)
    loads["Nodus"] = time.perf_counter() - start
    start = time.perf_counter()
    slow = CLIPTokenizer.from_pretrained(FOLDER)
    loads["transformers CLIPTokenizer"] = time.perf_counter() - start
    start = time.perf_counter()
    fast = CLIPTokenizerFast.from_pretrained(FOLDER)
    loads["transformers CLIPTokenizerFast"] = time.perf_counter() - start

    def hf(tokenizer):
        return lambda text: tokenizer(text, padding="max_length", max_length=77, truncation=True,
                                      return_tensors="np")["input_ids"]

    engines = {"Nodus": nodus_tok, "transformers CLIPTokenizer": hf(slow), "transformers CLIPTokenizerFast": hf(fast)}
    batch = prompts64()
    workloads = {"same 77-token prompt": (PROMPT, args.calls), "64 prompts in one call": (batch, max(args.calls // 20, 5)),
                 f"{len(REPORT.split())}-word report, truncated": (REPORT, args.calls)}
    prompt_tokens = len(slow(PROMPT)["input_ids"])
    lengths = [len(ids) for ids in slow(batch)["input_ids"]]
    for name, (text, _) in workloads.items():
        reference = np.asarray(engines["transformers CLIPTokenizer"](text), np.int64)
        for engine, function in engines.items():
            got = np.asarray(function(text), np.int64)
            assert got.shape == reference.shape and (got == reference).all(), f"{engine} differs on {name}"
    fresh = "fresh words, 77 tokens"
    rng = random.Random(0)
    fresh_lengths = [len(ids) for ids in slow(fresh_prompts(random.Random(1), 50))["input_ids"]]
    times = {(workload, engine): [] for workload in list(workloads) + [fresh] for engine in engines}
    for _ in range(args.rounds):
        for workload, (text, calls) in workloads.items():
            for engine, function in engines.items():
                start = time.perf_counter()
                for _ in range(calls):
                    function(text)
                times[(workload, engine)].append((time.perf_counter() - start) / calls)
        prompts = fresh_prompts(rng, args.calls)
        for engine, function in engines.items():
            start = time.perf_counter()
            for prompt in prompts:
                function(prompt)
            times[(fresh, engine)].append((time.perf_counter() - start) / len(prompts))
    check = fresh_prompts(random.Random(2), 20)
    assert all(np.array_equal(np.asarray(engines["Nodus"](text)), hf(slow)(text)) for text in check)
    workloads[fresh] = (None, args.calls)

    load = os.getloadavg()
    lines = [
        "# CLIP tokenizer: Nodus beside transformers",
        "",
        f"Generated by `benchmarks/tokenizer.py --rounds {args.rounds} --calls {args.calls}` on "
        f"{datetime.date.today().isoformat()}.",
        "",
        f"* Machine: {machine()}; load average after the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        "(the machine is shared: other jobs' load makes the figures noisy).",
        f"* transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}; Nodus {nodus.__version__} (release libnodus.so).",
        f"* CLIPTokenizerFast is CLIPTokenizer in this transformers: {CLIPTokenizerFast is CLIPTokenizer}.",
        f"* Prompt: {prompt_tokens} tokens before padding ({PROMPT!r}); 64 prompts of {min(lengths)}-{max(lengths)} "
        "tokens (truncated to 77); the report has "
        f"{len(REPORT.split())} words ({len(slow(REPORT, truncation=False)['input_ids'])} tokens untruncated); fresh "
        f"prompts have {min(fresh_lengths)}-{max(fresh_lengths)} tokens.",
        "* Call: `tokenizer(text, padding=\"max_length\", max_length=77, truncation=True)`; all engines gave "
        "identical ids on every workload.",
        f"* {args.rounds} interleaved rounds; each round times every engine on every workload; medians over rounds "
        "of the time per call.",
        "",
        "| workload | engine | median us per call | min us | Nodus / engine |",
        "|---|---|---|---|---|",
    ]
    for workload in workloads:
        nodus_median = statistics.median(times[(workload, "Nodus")])
        for engine in engines:
            values = times[(workload, engine)]
            median = statistics.median(values)
            ratio = "" if engine == "Nodus" else f"{nodus_median / median:.2f}x"
            lines.append(f"| {workload} | {engine} | {median * 1e6:.1f} | {min(values) * 1e6:.1f} | {ratio} |")
    lines += ["", "Load (`from_pretrained`, once, cold process caches):", ""]
    lines += [f"* {engine}: {seconds * 1e3:.0f} ms" for engine, seconds in loads.items()]
    text = "\n".join(lines) + "\n"
    output = args.output or os.path.join(REPO, "benchmarks", "results",
                                         f"tokenizer-{datetime.date.today().isoformat()}.md")
    with open(output, "w") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
