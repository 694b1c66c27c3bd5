#!/usr/bin/env python
"""Parity reference for masked (inpainting-style) sampling on the bundled demo model.

    python tests/reference/make_demo_fixtures.py [--out DIR]

Reads models/nodule-demo/ (written by demo/train.py) and writes
Tests/Fixtures/demo-sample.safetensors: a 20-step DDIM run with classifier-free
guidance 4.0 of the trained mask-conditioned DiT, with the "calcified" LoRA
(lora-calcified.safetensors) active at weight 1, on the first two demo cases of
models/nodule-demo/inputs.safetensors. The loop is make_model_fixtures.py's
`cfg_sample` (= diffusers DiTPipeline.__call__ with the latents given) except that
the model input at every step is

    torch.cat([latent_model_input, latent_mask, masked_latent], dim=1)

for both CFG halves ([cond, null] batch order, null class = num_embeds_ada_norm = 4).

Tensors (float32 unless said otherwise):
    init_noise     [2,4,8,8]   torch.randn, seeded
    class_labels   int64 [4]   [0, 0, 4, 4] = [cond..., null...]
    latent_mask    [2,1,8,8]   from inputs.safetensors
    masked_latent  [2,4,8,8]   from inputs.safetensors
    conditioning   [2,5,8,8]   cat([latent_mask, masked_latent], 1): what nodus.sample(conditioning=) takes
    timesteps      int64 [20]
    trajectory     [20,2,4,8,8] cond-half latents after each step
    final          [2,4,8,8]
Metadata: versions, guidance, steps, adapter and weight, and the sha256 of the model
files used (a retrained model makes the fixture stale: regenerate it).

Deterministic (one thread, deterministic algorithms, fixed seed); the reference is
computed from the models as reloaded from disk in float32. The script also checks
that the fixture is sensitive to what a runtime could get wrong (LoRA missing,
conditioning missing or in the wrong order, no guidance) and reports the float64
floor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from diffusers import DDIMScheduler, DiTTransformer2DModel
from diffusers.loaders.peft import PeftAdapterMixin
import peft

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as mmf  # noqa: E402  (helpers only; its main() is not run)

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "nodule-demo"
DEFAULT_OUT = REPO / "Tests" / "Fixtures"
COMMAND = "python tests/reference/make_demo_fixtures.py"

STEPS = 20
GUIDANCE = 4.0
COND_CLASS = 0
CASES = 2
SEED = 7100
ADAPTER = "calcified"
ADAPTER_WEIGHT = 1.0


class DiTWithLora(DiTTransformer2DModel, PeftAdapterMixin):
    """DiTTransformer2DModel with diffusers' model-level LoRA API (PeftAdapterMixin)."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@torch.no_grad()
