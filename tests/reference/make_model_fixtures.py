#!/usr/bin/env python
"""Generate the small, committed model-parity fixtures under Tests/Fixtures/.

    python tests/reference/make_model_fixtures.py [--out DIR]

Everything is deterministic (fixed seeds, one CPU thread, deterministic torch
algorithms): re-running it reproduces the files byte for byte with the same
torch / diffusers / numpy / safetensors versions (recorded in every
safetensors file's metadata under "versions" and in GENERATED-model-fixtures.md).

What it writes (all tensors float32 unless said otherwise):

  dit-tiny/                  DiTTransformer2DModel, save_pretrained, float32 weights
                             (sample 8, patch 2, in 4, out 8 = learned sigma, 2 layers,
                             2 heads x 16, 10 classes + the null class 10)
  dit-tiny-cond/             conditioned variant (in 9 = latent 4 + mask 1 + masked
                             latent 4, out 4), weights saved as float16
  dit-tiny-forward.safetensors
      sample [2,4,8,8], timestep int64 [2], class_labels int64 [2] (real, null=10),
      output [2,8,8,8];
      timestep_float float32 [2] (non-integer timesteps, as flow matching passes),
      output_float [2,8,8,8] (same sample / class_labels);
      cond_sample [2,9,8,8], cond_timestep int64 [2], cond_class_labels int64 [2],
      cond_output [2,4,8,8]   (dit-tiny-cond reloaded with torch_dtype=float32)
  vae-tiny/                  AutoencoderKL, save_pretrained, float32
  vae-tiny-decode.safetensors
      latent [1,4,8,8], image [1,3,16,16], latent2 [2,4,8,8], image2 [2,3,16,16]
      (image = vae.decode(latent).sample, latent passed as is)
  scheduler-ddim/scheduler_config.json
  scheduler-ddpm/scheduler_config.json   (variance_type learned_range)
  scheduler-flow/scheduler_config.json   (FlowMatchEulerDiscreteScheduler, shift 3.0)
  dit-tiny-sample-{ddim,ddpm,flow}.safetensors
      init_noise [1,4,8,8], class_labels int64 [2] = [3, 10] (cond, null),
      timesteps [steps] (int64 for DDIM/DDPM, float32 for flow),
      trajectory [steps,1,4,8,8] (cond-half latents after each step),
      final [1,4,8,8]; DDPM also step_noise [50,1,4,8,8].
      guidance 4.0; 50 steps DDIM / DDPM, 20 steps flow.

References are always computed from the models as reloaded from disk with
`from_pretrained(..., torch_dtype=torch.float32)`, i.e. what a user gets.

The script also checks that the fixtures can make a test fail: it perturbs the
semantics a runtime could get wrong (pos_embed missing, wrong AdaLN embedding in
the final layer, no guidance, variance channels dropped, ...) and asserts each
perturbation moves the reference by far more than the test tolerance.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import safetensors
import torch

import diffusers
import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DiTTransformer2DModel,
    FlowMatchEulerDiscreteScheduler,
)
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests" / "Fixtures"
COMMAND = "python tests/reference/make_model_fixtures.py"

GUIDANCE = 4.0
COND_CLASS = 3
NUM_CLASSES = 10  # num_embeds_ada_norm; the null (CFG) class is row NUM_CLASSES
NULL_CLASS = NUM_CLASSES
LATENT_CHANNELS = 4

DIT_TINY = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    out_channels=8,
    num_layers=2,
    num_attention_heads=2,
    attention_head_dim=16,
    num_embeds_ada_norm=NUM_CLASSES,
    norm_type="ada_norm_zero",
    activation_fn="gelu-approximate",
)
DIT_TINY_COND = dict(DIT_TINY, in_channels=9, out_channels=4)

VAE_TINY = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
    up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    block_out_channels=[32, 64],
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=32,
)

# DiT's scheduler settings (facebook/DiT-XL-2-256: linear betas 1e-4..2e-2, no clipping).
DIT_BETAS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")

# Tolerances used by bindings/python/tests/test_parity.py; perturbation checks below
# require effects at least SENSITIVITY_FACTOR times larger.
FORWARD_TOL = 1e-4
SAMPLE_TOL = 1e-3
SENSITIVITY_FACTOR = 10.0


def versions() -> dict:
    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def metadata(description: str, **extra) -> dict:
    md = {
        "description": description,
        "generator": "tests/reference/make_model_fixtures.py",
        "command": COMMAND,
        "versions": json.dumps(versions(), sort_keys=True),
    }
    for k, v in extra.items():
        md[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return md


_ST_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.int64: "I64", torch.int32: "I32"}


def save_tensors(path: Path, tensors: dict, md: dict) -> None:
    """Write a safetensors file byte-for-byte reproducibly.

    safetensors.torch.save_file emits `__metadata__` in Rust HashMap order, which
    changes from run to run; here the header is built with sorted keys. Layout as
    the library's: tensors ordered by (alignment desc, name), header padded with
    spaces to a multiple of 8, so every tensor is naturally aligned.
    """
    items = []
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        items.append((name, t))
    items.sort(key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {"__metadata__": dict(sorted(md.items()))}
    blobs = []
    offset = 0
    for name, t in items:
        data = t.numpy().tobytes(order="C")  # little-endian on every supported host
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    hb = json.dumps(header, separators=(",", ":"), sort_keys=False).encode()
    hb += b" " * (-len(hb) % 8)
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for data in blobs:
            f.write(data)
    # round-trip check through the reference reader
    back = load_file(str(path))
    for name, t in items:
        assert torch.equal(back[name], t), f"{path.name}:{name} did not round-trip"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a = a.double()
    ref = ref.double()
    return float((a - ref).abs().max() / ref.abs().max())


def make_nonconstant(model: torch.nn.Module, seed: int, std: float = 0.05) -> list[str]:
    """Re-initialise parameters that the default init leaves constant.

    All-zero tensors (zero-initialised projections, norm biases) get N(0, std);
    all-one tensors (norm scales) get 1 + N(0, std). Anything a runtime could
    ignore without the fixtures noticing is thereby made to matter.
    """
    g = gen(seed)
    touched = []
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if torch.all(p == 0):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * std)
                touched.append(name)
            elif torch.all(p == 1):
                p.copy_(1 + torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * std)
                touched.append(name)
    return touched


def save_model(model, folder: Path) -> None:
    """save_pretrained into a fresh folder; make the files world-readable (the Rust
    safetensors writer creates them 0600)."""
    model.save_pretrained(str(fresh_dir(folder)))
    for f in folder.iterdir():
        f.chmod(0o644)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def require_sensitive(label: str, ref: torch.Tensor, perturbed: torch.Tensor, tol: float) -> float:
    err = rel_err(perturbed, ref)
    print(f"  sensitivity: {label}: relative change {err:.3e} (tolerance {tol:.0e})")
    if not err > SENSITIVITY_FACTOR * tol:
        raise SystemExit(
            f"fixture too insensitive: {label} changes the reference by only {err:.3e}, "
            f"need > {SENSITIVITY_FACTOR * tol:.0e}"
        )
    return err


# --------------------------------------------------------------------------- DiT


def build_dit(config: dict, seed: int) -> DiTTransformer2DModel:
    torch.manual_seed(seed)
    model = DiTTransformer2DModel(**config)
    touched = make_nonconstant(model, seed + 1)
    print(f"  DiT {config['in_channels']}->{config['out_channels']}: re-initialised constant params: {touched or 'none'}")
    return model.eval()


def fit_denoiser(model: DiTTransformer2DModel, seed: int, iters: int = 400, batch: int = 64) -> None:
    """Briefly fit the eps channels to a toy class-conditional latent distribution.

    With purely random weights eps is unrelated to x_t, so the first DDIM/DDPM step
    predicts x0 = x_T / sqrt(alpha_bar_T) (~150 x_T) and every later step, the
    per-step DDPM noise and the learned variance, is lost below 1e-3 of the final
    latent. A model that actually denoises keeps latents O(1) and makes every step
    count. Data: x0 = mu_c + 0.3 * N(0, 1), mu_c a fixed pattern per class (std 0.7);
    the null class (10% of the batch) sees all classes. Only eps channels are
    trained; the learned-sigma channels stay as initialised.
    """
    g = gen(seed)
    c = model.config.in_channels
    s = model.config.sample_size
    mu = 0.7 * torch.randn(NUM_CLASSES, c, s, s, generator=g)
    betas = torch.linspace(DIT_BETAS["beta_start"], DIT_BETAS["beta_end"], DIT_BETAS["num_train_timesteps"])
    alpha_bar = torch.cumprod(1 - betas, 0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.eval()  # no label dropout from diffusers; the null class is dropped in here
    first = last = None
    for it in range(iters):
        labels = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
        x0 = mu[labels] + 0.3 * torch.randn(batch, c, s, s, generator=g)
        t = torch.randint(0, DIT_BETAS["num_train_timesteps"], (batch,), generator=g)
        noise = torch.randn(batch, c, s, s, generator=g)
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        drop = torch.rand(batch, generator=g) < 0.1
        labels = torch.where(drop, torch.full_like(labels, NULL_CLASS), labels)
        pred = model(xt, timestep=t, class_labels=labels).sample[:, :c]
        loss = torch.mean((pred - noise) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    print(f"  fitted eps for {iters} Adam steps: loss {first:.3f} -> {last:.3f}")


@torch.no_grad()
def dit_forward(model, sample, timestep, class_labels) -> torch.Tensor:
    return model(sample, timestep=timestep, class_labels=class_labels).sample.float()


@torch.no_grad()
def dit_sensitivity(model: DiTTransformer2DModel, sample, timestep, class_labels, ref) -> None:
    """Semantics from SPEC section 3 that a runtime could get wrong must show in the output."""
    # 1. pos_embed is computed, not loaded: dropping it must be visible.
    saved = model.pos_embed.pos_embed.clone()
    model.pos_embed.pos_embed.zero_()
    require_sensitive("DiT without pos_embed", ref, dit_forward(model, sample, timestep, class_labels), FORWARD_TOL)
    model.pos_embed.pos_embed.copy_(saved)
    # 2. final AdaLN must use transformer_blocks[0].norm1.emb, not the last block's.
    #    (Compared on the conditioning vector the final layer consumes.)
    blocks = model.transformer_blocks
    cond_right = blocks[0].norm1.emb(timestep, class_labels, hidden_dtype=torch.float32)
    cond_wrong = blocks[-1].norm1.emb(timestep, class_labels, hidden_dtype=torch.float32)
    require_sensitive("final AdaLN conditioning from last block instead of block 0", cond_right, cond_wrong, FORWARD_TOL)
    # 3. the null class row must matter.
    other = class_labels.clone()
    other[other == NULL_CLASS] = 0
    require_sensitive("null class replaced by class 0", ref, dit_forward(model, sample, timestep, other), FORWARD_TOL)
    # 4. per-sample timesteps must matter.
    require_sensitive(
        "timestep swapped between samples", ref, dit_forward(model, sample, timestep.flip(0), class_labels), FORWARD_TOL
    )


# ---------------------------------------------------------------------- sampling


class FixedNoise:
    """Stands in for diffusers' randn_tensor inside scheduling_ddpm: returns the chosen noise."""

    def __init__(self):
        self.current = None
        self.draws = 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None, **kwargs):
        if self.current is None:
            raise RuntimeError("DDPM drew noise twice in one step or outside the loop")
        noise = self.current
        if tuple(noise.shape) != tuple(shape):
            raise RuntimeError(f"DDPM asked for noise {tuple(shape)}, have {tuple(noise.shape)}")
        self.current = None
        self.draws += 1
        return noise.to(dtype=dtype or noise.dtype)


