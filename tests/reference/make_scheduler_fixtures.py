#!/usr/bin/env python3
"""Writes Tests/Fixtures/schedulers.json: golden scheduler runs from diffusers
(DDIM, DDPM, flow matching, Euler, Euler ancestral, DPM-Solver, PNDM, UniPC,
Heun, LMS, LCM), for Tests/NodusTests/SchedulerTests.swift and
bindings/python/tests/test_schedulers.py.

Run with the reference environment (LMSDiscreteScheduler needs scipy):
    python tests/reference/make_scheduler_fixtures.py

The sigma-based classes' cases also record `sigmas`, `initNoiseSigma`,
`addNoise` (diffusers' `add_noise` at the middle timestep of a fresh schedule)
and, per step, `scaledSample` (diffusers' `scale_model_input` of the step's input,
called before `step` as the pipelines do); they use smaller samples (`shape`)
to keep the file small, and pass the timestep as the element of
`scheduler.timesteps` (a tensor), as the pipelines do.

Every case records the scheduler config (as diffusers' scheduler_config.json
would hold it), the step count (and `mu` / `eta` when used), the timesteps,
the initial sample and, for every step, the model output, the noise the step
used (if any) and diffusers' prev_sample. The sample a step receives is the
previous step's reference prev_sample (the initial sample for step 0), so each
step is checked on its own. Noise that diffusers would draw inside `step`
(DDPM, flow-matching stochastic sampling) is drawn here with a fixed seed and
handed to diffusers' own `step` by patching its `randn_tensor`; DDIM with
eta > 0 gets it as `variance_noise`.
"""
import json
import os
import sys

import numpy as np
import torch

import diffusers
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler,
                       FlowMatchHeunDiscreteScheduler, HeunDiscreteScheduler, LCMScheduler,
                       LMSDiscreteScheduler, PNDMScheduler, UniPCMultistepScheduler)
from diffusers.schedulers import (scheduling_ddpm, scheduling_dpmsolver_multistep, scheduling_euler_ancestral_discrete,
                                  scheduling_euler_discrete, scheduling_flow_match_euler_discrete, scheduling_lcm)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "schedulers.json")
SHAPE = [2, 2, 3, 3]


def floats(tensor):
    """float32 values as shortest round-trip decimals (compact JSON)."""
    return [float(str(np.float32(v))) if np.isfinite(v) else None
            for v in tensor.detach().to(torch.float32).reshape(-1).numpy()]


class NoiseFeed:
    """Stands in for diffusers' randn_tensor: returns the noise prepared for the current step."""

    def __init__(self):
        self.next = None
        self.used = False

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        assert self.next is not None and list(shape) == list(self.next.shape), (shape, self.next)
        self.used = True
        return self.next.to(dtype=dtype or torch.float32)


FEED = NoiseFeed()
scheduling_ddpm.randn_tensor = FEED
scheduling_flow_match_euler_discrete.randn_tensor = FEED
for module in (scheduling_euler_discrete, scheduling_euler_ancestral_discrete, scheduling_dpmsolver_multistep,
               scheduling_lcm):
    module.randn_tensor = FEED

CLASSES = {
    "DDIMScheduler": DDIMScheduler,
    "DDPMScheduler": DDPMScheduler,
    "FlowMatchEulerDiscreteScheduler": FlowMatchEulerDiscreteScheduler,
    "EulerDiscreteScheduler": EulerDiscreteScheduler,
    "EulerAncestralDiscreteScheduler": EulerAncestralDiscreteScheduler,
    "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler,
    "PNDMScheduler": PNDMScheduler,
    "UniPCMultistepScheduler": UniPCMultistepScheduler,
    "HeunDiscreteScheduler": HeunDiscreteScheduler,
    "LMSDiscreteScheduler": LMSDiscreteScheduler,
    "LCMScheduler": LCMScheduler,
    "FlowMatchHeunDiscreteScheduler": FlowMatchHeunDiscreteScheduler,
}
ORIGINAL_CLASSES = ("DDIMScheduler", "DDPMScheduler", "FlowMatchEulerDiscreteScheduler")
SMALL_SHAPE = [1, 2, 2, 2]


