"""The schedulers of issue 15 part 5 through the Python API: every class from_config,
timesteps, init_noise_sigma, scale_model_input and step against diffusers' golden
runs (Tests/Fixtures/schedulers.json, tests/reference/make_scheduler_fixtures.py),
a CFG run of the tiny UNet per scheduler through nodus.sample (< 1e-3 at every
step; tests/reference/make_scheduler_unet_fixtures.py), and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nodus
from references import assert_close, fixture_path, load_ref, rel_err

NEW_CLASSES = [
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "PNDMScheduler",
    "UniPCMultistepScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "LCMScheduler",
]
FLOAT_TIMESTEPS = {"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
                   "LMSDiscreteScheduler"}
STOCHASTIC = {"EulerAncestralDiscreteScheduler", "LCMScheduler"}
SAMPLE_BOUND = 1e-3
STEP_BOUND = 1e-5
# UniPC's last steps with predict_x0 = False subtract two large terms, which magnifies float32 rounding.
UNIPC_STEP_BOUND = 3e-5


@pytest.fixture(scope="module")
def unet():
    return nodus.load(str(fixture_path("unet-tiny")))


@pytest.fixture(scope="module")
def golden_cases():
    with open(fixture_path("schedulers.json")) as handle:
        document = json.load(handle)
    return [case for case in document["cases"] if case["config"]["_class_name"] in NEW_CLASSES]


# ----------------------------------------------------------------- from_config, every class


@pytest.mark.parametrize("class_name", NEW_CLASSES)
def test_every_class_from_config(class_name):
    with nodus.Scheduler.from_config({"_class_name": class_name}) as scheduler:
        assert scheduler.class_name == class_name
        steps = 4
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
        assert timesteps.dtype == (np.float32 if class_name in FLOAT_TIMESTEPS else np.int64)
        expected = {"HeunDiscreteScheduler": 2 * steps - 1, "PNDMScheduler": steps + 9}.get(class_name, steps)
        assert len(timesteps) == expected
        assert scheduler.init_noise_sigma >= 1.0
        assert scheduler.order == (2 if class_name == "HeunDiscreteScheduler" else 1)
        x = nodus.randn((1, 2, 3, 3), seed=1) * scheduler.init_noise_sigma
        for index, t in enumerate(timesteps):
            scaled = scheduler.scale_model_input(x, t)
            assert scaled.shape == x.shape and scaled.dtype == np.float32
            if class_name in FLOAT_TIMESTEPS:
                assert np.max(np.abs(scaled)) < np.max(np.abs(x))
            else:
                np.testing.assert_array_equal(scaled, x)
            noise = nodus.randn(x.shape, seed=100 + index)
            x = scheduler.step(nodus.randn(x.shape, seed=200 + index) * 0.1, t, x, noise=noise)
            assert np.all(np.isfinite(x))


def test_kind_names_round_trip():
    from nodus import _lib
    import ctypes

    value = ctypes.c_int32()
    for offset, class_name in enumerate(NEW_CLASSES):
        kind = 3 + offset
        assert _lib.lib.nodus_scheduler_kind_name(kind) == class_name.encode()
        assert _lib.lib.nodus_scheduler_kind_from_name(class_name.encode(), ctypes.byref(value)) == 0
        assert value.value == kind
    # Appended after them: the flow-matching Heun (its parity test is in test_volume.py).
    assert _lib.lib.nodus_scheduler_kind_name(11) == b"FlowMatchHeunDiscreteScheduler"
    assert _lib.lib.nodus_scheduler_kind_name(12) is None


# ----------------------------------------------------------------- against diffusers' golden runs


def test_golden_runs_through_the_python_api(golden_cases):
    """Each case: timesteps, init_noise_sigma, and per step scale_model_input and step on the
    reference input (the previous reference prev_sample)."""
    assert len(golden_cases) >= 60
    worst = {}
    for case in golden_cases:
        name, class_name = case["name"], case["config"]["_class_name"]
        shape = tuple(case["shape"])
        scheduler = nodus.Scheduler.from_config(case["config"])
        if "stepArguments" in case:  # s_churn is a step argument in diffusers, not offered through the C ABI
            continue
        if "mu" in case:  # mu is not offered through the C ABI
            continue
        scheduler.set_timesteps(case["steps"])
        timesteps = scheduler.timesteps
        reference = np.asarray(case["timesteps"])
        assert len(timesteps) == len(reference), name
        np.testing.assert_allclose(timesteps.astype(np.float64), reference, rtol=1e-6, atol=1e-6, err_msg=name)
        assert scheduler.init_noise_sigma == pytest.approx(case["initNoiseSigma"], rel=1e-6), name
        sample = np.asarray(case["sample"], dtype=np.float32).reshape(shape)
        for index, record in enumerate(case["records"]):
            t = timesteps[index]
            scaled = scheduler.scale_model_input(sample, t)
            expected_scaled = np.asarray(record.get("scaledSample", sample.reshape(-1)), dtype=np.float32)
            assert rel_err(scaled.reshape(-1), expected_scaled) < 1e-6, f"{name} step {index}: scale_model_input"
            output = np.asarray(record["modelOutput"], dtype=np.float32).reshape(shape)
            noise = np.asarray(record["noise"], dtype=np.float32).reshape(shape) if "noise" in record else None
            expected = np.asarray(record["prevSample"], dtype=np.float32).reshape(shape)
            ours = scheduler.step(output, t, sample, noise=noise)
            error = rel_err(ours, expected)
            bound = UNIPC_STEP_BOUND if class_name == "UniPCMultistepScheduler" else STEP_BOUND
            assert error < bound, f"{name} step {index} (t = {t}): relative error {error:.3e}"
            worst[class_name] = max(worst.get(class_name, 0.0), error)
            sample = expected
        scheduler.close()
    assert set(worst) == set(NEW_CLASSES)
    print("worst step error by class:", {key: f"{value:.2e}" for key, value in sorted(worst.items())})


# ----------------------------------------------------------------- CFG runs of the tiny UNet

UNET_RUNS = ["euler", "euler-ancestral", "dpm-2m-karras", "pndm", "pndm-prk", "unipc", "heun", "lms", "lcm",
             "euler-img2img", "heun-img2img", "dpm-2m-img2img"]


def unet_reference(name):
    from safetensors import safe_open

    path = str(fixture_path(f"unet-tiny-sample-{name}.safetensors"))
    with safe_open(path, "np") as file:
        metadata = file.metadata()
    return load_ref(f"unet-tiny-sample-{name}.safetensors"), metadata


@pytest.mark.parametrize("name", UNET_RUNS)
def test_unet_cfg_run_matches_diffusers_at_every_step(name, unet):
    ref, metadata = unet_reference(name)
    config = json.loads(metadata["scheduler_config"])
    steps = int(metadata["steps"])
    with nodus.Scheduler.from_config(config) as scheduler:
        scheduler.set_timesteps(steps)
        running = scheduler.timesteps[len(scheduler.timesteps) - len(ref["timesteps"]):]
        np.testing.assert_allclose(running.astype(np.float64), ref["timesteps"].astype(np.float64), rtol=1e-6)
        assert scheduler.init_noise_sigma == pytest.approx(float(metadata["init_noise_sigma"]), rel=1e-6)
        uncond, cond = ref["encoder_hidden_states"][:1], ref["encoder_hidden_states"][1:]
        final, trajectory = nodus.sample(unet, scheduler, steps=steps, guidance_scale=float(metadata["guidance_scale"]),
                                         init_noise=ref["init_noise"], encoder_hidden_states=(uncond, cond),
                                         step_noise=ref.get("step_noise"), return_trajectory=True,
                                         image_latents=ref.get("image_latents"), strength=float(metadata["strength"]))
    assert trajectory.shape == ref["trajectory"].shape
    errors = [rel_err(trajectory[index], ref["trajectory"][index]) for index in range(len(trajectory))]
    print(f"{name}: {len(errors)} timesteps, worst relative error {max(errors):.2e}")
    for index, error in enumerate(errors):
        assert error < SAMPLE_BOUND, f"{name} step {index}: relative max error {error:.3e}, bound {SAMPLE_BOUND:.0e}"
    assert_close(final, ref["final"], SAMPLE_BOUND, f"{name} final")


def test_ancestral_sample_needs_step_noise(unet):
    ref, metadata = unet_reference("euler-ancestral")
    uncond, cond = ref["encoder_hidden_states"][:1], ref["encoder_hidden_states"][1:]
    with nodus.Scheduler.from_config(json.loads(metadata["scheduler_config"])) as scheduler:
        with pytest.raises(nodus.InvalidArgumentError, match="needs noise"):
            nodus.sample(unet, scheduler, steps=3, guidance_scale=7.5, init_noise=ref["init_noise"],
                         encoder_hidden_states=(uncond, cond))
        with pytest.raises(ValueError, match="step_noise must have shape"):
            nodus.sample(unet, scheduler, steps=3, guidance_scale=7.5, init_noise=ref["init_noise"],
                         encoder_hidden_states=(uncond, cond), step_noise=np.zeros((2, 1, 4, 8, 8), np.float32))


# ----------------------------------------------------------------- errors


def test_unknown_class_lists_the_supported_ones():
    with pytest.raises(nodus.UnsupportedError) as caught:
        nodus.Scheduler.from_config({"_class_name": "KDPM2DiscreteScheduler"})
    message = str(caught.value)
    assert "KDPM2DiscreteScheduler" in message
    for class_name in NEW_CLASSES + ["DDIMScheduler"]:
        assert class_name in message


@pytest.mark.parametrize("config, error, text", [
    ({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 5}, nodus.UnsupportedError, "solver_order"),
    ({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "ddim"}, nodus.UnsupportedError, "algorithm_type"),
    ({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}, nodus.UnsupportedError,
     "final_sigmas_type"),
    ({"_class_name": "DPMSolverMultistepScheduler", "use_beta_sigmas": True}, nodus.UnsupportedError, "use_beta_sigmas"),
    ({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": True, "use_exponential_sigmas": True},
     nodus.UnsupportedError, "only one of"),
    ({"_class_name": "EulerDiscreteScheduler", "interpolation_type": "cubic"}, nodus.UnsupportedError,
     "interpolation_type"),
    ({"_class_name": "EulerAncestralDiscreteScheduler", "prediction_type": "sample"}, nodus.UnsupportedError,
     "prediction_type"),
    ({"_class_name": "PNDMScheduler", "prediction_type": "sample"}, nodus.UnsupportedError, "prediction_type"),
    ({"_class_name": "UniPCMultistepScheduler", "solver_type": "bh3"}, nodus.UnsupportedError, "solver_type"),
    ({"_class_name": "UniPCMultistepScheduler", "shift_terminal": 0.1}, nodus.UnsupportedError, "shift_terminal"),
    ({"_class_name": "HeunDiscreteScheduler", "beta_schedule": "sigmoid"}, nodus.UnsupportedError, "beta_schedule"),
    ({"_class_name": "LMSDiscreteScheduler", "timestep_spacing": "karras"}, nodus.UnsupportedError, "timestep_spacing"),
    ({"_class_name": "LCMScheduler", "original_inference_steps": "50"}, nodus.FormatError, "original_inference_steps"),
])
def test_bad_field_values_are_refused_by_name(config, error, text):
    with pytest.raises(error, match=text):
        nodus.Scheduler.from_config(config)


def test_step_errors():
    x = nodus.randn((1, 2, 2, 2), seed=3)
    with nodus.Scheduler.from_config({"_class_name": "EulerAncestralDiscreteScheduler"}) as ancestral:
        ancestral.set_timesteps(5)
        t = ancestral.timesteps[0]
        with pytest.raises(nodus.InvalidArgumentError, match="needs noise"):
            ancestral.step(x, t, x)
        with pytest.raises(nodus.InvalidArgumentError, match="not in the current schedule"):
            ancestral.scale_model_input(x, 12.5)
        with pytest.raises(ValueError, match="one number"):
            ancestral.scale_model_input(x, [1.0, 2.0])
    with nodus.Scheduler.from_config({"_class_name": "LCMScheduler"}) as lcm:
        with pytest.raises(nodus.InvalidArgumentError, match="original_inference_steps"):
            lcm.set_timesteps(51)
        lcm.set_timesteps(2)
        with pytest.raises(nodus.InvalidArgumentError, match="needs noise"):
            lcm.step(x, lcm.timesteps[0], x)
    with nodus.Scheduler.from_config({"_class_name": "PNDMScheduler"}) as pndm:
        with pytest.raises(nodus.InvalidArgumentError, match="at least 4"):
            pndm.set_timesteps(3)
    with nodus.Scheduler.from_config({"_class_name": "DPMSolverMultistepScheduler"}) as dpm:
        with pytest.raises(nodus.InvalidArgumentError, match="setTimesteps"):
            dpm.step(x, 999, x)