@torch.no_grad()
def cfg_sample(
    model,
    scheduler,
    steps: int,
    guidance_scale: float,
    init_noise: torch.Tensor,
    class_labels: list[int],
    null_class: int,
    step_noise: torch.Tensor | None = None,
    drop_rest: bool | None = None,
):
    """diffusers DiTPipeline.__call__ (0.42.1), latents given, without the VAE decode.

    Deviations, each needed for the loop to run at all:
      * the null class is `null_class` (the pipeline hard-codes 1000 = DiT-XL/2's);
      * scale_model_input is called only when the scheduler has it
        (FlowMatchEulerDiscreteScheduler does not; the pipeline would raise);
      * with a learned-variance DDPM (variance_type learned / learned_range) the full
        2*C-channel output is passed to step (the pipeline always drops the variance
        channels, and DDPMScheduler's learned_range branch then fails on None).
    step_noise [steps, 2B, C, H, W] is what DDPMScheduler.step draws at each step.
    """
    latent_channels = init_noise.shape[1]
    batch = init_noise.shape[0]
    latents = init_noise.clone()
    latent_model_input = torch.cat([latents] * 2) if guidance_scale > 1 else latents

    labels = torch.tensor(class_labels).reshape(-1)
    class_null = torch.tensor([null_class] * batch)
    class_labels_input = torch.cat([labels, class_null], 0) if guidance_scale > 1 else labels

    variance_type = getattr(scheduler.config, "variance_type", None)
    if drop_rest is None:
        drop_rest = variance_type not in ("learned", "learned_range")

    fixed = None
    original_randn = scheduling_ddpm.randn_tensor
    if step_noise is not None:
        fixed = FixedNoise()
        scheduling_ddpm.randn_tensor = fixed
    trajectory = []
    try:
        scheduler.set_timesteps(steps)
        for i, t in enumerate(scheduler.timesteps):
            if guidance_scale > 1:
                half = latent_model_input[: len(latent_model_input) // 2]
                latent_model_input = torch.cat([half, half], dim=0)
            if hasattr(scheduler, "scale_model_input"):
                latent_model_input = scheduler.scale_model_input(latent_model_input, t)

            timesteps = t
            if not torch.is_tensor(timesteps):
                dtype = torch.float64 if isinstance(timesteps, float) else torch.int64
                timesteps = torch.tensor([timesteps], dtype=dtype)
            elif len(timesteps.shape) == 0:
                timesteps = timesteps[None]
            timesteps = timesteps.expand(latent_model_input.shape[0])

            noise_pred = model(latent_model_input, timestep=timesteps, class_labels=class_labels_input).sample

            if guidance_scale > 1:
                eps, rest = noise_pred[:, :latent_channels], noise_pred[:, latent_channels:]
                cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
                half_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
                eps = torch.cat([half_eps, half_eps], dim=0)
                noise_pred = torch.cat([eps, rest], dim=1)

            if model.config.out_channels // 2 == latent_channels and drop_rest:
                model_output, _ = torch.split(noise_pred, latent_channels, dim=1)
            else:
                model_output = noise_pred

            if fixed is not None:
                fixed.current = step_noise[i]
            latent_model_input = scheduler.step(model_output, t, latent_model_input).prev_sample
            if fixed is not None:
                fixed.current = None  # t == 0 draws nothing
            trajectory.append(latent_model_input[:batch].clone())
    finally:
        scheduling_ddpm.randn_tensor = original_randn

    if guidance_scale > 1:
        latents, _ = latent_model_input.chunk(2, dim=0)
    else:
        latents = latent_model_input
    return latents, torch.stack(trajectory), scheduler.timesteps.clone(), (fixed.draws if fixed else 0)


def make_schedulers(out: Path) -> dict:
    schedulers = {
        "ddim": DDIMScheduler(**DIT_BETAS, clip_sample=False, set_alpha_to_one=True, steps_offset=0),
        "ddpm": DDPMScheduler(**DIT_BETAS, clip_sample=False, variance_type="learned_range"),
        "flow": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    }
    for name, s in schedulers.items():
        s.save_config(str(fresh_dir(out / f"scheduler-{name}")))
    return schedulers


def load_scheduler(out: Path, name: str):
    cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "flow": FlowMatchEulerDiscreteScheduler}[name]
    return cls.from_pretrained(str(out / f"scheduler-{name}"))


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"fixture folder (default {DEFAULT_OUT})")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"versions: {versions()}")

    # ---------------------------------------------------------------- dit-tiny
    print("dit-tiny")
    model = build_dit(DIT_TINY, seed=1000)
    fit_denoiser(model, seed=1050)
    save_model(model, out / "dit-tiny")
    dit = DiTTransformer2DModel.from_pretrained(str(out / "dit-tiny"), torch_dtype=torch.float32).eval()

    g = gen(1100)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    timestep = torch.tensor([937, 17], dtype=torch.int64)
    class_labels = torch.tensor([COND_CLASS, NULL_CLASS], dtype=torch.int64)
    output = dit_forward(dit, sample, timestep, class_labels)
    dit64 = DiTTransformer2DModel.from_pretrained(str(out / "dit-tiny"), torch_dtype=torch.float64).eval()
    floor = rel_err(output, dit_forward(dit64, sample.double(), timestep, class_labels))
    print(f"  forward float64 rerun floor {floor:.2e} (tolerance {FORWARD_TOL:.0e})")
    timestep_float = torch.tensor([437.25, 3.5], dtype=torch.float32)
    output_float = dit_forward(dit, sample, timestep_float, class_labels)
    dit_sensitivity(dit, sample, timestep, class_labels, output)
    require_sensitive("integer vs fractional timestep", output, dit_forward(dit, sample, timestep_float.round(), class_labels), FORWARD_TOL)

    # Non-square latents: diffusers' DiT unpatchifies with height = width =
    # sqrt(tokens), so [2,4,8,12] silently comes back as a wrong-batch tensor.
    with torch.no_grad():
        ns = dit(torch.zeros(2, 4, 8, 12), timestep=timestep, class_labels=class_labels).sample
    print(f"  non-square [2,4,8,12] -> {tuple(ns.shape)} (diffusers DiT has no non-square support; no fixture)")

    # ----------------------------------------------------------- dit-tiny-cond
    print("dit-tiny-cond (float16 weights)")
    save_model(build_dit(DIT_TINY_COND, seed=2000).to(torch.float16), out / "dit-tiny-cond")
    dit_cond = DiTTransformer2DModel.from_pretrained(str(out / "dit-tiny-cond"), torch_dtype=torch.float32).eval()
    g = gen(2100)
    cond_sample = torch.randn(2, 9, 8, 8, generator=g)
    cond_sample[:, 4:5] = (cond_sample[:, 4:5] > 0).float()  # a binary mask channel
    cond_timestep = torch.tensor([500, 999], dtype=torch.int64)
    cond_class_labels = torch.tensor([7, NULL_CLASS], dtype=torch.int64)
    cond_output = dit_forward(dit_cond, cond_sample, cond_timestep, cond_class_labels)
    masked = cond_sample.clone()
    masked[:, 5:] = 0
    require_sensitive(
        "cond model without masked-image channels", cond_output, dit_forward(dit_cond, masked, cond_timestep, cond_class_labels), FORWARD_TOL
    )

    save_tensors(
        out / "dit-tiny-forward.safetensors",
        dict(
            sample=sample,
            timestep=timestep,
            class_labels=class_labels,
            output=output,
            timestep_float=timestep_float,
            output_float=output_float,
            cond_sample=cond_sample,
            cond_timestep=cond_timestep,
            cond_class_labels=cond_class_labels,
            cond_output=cond_output,
        ),
        metadata(
            "DiTTransformer2DModel(...).sample for dit-tiny (sample/timestep/class_labels -> output; "
            "timestep_float -> output_float) and dit-tiny-cond loaded from float16 weights with "
            "torch_dtype=float32 (cond_* -> cond_output)",
            null_class=NULL_CLASS,
        ),
    )

    # ---------------------------------------------------------------- vae-tiny
    print("vae-tiny")
    torch.manual_seed(3000)
    vae = AutoencoderKL(**VAE_TINY)
    touched = make_nonconstant(vae, 3001)
    print(f"  VAE: re-initialised {len(touched)} constant params (GroupNorm scales/biases)")
    save_model(vae.eval(), out / "vae-tiny")
    vae = AutoencoderKL.from_pretrained(str(out / "vae-tiny"), torch_dtype=torch.float32).eval()
    g = gen(3100)
    latent = torch.randn(1, 4, 8, 8, generator=g)
    latent2 = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        image = vae.decode(latent).sample.float()
        image2 = vae.decode(latent2).sample.float()
        # sensitivity: post_quant_conv skipped, GroupNorm affine ignored
        require_sensitive("VAE decode without post_quant_conv", image, vae.decoder(latent), FORWARD_TOL)
        norms = [(m.weight.clone(), m.bias.clone(), m) for m in vae.decoder.modules() if isinstance(m, torch.nn.GroupNorm)]
        for _, _, m in norms:
            m.weight.fill_(1)
            m.bias.zero_()
        require_sensitive("VAE decode with identity GroupNorm affine", image, vae.decode(latent).sample, FORWARD_TOL)
        for w, b, m in norms:
            m.weight.copy_(w)
            m.bias.copy_(b)
    save_tensors(
        out / "vae-tiny-decode.safetensors",
        dict(latent=latent, image=image, latent2=latent2, image2=image2),
        metadata("AutoencoderKL.decode(latent).sample for vae-tiny; latent passed as is (no scaling_factor)"),
    )

    # -------------------------------------------------------------- schedulers
    print("schedulers + CFG sampling")
    make_schedulers(out)
    g = gen(4000)
    init_noise = torch.randn(1, 4, 8, 8, generator=g)
    ddpm_noise = torch.randn(50, 2, 4, 8, 8, generator=gen(4100))
    labels = [COND_CLASS]
    runs = {"ddim": 50, "ddpm": 50, "flow": 20}
    for name, steps in runs.items():
        kw = dict(step_noise=ddpm_noise) if name == "ddpm" else {}
        final, traj, ts, draws = cfg_sample(
            dit, load_scheduler(out, name), steps, GUIDANCE, init_noise, labels, NULL_CLASS, **kw
        )
        if name == "ddpm":
            assert draws == steps - 1, f"DDPM drew noise {draws} times in {steps} steps"
        assert torch.equal(final, traj[-1])
        print(f"  {name}: {steps} steps, timesteps {ts[:3].tolist()}...{ts[-2:].tolist()} ({ts.dtype}), |final|max {final.abs().max():.3f}")

        # sensitivity of the trajectory to what a sampler can get wrong
        alt, _, _, _ = cfg_sample(dit, load_scheduler(out, name), steps, 3.0, init_noise, labels, NULL_CLASS, **kw)
        require_sensitive(f"{name}: guidance 3.0 instead of 4.0", final, alt, SAMPLE_TOL)
        alt, _, _, _ = cfg_sample(dit, load_scheduler(out, name), steps, GUIDANCE, init_noise, [COND_CLASS], 0, **kw)
        require_sensitive(f"{name}: null class 0 instead of {NULL_CLASS}", final, alt, SAMPLE_TOL)
        if name == "ddpm":
            # learned_range with the variance channels dropped cannot run in diffusers; compare
            # against predicted variance forced to 0 (frac 1/2) instead.
            alt = ddpm_zero_variance(dit, load_scheduler(out, name), steps, init_noise, labels, ddpm_noise)
            require_sensitive("ddpm: learned variance ignored (v = 0)", final, alt, SAMPLE_TOL)
            alt, _, _, _ = cfg_sample(
                dit, load_scheduler(out, name), steps, GUIDANCE, init_noise, labels, NULL_CLASS,
                step_noise=torch.roll(ddpm_noise, 1, dims=0),
            )
            require_sensitive("ddpm: step noise shifted by one step", final, alt, SAMPLE_TOL)

        # float64 floor: the same run in double precision must sit far below the tolerance
        dit64 = DiTTransformer2DModel.from_pretrained(str(out / "dit-tiny"), torch_dtype=torch.float64).eval()
        kw64 = dict(step_noise=ddpm_noise.double()) if name == "ddpm" else {}
        f64, t64, _, _ = cfg_sample(dit64, load_scheduler(out, name), steps, GUIDANCE, init_noise.double(), labels, NULL_CLASS, **kw64)
        floor = max(rel_err(traj[i], t64[i]) for i in range(steps))
        print(f"  {name}: float64 rerun floor (max over trajectory) {floor:.2e} (tolerance {SAMPLE_TOL:.0e})")
        assert floor < SAMPLE_TOL / 10, f"{name}: float32 reference too far from float64 ({floor:.2e})"

        tensors = dict(
            init_noise=init_noise,
            class_labels=torch.tensor([COND_CLASS, NULL_CLASS], dtype=torch.int64),
            timesteps=ts.to(torch.int64) if name != "flow" else ts.to(torch.float32),
            trajectory=traj,
            final=final,
        )
        if name == "ddpm":
            tensors["step_noise"] = ddpm_noise[:, :1]
        save_tensors(
            out / f"dit-tiny-sample-{name}.safetensors",
            tensors,
            metadata(
                f"CFG sampling of dit-tiny with scheduler-{name}, loop of diffusers DiTPipeline.__call__ "
                "(batch [cond, null], e = e_null + g*(e_cond - e_null) on the first latent_channels, "
                "learned-sigma channels kept per half and passed to step only for learned/learned_range DDPM); "
                "trajectory[i] = cond-half latents after step i; final = trajectory[-1]"
                + ("; step_noise[i] = noise DDPMScheduler.step draws for the cond half at step i "
                   "(unused at t = 0)" if name == "ddpm" else ""),
                steps=steps,
                guidance_scale=GUIDANCE,
                class_labels=[COND_CLASS, NULL_CLASS],
                scheduler=f"scheduler-{name}/scheduler_config.json",
            ),
        )

    write_readme(out)
    print("done")


