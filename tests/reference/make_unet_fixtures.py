#!/usr/bin/env python
"""Generate the small UNet2DConditionModel parity fixtures under Tests/Fixtures/.

    python tests/reference/make_unet_fixtures.py [--out DIR]

Needs Tests/Fixtures/scheduler-ddim/ and scheduler-flow/ (written by
tests/reference/make_model_fixtures.py); writes scheduler-ddpm-fixed/ itself.
Deterministic (fixed seeds, one CPU thread, deterministic torch algorithms,
safetensors headers written with sorted keys, PEFT's set-valued JSON lists
sorted): a re-run reproduces every file byte for byte with the same torch /
diffusers / peft / numpy / safetensors versions (recorded in each safetensors
file's metadata under "versions" and in GENERATED-unet-fixtures.md, which lists
every file and tensor).

Models (SD-1.5 topology at tiny width; see GENERATED-unet-fixtures.md):

  unet-tiny/          3 levels (CrossAttnDown, CrossAttnDown, Down / Up, CrossAttnUp,
                      CrossAttnUp), block_out_channels (8, 8, 16), layers_per_block 2,
                      cross_attention_dim 32, attention_head_dim 2 (= 2 HEADS per level,
                      SD semantics), norm_num_groups 4, conv proj_in/proj_out,
                      flip_sin_to_cos True, freq_shift 0; float32
  unet-tiny-inpaint/  the same with in_channels 9 (latent 4 + mask 1 + masked latent 4)
  unet-tiny-cond/     the follow-up-CT shape: in 8 (latent 4 + baseline latent 4), out 4,
                      2 levels (CrossAttnDown, Down / Up, CrossAttnUp), (8, 16),
                      layers_per_block 1,
                      cross_attention_dim 64, attention_head_dim (2, 8) (heads per level),
                      transformer_layers_per_block (2, 1), use_linear_projection True,
                      flip_sin_to_cos False, freq_shift 1, upcast_attention True,
                      only_cross_attention (True, False); saved as float16

Every parameter is randomised (constant tensors re-drawn, every tensor perturbed
with a seeded N(0, 0.1 std)) and each model is then briefly fitted as a toy
denoiser (as make_model_fixtures.py does for dit-tiny): with random weights the
first DDIM step blows the latent up by 1/sqrt(alpha_bar_T) and every later
step, CFG detail and blending would sit below the test tolerance.

References are computed from the models reloaded from disk with
`from_pretrained(..., torch_dtype=torch.float32)`; LoRA references load the
written files back through diffusers (`load_lora_adapter`, and diffusers' own
kohya converter for the kohya file). The sampling loops are the ones of
diffusers' StableDiffusionPipeline / StableDiffusionInpaintPipeline /
StableDiffusionImg2ImgPipeline (0.42.1), without text encoder and VAE.

The script checks that the fixtures can make a test fail: it perturbs the
semantics a runtime could get wrong (head count read as head width, sin/cos
order, frequency shift, time embedding dropped from the resnets, CFG batch
order, conditioning concatenated before the latent, only_cross_attention, ...)
and asserts each moves the reference by more than 10x the test tolerance
(forward 1e-4, sampling 1e-3), and that float64 reruns sit far below it.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import peft
import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import diffusers
import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_lora_fixtures as mlf  # noqa: E402  (helpers only; its main() is not run)
import make_model_fixtures as mmf  # noqa: E402  (helpers only; its main() is not run)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests" / "Fixtures"
COMMAND = "python tests/reference/make_unet_fixtures.py"
GENERATOR = "tests/reference/make_unet_fixtures.py"

FORWARD_TOL = mmf.FORWARD_TOL  # 1e-4
SAMPLE_TOL = mmf.SAMPLE_TOL  # 1e-3
FUSED_TOL = 1e-5
MIN_LORA_EFFECT = 0.05

GUIDANCE = 7.5
LATENT = 4
SIZE = 8
SEQ, CTX = 5, 32  # unet-tiny / unet-tiny-inpaint context: 5 tokens x 32
COND_SEQ, COND_CTX = 3, 64  # unet-tiny-cond context: a few LLM-embedding tokens x 64
NUM_PROMPTS = 4  # toy "prompts" of the fitted denoisers; row NUM_PROMPTS is the uncond embedding
PROMPT = 1  # the prompt the sampling runs use
COND_PROMPT = 2

UNET_TINY = dict(
    sample_size=SIZE,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 8, 16),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    cross_attention_dim=CTX,
    attention_head_dim=2,
    norm_num_groups=4,
    use_linear_projection=False,
    flip_sin_to_cos=True,
    freq_shift=0,
)
UNET_TINY_INPAINT = dict(UNET_TINY, in_channels=9)
UNET_TINY_COND = dict(
    sample_size=SIZE,
    in_channels=8,
    out_channels=4,
    block_out_channels=(8, 16),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    cross_attention_dim=COND_CTX,
    attention_head_dim=(2, 8),  # heads per level (num_attention_heads cannot be passed, see notes)
    transformer_layers_per_block=(2, 1),
    norm_num_groups=4,
    use_linear_projection=True,
    flip_sin_to_cos=False,
    freq_shift=1,
    upcast_attention=True,
    only_cross_attention=(True, False),
)

DDPM_FIXED = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    variance_type="fixed_small",
    prediction_type="v_prediction",
    clip_sample=False,
    steps_offset=1,
)

STEPS = {"ddim": 50, "ddpm": 50, "flow": 20}
IMG2IMG_STRENGTH = 0.6
ENSEMBLE_K = 3
ENSEMBLE_STEPS = 20

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_A = dict(r=4, lora_alpha=8, target_modules=LORA_TARGETS)
LORA_B = dict(
    r=2,
    lora_alpha=3,
    target_modules=LORA_TARGETS,
    rank_pattern={"attn2.to_k": 4},
    alpha_pattern={"attn1.to_out.0": 6},
)
LORA_B_STD = {"A": 0.15, "B": 0.3}

NOTES: list[str] = []  # findings recorded in GENERATED-unet-fixtures.md


def note(text: str) -> None:
    print(f"  note: {text}")
    NOTES.append(text)


# --------------------------------------------------------------------------- helpers


def versions() -> dict:
    return mlf.versions()


def metadata(description: str, **extra) -> dict:
    md = {
        "description": description,
        "generator": GENERATOR,
        "command": COMMAND,
        "versions": json.dumps(versions(), sort_keys=True),
    }
    for k, v in extra.items():
        md[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return md


gen = mmf.gen
rel_err = mmf.rel_err
save_tensors = mmf.save_tensors


def require_sensitive(label, ref, perturbed, tol) -> float:
    return mmf.require_sensitive(label, ref, perturbed, tol)


def load_unet(folder: Path, dtype=torch.float32) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(str(folder), torch_dtype=dtype).eval()


@torch.no_grad()
def forward(model, sample, timestep, ehs) -> torch.Tensor:
    return model(sample, timestep, encoder_hidden_states=ehs).sample.float()


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Constant tensors (norm scales/biases) re-drawn, then every tensor perturbed by
    N(0, (0.1 * its std)^2), so that no parameter keeps a trivial value."""
    touched = mmf.make_nonconstant(model, seed)
    g = gen(seed + 1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            std = float(p.std()) if p.numel() > 1 else 0.05
            p.add_(torch.randn(p.shape, generator=g) * 0.1 * std)
    print(f"    re-drew {len(touched)} constant tensors (norm affine), perturbed all {len(list(model.parameters()))}")


def check_nontrivial(model: torch.nn.Module, label: str) -> None:
    bad = [n for n, p in model.named_parameters() if p.numel() > 1 and (torch.all(p == p.flatten()[0]) or bool((p == 0).any()))]
    assert not bad, f"{label}: constant or zero-containing parameters {bad[:5]}"


def toy_data(seed: int, seq: int, ctx: int):
    """Patterns mu [P,4,8,8] and context embeddings [P+1, seq, ctx] (last row = uncond)."""
    g = gen(seed)
    mu = 0.7 * torch.randn(NUM_PROMPTS, LATENT, SIZE, SIZE, generator=g)
    emb = torch.randn(NUM_PROMPTS + 1, seq, ctx, generator=g)
    return mu, emb


def rect_masks(n: int, g: torch.Generator) -> torch.Tensor:
    """n binary [1,8,8] masks, each an axis-aligned rectangle of 2..6 by 2..6 cells (1 = repaint)."""
    hw = torch.randint(2, 7, (n, 2), generator=g)
    y0 = (torch.rand(n, generator=g) * (SIZE - hw[:, 0] + 1)).floor().long()
    x0 = (torch.rand(n, generator=g) * (SIZE - hw[:, 1] + 1)).floor().long()
    ys = torch.arange(SIZE).view(1, SIZE, 1)
    xs = torch.arange(SIZE).view(1, 1, SIZE)
    m = (ys >= y0.view(-1, 1, 1)) & (ys < (y0 + hw[:, 0]).view(-1, 1, 1))
    m = m & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + hw[:, 1]).view(-1, 1, 1))
    return m.float().unsqueeze(1)


