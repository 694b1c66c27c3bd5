#!/usr/bin/env python3
"""Writes Tests/Fixtures/unet-tiny-sample-<scheduler>.safetensors: a short CFG run of
the tiny UNet (Tests/Fixtures/unet-tiny, made by make_unet_fixtures.py) with each of
the schedulers of issue 15 part 5, in the loop of diffusers' StableDiffusionPipeline,
for bindings/python/tests/test_schedulers.py (< 1e-3 at every step).

Run with the reference environment (LMSDiscreteScheduler needs scipy):
    python tests/reference/make_scheduler_unet_fixtures.py

The loop (StableDiffusionPipeline.__call__ of diffusers 0.42.1, guidance 7.5):
    latents = init_noise * scheduler.init_noise_sigma      (after set_timesteps)
    for i, t in enumerate(scheduler.timesteps):             (2N - 1 entries for Heun, N + 1 / N + 9 for PNDM)
        x = scheduler.scale_model_input(cat([latents] * 2), t)
        e_uncond, e_cond = unet(x, t, encoder_hidden_states=[uncond, cond]).chunk(2)
        latents = scheduler.step(e_uncond + 7.5 (e_cond - e_uncond), t, latents).prev_sample
Stochastic steps (Euler ancestral, LCM) take step_noise[i] where diffusers calls
randn_tensor. The *-img2img files run StableDiffusionImg2ImgPipeline's start at
strength 0.6 (timesteps[t_start * order:], set_begin_index, add_noise of
image_latents with init_noise at the first of them). Each file holds init_noise
(unscaled), image_latents (img2img), encoder_hidden_states
([uncond, cond], those of unet-tiny-sample-ddim.safetensors), timesteps,
trajectory (latents after every entry), final and step_noise when used; its
metadata holds the scheduler config (JSON), the step count and the versions.
"""
import json
import os
import platform
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import (DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                       HeunDiscreteScheduler, LCMScheduler, LMSDiscreteScheduler, PNDMScheduler,
                       UNet2DConditionModel, UniPCMultistepScheduler)
from diffusers.schedulers import scheduling_euler_ancestral_discrete, scheduling_lcm

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures")
GUIDANCE = 7.5
SD = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
SD15 = {**SD, "steps_offset": 1, "timestep_spacing": "leading", "set_alpha_to_one": False, "clip_sample": False,
        "skip_prk_steps": True}

RUNS = [
    # (file name, class, config, steps)
    ("euler", EulerDiscreteScheduler, SD15, 10),
    ("euler-ancestral", EulerAncestralDiscreteScheduler, SD15, 10),
    ("dpm-2m-karras", DPMSolverMultistepScheduler, {**SD15, "use_karras_sigmas": True}, 10),
    ("pndm", PNDMScheduler, SD15, 10),
    ("pndm-prk", PNDMScheduler, {**SD15, "skip_prk_steps": False}, 10),
    ("unipc", UniPCMultistepScheduler, SD15, 10),
    ("heun", HeunDiscreteScheduler, {**SD, "timestep_spacing": "linspace"}, 5),
    ("lms", LMSDiscreteScheduler, {**SD, "timestep_spacing": "linspace"}, 10),
    ("lcm", LCMScheduler, {**SD, "timestep_spacing": "leading"}, 4),
]


IMG2IMG_RUNS = [
    ("euler-img2img", EulerDiscreteScheduler, SD15, 10),
    ("heun-img2img", HeunDiscreteScheduler, {**SD, "timestep_spacing": "linspace"}, 5),
    ("dpm-2m-img2img", DPMSolverMultistepScheduler, SD15, 10),
]


class StepNoise:
    """Stands in for randn_tensor in the scheduler modules: returns the current step's noise."""

    def __init__(self):
        self.current = None
        self.used = False

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert self.current is not None and tuple(shape) == tuple(self.current.shape), shape
        self.used = True
        return self.current.to(dtype or torch.float32)


FEED = StepNoise()
scheduling_euler_ancestral_discrete.randn_tensor = FEED
scheduling_lcm.randn_tensor = FEED