@torch.no_grad()
def ddpm_zero_variance(model, scheduler, steps, init_noise, labels, ddpm_noise):
    """The DDPM run with the learned-variance channels replaced by zeros (sensitivity check only)."""

    class ZeroRest(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, *a, **k):
            res = self.inner(*a, **k)
            res.sample[:, LATENT_CHANNELS:] = 0
            return res

    final, _, _, _ = cfg_sample(ZeroRest(model), scheduler, steps, GUIDANCE, init_noise, labels, NULL_CLASS, step_noise=ddpm_noise)
    return final


def write_readme(out: Path) -> None:
    v = versions()
    text = f"""# Model parity fixtures (generated)

Generated by `tests/reference/make_model_fixtures.py`; do not edit by hand.

Regenerate (deterministic, byte-identical with the same versions, ~10 s):

    {COMMAND}

Versions: torch {v['torch']}, diffusers {v['diffusers']}, numpy {v['numpy']},
safetensors {v['safetensors']}, python {v['python']}.
Every `.safetensors` file written by the script also records them in its
metadata (`versions`), together with a description of its tensors.

| file | tensors |
|---|---|
| `dit-tiny/` | DiTTransformer2DModel, float32 weights, in 4, out 8 (learned sigma), 2 layers, 2x16 heads, 10 classes (+ null 10) |
| `dit-tiny-cond/` | same with in 9 (latent 4 + mask 1 + masked latent 4), out 4, float16 weights |
| `dit-tiny-forward.safetensors` | `sample`, `timestep` (int64), `class_labels` (int64), `output`; `timestep_float` (float32), `output_float`; `cond_sample`, `cond_timestep`, `cond_class_labels`, `cond_output` |
| `vae-tiny/` | AutoencoderKL, block_out_channels [32, 64], 1 layer per block, float32 |
| `vae-tiny-decode.safetensors` | `latent` [1,4,8,8], `image` [1,3,16,16], `latent2` [2,4,8,8], `image2` [2,3,16,16] |
| `scheduler-{{ddim,ddpm,flow}}/scheduler_config.json` | DDIM; DDPM learned_range; FlowMatchEuler shift 3.0 |
| `dit-tiny-sample-{{ddim,ddpm,flow}}.safetensors` | `init_noise`, `class_labels` ([3, 10]), `timesteps`, `trajectory` [steps,1,4,8,8], `final`; DDPM also `step_noise` [50,1,4,8,8] |

Sampling: guidance 4.0, batch [cond 3, null 10]; 50 steps DDIM / DDPM, 20 flow.
The loop mirrors diffusers `DiTPipeline.__call__`, except that (a) the null
class is 10, (b) `scale_model_input` is skipped for the flow scheduler (it has
none), and (c) the DDPM learned_range run passes all 8 output channels to
`step` (the pipeline drops them, which makes learned_range fail in diffusers).
"""
    (out / "GENERATED-model-fixtures.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