def model_output_for(case, generator, shape, sample):
    """A plausible model output: eps / v ~ N(0, 1), x0 ~ N(0, 0.5), flow velocity ~ N(0, 1);
    learned variance channels in [-1, 1] (learned_range) or (0, 0.02] (learned)."""
    out = torch.randn(shape, generator=generator, dtype=torch.float32)
    if case["config"].get("prediction_type") == "sample":
        out = out * 0.5
    if case.get("doubleChannels"):
        variance_type = case["config"].get("variance_type")
        extra = torch.rand(shape, generator=generator, dtype=torch.float32)
        extra = extra * 2 - 1 if variance_type == "learned_range" else extra * 0.02 + 1e-4
        out = torch.cat([out, extra], dim=1)
    return out


def run_sigma_class(case, seed):
    """The newer classes: timesteps, sigmas, init_noise_sigma, and per step scale_model_input and step."""
    class_name = case["config"]["_class_name"]
    shape = case.get("shape", SMALL_SHAPE)
    scheduler = CLASSES[class_name].from_config(case["config"])
    kwargs = {"mu": case["mu"]} if "mu" in case else {}
    scheduler.set_timesteps(case["steps"], **kwargs)
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(shape, generator=generator, dtype=torch.float32)
    record = {
        "name": case["name"],
        "config": case["config"],
        "steps": case["steps"],
        "shape": shape,
        "modelOutputShape": shape,
        "timesteps": [float(t) for t in scheduler.timesteps.tolist()],
        # FlowMatchHeunDiscreteScheduler has no init_noise_sigma or scale_model_input (1 and the identity).
        "initNoiseSigma": float(getattr(scheduler, "init_noise_sigma", 1.0)),
        "sample": floats(sample),
        "records": [],
    }
    if hasattr(scheduler, "sigmas") and class_name != "PNDMScheduler":
        record["sigmas"] = floats(torch.as_tensor(scheduler.sigmas))
    for key in ("mu", "stepArguments"):
        if key in case:
            record[key] = case[key]
    step_arguments = case.get("stepArguments", {})
    for t in scheduler.timesteps:
        model_output = model_output_for(case, generator, shape, sample)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        FEED.next, FEED.used = noise, False
        scaled = scheduler.scale_model_input(sample, t) if hasattr(scheduler, "scale_model_input") else sample
        out = scheduler.step(model_output, t, sample, **step_arguments).prev_sample
        entry = {"timestep": float(t), "modelOutput": floats(model_output), "prevSample": floats(out)}
        if not torch.equal(scaled, sample):
            entry["scaledSample"] = floats(scaled)
        if FEED.used:
            entry["noise"] = floats(noise)
        record["records"].append(entry)
        sample = out
    # add_noise on a fresh schedule (as img2img pipelines call it before the first step), at the middle timestep.
    fresh = CLASSES[class_name].from_config(case["config"])
    fresh.set_timesteps(case["steps"], **kwargs)
    middle = len(fresh.timesteps) // 2
    original = torch.randn(shape, generator=generator, dtype=torch.float32)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if hasattr(fresh, "add_noise"):
        noisy = fresh.add_noise(original, noise, fresh.timesteps[middle:middle + 1])
    else:  # flow matching: scale_noise
        noisy = fresh.scale_noise(original, fresh.timesteps[middle:middle + 1], noise)
    record["addNoise"] = {"index": middle, "original": floats(original), "noise": floats(noise),
                          "result": floats(noisy)}
    return record


