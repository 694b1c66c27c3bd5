#!/usr/bin/env python
"""Train the bundled default model: models/nodule-demo/ (nodule synthesis on CXR-like patches).

    /work/refvenv/bin/python demo/train.py            # the real run (~25 min on 2 CPU cores)
    /work/refvenv/bin/python demo/train.py --toy --out /tmp/nodule-toy   # seconds: a smoke test

PyTorch + diffusers + PEFT on CPU, fixed seeds, deterministic algorithms, 2
threads by default. Stages (data from demo/generate_patches.py):

  1. data       procedural 32x32 patches with nodules and their masks
  2. vae        a tiny AutoencoderKL, 1 channel in/out, 4 latent channels, 32x32 -> 8x8;
                scaling_factor = 1 / std of the training latents (written in its config)
  3. dit        a tiny mask-conditioned DiTTransformer2DModel on 8x8 latents:
                model input = cat([noisy latent 4, latent_mask 1, masked_latent 4]) = 9 channels,
                output = epsilon (4 channels); DDPM objective, linear betas 1e-4..0.02,
                1000 steps; class 0 = "nodule", 10% label dropout to the null class 4 (CFG);
                EMA weights are saved
  4. loras      rank-8 LoRAs on to_q/to_k/to_v/to_out.0/ff.net.0.proj/ff.net.2, each
                fine-tuned from the base on a subset: "calcified" (calcified nodules only),
                "spiculated" (spiculated only), "subtlety" (obvious-contrast nodules only;
                a slider: its weight scales the nodule contrast)
  5. inputs     4 demo backgrounds + masks, and the latents the sampler needs
  6. check      DDIM 50 steps, CFG 3.5, conditioning concatenated at every step, for
                base / each LoRA / subtlety at several weights; contrast inside the mask
                vs a ring outside it; PNG grid at /tmp/nodule-demo-check.png

The conditioning, exactly as the sampler must build it:
  masked_image  = image * (1 - mask)      (the mask region set to 0 = mid gray)
  masked_latent = vae.encode(masked_image).latent_dist.mean * scaling_factor
  latent_mask   = max_pool2d(mask, 4)     (1 where any pixel of the 4x4 cell is masked)
  model input   = cat([latents, latent_mask, masked_latent], dim=1), for both CFG halves
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import generate_patches as gp  # noqa: E402

DEFAULT_OUT = REPO / "models" / "nodule-demo"
COMMAND = "/work/refvenv/bin/python demo/train.py"

SEED = 20240607
NUM_CLASSES = 4  # num_embeds_ada_norm; class 0 = "nodule"; the null (CFG) class is row 4
NODULE_CLASS = 0
NULL_CLASS = NUM_CLASSES
LABEL_DROPOUT = 0.1
LATENT_CHANNELS = 4
DOWN = 4  # VAE downscale factor: 32x32 image -> 8x8 latent
FILL = 0.0  # value of the masked region in the masked image

VAE_CONFIG = dict(
    in_channels=1,
    out_channels=1,
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    block_out_channels=[32, 64, 64],
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=16,
    sample_size=32,
)
DIT_CONFIG = dict(
    sample_size=32 // DOWN,
    patch_size=2,
    in_channels=LATENT_CHANNELS + 1 + LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    num_layers=6,
    num_attention_heads=4,
    attention_head_dim=32,
    num_embeds_ada_norm=NUM_CLASSES,
    norm_type="ada_norm_zero",
    activation_fn="gelu-approximate",
)
BETAS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]
LORA_RANK = 8
LORA_ALPHA = 8  # scale alpha / r = 1

# Sizes of the real run; --toy divides them.
FULL = dict(
    n_base=12000,
    n_subset=3000,
    vae_steps=1600,
    vae_batch=64,
    vae_lr=1e-3,
    dit_steps=5000,
    dit_batch=128,
    dit_lr=6e-4,
    lora_steps=600,
    lora_batch=128,
    lora_lr=2e-3,
)
TOY = dict(n_base=256, n_subset=128, vae_steps=20, vae_batch=16, vae_lr=1e-3, dit_steps=20, dit_batch=16, dit_lr=6e-4, lora_steps=10, lora_batch=16, lora_lr=2e-3)

SUBSETS = {
    "calcified": dict(calcified=True),
    "spiculated": dict(spiculated=True),
    "subtlety": dict(contrast="obvious"),
}
SLIDER_WEIGHTS = [0.5, 1.0, 2.0]  # the documented range of the subtlety slider
CHECK_GUIDANCE = 3.5
CHECK_STEPS = 50


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- data


def _chunk(args):
    seed, n, kwargs = args
    return gp.batch(seed, n, **kwargs)


def make_data(n: int, seed: int, kwargs: dict, procs: int) -> dict:
    """n samples in `procs` deterministic chunks (chunk i uses seed + i)."""
    chunks = [(seed + i, n // procs + (1 if i < n % procs else 0), kwargs) for i in range(procs)]
    if procs > 1:
        with get_context("fork").Pool(procs) as pool:
            parts = pool.map(_chunk, chunks)
    else:
        parts = [_chunk(c) for c in chunks]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def demo_inputs() -> dict:
    """The 4 demo cases: backgrounds without nodule and disk masks at fixed places."""
    rng = np.random.default_rng(7)
    cases = [((14.0, 15.0), 6.5), ((17.0, 13.0), 7.0), ((15.0, 18.0), 6.0), ((16.0, 16.0), 7.5)]
    bgs, masks = [], []
    for center, radius in cases:
        bg = gp.background(rng)
        _, mask, _ = gp.nodule(rng, False, False, 0.5, center=center, mask_radius=radius)
        bgs.append(bg)
        masks.append(mask)
    return dict(background=np.stack(bgs)[:, None], mask=np.stack(masks)[:, None])


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--toy", action="store_true", help="tiny sizes: a smoke test of the whole script")
    ap.add_argument("--stages", default="all", help="comma list of vae,dit,loras,inputs,check (reuses earlier outputs)")
    args = ap.parse_args()
    sizes = TOY if args.toy else FULL
    stages = {"vae", "dit", "loras", "inputs", "check"} if args.stages == "all" else set(args.stages.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    data = {"base": make_data(sizes["n_base"], SEED, {}, args.threads)}
    for name, kw in SUBSETS.items():
        data[name] = make_data(sizes["n_subset"], SEED + 100 * (1 + list(SUBSETS).index(name)), kw, args.threads)
    times["data"] = time.perf_counter() - t0
    log(f"[data] {sizes['n_base']} base + 3 x {sizes['n_subset']} subset samples in {times['data']:.1f} s")

    import torch  # after the fork pool: no torch threads exist when workers fork

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    import trainer  # noqa: E402  (demo/trainer.py would be a separate file; kept inline below)


if __name__ == "__main__":
    main()
