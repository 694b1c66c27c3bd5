#!/usr/bin/env python
"""Train the bundled default model: models/nodule-demo/ (nodule synthesis on CXR-like patches).

    python demo/train.py            # the real run (~25 min on 2 CPU cores)
    python demo/train.py --toy --out /tmp/nodule-toy   # seconds: a smoke test

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
COMMAND = "python demo/train.py"

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
    block_out_channels=[16, 32, 48],
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=8,
    sample_size=32,
)
DIT_CONFIG = dict(
    sample_size=32 // DOWN,
    patch_size=2,
    in_channels=LATENT_CHANNELS + 1 + LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    num_layers=6,
    num_attention_heads=3,
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
    vae_steps=2300,
    vae_batch=64,
    vae_lr=1e-3,
    dit_steps=8000,
    dit_batch=128,
    dit_lr=6e-4,
    lora_steps=800,
    lora_batch=128,
    lora_lr=5e-3,
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


# --------------------------------------------------------------------------- torch parts
# (torch is imported lazily: the data pool forks before any torch thread exists)


def versions() -> dict:
    import diffusers
    import peft
    import safetensors
    import torch

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "peft": peft.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def chmod_tree(path: Path) -> None:
    """The Rust safetensors writer creates files 0600; make everything world-readable."""
    for f in [path] + list(path.rglob("*")) if path.is_dir() else [path]:
        f.chmod(0o755 if f.is_dir() else 0o644)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def masked_images(d: dict) -> np.ndarray:
    return gp.masked_image(d["image"], d["mask"], FILL)


def train_vae(data: dict, sizes: dict, out: Path, info: dict):
    import torch
    from diffusers import AutoencoderKL

    pool = np.concatenate(
        [data["base"]["image"], masked_images(data["base"]), data["base"]["background"]]
        + [data[k]["image"] for k in SUBSETS]
    )
    pool = torch.from_numpy(pool)
    g = torch.Generator().manual_seed(SEED + 1)
    torch.manual_seed(SEED + 2)
    vae = AutoencoderKL(**VAE_CONFIG).train()
    n_params = sum(p.numel() for p in vae.parameters())
    opt = torch.optim.AdamW(vae.parameters(), lr=sizes["vae_lr"], weight_decay=0.0)
    steps, batch = sizes["vae_steps"], sizes["vae_batch"]
    kl_weight = 1e-6
    t0 = time.perf_counter()
    running = None
    for step in range(steps):
        set_lr(opt, lr_at(step, steps, sizes["vae_lr"], 50))
        x = pool[torch.randint(len(pool), (batch,), generator=g)]
        post = vae.encode(x).latent_dist
        z = post.sample(generator=g)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        mse = (rec - x).pow(2).mean()
        kl = post.kl().mean()
        loss = l1 + mse + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        cur = torch.stack([l1, mse, kl]).detach()
        running = cur if running is None else 0.98 * running + 0.02 * cur
        if step % 200 == 0 or step == steps - 1 or (step < 200 and step % 25 == 0):
            log(f"[vae] step {step:5d}/{steps}  l1 {running[0]:.4f}  mse {running[1]:.5f}  kl {running[2]:.1f}  ({time.perf_counter() - t0:.0f} s)")
    vae.eval()
    # scaling factor = 1 / std of the latents (posterior means) of the training images
    with torch.no_grad():
        x = torch.from_numpy(data["base"]["image"][:2048])
        mean = torch.cat([vae.encode(x[i : i + 256]).latent_dist.mean for i in range(0, len(x), 256)])
        rec = torch.cat([vae.decode(mean[i : i + 256]).sample for i in range(0, len(x), 256)])
    std = float(mean.std())
    scaling = 1.0 / std
    vae.register_to_config(scaling_factor=round(scaling, 6))
    vae.save_pretrained(str(fresh_dir(out / "vae")))
    chmod_tree(out / "vae")
    info["vae"] = dict(
        params=n_params,
        steps=steps,
        batch=batch,
        final_l1=float(running[0]),
        final_mse=float(running[1]),
        final_kl=float(running[2]),
        latent_mean=float(mean.mean()),
        latent_std=std,
        scaling_factor=round(scaling, 6),
        recon_mse_eval=float((rec - x).pow(2).mean()),
    )
    log(f"[vae] {n_params} params; latent mean {mean.mean():.3f} std {std:.3f} -> scaling_factor {scaling:.4f}; eval recon mse {info['vae']['recon_mse_eval']:.5f}")


def load_vae(out: Path):
    import torch
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(str(out / "vae"), torch_dtype=torch.float32).eval()


def latent_mask_of(mask):
    """[N,1,32,32] 0/1 -> [N,1,8,8]: 1 where any pixel of the cell is masked."""
    import torch

    return torch.nn.functional.max_pool2d(torch.as_tensor(mask), DOWN)


def encode_mean(vae, x, batch: int = 256):
    """VAE posterior mean and std of x [N,1,32,32] (unscaled)."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            dist = vae.encode(torch.as_tensor(x[i : i + batch])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def conditioning(vae, image, mask) -> dict:
    """What the sampler needs for an image and its mask (the region is replaced by FILL)."""
    sf = vae.config.scaling_factor
    masked = gp.masked_image(np.asarray(image), np.asarray(mask), FILL)
    mlat, _ = encode_mean(vae, masked)
    return dict(masked_latent=mlat * sf, latent_mask=latent_mask_of(mask), masked_image=masked)