def run(case, seed):
    class_name = case["config"]["_class_name"]
    if class_name not in ORIGINAL_CLASSES:
        return run_sigma_class(case, seed)
    # from_config ignores keys the class does not take, as loading a scheduler_config.json does.
    scheduler = CLASSES[class_name].from_config(case["config"])
    kwargs = {}
    if "mu" in case:
        kwargs["mu"] = case["mu"]
    scheduler.set_timesteps(case["steps"], **kwargs)
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(SHAPE, generator=generator, dtype=torch.float32)
    record = {
        "name": case["name"],
        "config": case["config"],
        "steps": case["steps"],
        "shape": SHAPE,
        "modelOutputShape": [SHAPE[0], SHAPE[1] * (2 if case.get("doubleChannels") else 1)] + SHAPE[2:],
        "timesteps": [float(t) for t in scheduler.timesteps.tolist()],
        "sample": floats(sample),
        "records": [],
    }
    for key in ("mu", "eta"):
        if key in case:
            record[key] = case[key]
    eta = case.get("eta", 0.0)
    for t in scheduler.timesteps:
        model_output = model_output_for(case, generator, SHAPE, sample)
        noise = torch.randn(SHAPE, generator=generator, dtype=torch.float32)
        FEED.next, FEED.used = noise, False
        if class_name == "DDIMScheduler":
            if eta > 0:
                out = scheduler.step(model_output, int(t), sample, eta=eta, variance_noise=noise).prev_sample
                FEED.used = True
            else:
                out = scheduler.step(model_output, int(t), sample).prev_sample
        elif class_name == "DDPMScheduler":
            out = scheduler.step(model_output, int(t), sample).prev_sample
        else:
            out = scheduler.step(model_output, t, sample).prev_sample
        entry = {"timestep": float(t), "modelOutput": floats(model_output), "prevSample": floats(out)}
        if FEED.used:
            entry["noise"] = floats(noise)
        record["records"].append(entry)
        sample = out
    return record


def ddim(name, steps, **config):
    return {"name": name, "steps": steps, "config": {"_class_name": "DDIMScheduler", "_diffusers_version": "0.42.1", **config}}


def ddpm(name, steps, **config):
    return {"name": name, "steps": steps, "config": {"_class_name": "DDPMScheduler", "_diffusers_version": "0.42.1", **config}}