def fit_unet(model, seed: int, mu, emb, kind: str, iters: int = 300, batch: int = 32) -> None:
    """Fit eps on a toy prompt-conditional latent distribution (DiT betas, as scheduler-ddim).

    tiny:    x0 = mu_p + 0.3 N,               input x_t
    inpaint: x0 = mu_p + 0.3 N, m a rectangle, input [x_t, m, x0 * (1 - m)]
    cond:    x0 = 0.8 b + 0.5 mu_p + 0.2 N,   input [x_t, b], b = 0.7 N (the baseline latent)
    10% of the batch sees the uncond embedding.
    """
    g = gen(seed)
    betas = torch.linspace(mmf.DIT_BETAS["beta_start"], mmf.DIT_BETAS["beta_end"], mmf.DIT_BETAS["num_train_timesteps"])
    alpha_bar = torch.cumprod(1 - betas, 0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = last = None
    for _ in range(iters):
        p = torch.randint(0, NUM_PROMPTS, (batch,), generator=g)
        noise0 = torch.randn(batch, LATENT, SIZE, SIZE, generator=g)
        if kind == "cond":
            base = 0.7 * torch.randn(batch, LATENT, SIZE, SIZE, generator=g)
            x0 = 0.8 * base + 0.5 * mu[p] + 0.2 * noise0
        else:
            x0 = mu[p] + 0.3 * noise0
        t = torch.randint(0, mmf.DIT_BETAS["num_train_timesteps"], (batch,), generator=g)
        noise = torch.randn(batch, LATENT, SIZE, SIZE, generator=g)
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        drop = torch.rand(batch, generator=g) < 0.1
        ctx = emb[torch.where(drop, torch.full_like(p, NUM_PROMPTS), p)]
        if kind == "inpaint":
            m = rect_masks(batch, g)
            xin = torch.cat([xt, m, x0 * (1 - m)], dim=1)
        elif kind == "cond":
            xin = torch.cat([xt, base], dim=1)
        else:
            xin = xt
        loss = torch.mean((model(xin, t, encoder_hidden_states=ctx).sample - noise) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    print(f"    fitted eps for {iters} Adam steps (batch {batch}): loss {first:.3f} -> {last:.3f}")


def build_unet(config: dict, seed: int, mu, emb, kind: str) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**config)
    randomise(model, seed + 1)
    model.train()  # (no dropout in these models; train() only for the fit)
    fit_unet(model, seed + 2, mu, emb, kind)
    model.eval()
    check_nontrivial(model, kind)
    return model


# ------------------------------------------------------------ forward perturbations


def level_of(name: str, n_levels: int) -> int:
    """Resolution level of a module (down_blocks.i -> i, up_blocks.j -> n-1-j, mid -> n-1)."""
    parts = name.split(".")
    if parts[0] == "down_blocks":
        return int(parts[1])
    if parts[0] == "up_blocks":
        return n_levels - 1 - int(parts[1])
    return n_levels - 1


def head_dims(config: dict) -> list[int]:
    hd = config["attention_head_dim"]
    n = len(config["block_out_channels"])
    return list(hd) if isinstance(hd, (list, tuple)) else [hd] * n


@contextlib.contextmanager
def attention_heads(model, heads_for):
    """Temporarily set Attention.heads = heads_for(module name, module) (AttnProcessor2_0
    splits the projections into attn.heads heads of inner_dim // heads)."""
    saved = {}
    for name, m in model.named_modules():
        if isinstance(m, Attention):
            saved[name] = m.heads
            m.heads = heads_for(name, m)
    try:
        yield
    finally:
        for name, m in model.named_modules():
            if name in saved:
                m.heads = saved[name]


def heads_as_width(model, config):
    """attention_head_dim read as the head WIDTH (heads = channels / attention_head_dim)."""
    hd = head_dims(config)
    n = len(config["block_out_channels"])
    return attention_heads(model, lambda name, m: m.to_q.out_features // hd[level_of(name, n)])


def heads_not_reversed(model, config):
    """up_blocks.j given attention_head_dim[j] heads instead of diffusers' reversed list."""
    hd = head_dims(config)

    def heads(name, m):
        parts = name.split(".")
        return hd[int(parts[1])] if parts[0] == "up_blocks" else m.heads

    return attention_heads(model, heads)


@contextlib.contextmanager
def time_proj(model, **attrs):
    saved = {k: getattr(model.time_proj, k) for k in attrs}
    for k, v in attrs.items():
        setattr(model.time_proj, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(model.time_proj, k, v)


@contextlib.contextmanager
def hooks(modules, fn):
    handles = [m.register_forward_hook(fn) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def no_resnet_temb(model):
    """The time embedding never reaches the resnets (time_emb_proj output zeroed)."""
    mods = [m.time_emb_proj for m in model.modules() if isinstance(m, ResnetBlock2D) and m.time_emb_proj is not None]
    return hooks(mods, lambda mod, args, out: torch.zeros_like(out))


@torch.no_grad()
def forward_floor(folder: Path, sample, timestep, ehs, ref, label) -> None:
    m64 = load_unet(folder, torch.float64)
    floor = rel_err(ref, m64(sample.double(), timestep, encoder_hidden_states=ehs.double()).sample)
    print(f"  {label}: float64 rerun floor {floor:.2e} (tolerance {FORWARD_TOL:.0e})")
    assert floor < FORWARD_TOL / 10, f"{label}: float32 reference too far from float64 ({floor:.2e})"


# ---------------------------------------------------------------------- sampling


def load_scheduler(out: Path, name: str, **overrides):
    cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "flow": FlowMatchEulerDiscreteScheduler}[name]
    folder = {"ddim": "scheduler-ddim", "ddpm": "scheduler-ddpm-fixed", "flow": "scheduler-flow"}[name]
    return cls.from_pretrained(str(out / folder), **overrides)


def extra_step_kwargs(scheduler) -> dict:
    """StableDiffusionPipeline.prepare_extra_step_kwargs with eta = 0.0, generator = None."""
    params = set(inspect.signature(scheduler.step).parameters)
    kw = {}
    if "eta" in params:
        kw["eta"] = 0.0
    if "generator" in params:
        kw["generator"] = None
    return kw


@torch.no_grad()
def sd_loop(
    unet,
    scheduler,
    timesteps,
    latents,
    prompt_embeds,
    guidance_scale=GUIDANCE,
    *,
    concat=None,
    concat_first=False,
    blend=None,
    step_noise=None,
    unet_timestep=None,
):
    """The denoising loop of diffusers' StableDiffusionPipeline.__call__ (0.42.1), CFG on.

    latents: the starting latent (already multiplied by init_noise_sigma), batch B;
    prompt_embeds [2B, seq, ctx] = [uncond..., cond...] (SD order; the loop does
    noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)).
    concat [B, C', H, W]: channels concatenated AFTER the scaled latent for both halves
      (StableDiffusionInpaintPipeline with a 9-channel UNet: cat([latent_model_input, mask,
      masked_image_latents], dim=1); also the follow-up-CT baseline latent).
      concat_first=True puts them before (only to show that it matters).
    blend (image_latents, mask, noise): StableDiffusionInpaintPipeline with a 4-channel UNet:
      after each step, latents = (1 - mask) * add_noise(image_latents, noise, t_next) + mask * latents
      (no noise after the last step).
    step_noise [T, B, C, H, W]: what DDPMScheduler.step draws at each step.
    unet_timestep: optional transform of t before the UNet sees it (perturbation checks only).
    Returns final latents and the trajectory [T, B, C, H, W] (latents after each step).
    """
    fixed = None
    original_randn = scheduling_ddpm.randn_tensor
    if step_noise is not None:
        fixed = mmf.FixedNoise()
        scheduling_ddpm.randn_tensor = fixed
    kw = extra_step_kwargs(scheduler)
    trajectory = []
    try:
        for i, t in enumerate(timesteps):
            latent_model_input = torch.cat([latents] * 2)
            if hasattr(scheduler, "scale_model_input"):
                latent_model_input = scheduler.scale_model_input(latent_model_input, t)
            if concat is not None:
                c = torch.cat([concat] * 2)
                parts = [c, latent_model_input] if concat_first else [latent_model_input, c]
                latent_model_input = torch.cat(parts, dim=1)
            tt = t if unet_timestep is None else unet_timestep(t)
            noise_pred = unet(latent_model_input, tt, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
            if fixed is not None:
                fixed.current = step_noise[i]
            latents = scheduler.step(noise_pred, t, latents, **kw, return_dict=False)[0]
            if fixed is not None:
                fixed.current = None
            if blend is not None:
                image_latents, mask, noise = blend
                init_latents_proper = image_latents
                if i < len(timesteps) - 1:
                    noise_timestep = timesteps[i + 1]
                    init_latents_proper = scheduler.add_noise(init_latents_proper, noise, torch.tensor([noise_timestep]))
                latents = (1 - mask) * init_latents_proper + mask * latents
            trajectory.append(latents.clone())
    finally:
        scheduling_ddpm.randn_tensor = original_randn
    draws = fixed.draws if fixed is not None else 0
    return latents, torch.stack(trajectory), draws


def run(unet, out, name, steps, latents, prompt_embeds, **kw):
    """Fresh scheduler from its fixture folder, set_timesteps(steps), the SD loop."""
    overrides = kw.pop("scheduler_overrides", {})
    s = load_scheduler(out, name, **overrides)
    s.set_timesteps(steps)
    final, traj, draws = sd_loop(unet, s, s.timesteps, latents, prompt_embeds, **kw)
    return final, traj, s.timesteps.clone(), draws


def require_sensitive_run(label, ref_traj, alt_traj, tol=SAMPLE_TOL, factor=mmf.SENSITIVITY_FACTOR) -> float:
    return mlf.require_sensitive_run(label, ref_traj, alt_traj, tol, factor)


def sample_floor(label, traj, traj64) -> None:
    floor = max(rel_err(traj[i], traj64[i]) for i in range(len(traj)))
    print(f"  {label}: float64 rerun floor (max over trajectory) {floor:.2e} (tolerance {SAMPLE_TOL:.0e})")
    assert floor < SAMPLE_TOL / 10, f"{label}: float32 reference too far from float64 ({floor:.2e})"


def as_int64(ts):
    return ts.to(torch.int64)


def make_ddpm_fixed(out: Path) -> None:
    DDPMScheduler(**DDPM_FIXED).save_config(str(mmf.fresh_dir(out / "scheduler-ddpm-fixed")))


# --------------------------------------------------------------------------- LoRA


def lora_layers(model):
    return mlf.lora_layers(model)


def make_lora_A(unet_dir: Path, out: Path) -> dict:
    model = load_unet(unet_dir)
    torch.manual_seed(7000)  # PEFT initialises lora_A (kaiming uniform) from the global RNG
    model.add_adapter(LoraConfig(**LORA_A), adapter_name="A")
    g = gen(7001)
    with torch.no_grad():
        for _, layer in sorted(lora_layers(model), key=lambda kv: kv[0]):
            w = layer.lora_B["A"].weight
            w.copy_(torch.randn(w.shape, generator=g) * LORA_B_STD["A"])
    state = get_peft_model_state_dict(model, adapter_name="A")
    config = model.peft_config["A"].to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionLoraLoaderMixin.save_lora_weights(tmp, unet_lora_layers=state, unet_lora_adapter_metadata=config)
        written = Path(tmp) / "pytorch_lora_weights.safetensors"
        tensors = load_file(str(written))
        with safe_open(str(written), "pt") as f:
            md = dict(f.metadata())
    assert set(md) == {"format", "lora_adapter_metadata"}, md.keys()
    lora_md = mlf.sorted_set_lists(json.loads(md["lora_adapter_metadata"]))
    assert lora_md["unet.r"] == 4 and lora_md["unet.lora_alpha"] == 8, lora_md
    md["lora_adapter_metadata"] = json.dumps(lora_md, indent=2, sort_keys=True)  # as diffusers dumps it
    assert all(k.startswith("unet.") for k in tensors), list(tensors)
    md.update(
        metadata(
            "LoRA adapter 'A' on unet-tiny (r=4, lora_alpha=8, to_q/to_k/to_v/to_out.0 of attn1 and attn2 in every "
            "transformer block), written by diffusers' StableDiffusionLoraLoaderMixin.save_lora_weights (keys "
            "unet.<module>.lora_A/lora_B.weight, lora_adapter_metadata = LoraConfig.to_dict() keyed 'unet.<field>'); "
            "lora_B seeded random"
        )
    )
    save_tensors(out / "unet-tiny-lora-A.safetensors", tensors, md)
    print(f"  A: {len(tensors)} tensors ({len(tensors) // 2} Linears), e.g. {sorted(tensors)[0]}")
    return tensors


def make_lora_B(unet_dir: Path, out: Path) -> tuple[dict, dict]:
    base = load_unet(unet_dir)
    torch.manual_seed(7100)
    pm = get_peft_model(base, LoraConfig(**LORA_B), adapter_name="B")
    g = gen(7101)
    with torch.no_grad():
        for _, layer in sorted(lora_layers(pm), key=lambda kv: kv[0]):
            w = layer.lora_B["B"].weight
            w.copy_(torch.randn(w.shape, generator=g) * LORA_B_STD["B"])
    folder = mmf.fresh_dir(out / "unet-tiny-lora-B")
    with tempfile.TemporaryDirectory() as tmp:
        pm.save_pretrained(tmp)  # a non-default adapter name goes to <dir>/<name>/
        src = Path(tmp) / "B"
        config = json.loads((src / "adapter_config.json").read_text())
        tensors = load_file(str(src / "adapter_model.safetensors"))
        with safe_open(str(src / "adapter_model.safetensors"), "pt") as f:
            md = dict(f.metadata())
    assert md == {"format": "pt"}, md
    assert all(k.startswith("base_model.model.") for k in tensors), list(tensors)
    config = mlf.sorted_set_lists(config)
    assert config["rank_pattern"] == LORA_B["rank_pattern"] and config["alpha_pattern"] == LORA_B["alpha_pattern"]
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    md.update(
        metadata(
            "PEFT adapter 'B' on unet-tiny (r=2, lora_alpha=3, to_q/to_k/to_v/to_out.0, rank_pattern "
            "{attn2.to_k: 4}, alpha_pattern {attn1.to_out.0: 6}) written by PeftModel.save_pretrained "
            "(keys base_model.model.<module>.lora_A/lora_B.weight); lora_B seeded random"
        )
    )
    save_tensors(folder / "adapter_model.safetensors", tensors, md)
    print(f"  B: {len(tensors)} tensors, config r={config['r']} alpha={config['lora_alpha']}")
    return tensors, config


def make_kohya(tensors_A: dict, out: Path) -> Path:
    kohya = {}
    for key, t in tensors_A.items():
        module, kind = key.removeprefix("unet.").rsplit(".lora_", 1)
        stem = "lora_unet_" + module.replace(".", "_")
        kohya[f"{stem}.lora_down.weight" if kind == "A.weight" else f"{stem}.lora_up.weight"] = t
        kohya[f"{stem}.alpha"] = torch.tensor(float(LORA_A["lora_alpha"]), dtype=torch.float32)
    path = out / "unet-tiny-lora-A-kohya.safetensors"
    save_tensors(
        path,
        kohya,
        metadata(
            "adapter 'A' (unet-tiny-lora-A.safetensors) in kohya/A1111 form: lora_unet_<module, . -> _>"
            ".lora_down.weight = lora_A, .lora_up.weight = lora_B, .alpha = 8 (scalar); scale alpha/rank = 2",
            ss_network_module="networks.lora",
            ss_network_dim=str(LORA_A["r"]),
            ss_network_alpha=str(float(LORA_A["lora_alpha"])),
        ),
    )
    return path


def load_adapters(model, out: Path, b_config: dict) -> None:
    # use_safetensors=True: without it the model-level loader drops lora_adapter_metadata (scale 1).
    model.load_lora_adapter(str(out / "unet-tiny-lora-A.safetensors"), prefix="unet", adapter_name="A", use_safetensors=True)
    folder = out / "unet-tiny-lora-B"
    sd = {k.removeprefix("base_model.model."): v for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
    # diffusers warns of "missing keys" naming every lora_B of adapter A here: its filter
    # (utils/peft_utils.py:530) keeps missing keys that contain the adapter name as a substring,
    # and "B" is in "lora_B". check_loaded verifies the weights instead; the warning is silenced.
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    try:
        model.load_lora_adapter(sd, prefix=None, adapter_name="B", metadata=b_config)
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)


def check_loaded(model, tensors_A, tensors_B) -> None:
    layers = dict(lora_layers(model))
    for tensors, prefix, adapter in ((tensors_A, "unet.", "A"), (tensors_B, "base_model.model.", "B")):
        for key, t in tensors.items():
            module, kind = key.removeprefix(prefix).rsplit(".lora_", 1)
            w = (layers[module].lora_A if kind == "A.weight" else layers[module].lora_B)[adapter].weight
            assert torch.equal(w.float(), t), key
    n_attn = sum(1 for _, m in model.named_modules() if isinstance(m, Attention))
    assert len(layers) == 4 * n_attn, (len(layers), n_attn)
    for name, layer in layers.items():
        want_B = 6 / 2 if name.endswith("attn1.to_out.0") else (3 / 4 if name.endswith("attn2.to_k") else 3 / 2)
        got = {a: float(layer.lora_alpha[a]) / layer.r[a] for a in layer.r}
        assert got == {"A": 2.0, "B": want_B}, f"{name}: scales {got}"
    print(f"  loaded back: {len(layers)} LoRA Linears in {n_attn} Attention modules; scales A 2, B 1.5 / 0.75 / 3")


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"fixture folder (default {DEFAULT_OUT})")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("scheduler-ddim", "scheduler-flow"):
        if not (out / name / "scheduler_config.json").exists():
            raise SystemExit(f"{out / name} missing: run tests/reference/make_model_fixtures.py first")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"versions: {versions()}")
    check_diffusers_semantics()

    mu, emb = toy_data(8000, SEQ, CTX)
    cmu, cemb = toy_data(8001, COND_SEQ, COND_CTX)

    # ----------------------------------------------------------------- models
    print("unet-tiny")
    mmf.save_model(build_unet(UNET_TINY, 8100, mu, emb, "tiny"), out / "unet-tiny")
    print("unet-tiny-inpaint")
    mmf.save_model(build_unet(UNET_TINY_INPAINT, 8200, mu, emb, "inpaint"), out / "unet-tiny-inpaint")
    print("unet-tiny-cond (float16 weights)")
    mmf.save_model(build_unet(UNET_TINY_COND, 8300, cmu, cemb, "cond").to(torch.float16), out / "unet-tiny-cond")

    unet = load_unet(out / "unet-tiny")
    inpaint = load_unet(out / "unet-tiny-inpaint")
    cond = load_unet(out / "unet-tiny-cond")

    forward_fixtures(out, unet, inpaint, cond)

    # --------------------------------------------------------------- sampling
    make_ddpm_fixed(out)
    sampling_fixtures(out, unet, inpaint, cond, mu, emb, cmu, cemb)

    # ------------------------------------------------------------------- LoRA
    lora_fixtures(out)

    write_readme(out)
    print("done")


def check_diffusers_semantics() -> None:
    """Facts about diffusers 0.42.1 that shape the fixtures (recorded in the README)."""
    try:
        UNet2DConditionModel(**dict(UNET_TINY_COND, attention_head_dim=4, num_attention_heads=(2, 8)))
    except ValueError:
        note(
            "UNet2DConditionModel refuses num_attention_heads (ValueError: 'At the moment it is not possible to define "
            "the number of attention heads via `num_attention_heads`'; unet_2d_condition.py:243); per-level head "
            "counts are given as attention_head_dim (2, 8) instead"
        )
    else:
        raise SystemExit("diffusers accepted num_attention_heads: revisit unet-tiny-cond")
    assert not hasattr(DDIMScheduler, "set_begin_index")
    note(
        "DDIMScheduler has no set_begin_index: StableDiffusionImg2ImgPipeline.get_timesteps (img2img.py:730) "
        "skips it; DDIM's step derives prev_timestep = t - num_train_timesteps // num_inference_steps from t alone, "
        "so the 30-step img2img run needs no step index"
    )
    assert not hasattr(FlowMatchEulerDiscreteScheduler(), "init_noise_sigma")
    assert not hasattr(FlowMatchEulerDiscreteScheduler, "scale_model_input")
    note(
        "FlowMatchEulerDiscreteScheduler has neither init_noise_sigma nor scale_model_input: "
        "StableDiffusionPipeline.prepare_latents (pipeline_stable_diffusion.py:713) would raise AttributeError, "
        "so the flow run starts from the noise as is (init_noise_sigma taken as 1) and skips scale_model_input "
        "(the SD loop checks hasattr; the inpaint loop, line 1271, calls it unconditionally)"
    )


# ------------------------------------------------------------------- forwards


def forward_fixtures(out: Path, unet, inpaint, cond) -> None:
    print("forward references")
    g = gen(8400)
    sample = torch.randn(2, LATENT, SIZE, SIZE, generator=g)
    timestep = torch.tensor([937, 17], dtype=torch.int64)
    ehs = torch.randn(2, SEQ, CTX, generator=g)
    timestep_float = torch.tensor([437.25, 3.5], dtype=torch.float32)
    ns_sample = torch.randn(1, LATENT, 8, 16, generator=g)
    ns_timestep = torch.tensor([500], dtype=torch.int64)
    ns_ehs = torch.randn(1, SEQ, CTX, generator=g)
    odd_sample = torch.randn(1, LATENT, 6, 10, generator=g)
    odd_timestep = torch.tensor([250], dtype=torch.int64)
    odd_ehs = torch.randn(1, SEQ, CTX, generator=g)
    cond_sample = torch.randn(2, 8, SIZE, SIZE, generator=g)
    cond_timestep = torch.tensor([500, 999], dtype=torch.int64)
    cond_ehs = torch.randn(2, COND_SEQ, COND_CTX, generator=g)
    inpaint_sample = torch.randn(2, 9, SIZE, SIZE, generator=g)
    inpaint_sample[:, 4:5] = rect_masks(2, g)
    inpaint_timestep = torch.tensor([250, 750], dtype=torch.int64)
    inpaint_ehs = torch.randn(2, SEQ, CTX, generator=g)

    output = forward(unet, sample, timestep, ehs)
    output_float = forward(unet, sample, timestep_float, ehs)
    ns_output = forward(unet, ns_sample, ns_timestep, ns_ehs)
    odd_output = forward(unet, odd_sample, odd_timestep, odd_ehs)
    cond_output = forward(cond, cond_sample, cond_timestep, cond_ehs)
    inpaint_output = forward(inpaint, inpaint_sample, inpaint_timestep, inpaint_ehs)
    assert odd_output.shape == (1, 4, 6, 10)

    forward_floor(out / "unet-tiny", sample, timestep, ehs, output, "unet-tiny")
    forward_floor(out / "unet-tiny", ns_sample, ns_timestep, ns_ehs, ns_output, "unet-tiny non-square")
    forward_floor(out / "unet-tiny", odd_sample, odd_timestep, odd_ehs, odd_output, "unet-tiny 6x10")
    forward_floor(out / "unet-tiny-cond", cond_sample, cond_timestep, cond_ehs, cond_output, "unet-tiny-cond")
    forward_floor(out / "unet-tiny-inpaint", inpaint_sample, inpaint_timestep, inpaint_ehs, inpaint_output, "unet-tiny-inpaint")

    # ---- sensitivity: unet-tiny
    def f(model=unet, s=sample, t=timestep, e=ehs):
        return forward(model, s, t, e)

    with heads_as_width(unet, UNET_TINY):
        require_sensitive("attention_head_dim 2 read as head width (heads = channels / 2)", output, f(), FORWARD_TOL)
    with time_proj(unet, flip_sin_to_cos=False):
        require_sensitive("flip_sin_to_cos False instead of True", output, f(), FORWARD_TOL)
    with time_proj(unet, downscale_freq_shift=1):
        require_sensitive("freq_shift 1 instead of 0", output, f(), FORWARD_TOL)
    with no_resnet_temb(unet):
        require_sensitive("time embedding missing in the resnets", output, f(), FORWARD_TOL)
    require_sensitive("timesteps swapped between samples", output, f(t=timestep.flip(0)), FORWARD_TOL)
    require_sensitive("encoder_hidden_states swapped between samples", output, f(e=ehs.flip(0)), FORWARD_TOL)
    require_sensitive("fractional timesteps rounded", output_float, f(t=timestep_float.round()), FORWARD_TOL)
    with heads_as_width(unet, UNET_TINY):
        require_sensitive("non-square: head count read as width", ns_output, f(s=ns_sample, t=ns_timestep, e=ns_ehs), FORWARD_TOL)
    # a transposed (W <-> H) non-square latent must not pass
    tr = forward(unet, ns_sample.transpose(2, 3).contiguous(), ns_timestep, ns_ehs).transpose(2, 3)
    require_sensitive("non-square: H and W swapped", ns_output, tr, FORWARD_TOL)
    note(
        "sizes not divisible by 2**num_upsamplers (the 6x10 case: 6x10 -> 3x5 -> 2x3) make UNet2DConditionModel."
        "forward pass upsample_size = the skip tensor's size to every up block but the last "
        "(forward_upsample_size, unet_2d_condition.py:1046-1052 and 1204-1205), i.e. nearest-neighbour upsampling to 3x5 / 6x10, "
        "not 2x"
    )

    # ---- sensitivity: unet-tiny-cond
    def fc(model=cond, s=cond_sample, t=cond_timestep, e=cond_ehs):
        return forward(model, s, t, e)

    with heads_as_width(cond, UNET_TINY_COND):
        require_sensitive("cond: attention_head_dim (2, 8) read as head widths", cond_output, fc(), FORWARD_TOL)
    with heads_not_reversed(cond, UNET_TINY_COND):
        require_sensitive("cond: up-block head counts not reversed (up_blocks.1 with 8 heads, not 2)", cond_output, fc(), FORWARD_TOL)
    with time_proj(cond, flip_sin_to_cos=True):
        require_sensitive("cond: flip_sin_to_cos True instead of False", cond_output, fc(), FORWARD_TOL)
    with time_proj(cond, downscale_freq_shift=0):
        require_sensitive("cond: freq_shift 0 instead of 1", cond_output, fc(), FORWARD_TOL)
    with no_resnet_temb(cond):
        require_sensitive("cond: time embedding missing in the resnets", cond_output, fc(), FORWARD_TOL)
    second = [a.transformer_blocks[1] for a in list(cond.down_blocks[0].attentions) + list(cond.up_blocks[1].attentions)]
    with hooks(second, lambda mod, args, o: args[0]):
        require_sensitive("cond: second transformer layer (transformer_layers_per_block 2) skipped", cond_output, fc(), FORWARD_TOL)
    zeroed = cond_sample.clone()
    zeroed[:, LATENT:] = 0
    require_sensitive("cond: conditioning channels zeroed", cond_output, fc(s=zeroed), FORWARD_TOL)
    swapped = torch.cat([cond_sample[:, LATENT:], cond_sample[:, :LATENT]], dim=1)
    require_sensitive("cond: conditioning concatenated before the latent", cond_output, fc(s=swapped), FORWARD_TOL)
    # only_cross_attention: attn1 of the only-cross blocks attends to the context, so its
    # to_k / to_v read 64-wide tokens; a runtime that ignored the flag could not load them.
    a1 = cond.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert a1.is_cross_attention and tuple(a1.to_k.weight.shape) == (8, COND_CTX), a1.to_k.weight.shape
    assert not cond.mid_block.attentions[0].transformer_blocks[0].attn1.is_cross_attention
    assert cond.up_blocks[1].attentions[0].transformer_blocks[0].attn1.is_cross_attention
    note(
        "only_cross_attention (True, False) is accepted: down_blocks.0 and (reversed) up_blocks.1 get attn1 = "
        "cross-attention to encoder_hidden_states (to_k/to_v [8, 64]), the mid block (UNetMidBlock2DCrossAttn) "
        "ignores the flag (mid_block_only_cross_attention only reaches UNetMidBlock2DSimpleCrossAttn, "
        "unet_2d_blocks.py:305) and keeps self-attention; ignoring the flag cannot load the weights "
        "(attn1.to_k would be [8, 8]), so it needs no numeric perturbation check"
    )
    plain = UNet2DConditionModel(**dict(UNET_TINY_COND, upcast_attention=False)).eval()
    plain.load_state_dict(cond.state_dict())
    upcast_diff = rel_err(fc(model=plain), cond_output)
    assert upcast_diff == 0.0, upcast_diff
    note(
        "upcast_attention has no effect in float32: AttnProcessor2_0 (the default, attention_processor.py:2696) "
        "never reads it, and Attention.get_attention_scores (line 674) only casts q/k to float32; the cond output "
        "with upcast_attention False is bit-identical, so no fixture can detect a runtime that ignores it"
    )

    # ---- sensitivity: unet-tiny-inpaint
    def fi(s):
        return forward(inpaint, s, inpaint_timestep, inpaint_ehs)

    z = inpaint_sample.clone()
    z[:, LATENT + 1 :] = 0
    require_sensitive("inpaint: masked-image latents zeroed", inpaint_output, fi(z), FORWARD_TOL)
    z = inpaint_sample.clone()
    z[:, LATENT : LATENT + 1] = 0
    require_sensitive("inpaint: mask zeroed", inpaint_output, fi(z), FORWARD_TOL)
    z = torch.cat([inpaint_sample[:, :LATENT], inpaint_sample[:, LATENT + 1 :], inpaint_sample[:, LATENT : LATENT + 1]], dim=1)
    require_sensitive("inpaint: [latent, masked, mask] instead of [latent, mask, masked]", inpaint_output, fi(z), FORWARD_TOL)

    save_tensors(
        out / "unet-tiny-forward.safetensors",
        dict(
            sample=sample,
            timestep=timestep,
            encoder_hidden_states=ehs,
            output=output,
            timestep_float=timestep_float,
            output_float=output_float,
            nonsquare_sample=ns_sample,
            nonsquare_timestep=ns_timestep,
            nonsquare_encoder_hidden_states=ns_ehs,
            nonsquare_output=ns_output,
            odd_sample=odd_sample,
            odd_timestep=odd_timestep,
            odd_encoder_hidden_states=odd_ehs,
            odd_output=odd_output,
            cond_sample=cond_sample,
            cond_timestep=cond_timestep,
            cond_encoder_hidden_states=cond_ehs,
            cond_output=cond_output,
            inpaint_sample=inpaint_sample,
            inpaint_timestep=inpaint_timestep,
            inpaint_encoder_hidden_states=inpaint_ehs,
            inpaint_output=inpaint_output,
        ),
        metadata(
            "UNet2DConditionModel(sample, timestep, encoder_hidden_states).sample: unet-tiny (sample/timestep/"
            "encoder_hidden_states -> output; timestep_float -> output_float with the same sample and context; "
            "nonsquare_* [1,4,8,16]; odd_* [1,4,6,10], not divisible by 4, so diffusers passes upsample_size); "
            "unet-tiny-cond loaded from float16 weights with torch_dtype=float32 (cond_* -> cond_output; channels "
            "0-3 noisy latent, 4-7 baseline latent); unet-tiny-inpaint (inpaint_* -> inpaint_output; channels 0-3 "
            "latent, 4 binary mask, 5-8 masked-image latent)"
        ),
    )


# ------------------------------------------------------------------- sampling


def sampling_fixtures(out: Path, unet, inpaint, cond, mu, emb, cmu, cemb) -> None:
    print("sampling (StableDiffusionPipeline loop, CFG 7.5, batch [uncond, cond])")
    unet64 = load_unet(out / "unet-tiny", torch.float64)
    ehs = torch.stack([emb[NUM_PROMPTS], emb[PROMPT]])  # [2,5,32] = (uncond, cond)
    g = gen(8500)
    init_noise = torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    ddpm_noise = torch.randn(STEPS["ddpm"], 1, LATENT, SIZE, SIZE, generator=gen(8501))

    peak = {}
    for name, steps in STEPS.items():
        kw = dict(step_noise=ddpm_noise) if name == "ddpm" else {}
        final, traj, ts, draws = run(unet, out, name, steps, init_noise, ehs, **kw)
        assert torch.equal(final, traj[-1])
        peak[name] = float(traj.abs().max())
        if name == "ddpm":
            assert draws == steps, f"DDPM drew noise {draws} times in {steps} steps"
        print(f"  {name}: {steps} steps, timesteps {ts[:3].tolist()}...{ts[-2:].tolist()} ({ts.dtype}), |final|max {final.abs().max():.3f}")
        kw64 = dict(step_noise=ddpm_noise.double()) if name == "ddpm" else {}
        _, t64, _, _ = run(unet64, out, name, steps, init_noise.double(), ehs.double(), **kw64)
        sample_floor(name, traj, t64)

        def alt(label, factor=mmf.SENSITIVITY_FACTOR, **over):
            k = dict(kw)
            k.update(over)
            e = k.pop("ehs", ehs)
            _, a, _, _ = run(unet, out, name, steps, init_noise, e, **k)
            require_sensitive_run(f"{name}: {label}", traj, a, factor=factor)

        alt("SD CFG order swapped (batch [cond, uncond])", ehs=ehs.flip(0))
        alt("guidance 3.0 instead of 7.5", guidance_scale=3.0)
        if name == "ddpm":
            alt("step noise shifted by one step", step_noise=torch.roll(ddpm_noise, 1, dims=0))
            alt("v_prediction read as epsilon", scheduler_overrides=dict(prediction_type="epsilon"))
        if name == "flow":
            # about 3x the sampling tolerance (the forward check of rounded timesteps is 60x):
            # enough to fail a test, so this one asks for 2x, not 10x
            alt("sigma * 1000 rounded to an integer timestep", factor=2.0, unet_timestep=lambda t: t.round())

        tensors = dict(
            init_noise=init_noise,
            encoder_hidden_states=ehs,
            timesteps=as_int64(ts) if name != "flow" else ts.to(torch.float32),
            trajectory=traj,
            final=final,
        )
        if name == "ddpm":
            tensors["step_noise"] = ddpm_noise
        folder = {"ddim": "scheduler-ddim", "ddpm": "scheduler-ddpm-fixed", "flow": "scheduler-flow"}[name]
        save_tensors(
            out / f"unet-tiny-sample-{name}.safetensors",
            tensors,
            metadata(
                f"CFG sampling of unet-tiny with {folder}, the loop of diffusers StableDiffusionPipeline.__call__: "
                "latent_model_input = cat([latents] * 2), scale_model_input (when the scheduler has it), "
                "unet(latent_model_input, t, encoder_hidden_states) with encoder_hidden_states = [uncond, cond], "
                "e = e_uncond + g * (e_cond - e_uncond), latents = scheduler.step(e, t, latents, eta=0).prev_sample; "
                "init_noise is the starting latent (init_noise_sigma = 1); trajectory[i] = latents after step i; "
                "final = trajectory[-1]"
                + ("; step_noise[i] = the noise DDPMScheduler.step draws at step i (all 50 steps draw: the last "
                   "timestep is 1 with steps_offset 1)" if name == "ddpm" else "")
                + ("; timesteps are sigma * 1000 (float32) and go to the UNet as such" if name == "flow" else ""),
                steps=steps,
                guidance_scale=GUIDANCE,
                scheduler=f"{folder}/scheduler_config.json",
            ),
        )

    # ---------------------------------------------------- follow-up CT (cond)
    print("  cond: image-conditioned DDIM (baseline latent concatenated after the noisy latent)")
    cond64 = load_unet(out / "unet-tiny-cond", torch.float64)
    cehs = torch.stack([cemb[NUM_PROMPTS], cemb[COND_PROMPT]])  # [2,3,64]
    g = gen(8600)
    c_init = torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    conditioning = 0.7 * torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    final, traj, ts, _ = run(cond, out, "ddim", 50, c_init, cehs, concat=conditioning)
    _, t64, _, _ = run(cond64, out, "ddim", 50, c_init.double(), cehs.double(), concat=conditioning.double())
    sample_floor("cond ddim", traj, t64)
    _, a, _, _ = run(cond, out, "ddim", 50, c_init, cehs, concat=conditioning, concat_first=True)
    require_sensitive_run("cond: conditioning concatenated before the latent", traj, a)
    _, a, _, _ = run(cond, out, "ddim", 50, c_init, cehs.flip(0), concat=conditioning)
    require_sensitive_run("cond: SD CFG order swapped", traj, a)
    _, a, _, _ = run(cond, out, "ddim", 50, c_init, cehs, concat=torch.zeros_like(conditioning))
    require_sensitive_run("cond: conditioning zeroed", traj, a)
    save_tensors(
        out / "unet-tiny-cond-sample-ddim.safetensors",
        dict(init_noise=c_init, conditioning=conditioning, encoder_hidden_states=cehs, timesteps=as_int64(ts),
             trajectory=traj, final=final),
        metadata(
            "50-step DDIM (scheduler-ddim) CFG 7.5 sampling of unet-tiny-cond (follow-up-CT shape): the "
            "StableDiffusionPipeline loop with latent_model_input = cat([scale_model_input(cat([latents] * 2)), "
            "cat([conditioning] * 2)], dim=1) (conditioning AFTER the noisy latent, the same for both halves, as "
            "StableDiffusionInpaintPipeline does with mask/masked-image latents); encoder_hidden_states [2,3,64] = "
            "[uncond, cond]; trajectory[i] = latents after step i",
            steps=50, guidance_scale=GUIDANCE, scheduler="scheduler-ddim/scheduler_config.json",
        ),
    )

    # ------------------------------------------------------ 9-channel inpaint
    print("  inpaint: 9-channel UNet")
    inpaint64 = load_unet(out / "unet-tiny-inpaint", torch.float64)
    g = gen(8700)
    i_init = torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    clean = mu[PROMPT : PROMPT + 1] + 0.3 * torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    mask = rect_masks(1, g)
    masked_image_latents = clean * (1 - mask)
    cat = torch.cat([mask, masked_image_latents], dim=1)
    final, traj, ts, _ = run(inpaint, out, "ddim", 50, i_init, ehs, concat=cat)
    _, t64, _, _ = run(inpaint64, out, "ddim", 50, i_init.double(), ehs.double(), concat=cat.double())
    sample_floor("inpaint ddim", traj, t64)
    swapped = torch.cat([masked_image_latents, mask], dim=1)
    _, a, _, _ = run(inpaint, out, "ddim", 50, i_init, ehs, concat=swapped)
    require_sensitive_run("inpaint: [masked, mask] instead of [mask, masked]", traj, a)
    _, a, _, _ = run(inpaint, out, "ddim", 50, i_init, ehs, concat=torch.cat([1 - mask, masked_image_latents], dim=1))
    require_sensitive_run("inpaint: mask inverted", traj, a)
    _, a, _, _ = run(inpaint, out, "ddim", 50, i_init, ehs.flip(0), concat=cat)
    require_sensitive_run("inpaint: SD CFG order swapped", traj, a)
    save_tensors(
        out / "unet-tiny-inpaint-sample-ddim.safetensors",
        dict(init_noise=i_init, mask=mask, masked_image_latents=masked_image_latents, conditioning=cat,
             encoder_hidden_states=ehs, timesteps=as_int64(ts), trajectory=traj, final=final),
        metadata(
            "50-step DDIM CFG 7.5 inpainting with unet-tiny-inpaint, the loop of StableDiffusionInpaintPipeline "
            "with num_channels_unet == 9 and strength 1: latents start at init_noise (* init_noise_sigma = 1); "
            "latent_model_input = cat([scale_model_input(cat([latents] * 2)), cat([mask] * 2), "
            "cat([masked_image_latents] * 2)], dim=1); conditioning = cat([mask, masked_image_latents], dim=1) "
            "(the same 5 channels, for runtimes that take one conditioning tensor); mask 1 = repaint; "
            "masked_image_latents = a clean latent * (1 - mask)",
            steps=50, guidance_scale=GUIDANCE, scheduler="scheduler-ddim/scheduler_config.json",
        ),
    )

    # ----------------------------------------------- 4-channel latent blending
    print("  blend: 4-channel UNet, latent blending (strength 1)")
    g = gen(8800)
    image_latents = mu[PROMPT : PROMPT + 1] + 0.3 * torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    b_mask = rect_masks(1, g)
    b_noise = torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    sched = load_scheduler(out, "ddim")
    b_init = b_noise * sched.init_noise_sigma
    blend = (image_latents, b_mask, b_noise)
    final, traj, ts, _ = run(unet, out, "ddim", 50, b_init, ehs, blend=blend)
    assert torch.equal(final * (1 - b_mask), image_latents * (1 - b_mask)), "known region must be the image latent"
    _, t64, _, _ = run(unet64, out, "ddim", 50, b_init.double(), ehs.double(),
                       blend=tuple(x.double() for x in blend))
    sample_floor("blend ddim", traj, t64)

    def blend_alt(label, shift):
        """add_noise at timesteps[i + shift] (shift 0: the step just taken) instead of timesteps[i + 1]."""
        s = load_scheduler(out, "ddim")
        s.set_timesteps(50)
        tl = s.timesteps
        lat = b_init
        tr = []
        for i, t in enumerate(tl):
            lat, _, _ = sd_loop(unet, s, tl[i : i + 1], lat, ehs)
            proper = image_latents
            if i + shift < len(tl) and i < len(tl) - 1:
                proper = s.add_noise(proper, b_noise, torch.tensor([tl[i + shift]]))
            lat = (1 - b_mask) * proper + b_mask * lat
            tr.append(lat)
        # judged on the known region (mask = 0), where the blend acts: there the latents stay
        # O(1) while the repainted region grows (see the note on DDIM magnitudes)
        keep = 1 - b_mask
        require_sensitive_run(f"blend: {label} (known region)", traj * keep, torch.stack(tr) * keep)

    known = float((traj * (1 - b_mask)).abs().max())
    repainted = float((traj * b_mask).abs().max())
    print(f"    max |latent| over the run: known region {known:.2f}, repainted region {repainted:.2f}")
    note(
        f"the DDIM runs (scheduler-ddim, DiT betas: 1 / sqrt(alpha_bar_980) = {1 / float(load_scheduler(out, 'ddim').alphas_cumprod[980].sqrt()):.0f}) "
        f"amplify the tiny fitted model's eps error at high t, so DDIM latents grow (max |x| {peak['ddim']:.0f} in "
        f"unet-tiny-sample-ddim, vs {peak['ddpm']:.1f} for the v_prediction DDPM run and {peak['flow']:.1f} for the "
        f"flow run), as dit-tiny's DDIM run does (to 16); relative errors are taken "
        f"against that maximum. In the blend run the known region (mask = 0) stays O(1) (max {known:.2f} vs "
        f"{repainted:.2f} in the repainted region): compare it separately (relative to its own maximum) to "
        f"check the blending itself"
    )
    blend_alt("add_noise at the current timestep instead of the next", 0)
    _, a, _, _ = run(unet, out, "ddim", 50, b_init, ehs)
    require_sensitive_run("blend: no blending", traj, a)
    _, a, _, _ = run(unet, out, "ddim", 50, b_init, ehs, blend=(image_latents, 1 - b_mask, b_noise))
    require_sensitive_run("blend: mask inverted", traj, a)
    save_tensors(
        out / "unet-tiny-blend-sample-ddim.safetensors",
        dict(image_latents=image_latents, mask=b_mask, noise=b_noise, init_noise=b_init, encoder_hidden_states=ehs,
             timesteps=as_int64(ts), trajectory=traj, final=final),
        metadata(
            "50-step DDIM CFG 7.5 inpainting with the 4-channel unet-tiny by latent blending, the loop of "
            "StableDiffusionInpaintPipeline with num_channels_unet == 4 and strength 1: latents start at "
            "init_noise = noise * init_noise_sigma (= noise); after each scheduler.step: init_latents_proper = "
            "image_latents, and unless it was the last step init_latents_proper = scheduler.add_noise("
            "image_latents, noise, tensor([timesteps[i + 1]])); latents = (1 - mask) * init_latents_proper + "
            "mask * latents (mask 1 = repaint). trajectory[i] = latents after step i and the blend; final keeps "
            "image_latents exactly where mask = 0",
            steps=50, guidance_scale=GUIDANCE, strength=1.0, scheduler="scheduler-ddim/scheduler_config.json",
        ),
    )

    # ------------------------------------------------------------- img2img
    print(f"  img2img: strength {IMG2IMG_STRENGTH}")
    g = gen(8900)
    i2i_latents = mu[PROMPT : PROMPT + 1] + 0.3 * torch.randn(1, LATENT, SIZE, SIZE, generator=g)
    i2i_noise = torch.randn(1, LATENT, SIZE, SIZE, generator=g)

    def img2img(model, strength, x_img, x_noise, e, start_shift=0):
        s = load_scheduler(out, "ddim")
        s.set_timesteps(50)
        # StableDiffusionImg2ImgPipeline.get_timesteps
        init_timestep = min(int(50 * strength), 50)
        t_start = max(50 - init_timestep, 0) + start_shift
        tl = s.timesteps[t_start * s.order :]
        if hasattr(s, "set_begin_index"):
            s.set_begin_index(t_start * s.order)
        latent_timestep = tl[:1].repeat(1)
        start = s.add_noise(x_img, x_noise, latent_timestep)
        final, traj, _ = sd_loop(model, s, tl, start, e)
        return final, traj, tl.clone(), start, t_start

    final, traj, ts, start_latent, t_start = img2img(unet, IMG2IMG_STRENGTH, i2i_latents, i2i_noise, ehs)
    assert len(ts) == 30 and t_start == 20, (len(ts), t_start)
    _, t64, _, _, _ = img2img(unet64, IMG2IMG_STRENGTH, i2i_latents.double(), i2i_noise.double(), ehs.double())
    sample_floor("img2img ddim", traj, t64)
    for shift in (-1, 1):
        _, a, _, _, _ = img2img(unet, IMG2IMG_STRENGTH, i2i_latents, i2i_noise, ehs, start_shift=shift)
        require_sensitive("img2img: t_start off by %+d (final)" % shift, traj[-1], a[-1], SAMPLE_TOL)
    save_tensors(
        out / "unet-tiny-img2img-ddim.safetensors",
        dict(image_latents=i2i_latents, noise=i2i_noise, timesteps=as_int64(ts), start_latent=start_latent,
             encoder_hidden_states=ehs, trajectory=traj, final=final),
        metadata(
            "img2img with unet-tiny, StableDiffusionImg2ImgPipeline (strength 0.6, 50 DDIM steps, CFG 7.5): "
            "get_timesteps: init_timestep = min(int(50 * 0.6), 50) = 30, t_start = 20, timesteps = "
            "scheduler.timesteps[20:] (30 steps, stored); DDIMScheduler has no set_begin_index (skipped); "
            "start_latent = scheduler.add_noise(image_latents, noise, timesteps[:1]); then the SD loop over the 30 "
            "timesteps; trajectory[i] = latents after step i (30 entries)",
            steps=50, strength=IMG2IMG_STRENGTH, t_start=t_start, guidance_scale=GUIDANCE,
            scheduler="scheduler-ddim/scheduler_config.json",
        ),
    )

    # ------------------------------------------------------------ ensemble
    print(f"  ensemble: K={ENSEMBLE_K} samples in one CFG batch, DDIM {ENSEMBLE_STEPS}")
    e_init = torch.randn(ENSEMBLE_K, LATENT, SIZE, SIZE, generator=gen(9000))
    e_ehs = torch.cat([ehs[:1].repeat(ENSEMBLE_K, 1, 1), ehs[1:].repeat(ENSEMBLE_K, 1, 1)])  # [6,5,32]
    final, traj, ts, _ = run(unet, out, "ddim", ENSEMBLE_STEPS, e_init, e_ehs)
    _, t64, _, _ = run(unet64, out, "ddim", ENSEMBLE_STEPS, e_init.double(), e_ehs.double())
    sample_floor("ensemble ddim", traj, t64)
    for k in range(ENSEMBLE_K):
        single, _, _, _ = run(unet, out, "ddim", ENSEMBLE_STEPS, e_init[k : k + 1], ehs)
        d = rel_err(single, final[k : k + 1])
        print(f"    sample {k} alone vs in the batch: relative {d:.1e}")
        assert d < SAMPLE_TOL / 10
    interleaved = ehs.repeat(ENSEMBLE_K, 1, 1)  # [u, c, u, c, u, c]
    _, a, _, _ = run(unet, out, "ddim", ENSEMBLE_STEPS, e_init, interleaved)
    require_sensitive_run("ensemble: context interleaved [u, c, u, c, u, c]", traj, a)
    save_tensors(
        out / "unet-tiny-ensemble-ddim.safetensors",
        dict(init_noise=e_init, encoder_hidden_states=e_ehs, timesteps=as_int64(ts), final=final),
        metadata(
            f"{ENSEMBLE_K} samples of unet-tiny in one CFG batch, {ENSEMBLE_STEPS}-step DDIM (scheduler-ddim), "
            "CFG 7.5, the SD loop (one prompt, num_images_per_prompt = 3): latent_model_input = cat([latents] * 2) "
            "= [x0, x1, x2, x0, x1, x2], encoder_hidden_states [6,5,32] = [uncond x3, cond x3]; "
            "final [3,4,8,8] (no trajectory, to keep the fixtures small); each sample equals its own batch-1 run "
            "to ~1e-6",
            steps=ENSEMBLE_STEPS, guidance_scale=GUIDANCE, scheduler="scheduler-ddim/scheduler_config.json",
        ),
    )


# ----------------------------------------------------------------------- LoRA


def lora_fixtures(out: Path) -> None:
    print("LoRA on unet-tiny attention projections")
    unet_dir = out / "unet-tiny"
    tensors_A = make_lora_A(unet_dir, out)
    tensors_B, b_config = make_lora_B(unet_dir, out)
    kohya_path = make_kohya(tensors_A, out)

    ref = load_file(str(out / "unet-tiny-forward.safetensors"))
    sample, timestep, ehs = ref["sample"], ref["timestep"], ref["encoder_hidden_states"]
    model = load_unet(unet_dir)
    base = forward(model, sample, timestep, ehs)
    assert torch.equal(base, ref["output"])
    load_adapters(model, out, b_config)
    check_loaded(model, tensors_A, tensors_B)

    def with_adapters(names, weights, m=model):
        m.set_adapters(names, weights)
        return forward(m, sample, timestep, ehs)

    refs = {"base": base}
    refs["A"] = with_adapters(["A"], [1.0])
    refs["B"] = with_adapters(["B"], [1.0])
    refs["AB"] = with_adapters(["A", "B"], [0.7, 0.5])
    refs["A4"] = with_adapters(["A"], [4.0])
    for name in ("A", "B", "AB", "A4"):
        err = rel_err(refs[name], base)
        print(f"  effect: {name}: relative change from base {err:.3e} (need >= {MIN_LORA_EFFECT})")
        assert err >= MIN_LORA_EFFECT, f"LoRA too weak: {name}"
    require_sensitive("A+B weights swapped (0.5, 0.7)", refs["AB"], with_adapters(["A", "B"], [0.5, 0.7]), FORWARD_TOL)
    require_sensitive("A without its scale alpha/r = 2", refs["A"], with_adapters(["A"], [0.5]), FORWARD_TOL)
    layers = dict(lora_layers(model))

    def scaled(adapter, weight, rule):
        model.set_adapters([adapter], [weight])
        saved = {n: dict(l.scaling) for n, l in layers.items()}
        for n, l in layers.items():
            s = rule(n, l.scaling[adapter])
            if s is not None:
                l.scaling[adapter] = s
        y = forward(model, sample, timestep, ehs)
        for n, l in layers.items():
            l.scaling.clear()
            l.scaling.update(saved[n])
        return y

    require_sensitive("A on attn1 only (attn2 projections missed)", refs["A"],
                      scaled("A", 1.0, lambda n, s: 0.0 if ".attn2." in n else None), FORWARD_TOL)
    require_sensitive("A on attn2 only (attn1 projections missed)", refs["A"],
                      scaled("A", 1.0, lambda n, s: 0.0 if ".attn1." in n else None), FORWARD_TOL)
    # (the 2x2 mid block moves the output little at weight 1: checked at weight 4)
    require_sensitive("A4: A missing in the mid block", refs["A4"],
                      scaled("A", 4.0, lambda n, s: 0.0 if n.startswith("mid_block.") else None), FORWARD_TOL)
    require_sensitive("B: alpha_pattern ignored (attn1.to_out.0 scale 3/2)", refs["B"],
                      scaled("B", 1.0, lambda n, s: 1.5 if n.endswith("attn1.to_out.0") else None), FORWARD_TOL)
    require_sensitive("B: rank_pattern ignored for the scale (attn2.to_k 3/2)", refs["B"],
                      scaled("B", 1.0, lambda n, s: 1.5 if n.endswith("attn2.to_k") else None), FORWARD_TOL)
    assert torch.equal(with_adapters(["A"], [1.0]), refs["A"]), "set_adapters is not reproducible"

    # ---- kohya: diffusers' own SD kohya converter, pipeline-free
    state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(str(kohya_path))
    kmodel = load_unet(unet_dir)
    StableDiffusionLoraLoaderMixin.load_lora_into_unet(state, alphas, kmodel, adapter_name="K")
    klayers = dict(lora_layers(kmodel))
    assert set(klayers) == set(layers)
    for n, l in klayers.items():
        assert float(l.lora_alpha["K"]) / l.r["K"] == 2.0, n
        delta_k = l.lora_B["K"].weight @ l.lora_A["K"].weight
        delta_a = layers[n].lora_B["A"].weight @ layers[n].lora_A["A"].weight
        assert torch.equal(delta_k, delta_a), n
    kohya_err = rel_err(with_adapters(["K"], [1.0], m=kmodel), refs["A"])
    print(f"  kohya file through diffusers' converter: {len(klayers)} Linears, scale 2, output vs A {kohya_err:.1e}")
    assert kohya_err == 0.0, kohya_err

    # ---- fused A on a separate instance
    fused = load_unet(unet_dir)
    load_adapters(fused, out, b_config)
    fused.set_adapters(["A"], [1.0])
    fused.fuse_lora(lora_scale=1.0, adapter_names=["A"])
    refs["fused_A"] = forward(fused, sample, timestep, ehs)
    err = rel_err(refs["fused_A"], refs["A"])
    print(f"  fused A vs unfused A: {err:.2e} (bound {FUSED_TOL:.0e})")
    assert err < FUSED_TOL

    # ---- float64 floor
    m64 = load_unet(unet_dir, torch.float64)
    load_adapters(m64, out, b_config)
    m64 = m64.to(torch.float64)
    floors = {}
    for name, (names, weights) in {"A": (["A"], [1.0]), "B": (["B"], [1.0]), "AB": (["A", "B"], [0.7, 0.5]),
                                   "A4": (["A"], [4.0])}.items():
        m64.set_adapters(names, weights)
        floors[name] = rel_err(refs[name], forward(m64, sample.double(), timestep, ehs.double()))
    print(f"  LoRA forward float64 rerun floors {', '.join(f'{k} {v:.1e}' for k, v in floors.items())} "
          f"(tolerance {FORWARD_TOL:.0e})")
    assert max(floors.values()) < FORWARD_TOL / 10

    tensors = dict(sample=sample, timestep=timestep, encoder_hidden_states=ehs)
    tensors.update(refs)
    save_tensors(
        out / "unet-tiny-lora-forward.safetensors",
        tensors,
        metadata(
            "unet-tiny(sample, timestep, encoder_hidden_states).sample (the inputs of unet-tiny-forward.safetensors) "
            "with adapters loaded by diffusers (load_lora_adapter) from unet-tiny-lora-A.safetensors ('A') and "
            "unet-tiny-lora-B/ ('B'): base = no adapter; A = set_adapters(['A'], [1.0]); B = set_adapters(['B'], "
            "[1.0]); AB = set_adapters(['A', 'B'], [0.7, 0.5]); A4 = A at 4.0; fused_A = set_adapters(['A'], [1.0]) "
            "+ fuse_lora(lora_scale=1.0, adapter_names=['A']) on a fresh model. unet-tiny-lora-A-kohya.safetensors "
            "loaded through diffusers' SD kohya converter gives A exactly"
        ),
    )


# --------------------------------------------------------------------- README


def write_readme(out: Path) -> None:
    v = versions()
    notes = "\n".join(f"* {n}" for n in NOTES)
    text = f"""# UNet parity fixtures (generated)

Generated by `tests/reference/make_unet_fixtures.py`; do not edit by hand.
Needs `scheduler-ddim/` and `scheduler-flow/` from `tests/reference/make_model_fixtures.py`.

Regenerate (deterministic, byte-identical with the same versions; a few minutes on one thread):

    {COMMAND}

Versions: torch {v['torch']}, diffusers {v['diffusers']}, peft {v['peft']}, numpy {v['numpy']},
safetensors {v['safetensors']}, python {v['python']}.
Every `.safetensors` file written by the script records them in its metadata
(`versions`), with a `description` and the `command`. All tensors float32 unless
marked int64.

## Models

| folder | UNet2DConditionModel |
|---|---|
| `unet-tiny/` | SD-1.5 topology at tiny width: `down_block_types` (CrossAttnDownBlock2D, CrossAttnDownBlock2D, DownBlock2D), `up_block_types` (UpBlock2D, CrossAttnUpBlock2D, CrossAttnUpBlock2D), mid UNetMidBlock2DCrossAttn, `block_out_channels` (8, 8, 16), `layers_per_block` 2, `cross_attention_dim` 32, `attention_head_dim` 2 (= 2 heads at every level; head width 4, 4 and 8 in the mid block), `norm_num_groups` 4, conv `proj_in`/`proj_out` (`use_linear_projection` False), `flip_sin_to_cos` True, `freq_shift` 0, `sample_size` 8; float32 |
| `unet-tiny-inpaint/` | the same with `in_channels` 9 (latent 4 + mask 1 + masked-image latent 4); float32 |
| `unet-tiny-cond/` | follow-up-CT shape: `in_channels` 8 (noisy latent 4 + baseline latent 4), `out_channels` 4, (CrossAttnDownBlock2D, DownBlock2D) / (UpBlock2D, CrossAttnUpBlock2D), `block_out_channels` (8, 16), `layers_per_block` 1, `cross_attention_dim` 64, `attention_head_dim` (2, 8) (heads per level: down_blocks.0 and up_blocks.1 2 heads, mid block 8 heads), `transformer_layers_per_block` (2, 1) (down_blocks.0 and up_blocks.1 2 layers, mid 1), `use_linear_projection` True (Linear `proj_in`/`proj_out`), `flip_sin_to_cos` False, `freq_shift` 1, `upcast_attention` True, `only_cross_attention` (True, False); weights saved as **float16** |

Every parameter is randomised (norm scales/biases re-drawn, every tensor
perturbed) and each model was fitted for 300 Adam steps as a toy denoiser of
eps (DiT betas, as `scheduler-ddim`) on prompt-dependent patterns (inpaint: with
rectangle masks; cond: given a baseline latent), so that the sampling runs
denoise and depend on every step (with random weights the first DDIM step alone
decides the result). The DDIM latents still grow (see the notes at the end).
References use the models reloaded with `torch_dtype=float32`.

## Forward references: `unet-tiny-forward.safetensors`

`output = unet(sample, timestep, encoder_hidden_states).sample`

| keys | shapes |
|---|---|
| `sample`, `timestep` (int64 [937, 17]), `encoder_hidden_states`, `output` | [2,4,8,8], [2], [2,5,32], [2,4,8,8] (unet-tiny) |
| `timestep_float` (float32 [437.25, 3.5]), `output_float` | same `sample` / context |
| `nonsquare_sample`, `nonsquare_timestep` (int64), `nonsquare_encoder_hidden_states`, `nonsquare_output` | [1,4,8,16], [1], [1,5,32], [1,4,8,16] |
| `odd_sample`, `odd_timestep` (int64), `odd_encoder_hidden_states`, `odd_output` | [1,4,6,10], [1], [1,5,32], [1,4,6,10]: not divisible by 4, diffusers upsamples to the skip size (2x3 -> 3x5 -> 6x10) |
| `cond_sample`, `cond_timestep` (int64), `cond_encoder_hidden_states`, `cond_output` | [2,8,8,8], [2], [2,3,64], [2,4,8,8] (unet-tiny-cond) |
| `inpaint_sample`, `inpaint_timestep` (int64), `inpaint_encoder_hidden_states`, `inpaint_output` | [2,9,8,8] (channel 4 a binary mask), [2], [2,5,32], [2,4,8,8] (unet-tiny-inpaint) |

## Sampling (CFG 7.5, SD batch order [uncond, cond])

The loop of diffusers `StableDiffusionPipeline.__call__` without text encoder
and VAE: `latent_model_input = cat([latents] * 2)`, `scale_model_input` (when the
scheduler has it), `e = unet(latent_model_input, t, encoder_hidden_states).sample`,
`e_uncond, e_cond = e.chunk(2)`, `e = e_uncond + 7.5 * (e_cond - e_uncond)`,
`latents = scheduler.step(e, t, latents, eta=0.0).prev_sample`. `init_noise` is
the starting latent (`init_noise_sigma` is 1 for all three schedulers used).
`encoder_hidden_states` [2,5,32] = (uncond, cond) for a batch of 1.
`trajectory[i]` = latents after step i; `final` = `trajectory[-1]`.
`guidance_scale`, `steps` and the scheduler folder are in each file's metadata.
Every DDIM run uses `scheduler-ddim` (eta 0).

| file | keys |
|---|---|
| `unet-tiny-sample-ddim.safetensors` | 50 steps, `scheduler-ddim`: `init_noise` [1,4,8,8], `encoder_hidden_states` [2,5,32], `timesteps` int64 [50], `trajectory` [50,1,4,8,8], `final` [1,4,8,8] |
| `unet-tiny-sample-ddpm.safetensors` | 50 steps, `scheduler-ddpm-fixed` (v_prediction, fixed_small): the same keys + `step_noise` [50,1,4,8,8] (`step_noise[i]` is the noise `DDPMScheduler.step` draws at step i; all 50 steps draw, the last timestep being 1) |
| `unet-tiny-sample-flow.safetensors` | 20 steps, `scheduler-flow` (FlowMatchEuler, shift 3): the same keys, `timesteps` float32 [20] (sigma * 1000, passed to the UNet as is) |
| `unet-tiny-cond-sample-ddim.safetensors` | unet-tiny-cond, 50-step DDIM: `init_noise` [1,4,8,8], `conditioning` [1,4,8,8] (baseline latent, concatenated AFTER the scaled noisy latent, the same for both CFG halves), `encoder_hidden_states` [2,3,64], `timesteps`, `trajectory` [50,1,4,8,8], `final` |
| `unet-tiny-inpaint-sample-ddim.safetensors` | unet-tiny-inpaint, 50-step DDIM, `StableDiffusionInpaintPipeline` with a 9-channel UNet, strength 1: `latent_model_input = cat([scaled latents x2, mask x2, masked_image_latents x2], dim=1)`: `init_noise`, `mask` [1,1,8,8] (binary, 1 = repaint), `masked_image_latents` [1,4,8,8], `conditioning` [1,5,8,8] (= cat([mask, masked_image_latents])), `encoder_hidden_states` [2,5,32], `timesteps`, `trajectory`, `final` |
| `unet-tiny-blend-sample-ddim.safetensors` | unet-tiny (4 channels), 50-step DDIM, `StableDiffusionInpaintPipeline` latent blending, strength 1: after each step `init_latents_proper = add_noise(image_latents, noise, tensor([timesteps[i+1]]))` (not after the last step) and `latents = (1 - mask) * init_latents_proper + mask * latents`: `image_latents`, `mask` [1,1,8,8], `noise`, `init_noise` (= noise * init_noise_sigma = noise), `encoder_hidden_states`, `timesteps`, `trajectory` (after the blend), `final` |
| `unet-tiny-img2img-ddim.safetensors` | unet-tiny, `StableDiffusionImg2ImgPipeline`, strength 0.6 of 50 DDIM steps: `init_timestep = min(int(50 * 0.6), 50) = 30`, `t_start = 20`, `timesteps = scheduler.timesteps[20:]`; `start_latent = add_noise(image_latents, noise, timesteps[:1])`: `image_latents`, `noise`, `timesteps` int64 [30] (the ones run), `start_latent`, `encoder_hidden_states`, `trajectory` [30,1,4,8,8], `final`; metadata `strength`, `t_start` |
| `unet-tiny-ensemble-ddim.safetensors` | unet-tiny, K = 3 samples in one CFG batch, 20-step DDIM: `init_noise` [3,4,8,8], `encoder_hidden_states` [6,5,32] (uncond x3 then cond x3, SD order for num_images_per_prompt 3), `timesteps` [20], `final` [3,4,8,8] (no trajectory) |
| `scheduler-ddpm-fixed/scheduler_config.json` | DDPMScheduler: scaled_linear betas 0.00085..0.012 (SD), `steps_offset` 1, `variance_type` fixed_small, `prediction_type` v_prediction, `clip_sample` False |

## LoRA (to_q, to_k, to_v, to_out.0 of attn1 and attn2 in every transformer block: 22 Attention modules, 88 Linears)

| file | contents |
|---|---|
| `unet-tiny-lora-A.safetensors` | adapter A, diffusers format (written by `StableDiffusionLoraLoaderMixin.save_lora_weights`): `unet.<module>.lora_A.weight` [4, in], `unet.<module>.lora_B.weight` [out, 4]; metadata `lora_adapter_metadata` = PEFT LoraConfig (r 4, lora_alpha 8) keyed `unet.<field>`; scale 2 |
| `unet-tiny-lora-B/` | adapter B, PEFT folder: `adapter_config.json` (r 2, lora_alpha 3, `rank_pattern` {{"attn2.to_k": 4}}, `alpha_pattern` {{"attn1.to_out.0": 6}}) + `adapter_model.safetensors` (`base_model.model.<module>.lora_{{A,B}}.weight`); scales 1.5, attn2.to_k 0.75 (rank 4), attn1.to_out.0 3 |
| `unet-tiny-lora-A-kohya.safetensors` | A in kohya form: `lora_unet_<module with . -> _>.lora_down.weight` / `.lora_up.weight` / `.alpha` (scalar 8.0), e.g. `lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0.lora_up.weight`; diffusers' SD kohya converter loads it to exactly A |
| `unet-tiny-lora-forward.safetensors` | `sample` [2,4,8,8], `timestep` int64 [2], `encoder_hidden_states` [2,5,32] (= the unet-tiny-forward inputs); outputs [2,4,8,8]: `base`, `A` (A 1.0), `B` (B 1.0), `AB` (A 0.7 + B 0.5), `A4` (A 4.0), `fused_A` (A fused with `fuse_lora(lora_scale=1.0, adapter_names=["A"])`) |

## Checks the generator makes

Each perturbation below must move the reference by more than 10x the test
tolerance (forward 1e-4 -> > 1e-3; sampling 1e-3 -> > 1e-2 at some trajectory
step), else the script fails: head count read as head width (both models),
up-block head counts not reversed (cond), `flip_sin_to_cos` and `freq_shift`
flipped (both), time embedding dropped from the resnets (both), second
transformer layer skipped (cond), timesteps / contexts swapped between samples,
fractional timesteps rounded, H and W swapped (non-square), conditioning
zeroed or concatenated before the latent (cond, forward and sampling), mask /
masked-image order and mask inversion (inpaint), SD CFG order swapped
([cond, uncond]) in every sampling run, guidance 3 instead of 7.5, DDPM step
noise shifted and v_prediction read as epsilon, flow timesteps rounded, blend
off by one step / missing / inverted, img2img `t_start` off by one, ensemble
contexts interleaved, LoRA scale / weights / alpha_pattern / rank_pattern /
attn1-only / attn2-only / mid block missing. float64 reruns of every reference
sit below a tenth of the tolerance.

## diffusers semantics worth knowing (0.42.1)

{notes}
"""
    (out / "GENERATED-unet-fixtures.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