def latents_for(vae, d: dict) -> dict:
    sf = vae.config.scaling_factor
    mean, std = encode_mean(vae, d["image"])
    c = conditioning(vae, d["image"], d["mask"])
    return dict(mean=mean * sf, std=std * sf, latent_mask=c["latent_mask"], masked_latent=c["masked_latent"])


def diffusion_step(model, lat: dict, batch: int, g, scheduler):
    """One DDPM training loss: eps-prediction MSE, the masked region weighted 4x."""
    import torch

    n = len(lat["mean"])
    idx = torch.randint(n, (batch,), generator=g)
    x0 = lat["mean"][idx] + lat["std"][idx] * torch.randn(lat["mean"][idx].shape, generator=g)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    xt = scheduler.add_noise(x0, noise, t)
    labels = torch.full((batch,), NODULE_CLASS, dtype=torch.long)
    labels[torch.rand(batch, generator=g) < LABEL_DROPOUT] = NULL_CLASS
    lmask = lat["latent_mask"][idx]
    inp = torch.cat([xt, lmask, lat["masked_latent"][idx]], dim=1)
    pred = model(inp, timestep=t, class_labels=labels).sample
    w = 1 + 3 * lmask
    return ((pred - noise).pow(2) * w).mean() / w.mean()


def train_dit(lat: dict, sizes: dict, out: Path, info: dict):
    import copy

    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, DiTTransformer2DModel

    torch.manual_seed(SEED + 3)
    model = DiTTransformer2DModel(**DIT_CONFIG).train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    n_params = sum(p.numel() for p in model.parameters())
    scheduler = DDPMScheduler(**BETAS)
    opt = torch.optim.AdamW(model.parameters(), lr=sizes["dit_lr"], weight_decay=0.0)
    g = torch.Generator().manual_seed(SEED + 4)
    steps, batch = sizes["dit_steps"], sizes["dit_batch"]
    t0 = time.perf_counter()
    running = None
    for step in range(steps):
        set_lr(opt, lr_at(step, steps, sizes["dit_lr"], 200))
        loss = diffusion_step(model, lat, batch, g, scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        running = float(loss) if running is None else 0.99 * running + 0.01 * float(loss)
        if step % 250 == 0 or step == steps - 1:
            log(f"[dit] step {step:5d}/{steps}  loss {running:.4f}  ({time.perf_counter() - t0:.0f} s)")
    ema.save_pretrained(str(fresh_dir(out / "dit")))
    chmod_tree(out / "dit")
    DDIMScheduler(**BETAS, clip_sample=False).save_pretrained(str(fresh_dir(out / "scheduler")))
    chmod_tree(out / "scheduler")
    info["dit"] = dict(params=n_params, steps=steps, batch=batch, final_loss=running)
    log(f"[dit] {n_params} params, EMA weights saved")


class _Lazy:
    cls = None


def dit_with_lora_class():
    """DiTTransformer2DModel with diffusers' model-level LoRA API (PeftAdapterMixin)."""
    if _Lazy.cls is None:
        from diffusers import DiTTransformer2DModel
        from diffusers.loaders.peft import PeftAdapterMixin

        class DiTWithLora(DiTTransformer2DModel, PeftAdapterMixin):
            pass

        _Lazy.cls = DiTWithLora
    return _Lazy.cls


def load_dit(out: Path):
    import torch

    return dit_with_lora_class().from_pretrained(str(out / "dit"), torch_dtype=torch.float32).eval()


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, target_modules=list(LORA_TARGETS), init_lora_weights=True)


def lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def sorted_lists(cfg: dict) -> dict:
    """LoraConfig keeps target_modules as a set; write it sorted (reproducible files)."""
    return {k: (sorted(v) if k.split(".")[-1] in ("target_modules", "exclude_modules") and isinstance(v, list) else v) for k, v in cfg.items()}


def train_lora(name: str, lat: dict, sizes: dict, out: Path, info: dict):
    import torch
    from diffusers import DDPMScheduler

    model = load_dit(out).train()
    torch.manual_seed(SEED + 10 + list(SUBSETS).index(name))  # PEFT initialises lora_A from the global RNG
    model.add_adapter(lora_config(), adapter_name=name)
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
        if p.requires_grad:
            params.append(p)
    scheduler = DDPMScheduler(**BETAS)
    opt = torch.optim.AdamW(params, lr=sizes["lora_lr"], weight_decay=0.0)
    g = torch.Generator().manual_seed(SEED + 20 + list(SUBSETS).index(name))
    steps, batch = sizes["lora_steps"], sizes["lora_batch"]
    t0 = time.perf_counter()
    running = None
    for step in range(steps):
        set_lr(opt, lr_at(step, steps, sizes["lora_lr"], 30))
        loss = diffusion_step(model, lat, batch, g, scheduler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        running = float(loss) if running is None else 0.97 * running + 0.03 * float(loss)
        if step % 100 == 0 or step == steps - 1:
            log(f"[lora {name}] step {step:4d}/{steps}  loss {running:.4f}  ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    info.setdefault("loras", {})[name] = dict(
        params=sum(p.numel() for p in params), steps=steps, batch=batch, final_loss=running
    )
    return model


def save_lora_diffusers(model, name: str, path: Path, description: str) -> None:
    """diffusers' transformer LoRA writer: keys transformer.<module>.lora_A/lora_B.weight,
    metadata lora_adapter_metadata = LoraConfig.to_dict() keyed 'transformer.<field>'."""
    from diffusers.loaders.lora_pipeline import SanaLoraLoaderMixin
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    state = get_peft_model_state_dict(model, adapter_name=name)
    config = model.peft_config[name].to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        SanaLoraLoaderMixin.save_lora_weights(tmp, transformer_lora_layers=state, transformer_lora_adapter_metadata=config)
        written = Path(tmp) / "pytorch_lora_weights.safetensors"
        tensors = load_file(str(written))
        with safe_open(str(written), "pt") as f:
            md = dict(f.metadata())
    md["lora_adapter_metadata"] = json.dumps(sorted_lists(json.loads(md["lora_adapter_metadata"])), indent=2, sort_keys=True)
    md["description"] = description
    md["generator"] = "demo/train.py"
    md["versions"] = json.dumps(versions(), sort_keys=True)
    tensors = {k: v.contiguous() for k, v in sorted(tensors.items())}
    assert all(k.startswith("transformer.") for k in tensors)
    save_file(tensors, str(path), metadata=md)
    chmod_tree(path)


def save_lora_peft(model, name: str, folder: Path) -> None:
    """A PEFT adapter folder written by PeftModel.save_pretrained (keys base_model.model.<module>...)."""
    import torch
    from diffusers import DiTTransformer2DModel
    from peft import get_peft_model

    base = DiTTransformer2DModel.from_pretrained(str(folder.parent / "dit"), torch_dtype=torch.float32).eval()
    pm = get_peft_model(base, lora_config())  # adapter "default": save_pretrained writes into the folder itself
    src = lora_layers(model)
    with torch.no_grad():
        for n, layer in lora_layers(pm).items():
            s = src[n.removeprefix("base_model.model.")]
            layer.lora_A["default"].weight.copy_(s.lora_A[name].weight)
            layer.lora_B["default"].weight.copy_(s.lora_B[name].weight)
    fresh_dir(folder)
    pm.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's boilerplate model card
    cfg = sorted_lists(json.loads((folder / "adapter_config.json").read_text()))
    (folder / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    chmod_tree(folder)


def load_all_adapters(out: Path):
    """The trained DiT with the three adapters, loaded from the written files as diffusers does."""
    from safetensors.torch import load_file

    model = load_dit(out)
    # use_safetensors=True: otherwise the model-level loader drops lora_adapter_metadata
    model.load_lora_adapter(str(out / "lora-calcified.safetensors"), prefix="transformer", adapter_name="calcified", use_safetensors=True)
    folder = out / "lora-spiculated"
    config = json.loads((folder / "adapter_config.json").read_text())
    sd = {k.removeprefix("base_model.model."): v for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
    model.load_lora_adapter(sd, prefix=None, adapter_name="spiculated", metadata=config)
    model.load_lora_adapter(str(out / "lora-subtlety.safetensors"), prefix="transformer", adapter_name="subtlety", use_safetensors=True)
    return model


def check_reload(trained: dict, out: Path) -> None:
    """Each written adapter, reloaded, reproduces the trained model's output."""
    import torch

    model = load_all_adapters(out)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, DIT_CONFIG["in_channels"], 8, 8, generator=g)
    t = torch.tensor([500, 20])
    c = torch.tensor([NODULE_CLASS, NULL_CLASS])
    with torch.no_grad():
        for name, m in trained.items():
            model.set_adapters([name], [1.0])
            a = model(x, timestep=t, class_labels=c).sample
            b = m(x, timestep=t, class_labels=c).sample
            model.disable_lora()
            base = model(x, timestep=t, class_labels=c).sample
            model.enable_lora()
            err = float((a - b).abs().max() / b.abs().max())
            effect = float((b - base).abs().max() / base.abs().max())
            log(f"[loras] {name}: reloaded vs trained rel err {err:.2e}; effect on the output {effect:.3f}")
            assert err < 1e-5, f"{name} did not round-trip through its file"


@__import__("torch").no_grad()
def masked_cfg_sample(model, scheduler, steps, guidance_scale, init_noise, class_labels, null_class, latent_mask, masked_latent):
    """diffusers DiTPipeline.__call__'s loop (latents given, no VAE decode), with the
    conditioning concatenated to the model input at every step, for both CFG halves:
    model input = cat([latents, latent_mask, masked_latent], dim=1)."""
    import torch

    batch = init_noise.shape[0]
    latent_model_input = torch.cat([init_noise] * 2)
    labels = torch.tensor(class_labels).reshape(-1)
    class_labels_input = torch.cat([labels, torch.tensor([null_class] * batch)], 0)
    cond = torch.cat([latent_mask, masked_latent], dim=1)
    cond = torch.cat([cond, cond], dim=0)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        half = latent_model_input[: len(latent_model_input) // 2]
        latent_model_input = torch.cat([half, half], dim=0)
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        timesteps = t[None].expand(latent_model_input.shape[0])
        noise_pred = model(torch.cat([latent_model_input, cond], dim=1), timestep=timesteps, class_labels=class_labels_input).sample
        cond_eps, uncond_eps = torch.split(noise_pred, len(noise_pred) // 2, dim=0)
        half_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
        latent_model_input = scheduler.step(torch.cat([half_eps, half_eps], dim=0), t, latent_model_input).prev_sample
    return latent_model_input[:batch]


def ring_of(mask, width: int = 3):
    import torch

    m = torch.as_tensor(mask)
    dil = torch.nn.functional.max_pool2d(m, 2 * width + 1, stride=1, padding=width)
    return dil - m, dil


def measure(images, background, mask) -> dict:
    """Per-sample contrast (mean inside mask - mean of a 3-px ring outside it), peak
    (max inside - ring mean), outer share (fraction of the positive excess in the
    outer 40% of the mask radius: spicules) and background change outside the ring."""
    import torch

    x = torch.as_tensor(images).double()
    bg = torch.as_tensor(background).double()
    m = torch.as_tensor(mask).double()
    ring, dil = ring_of(m)
    n_in = m.sum((1, 2, 3))
    ring_mean = (x * ring).sum((1, 2, 3)) / ring.sum((1, 2, 3))
    inside_mean = (x * m).sum((1, 2, 3)) / n_in
    peak = (x * m - 10 * (1 - m)).amax((1, 2, 3)) - ring_mean
    # outer share
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cy = (m[:, 0] * yy).sum((1, 2)) / n_in
    cx = (m[:, 0] * xx).sum((1, 2)) / n_in
    rad = torch.sqrt(n_in / math.pi)
    r = torch.sqrt((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)[:, None]
    excess = ((x - ring_mean[:, None, None, None]).clamp(min=0)) * m
    outer = (excess * (r > 0.6 * rad[:, None, None, None])).sum((1, 2, 3)) / excess.sum((1, 2, 3)).clamp(min=1e-8)
    outside = 1 - dil
    bg_change = ((x - bg).abs() * outside).sum((1, 2, 3)) / outside.sum((1, 2, 3))
    return dict(contrast=(inside_mean - ring_mean).tolist(), peak=peak.tolist(), outer=outer.tolist(), bg_change=bg_change.tolist())


def summary(mt: dict) -> str:
    return "  ".join(f"{k} {np.mean(v):+.3f}" for k, v in mt.items())


def make_inputs(out: Path, info: dict) -> None:
    from safetensors.torch import save_file
    import torch

    vae = load_vae(out)
    d = demo_inputs()
    c = conditioning(vae, d["background"], d["mask"])
    tensors = dict(
        background=torch.from_numpy(d["background"]).contiguous(),
        mask=torch.from_numpy(d["mask"]).contiguous(),
        masked_image=torch.from_numpy(c["masked_image"]).contiguous(),
        masked_latent=c["masked_latent"].float().contiguous(),
        latent_mask=c["latent_mask"].float().contiguous(),
    )
    md = dict(
        description=(
            "Demo inputs of models/nodule-demo: background [N,1,32,32] (patches without nodule, [-1,1]), "
            "mask [N,1,32,32] (0/1), masked_image = background * (1 - mask) (the region set to 0), "
            "masked_latent [N,4,8,8] = vae.encode(masked_image).latent_dist.mean * scaling_factor, "
            "latent_mask [N,1,8,8] = max_pool2d(mask, 4). The DiT input is "
            "cat([noisy latent 4, latent_mask 1, masked_latent 4], dim=1)."
        ),
        generator="demo/train.py",
        scaling_factor=str(vae.config.scaling_factor),
        versions=json.dumps(versions(), sort_keys=True),
    )
    save_file(tensors, str(out / "inputs.safetensors"), metadata=md)
    chmod_tree(out / "inputs.safetensors")
    log(f"[inputs] {len(d['background'])} demo cases written")


def self_check(out: Path, info: dict) -> None:
    import torch
    from diffusers import DDIMScheduler
    from PIL import Image
    from safetensors.torch import load_file

    vae = load_vae(out)
    sf = vae.config.scaling_factor
    model = load_all_adapters(out)
    inputs = load_file(str(out / "inputs.safetensors"))
    n = inputs["background"].shape[0]
    init = torch.randn((n, LATENT_CHANNELS, 8, 8), generator=torch.Generator().manual_seed(SEED + 99))
    runs = [
        ("base", None),
        ("calcified", (["calcified"], [1.0])),
        ("spiculated", (["spiculated"], [1.0])),
        ("calcified+spiculated 0.5/0.5", (["calcified", "spiculated"], [0.5, 0.5])),
    ] + [(f"subtlety {w:g}", (["subtlety"], [w])) for w in SLIDER_WEIGHTS + [4.0]]
    rows = [list(inputs["background"][:, 0].numpy()), [m * 2 - 1 for m in inputs["mask"][:, 0].numpy()]]
    results = {}
    for label, adapters in runs:
        if adapters is None:
            model.disable_lora()
        else:
            model.enable_lora()
            model.set_adapters(*adapters)
        scheduler = DDIMScheduler.from_pretrained(str(out / "scheduler"))
        lat = masked_cfg_sample(model, scheduler, CHECK_STEPS, CHECK_GUIDANCE, init, [NODULE_CLASS] * n, NULL_CLASS, inputs["latent_mask"], inputs["masked_latent"])
        with torch.no_grad():
            img = vae.decode(lat / sf).sample.clamp(-1, 1)
        mt = measure(img, inputs["background"], inputs["mask"])
        results[label] = mt
        rows.append(list(img[:, 0].numpy()))
        log(f"[check] {label:30s} {summary(mt)}")
    # the generator's own nodules in the same masks, for scale
    rng = np.random.default_rng(5)
    truth = {}
    for label, kw in [("truth plain", dict(calcified=False, spiculated=False, contrast=0.5)), ("truth calcified", dict(calcified=True, spiculated=False, contrast=0.5)), ("truth spiculated", dict(calcified=False, spiculated=True, contrast=0.5)), ("truth obvious", dict(calcified=False, spiculated=False, contrast=0.9))]:
        imgs = []
        for i in range(n):
            m = inputs["mask"][i, 0].numpy()
            ys, xs = np.nonzero(m)
            nod, _, _ = gp.nodule(rng, center=(ys.mean(), xs.mean()), mask_radius=math.sqrt(m.sum() / math.pi), **kw)
            imgs.append(np.clip(inputs["background"][i, 0].numpy() + nod, -1, 1))
        mt = measure(torch.from_numpy(np.stack(imgs)[:, None]), inputs["background"], inputs["mask"])
        truth[label] = mt
        log(f"[check] {label:30s} {summary(mt)}")
    Image.fromarray(gp.grid(rows)).save("/tmp/nodule-demo-check.png")
    log("[check] grid rows: background, mask, " + ", ".join(r for r, _ in runs) + " -> /tmp/nodule-demo-check.png")
    info["check"] = {k: {m: float(np.mean(v)) for m, v in mt.items()} for k, mt in {**results, **truth}.items()}


def sizes_of(out: Path) -> dict:
    res = {}
    for p in sorted(out.iterdir()):
        if p.name in ("README.md", "training-log.json"):
            continue
        res[p.name] = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return res


def write_readme(out: Path, info: dict) -> None:
    t = info.get("times", {})
    v = info.get("versions", {})
    sz = sizes_of(out)
    total = sum(sz.values())
    vae_i, dit_i, lo = info.get("vae", {}), info.get("dit", {}), info.get("loras", {})
    check = info.get("check", {})
    lines = [
        "# nodule-demo: the bundled default model",
        "",
        "A tiny latent diffusion model that synthesizes lung nodules into 32x32",
        "chest-X-ray-like patches (procedural data from `demo/generate_patches.py`),",
        "inside a given disk mask, plus three characteristic LoRAs. It is what",
        "`make demo` / `nodus demo` run. Regenerate everything (deterministic on the",
        "same machine type and library versions; about 24 minutes on 2 CPU cores):",
        "",
        f"    {COMMAND}",
        "",
        "## Files",
        "",
        "| file | what | bytes |",
        "|---|---|---|",
        f"| `vae/` | `AutoencoderKL` (diffusers folder, float32): 1 channel in/out, 4 latent channels, block_out_channels {VAE_CONFIG['block_out_channels']}, 32x32 image <-> 4x8x8 latent; `scaling_factor` {vae_i.get('scaling_factor')} (= 1 / std of the training latents). Only decode is needed for sampling. | {sz.get('vae', 0)} |",
        f"| `dit/` | `DiTTransformer2DModel` (diffusers folder, float32): sample_size 8, patch 2, in_channels 9, out_channels 4 (epsilon), {DIT_CONFIG['num_layers']} layers, {DIT_CONFIG['num_attention_heads']} heads x {DIT_CONFIG['attention_head_dim']}, num_embeds_ada_norm {NUM_CLASSES} | {sz.get('dit', 0)} |",
        f"| `scheduler/scheduler_config.json` | `DDIMScheduler`: linear betas 1e-4..0.02, 1000 train steps, epsilon, no clipping (the training schedule) | {sz.get('scheduler', 0)} |",
        f"| `lora-calcified.safetensors` | LoRA \"calcified\", diffusers format (keys `transformer.<module>.lora_A/lora_B.weight`, metadata `lora_adapter_metadata`) | {sz.get('lora-calcified.safetensors', 0)} |",
        f"| `lora-spiculated/` | LoRA \"spiculated\", PEFT folder (`adapter_config.json` + `adapter_model.safetensors`, keys `base_model.model.<module>...`) | {sz.get('lora-spiculated', 0)} |",
        f"| `lora-subtlety.safetensors` | LoRA \"subtlety\", diffusers format: a contrast slider | {sz.get('lora-subtlety.safetensors', 0)} |",
        f"| `inputs.safetensors` | 4 demo cases: `background` [4,1,32,32] (patches without nodule, [-1,1]), `mask` [4,1,32,32] (0/1), `masked_image` [4,1,32,32], `masked_latent` [4,4,8,8], `latent_mask` [4,1,8,8] | {sz.get('inputs.safetensors', 0)} |",
        "| `training-log.json` | times, losses and self-check numbers of the run that wrote these files | |",
        "",
        f"Total {total / 1e6:.2f} MB.",
        "",
        "All LoRAs: rank 8, lora_alpha 8 (scale 1), on every block's `attn1.to_q`,",
        "`attn1.to_k`, `attn1.to_v`, `attn1.to_out.0`, `ff.net.0.proj`, `ff.net.2`.",
        "",
        "## Sampling: what the sampler needs",
        "",
        "* Class labels: `0` (\"nodule\") for the conditional half, the null class `4`",
        "  (= num_embeds_ada_norm) for the unconditional half; DiT batch order `[cond, null]`,",
        "  `eps = eps_null + g * (eps_cond - eps_null)`; guidance 3-4 works well.",
        "* The model input at every step, for both CFG halves, is",
        "  **`cat([noisy latent (4), latent_mask (1), masked_latent (4)], dim=1)`**, 9 channels, in that order:",
        "  * `masked_image = image * (1 - mask)`: the patch with the mask region set to 0 (mid gray);",
        "  * `masked_latent = vae.encode(masked_image).latent_dist.mean * scaling_factor` [B,4,8,8];",
        "  * `latent_mask = max_pool2d(mask, 4)` [B,1,8,8] (1 where any pixel of the 4x4 cell is masked).",
        "  `inputs.safetensors` holds both, ready to use (no VAE encoder needed).",
        "* Initial noise [B,4,8,8] ~ N(0,1) (DDIM init_noise_sigma is 1); DDIM 50 steps.",
        "* Decode: `image = vae.decode(latent / scaling_factor).sample`, in about [-1, 1];",
        "  display `(image / 2 + 0.5).clamp(0, 1)`. Outside the mask the result reproduces the",
        "  background (up to the VAE's reconstruction error); one may paste it back:",
        "  `out = background * (1 - mask) + image * mask`.",
        "",
        "## LoRAs and the subtlety slider",
        "",
        "* `calcified`: fine-tuned on calcified nodules only (a markedly brighter core).",
        "* `spiculated`: fine-tuned on spiculated nodules only (radial spikes, lobulated outline).",
        "* `subtlety`: fine-tuned on obvious-contrast nodules only. Used as a slider: its weight",
        f"  scales the nodule contrast. Documented range: weights {', '.join(f'{w:g}' for w in SLIDER_WEIGHTS)} (monotone",
        "  increase of contrast in the self-check below); the paper's 2^(2+s), s = 1..5 (8..128) is far",
        "  too strong for this tiny model (the image saturates). Weight 0 = the base model.",
        "* Merges: `set_adapters([\"calcified\", \"spiculated\"], [0.5, 0.5])` blends both.",
        "",
        "Limits (a 7.8 MB model trained in 24 CPU-minutes): the LoRA effects are real but",
        "moderate (see the self-check: calcified raises the peak brightness, the slider raises",
        "contrast monotonically). The VAE's 8x8 latent blurs thin structures, so \"spiculated\"",
        "gives a slightly less compact, more irregular blob rather than crisp spikes, and image",
        "noise / fine texture come back smoothed (outside the mask the decoded image differs from",
        "the background by ~0.024 mean absolute error: paste the background back if needed).",
        "",
        "## How it was trained",
        "",
        f"`{COMMAND}`, CPU, {info.get('threads', 2)} threads, seed {SEED}, `torch.use_deterministic_algorithms(True)`.",
        f"Versions: {', '.join(f'{k} {val}' for k, val in sorted(v.items()))}.",
        "",
        "| stage | what | wall time |",
        "|---|---|---|",
        f"| data | {info.get('sizes', {}).get('n_base')} base samples (calcified p={gp.P_CALCIFIED}, spiculated p={gp.P_SPICULATED}, contrast U(0,1)) + 3 x {info.get('sizes', {}).get('n_subset')} subset samples | {t.get('data', 0):.0f} s |",
        f"| vae | {vae_i.get('steps')} steps, batch {vae_i.get('batch')}, AdamW, L1 + MSE + 1e-6 KL; final L1 {vae_i.get('final_l1', 0):.4f}, MSE {vae_i.get('final_mse', 0):.5f} | {t.get('vae', 0):.0f} s |",
        f"| dit | {dit_i.get('steps')} steps, batch {dit_i.get('batch')}, AdamW, DDPM epsilon MSE (mask region weighted 4x), 10% label dropout, EMA 0.999; final loss {dit_i.get('final_loss', 0):.4f} | {t.get('dit', 0):.0f} s |",
    ]
    for name in SUBSETS:
        li = lo.get(name, {})
        lines.append(f"| lora {name} | {li.get('steps')} steps, batch {li.get('batch')}, on the {name} subset; final loss {li.get('final_loss', 0):.4f} | {t.get('lora-' + name, 0):.0f} s |")
    lines += [
        f"| inputs + check | demo inputs; self-check sampling | {t.get('inputs', 0) + t.get('check', 0):.0f} s |",
        f"| total | | {t.get('total', 0):.0f} s |",
        "",
        "## Self-check (DDIM 50 steps, guidance 3.5, the 4 demo cases, same initial noise)",
        "",
        "Measured on the decoded images: `contrast` = mean inside the mask - mean of a 3-px ring",
        "outside it; `peak` = max inside - ring mean; `outer` = share of the bright excess in the",
        "outer 40% of the mask radius (spicules); `bg_change` = mean |image - background| outside",
        "the ring. `truth` rows: the generator's own nodules in the same masks, for scale.",
        "",
        "| run | contrast | peak | outer | bg_change |",
        "|---|---|---|---|---|",
    ]
    for k, mt in check.items():
        lines.append(f"| {k} | {mt['contrast']:+.3f} | {mt['peak']:+.3f} | {mt['outer']:.3f} | {mt['bg_change']:.3f} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    (out / "README.md").chmod(0o644)


def run(args, sizes, stages, out: Path, data: dict, times: dict, t0: float) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    log_path = out / "training-log.json"
    info = json.loads(log_path.read_text()) if log_path.exists() and args.stages != "all" else {}
    info.setdefault("times", {}).update(times)
    info["versions"] = versions()
    info["threads"] = args.threads
    info["sizes"] = sizes

    def timed(name, fn, *a):
        s = time.perf_counter()
        r = fn(*a)
        info["times"][name] = time.perf_counter() - s
        log(f"[{name}] {info['times'][name]:.1f} s")
        return r

    if "vae" in stages:
        timed("vae", train_vae, data, sizes, out, info)
    vae = load_vae(out)
    if "dit" in stages or "loras" in stages:
        s = time.perf_counter()
        lats = {k: latents_for(vae, d) for k, d in data.items()}
        info["times"]["latents"] = time.perf_counter() - s
        log(f"[latents] encoded in {info['times']['latents']:.1f} s")
    if "dit" in stages:
        timed("dit", train_dit, lats["base"], sizes, out, info)
    if "loras" in stages:
        trained = {}
        for name in SUBSETS:
            trained[name] = timed("lora-" + name, train_lora, name, lats[name], sizes, out, info)
        save_lora_diffusers(trained["calcified"], "calcified", out / "lora-calcified.safetensors",
                            "LoRA 'calcified' on models/nodule-demo/dit: fine-tuned on calcified nodules only")
        save_lora_peft(trained["spiculated"], "spiculated", out / "lora-spiculated")
        save_lora_diffusers(trained["subtlety"], "subtlety", out / "lora-subtlety.safetensors",
                            "LoRA 'subtlety' on models/nodule-demo/dit: fine-tuned on obvious-contrast nodules; "
                            "a contrast slider, weights 0.5..2")
        check_reload(trained, out)
    if "inputs" in stages:
        timed("inputs", make_inputs, out, info)
    if "check" in stages:
        timed("check", self_check, out, info)
    info["times"]["total"] = sum(v for k, v in info["times"].items() if k != "total")
    log("[times] " + ", ".join(f"{k} {v:.0f} s" for k, v in info["times"].items()))
    log_path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    log_path.chmod(0o644)
    write_readme(out, info)
    for k, b in sizes_of(out).items():
        log(f"[size] {k}: {b / 1e6:.2f} MB")
    log(f"[size] total {sum(sizes_of(out).values()) / 1e6:.2f} MB")


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

    run(args, sizes, stages, out, data, times, t0)


if __name__ == "__main__":
    main()