def flow(name, steps, **config):
    return {"name": name, "steps": steps,
            "config": {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.42.1", **config}}


SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
trained = np.linspace(0.0005, 0.03, 100).tolist()

CASES = [
    # DDIM
    ddim("ddim_default_50", 50),
    ddim("ddim_sd15_offset1_no_alpha_one", 20, **SD, steps_offset=1, set_alpha_to_one=False, clip_sample=False,
         skip_prk_steps=True),  # skip_prk_steps belongs to PNDM: ignored
    ddim("ddim_trailing_vpred_zero_snr", 10, **SD, rescale_betas_zero_snr=True, prediction_type="v_prediction",
         timestep_spacing="trailing", clip_sample=False),
    ddim("ddim_trailing_3_steps", 3, timestep_spacing="trailing", clip_sample=False),
    # numpy's arange(1000, 0, -1000 / 61) has 62 elements: diffusers' schedule ends with timestep -1.
    ddim("ddim_trailing_61_steps_ends_at_minus_one", 61, timestep_spacing="trailing"),
    ddim("ddim_linspace_sample_range2", 15, timestep_spacing="linspace", prediction_type="sample",
         clip_sample_range=2.0),
    ddim("ddim_squaredcos_eta05", 20, beta_schedule="squaredcos_cap_v2", clip_sample=False),
    ddim("ddim_thresholding", 10, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
    ddim("ddim_trained_betas", 10, num_train_timesteps=100, trained_betas=trained, clip_sample=False),
    ddim("ddim_vpred_eta1_linspace", 12, **SD, prediction_type="v_prediction", timestep_spacing="linspace",
         clip_sample=False),
    # DDPM
    ddpm("ddpm_default_50", 50),
    ddpm("ddpm_sd_fixed_small_log_offset1", 10, **SD, variance_type="fixed_small_log", steps_offset=1,
         clip_sample=False),
    ddpm("ddpm_fixed_large_vpred_trailing", 10, variance_type="fixed_large", prediction_type="v_prediction",
         timestep_spacing="trailing", clip_sample=False),
    ddpm("ddpm_learned_linspace", 10, variance_type="learned", timestep_spacing="linspace"),
    ddpm("ddpm_dit_learned_range", 25, variance_type="learned_range", clip_sample=False),
    ddpm("ddpm_sample_thresholding", 10, prediction_type="sample", thresholding=True,
         dynamic_thresholding_ratio=0.95, sample_max_value=2.0),
    ddpm("ddpm_zero_snr_vpred", 10, **SD, rescale_betas_zero_snr=True, prediction_type="v_prediction",
         timestep_spacing="trailing", clip_sample=False),
    ddpm("ddpm_trailing_61_steps_ends_at_minus_one", 61, timestep_spacing="trailing"),
    ddpm("ddpm_squaredcos_range", 10, beta_schedule="squaredcos_cap_v2", clip_sample_range=1.5),
    ddpm("ddpm_sigmoid", 10, beta_schedule="sigmoid", clip_sample=False),
    ddpm("ddpm_laplace", 10, beta_schedule="laplace", clip_sample=False),
    ddpm("ddpm_trained_betas", 10, num_train_timesteps=100, trained_betas=trained, clip_sample=False),
    # Flow matching
    flow("flow_default_50", 50),
    flow("flow_sd3_shift3", 28, shift=3.0),
    flow("flow_flux_dynamic_exponential", 20, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
         base_image_seq_len=256, max_image_seq_len=4096, shift=3.0),
    flow("flow_dynamic_linear", 12, use_dynamic_shifting=True, time_shift_type="linear"),
    flow("flow_invert_sigmas", 10, shift=2.0, invert_sigmas=True),
    flow("flow_shift_terminal", 15, shift=3.0, shift_terminal=0.1),
    flow("flow_karras", 12, shift=3.0, use_karras_sigmas=True),
    flow("flow_exponential_sigmas", 12, shift=3.0, use_exponential_sigmas=True),
    # sigma_min / sigma_max are not __init__ arguments, but from_config keeps them in the config
    # and the Karras / exponential conversions read them from there.
    flow("flow_exponential_sigma_bounds", 8, use_exponential_sigmas=True, sigma_min=0.02, sigma_max=0.9),
    flow("flow_stochastic", 10, shift=3.0, stochastic_sampling=True),
    flow("flow_one_step", 1, shift=3.0),
]


def make(class_name):
    def build(name, steps, **config):
        return {"name": name, "steps": steps,
                "config": {"_class_name": class_name, "_diffusers_version": "0.42.1", **config}}
    return build


euler = make("EulerDiscreteScheduler")
euler_a = make("EulerAncestralDiscreteScheduler")
dpm = make("DPMSolverMultistepScheduler")
pndm = make("PNDMScheduler")
unipc = make("UniPCMultistepScheduler")
heun = make("HeunDiscreteScheduler")
lms = make("LMSDiscreteScheduler")
lcm = make("LCMScheduler")
flow_heun = make("FlowMatchHeunDiscreteScheduler")
SD_LEADING = dict(**SD, steps_offset=1, timestep_spacing="leading")

CASES += [
    # Euler
    euler("euler_default_10", 10),
    euler("euler_sd_leading_offset1", 10, **SD_LEADING),
    euler("euler_trailing_vpred_zero_snr", 8, **SD, timestep_spacing="trailing", prediction_type="v_prediction",
          rescale_betas_zero_snr=True),
    euler("euler_karras", 10, **SD, use_karras_sigmas=True),
    euler("euler_exponential_sigma_min_final", 8, **SD, use_exponential_sigmas=True, final_sigmas_type="sigma_min"),
    euler("euler_karras_sigma_bounds", 6, **SD, use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0),
    euler("euler_log_linear", 8, interpolation_type="log_linear"),
    euler("euler_sample_prediction", 6, prediction_type="sample", timestep_spacing="leading"),
    euler("euler_original_sample_squaredcos", 6, prediction_type="original_sample", beta_schedule="squaredcos_cap_v2"),
    euler("euler_continuous_vpred", 6, **SD, timestep_type="continuous", prediction_type="v_prediction"),
    euler("euler_churn", 6, **SD),
    euler("euler_trained_betas", 6, num_train_timesteps=100, trained_betas=trained),
    # Euler ancestral
    euler_a("euler_a_default_10", 10),
    euler_a("euler_a_sd_leading_offset1", 10, **SD_LEADING),
    euler_a("euler_a_trailing_vpred_zero_snr", 8, **SD, timestep_spacing="trailing", prediction_type="v_prediction",
            rescale_betas_zero_snr=True),
    # DPM-Solver
    dpm("dpm_2m_default_20", 20),
    dpm("dpm_2m_sd_karras", 12, **SD, use_karras_sigmas=True),
    dpm("dpm_2m_sd_leading_offset1", 10, **SD_LEADING),
    dpm("dpm_order1", 6, solver_order=1),
    dpm("dpm_order3_16_steps", 16, solver_order=3),
    dpm("dpm_heun_no_lower_final", 8, solver_type="heun", lower_order_final=False),
    dpm("dpm_euler_at_final", 8, euler_at_final=True, final_sigmas_type="sigma_min"),
    dpm("dpm_dpmsolver_sigma_min", 8, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"),
    dpm("dpm_dpmsolver_heun_order3_sample", 8, algorithm_type="dpmsolver", solver_type="heun", solver_order=3,
        final_sigmas_type="sigma_min", prediction_type="sample"),
    dpm("dpm_exponential", 8, **SD, use_exponential_sigmas=True),
    dpm("dpm_lu_lambdas", 8, **SD, use_lu_lambdas=True),
    dpm("dpm_flow_sigmas", 8, use_flow_sigmas=True, flow_shift=3.0, prediction_type="flow_prediction"),
    dpm("dpm_flow_dynamic_shift", 8, use_flow_sigmas=True, use_dynamic_shifting=True, prediction_type="flow_prediction"),
    dpm("dpm_vpred_trailing_zero_snr", 8, **SD, timestep_spacing="trailing", prediction_type="v_prediction",
        rescale_betas_zero_snr=True),
    dpm("dpm_thresholding_sample", 8, thresholding=True, prediction_type="sample", dynamic_thresholding_ratio=0.9,
        sample_max_value=1.5, shape=[2, 2, 2, 2]),
    dpm("dpm_dpmsolver_thresholding", 6, algorithm_type="dpmsolver", thresholding=True, final_sigmas_type="sigma_min",
        sample_max_value=1.2, shape=[2, 2, 2, 2]),
    dpm("dpm_sde_plus_plus", 8, algorithm_type="sde-dpmsolver++"),
    dpm("dpm_sde_plus_plus_heun_order3", 8, algorithm_type="sde-dpmsolver++", solver_type="heun", solver_order=3),
    dpm("dpm_sde_midpoint", 8, algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"),
    dpm("dpm_lambda_min_clipped_cosine", 8, beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1),
    # PNDM
    pndm("pndm_sd15_skip_prk", 10, **SD, steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False),
    pndm("pndm_prk", 10),
    pndm("pndm_prk_4_steps_alpha_one", 4, set_alpha_to_one=True),
    pndm("pndm_vpred_linspace_skip", 8, prediction_type="v_prediction", timestep_spacing="linspace", skip_prk_steps=True),
    pndm("pndm_trailing_prk", 6, **SD, timestep_spacing="trailing"),
    # UniPC (bh1 and predict_x0 = False end in NaN with a final sigma of 0 in diffusers: B(h) or h phi_1 is
    # infinite there, so those cases end at sigma_min)
    unipc("unipc_default_10", 10),
    unipc("unipc_bh1_sd_leading_sigma_min", 10, **SD_LEADING, solver_type="bh1", final_sigmas_type="sigma_min"),
    unipc("unipc_order3", 10, solver_order=3),
    unipc("unipc_order3_no_lower_final_bh1_sigma_min", 8, solver_order=3, lower_order_final=False, solver_type="bh1",
          final_sigmas_type="sigma_min"),
    unipc("unipc_predict_epsilon_sigma_min", 8, predict_x0=False, final_sigmas_type="sigma_min"),
    unipc("unipc_predict_epsilon_vpred_order3_sigma_min", 8, predict_x0=False, prediction_type="v_prediction",
          solver_order=3, final_sigmas_type="sigma_min"),
    unipc("unipc_karras", 8, **SD, use_karras_sigmas=True),
    unipc("unipc_exponential_sigma_min", 8, **SD, use_exponential_sigmas=True, final_sigmas_type="sigma_min"),
    unipc("unipc_disable_corrector", 8, disable_corrector=[0, 2]),
    unipc("unipc_flow", 8, use_flow_sigmas=True, flow_shift=3.0, prediction_type="flow_prediction"),
    unipc("unipc_flow_dynamic_terminal", 8, use_flow_sigmas=True, use_dynamic_shifting=True, shift_terminal=0.1,
          prediction_type="flow_prediction"),
    unipc("unipc_vpred_trailing_zero_snr", 8, **SD, timestep_spacing="trailing", prediction_type="v_prediction",
          rescale_betas_zero_snr=True),
    unipc("unipc_thresholding_sample", 6, thresholding=True, prediction_type="sample", sample_max_value=1.5,
          shape=[2, 2, 2, 2]),
    # Heun
    heun("heun_default_5", 5),
    heun("heun_sd_leading_offset1", 5, **SD_LEADING),
    heun("heun_karras", 5, **SD, use_karras_sigmas=True),
    heun("heun_exponential_vpred", 4, **SD, use_exponential_sigmas=True, prediction_type="v_prediction"),
    heun("heun_sample_clip_trailing", 4, prediction_type="sample", clip_sample=True, clip_sample_range=0.8,
         timestep_spacing="trailing"),
    heun("heun_exp_schedule", 4, beta_schedule="exp"),
    # LMS
    lms("lms_default_10", 10),
    lms("lms_sd_leading_offset1", 10, **SD_LEADING),
    lms("lms_karras_timesteps", 6, **SD, use_karras_sigmas=True),
    lms("lms_vpred_trailing", 6, prediction_type="v_prediction", timestep_spacing="trailing"),
    lms("lms_sample", 6, prediction_type="sample"),
    # LCM
    lcm("lcm_default_4", 4),
    lcm("lcm_8_steps_vpred", 8, prediction_type="v_prediction"),
    lcm("lcm_thresholding_no_alpha_one", 4, thresholding=True, set_alpha_to_one=False, shape=[2, 2, 2, 2]),
    lcm("lcm_linear_original_25_clip", 6, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
        original_inference_steps=25, clip_sample=True, timestep_scaling=5.0),
    lcm("lcm_zero_snr_sample", 4, rescale_betas_zero_snr=True, prediction_type="sample"),
    # Flow-matching Heun (appended: the seeds of the cases above stay as they were)
    flow_heun("flow_heun_default_8", 8),
    flow_heun("flow_heun_shift3", 6, shift=3.0),
    flow_heun("flow_heun_one_step", 1, shift=2.0),
]
for case in CASES:
    name = case["name"]
    if "shape" in case["config"]:
        case["shape"] = case["config"].pop("shape")
    if name == "euler_churn":
        case["stepArguments"] = {"s_churn": 2.0, "s_tmin": 0.5, "s_tmax": 20.0, "s_noise": 1.003}
    if name in ("dpm_flow_dynamic_shift", "unipc_flow_dynamic_terminal"):
        case["mu"] = 1.2
    if name == "ddim_squaredcos_eta05":
        case["eta"] = 0.5
    if name == "ddim_vpred_eta1_linspace":
        case["eta"] = 1.0
    if name == "flow_flux_dynamic_exponential":
        case["mu"] = 0.8
    if name == "flow_dynamic_linear":
        case["mu"] = 1.5
    if name.startswith("ddpm_learned") or name == "ddpm_dit_learned_range":
        case["doubleChannels"] = True


def main():
    records = []
    for index, case in enumerate(CASES):
        try:
            records.append(run(case, seed=1000 + index))
        except Exception as error:
            raise RuntimeError(f"case {case['name']}") from error
    document = {
        "generator": {
            "script": "tests/reference/make_scheduler_fixtures.py",
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": __import__("scipy").__version__,
            "python": sys.version.split()[0],
        },
        "cases": records,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as handle:
        json.dump(document, handle, separators=(",", ":"))
    print(f"wrote {os.path.normpath(OUT)}: {len(records)} cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
