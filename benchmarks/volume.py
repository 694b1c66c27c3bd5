#!/usr/bin/env python3
"""3D generation at scale: one MedSyn2 block from 2k to 44k tokens, a projection to the paper's full size,
and sliding-window decoding of a 128^3 CT volume.

    python benchmarks/volume.py [--threads 2] [--work /tmp/nodus-bench] [--only scaling|decode] [--quick]

1. Scaling: a one-block MedSyn2Transformer3DModel (tests/reference/medsyn2.py; hidden 384, 6 heads, text
   128x768) at token grids of 2,048, 8,192, 21,952 and 43,904 tokens (latents 16x32x32 ... 112x56x56, the
   paper's), each in a fresh Nodus process: seconds (median), GFLOP/s (FLOPs counted below) and peak RSS
   (VmHWM). A least-squares line RSS = a + b * tokens shows the growth is linear (streaming attention:
   no N x N matrix).
2. Projection: the seconds of one forward of a DiT-XL-sized MedSyn2 (hidden 1152, 16 heads, 28 layers) at
   43,904 tokens, from its FLOPs and the rate measured at 43,904 tokens; on a 64-core server, that rate
   times 32 (perfect scaling: an upper bound on speed).
3. Decoding: a random-init MONAI AutoencoderKL(spatial_dims=3) decoder the size of MAISI's (channels
   64/128/256, 2 res blocks, 4x upsampling), exported to ONNX, decodes a 32^3 latent to a 128^3 volume by
   sliding windows of 16^3 latent voxels (overlap 0.25, Gaussian) in a fresh Nodus process: seconds and
   peak RSS.

The report goes to benchmarks/results/volume-<date>.md (--quick: smaller sizes, report in --work).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bindings" / "python"))
sys.path.insert(0, str(REPO / "tests" / "reference"))

WIDTH, HEADS, TEXT_TOKENS, TEXT_WIDTH, IN_CHANNELS, OUT_CHANNELS, PATCH = 384, 6, 128, 768, 8, 4, 2
GRIDS = [(8, 16, 16), (8, 32, 32), (28, 28, 28), (56, 28, 28)]
QUICK_GRIDS = [(4, 8, 8), (8, 8, 8)]
DIT_XL = dict(width=1152, layers=28)


def forward_flops(tokens, width, layers, text=TEXT_TOKENS, text_width=TEXT_WIDTH, ff_mult=4):
    """FLOPs of one MedSyn2 forward (a multiply-add is 2): per block the self-attention's q, k, v, gate and out
    projections (5 N D^2), the cross-attention's q, gate, out (3 N D^2) and k, v on the text (2 L D^2), the
    feed-forward (2 ff_mult N D^2), the pointwise conv (N D^2) and the depthwise 3x3x3 (27 N D), all times 2;
    attention products 4 N^2 D (self) and 4 N L D (cross). Plus the patch embedding, the text projection and the
    output projection."""
    block = 2 * ((5 + 3 + 2 * ff_mult + 1) * tokens * width ** 2 + 2 * text * width ** 2 + 27 * tokens * width)
    block += 4 * tokens * tokens * width + 4 * tokens * text * width
    edges = 2 * tokens * width * (IN_CHANNELS * PATCH ** 3 + OUT_CHANNELS * PATCH ** 3) + 2 * text * text_width * width
    return layers * block + edges


def memory():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmHWM"].split()[0]) * 1024


def child_block(args):
    """In a fresh process: one forward of the one-block model at --grid; prints seconds and peak RSS."""
    import nodus

    grid = [int(size) for size in args.grid.split("x")]
    model = nodus.load(args.model, threads=args.threads)
    rng = np.random.default_rng(0)
    inputs = {"sample": rng.standard_normal((1, IN_CHANNELS, *[PATCH * size for size in grid]), dtype=np.float32),
              "timestep": np.array([500.0], np.float32),
              "encoder_hidden_states": rng.standard_normal((1, TEXT_TOKENS, TEXT_WIDTH), dtype=np.float32)}
    model.forward(**inputs)  # plans and packs
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        model.forward(**inputs)
        times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": times, "peak_rss": memory()}))


def child_decode(args):
    """In a fresh process: sliding-window decoding of a [1, 4, 32, 32, 32] latent; prints seconds and peak RSS."""
    import nodus

    size = int(args.grid)
    decoder = nodus.load(args.model, threads=args.threads)
    latent = np.random.default_rng(0).standard_normal((1, 4, size, size, size), dtype=np.float32)
    windows = []
    start = time.perf_counter()
    volume = decoder.forward_windowed(latent, (args.window,) * 3, overlap=0.25,
                                      callback=lambda done, total: windows.append(total))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": [seconds], "peak_rss": memory(), "shape": list(volume.shape), "windows": windows[-1]}))


def run_child(args, *extra):
    command = [sys.executable, __file__, "--threads", str(args.threads), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(extra[:4])} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_block_model(work):
    folder = work / "medsyn2-1block"
    if not (folder / "config.json").exists():
        import torch
        from medsyn2 import MedSyn2Transformer3DModel

        torch.manual_seed(0)
        MedSyn2Transformer3DModel(in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS, num_layers=1,
                                  num_attention_heads=HEADS, attention_head_dim=WIDTH // HEADS,
                                  cross_attention_dim=TEXT_WIDTH, sample_size=(16, 32, 32)).save_pretrained(folder)
    return folder


def maisi_decoder(work, quick):
    """A MAISI-sized MONAI 3D VAE decoder exported to ONNX with a fixed window shape."""
    path = work / ("maisi-vae-decoder-quick.onnx" if quick else "maisi-vae-decoder.onnx")
    if not path.exists():
        import torch
        from monai.networks.nets import AutoencoderKL

        torch.manual_seed(0)
        channels = (8, 16, 32) if quick else (64, 128, 256)
        vae = AutoencoderKL(spatial_dims=3, in_channels=1, out_channels=1, channels=channels, latent_channels=4,
                            num_res_blocks=(2, 2, 2), norm_num_groups=8 if quick else 32,
                            attention_levels=(False, False, False), with_encoder_nonlocal_attn=False,
                            with_decoder_nonlocal_attn=False).eval()

        class Decode(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vae = vae

            def forward(self, latent_sample):
                return self.vae.decode(latent_sample)

        window = 8 if quick else 16
        torch.onnx.export(Decode().eval(), (torch.randn(1, 4, window, window, window),), str(path), dynamo=True,
                          input_names=["latent_sample"], output_names=["sample"], external_data=False)
    return path


def fit_line(xs, ys):
    slope, intercept = np.polyfit(xs, ys, 1)
    fitted = intercept + slope * np.asarray(xs)
    return intercept, slope, float(np.max(np.abs(fitted - ys) / np.asarray(ys)))


def machine():
    with open("/proc/cpuinfo") as info:
        lines = info.read().splitlines()
    family = next((line.split(":")[1].strip() for line in lines if line.startswith("cpu family")), "?")
    model = next((line.split(":")[1].strip() for line in lines if line.startswith("model name")), "?")
    import nodus
    return f"{model} (family {family}), {os.cpu_count()} CPUs, Nodus CPU level {nodus.cpu_level()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nodus-bench"))
    parser.add_argument("--only", choices=("scaling", "decode"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=("block", "decode"))
    parser.add_argument("--model")
    parser.add_argument("--grid")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=16)
    args = parser.parse_args()
    if args.child == "block":
        return child_block(args)
    if args.child == "decode":
        return child_decode(args)

    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    lines = [f"# 3D generation at scale: MedSyn2 blocks to 44k tokens, sliding-window decoding{' (--quick)' if args.quick else ''}", "",
             f"* Date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
             f"* Machine: {machine()}, {args.threads} threads",
             "* Command: `" + " ".join(["python benchmarks/volume.py", *sys.argv[1:]]) + "`",
             f"* Load average before: {' / '.join(f'{value:.2f}' for value in load_before)}", ""]
    rates = {}
    if args.only in (None, "scaling"):
        folder = one_block_model(args.work)
        rows, tokens_list, rss_list = [], [], []
        for grid in QUICK_GRIDS if args.quick else GRIDS:
            tokens = int(np.prod(grid))
            runs = 3 if tokens <= 8192 else 1
            result = run_child(args, "--child", "block", "--model", str(folder), "--grid", "x".join(map(str, grid)),
                               "--runs", str(runs))
            seconds = statistics.median(result["seconds"])
            flops = forward_flops(tokens, WIDTH, 1)
            rates[tokens] = flops / seconds
            tokens_list.append(tokens)
            rss_list.append(result["peak_rss"])
            rows.append(f"| {tokens:,} | {'x'.join(str(PATCH * size) for size in grid)} | {seconds:.3f} | "
                        f"{flops / 1e9:.1f} | {flops / seconds / 1e9:.0f} | {result['peak_rss'] / 1e9:.3f} |")
            print(rows[-1], flush=True)
        intercept, slope, residual = fit_line(tokens_list, rss_list)
        lines += ["## One MedSyn2 block (hidden 384, 6 heads, text 128x768), batch 1",
                  "", "Each size in a fresh process: load, one untimed forward, then the median of 3 timed forwards (1 above "
                  "8,192 tokens). FLOPs from `forward_flops` in this script (attention 4 N^2 D dominates above 8k tokens).", "",
                  "| tokens | latent D x H x W | seconds | GFLOP | GFLOP/s | peak RSS GB |", "|---:|---|---:|---:|---:|---:|",
                  *rows, "",
                  f"Peak RSS fit: {intercept / 1e9:.3f} GB + {slope / 1e3:.1f} kB per token; the largest residual is "
                  f"{100 * residual:.1f}% of the measured value, so memory grows linearly in tokens (an N x N score matrix "
                  f"of 43,904 tokens alone would take {43904 ** 2 * 4 / 1e9:.1f} GB per head).", ""]
        largest = max(rates)
        rate = rates[largest]
        flops_full = forward_flops(43904, DIT_XL["width"], DIT_XL["layers"])
        lines += ["## Projection: a DiT-XL-sized MedSyn2 at the paper's 43,904 tokens",
                  "", f"Hidden 1152, 28 layers, text 128x768: {flops_full / 1e12:.0f} TFLOP per forward "
                  f"(`forward_flops`). Measured rate at {largest:,} tokens: {rate / 1e9:.0f} GFLOP/s on {args.threads} cores.", "",
                  "| machine | rate GFLOP/s | one forward | 30-step CFG volume (60 forwards) |", "|---|---:|---:|---:|",
                  f"| {args.threads} cores (measured rate) | {rate / 1e9:.0f} | {flops_full / rate / 60:.0f} min | "
                  f"{60 * flops_full / rate / 3600:.0f} h |",
                  f"| 64 cores (rate x {64 // args.threads}, perfect scaling) | {rate * 64 / args.threads / 1e9:.0f} | "
                  f"{flops_full / (rate * 64 / args.threads):.0f} s | {60 * flops_full / (rate * 64 / args.threads) / 3600:.1f} h |",
                  "", f"What is practical on CPU: a MedSyn2-shaped model of 2,048 tokens (hidden 384, 8 layers) takes "
                  f"about 0.4 s a forward on 2 cores (`make bench`), so a 30-step CFG volume takes well under a minute. "
                  f"At the paper's 44k tokens with a DiT-XL-sized model one volume takes {60 * flops_full / rate / 3600:.0f} h "
                  f"on 2 cores and, with perfect scaling, {60 * flops_full / (rate * 64 / args.threads) / 3600:.1f} h on a "
                  f"64-core server: a dataset of full-size volumes needs a cluster (or a GPU); on one CPU, generate at a "
                  f"smaller latent grid or with a smaller model.", ""]
    if args.only in (None, "decode"):
        decoder = maisi_decoder(args.work, args.quick)
        size, window = (16, 8) if args.quick else (32, 16)
        result = run_child(args, "--child", "decode", "--model", str(decoder), "--grid", str(size), "--window", str(window))
        lines += ["## Sliding-window decoding of a 128^3 volume" if not args.quick else "## Sliding-window decoding (--quick)",
                  "", f"A MAISI-sized MONAI AutoencoderKL(spatial_dims=3) decoder (random init, ONNX export), latent "
                  f"[1, 4, {size}, {size}, {size}] -> {result['shape']}, windows of {window}^3 latent voxels, overlap 0.25, "
                  f"Gaussian blending ({result['windows']} windows), in a fresh process.", "",
                  "| seconds | peak RSS GB | target |", "|---:|---:|---|",
                  f"| {result['seconds'][0]:.1f} | {result['peak_rss'] / 1e9:.2f} | at most 1.5 GB |", ""]
    lines.append(f"* Load average after: {' / '.join(f'{value:.2f}' for value in os.getloadavg())}")
    target = (args.work if args.quick else REPO / "benchmarks" / "results") / \
        f"volume-{datetime.date.today():%Y-%m-%d}{'-quick' if args.quick else ''}.md"
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target.relative_to(REPO) if target.is_relative_to(REPO) else target}")


if __name__ == "__main__":
    main()