def masked_cfg_sample(model, scheduler, steps, guidance_scale, init_noise, class_labels, null_class, latent_mask, masked_latent, order="mask-first"):
    """mmf.cfg_sample (DiTPipeline.__call__) with the conditioning concatenated at every step."""
    batch = init_noise.shape[0]
    latents = init_noise.clone()
    latent_model_input = torch.cat([latents] * 2) if guidance_scale > 1 else latents

    labels = torch.tensor(class_labels).reshape(-1)
    class_null = torch.tensor([null_class] * batch)
    class_labels_input = torch.cat([labels, class_null], 0) if guidance_scale > 1 else labels

    trajectory = []
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        if guidance_scale > 1:
            half = latent_model_input[: len(latent_model_input) // 2]
            latent_model_input = torch.cat([half, half], dim=0)
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)

        timesteps = t
        if len(timesteps.shape) == 0:
            timesteps = timesteps[None]
        timesteps = timesteps.expand(latent_model_input.shape[0])

        copies = latent_model_input.shape[0] // batch
        lm = torch.cat([latent_mask] * copies, dim=0)
        ml = torch.cat([masked_latent] * copies, dim=0)
        if order == "mask-first":
            model_input = torch.cat([latent_model_input, lm, ml], dim=1)
        else:  # a perturbation: masked latent before the mask
            model_input = torch.cat([latent_model_input, ml, lm], dim=1)
        noise_pred = model(model_input, timestep=timesteps, class_labels=class_labels_input).sample

        if guidance_scale > 1:
            cond_eps, uncond_eps = torch.split(noise_pred, len(noise_pred) // 2, dim=0)
            half_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
            noise_pred = torch.cat([half_eps, half_eps], dim=0)

        latent_model_input = scheduler.step(noise_pred, t, latent_model_input).prev_sample
        trajectory.append(latent_model_input[:batch].clone())

    latents = latent_model_input.chunk(2, dim=0)[0] if guidance_scale > 1 else latent_model_input
    return latents, torch.stack(trajectory), scheduler.timesteps.clone()


def load_model(dtype=torch.float32):
    model = DiTWithLora.from_pretrained(str(MODEL / "dit"), torch_dtype=dtype).eval()
    # use_safetensors=True: without it the model-level loader drops lora_adapter_metadata
    model.load_lora_adapter(
        str(MODEL / f"lora-{ADAPTER}.safetensors"), prefix="transformer", adapter_name=ADAPTER, use_safetensors=True
    )
    model.set_adapters([ADAPTER], [ADAPTER_WEIGHT])
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    model = load_model()
    cfg = model.config
    null_class = cfg.num_embeds_ada_norm
    latent_channels = cfg.out_channels
    side = cfg.sample_size
    assert cfg.in_channels == 2 * latent_channels + 1, cfg.in_channels

    inputs = load_file(str(MODEL / "inputs.safetensors"))
    latent_mask = inputs["latent_mask"][:CASES].float().contiguous()
    masked_latent = inputs["masked_latent"][:CASES].float().contiguous()
    init_noise = torch.randn((CASES, latent_channels, side, side), generator=mmf.gen(SEED))
    labels = [COND_CLASS] * CASES

    def run(m=model, **kw):
        scheduler = DDIMScheduler.from_pretrained(str(MODEL / "scheduler"))
        args_ = dict(guidance_scale=GUIDANCE, init_noise=init_noise, latent_mask=latent_mask, masked_latent=masked_latent)
        args_.update(kw)
        return masked_cfg_sample(m, scheduler, STEPS, args_.pop("guidance_scale"), args_.pop("init_noise"), labels, null_class, **args_)

    final, trajectory, timesteps = run()
    assert torch.equal(final, trajectory[-1])
    assert timesteps.dtype == torch.int64

    # sensitivity: each mistake must move the final latent far beyond the sampling tolerance
    tol = mmf.SAMPLE_TOL
    model.disable_lora()
    mmf.require_sensitive("calcified LoRA not applied", final, run()[0], tol)
    model.enable_lora()
    model.set_adapters([ADAPTER], [0.5])
    mmf.require_sensitive("LoRA weight 0.5 instead of 1", final, run()[0], tol)
    model.set_adapters([ADAPTER], [ADAPTER_WEIGHT])
    mmf.require_sensitive("latent_mask zeroed", final, run(latent_mask=torch.zeros_like(latent_mask))[0], tol)
    mmf.require_sensitive("masked_latent zeroed", final, run(masked_latent=torch.zeros_like(masked_latent))[0], tol)
    mmf.require_sensitive("conditioning channels in the wrong order", final, run(order="latent-first")[0], tol)
    mmf.require_sensitive("no guidance", final, run(guidance_scale=1.0)[0], tol)
    again = run()[0]
    assert torch.equal(again, final), "the reference run is not reproducible"

    # float64 floor
    m64 = load_model(torch.float64)
    f64, _, _ = run(
        m=m64, init_noise=init_noise.double(), latent_mask=latent_mask.double(), masked_latent=masked_latent.double()
    )
    floor = mmf.rel_err(final, f64)
    print(f"  float64 rerun vs float32 reference: {floor:.2e} (tolerance {tol:.0e})")

    class_labels = torch.tensor(labels + [null_class] * CASES, dtype=torch.int64)
    tensors = dict(
        init_noise=init_noise,
        class_labels=class_labels,
        latent_mask=latent_mask,
        masked_latent=masked_latent,
        conditioning=torch.cat([latent_mask, masked_latent], dim=1),
        timesteps=timesteps,
        trajectory=trajectory,
        final=final,
    )
    versions = mmf.versions()
    versions["peft"] = peft.__version__
    md = {
        "description": (
            "Masked sampling on models/nodule-demo: DDIM 20 steps (scheduler/scheduler_config.json), CFG 4.0, "
            "batch [cond 0, cond 0, null 4, null 4], LoRA 'calcified' (lora-calcified.safetensors) at weight 1; "
            "model input at every step = cat([latents, latent_mask, masked_latent], dim=1) for both CFG halves; "
            "trajectory[i] = cond-half latents after step i; final = trajectory[-1]"
        ),
        "generator": "tests/reference/make_demo_fixtures.py",
        "command": COMMAND,
        "versions": json.dumps(versions, sort_keys=True),
        "guidance_scale": json.dumps(GUIDANCE),
        "steps": json.dumps(STEPS),
        "adapters": json.dumps({ADAPTER: ADAPTER_WEIGHT}),
        "float64_floor": f"{floor:.3e}",
        "model_sha256": json.dumps(
            {
                "dit/diffusion_pytorch_model.safetensors": sha256(MODEL / "dit" / "diffusion_pytorch_model.safetensors"),
                "dit/config.json": sha256(MODEL / "dit" / "config.json"),
                f"lora-{ADAPTER}.safetensors": sha256(MODEL / f"lora-{ADAPTER}.safetensors"),
                "inputs.safetensors": sha256(MODEL / "inputs.safetensors"),
                "scheduler/scheduler_config.json": sha256(MODEL / "scheduler" / "scheduler_config.json"),
            },
            sort_keys=True,
        ),
    }
    path = out / "demo-sample.safetensors"
    mmf.save_tensors(path, tensors, md)
    path.chmod(0o644)
    print(f"  wrote {path} ({path.stat().st_size} bytes); final |max| {final.abs().max():.3f}")


if __name__ == "__main__":
    main()