def versions():
    import scipy
    return {"diffusers": diffusers.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "python": platform.python_version()}


@torch.no_grad()
def run(unet, name, cls, config, steps, init_noise, prompt_embeds, seed, strength=None):
    full_config = {"_class_name": cls.__name__, "_diffusers_version": diffusers.__version__, **config}
    scheduler = cls.from_config(full_config)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    generator = torch.Generator().manual_seed(seed)
    image_latents = None
    if strength is None:
        latents = init_noise * scheduler.init_noise_sigma
    else:
        # StableDiffusionImg2ImgPipeline.get_timesteps and prepare_latents.
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        timesteps = scheduler.timesteps[t_start * scheduler.order:]
        scheduler.set_begin_index(t_start * scheduler.order)
        image_latents = torch.randn(tuple(init_noise.shape), generator=generator, dtype=torch.float32) * 0.8
        latents = scheduler.add_noise(image_latents, init_noise, timesteps[:1].repeat(init_noise.shape[0]))
    step_noise = torch.randn((len(timesteps),) + tuple(init_noise.shape), generator=generator, dtype=torch.float32)
    trajectory = []
    noise_used = False
    for index, t in enumerate(timesteps):
        latent_model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        noise_pred = unet(latent_model_input, t, encoder_hidden_states=prompt_embeds, return_dict=False)[0]
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + GUIDANCE * (noise_pred_text - noise_pred_uncond)
        FEED.current, FEED.used = step_noise[index], False
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        noise_used = noise_used or FEED.used
        FEED.current = None
        trajectory.append(latents.clone())
    tensors = {
        "init_noise": init_noise.contiguous(),
        "encoder_hidden_states": prompt_embeds.contiguous(),
        "timesteps": timesteps.to(torch.float64 if timesteps.is_floating_point() else torch.int64).contiguous(),
        "trajectory": torch.stack(trajectory).contiguous(),
        "final": latents.contiguous(),
    }
    if noise_used:
        tensors["step_noise"] = step_noise.contiguous()
    if image_latents is not None:
        tensors["image_latents"] = image_latents.contiguous()
    metadata = {
        "description": "CFG sampling of unet-tiny in the loop of diffusers StableDiffusionPipeline.__call__ "
                       "(see the generator's docstring); trajectory[i] = latents after timestep entry i",
        "generator": "tests/reference/make_scheduler_unet_fixtures.py",
        "scheduler_config": json.dumps(full_config),
        "steps": str(steps),
        "strength": str(1.0 if strength is None else strength),
        "guidance_scale": str(GUIDANCE),
        "init_noise_sigma": repr(float(scheduler.init_noise_sigma)),
        "versions": json.dumps(versions()),
    }
    path = os.path.join(FIXTURES, f"unet-tiny-sample-{name}.safetensors")
    save_file(tensors, path, metadata=metadata)
    print(f"{os.path.basename(path)}: {len(timesteps)} timesteps, init_noise_sigma "
          f"{float(scheduler.init_noise_sigma):.6g}, step noise {'yes' if noise_used else 'no'}, "
          f"final |x| max {latents.abs().max().item():.4g}")


def main():
    unet = UNet2DConditionModel.from_pretrained(os.path.join(FIXTURES, "unet-tiny")).eval()
    reference = load_file(os.path.join(FIXTURES, "unet-tiny-sample-ddim.safetensors"))
    init_noise = reference["init_noise"]
    prompt_embeds = reference["encoder_hidden_states"]
    for index, (name, cls, config, steps) in enumerate(RUNS):
        run(unet, name, cls, config, steps, init_noise, prompt_embeds, seed=9100 + index)
    # img2img (StableDiffusionImg2ImgPipeline): the start index times the scheduler's order, set_begin_index,
    # add_noise of the image latents at the first timestep that runs.
    for index, (name, cls, config, steps) in enumerate(IMG2IMG_RUNS):
        run(unet, name, cls, config, steps, init_noise, prompt_embeds, seed=9200 + index, strength=0.6)


if __name__ == "__main__":
    main()
