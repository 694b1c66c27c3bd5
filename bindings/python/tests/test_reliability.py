"""Issue 18's defect classes, each as a clean error that harms nothing: handles of the wrong kind,
non-finite LoRA scales, configs that cannot be right, unbounded sizes, re-entrant callbacks."""

import ctypes
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import nodus
from nodus import _lib

from conftest import FIXTURES

lib = _lib.lib
INVALID_ARGUMENT = 1


def copy_folder(tmp_path, name):
    target = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), target)
    return target


def edit_json(path, **changes):
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_a_handle_of_another_kind_is_an_error_not_a_crash():
    scheduler = nodus.Scheduler.from_config(os.path.join(FIXTURES, "scheduler-ddim"))
    model = nodus.load(os.path.join(FIXTURES, "dit-tiny"))
    assert lib.nodus_model_get_kind(scheduler.handle) == -1
    assert "is not a nodus_model (it is a nodus_scheduler)" in _lib.last_error()
    assert lib.nodus_model_config_json(scheduler.handle) is None
    assert lib.nodus_scheduler_set_timesteps(model.handle, 10) == INVALID_ARGUMENT
    assert "`scheduler` is not a nodus_scheduler (it is a nodus_model)" in _lib.last_error()
    lib.nodus_model_free(scheduler.handle)  # refused: the scheduler stays alive and usable
    assert "is not a nodus_model" in _lib.last_error()
    scheduler.set_timesteps(10)
    assert len(scheduler.timesteps) == 10
    assert model.kind == "dit"


def test_a_lora_alpha_beyond_float32_is_refused_and_harms_nothing(tmp_path):
    source = os.path.join(FIXTURES, "dit-tiny-lora-A.safetensors")
    tensors = load_file(source)
    from safetensors import safe_open
    with safe_open(source, "np") as handle:
        metadata = handle.metadata() or {}
    config = {"transformer": {"r": 4, "lora_alpha": 1e308, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}}
    metadata["lora_adapter_metadata"] = json.dumps(config)
    bad = tmp_path / "alpha.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    model = nodus.load(os.path.join(FIXTURES, "dit-tiny"))
    inputs = dict(sample=np.ones((2, 4, 8, 8), np.float32), timestep=np.array([10, 10]), class_labels=np.array([1, 10]))
    before = model.forward(**inputs)
    with pytest.raises(nodus.NodusError, match="not finite in float32"):
        model.load_lora_weights(str(bad), adapter_name="A")
    np.testing.assert_array_equal(model.forward(**inputs), before)


@pytest.mark.parametrize("folder, config, changes, message", [
    ("dit-tiny", "config.json", {"norm_eps": -1e-5}, "'norm_eps'"),
    ("unet-tiny", "config.json", {"norm_eps": 0}, "'norm_eps'"),
    ("vae-tiny", "config.json", {"scaling_factor": 0}, "'scaling_factor'"),
    ("clip-tiny", "config.json", {"layer_norm_eps": -1}, "layer_norm_eps"),
])
def test_model_configs_that_cannot_be_right(tmp_path, folder, config, changes, message):
    target = copy_folder(tmp_path, folder)
    edit_json(target / config, **changes)
    with pytest.raises(nodus.NodusError, match=message):
        nodus.load(str(target))


@pytest.mark.parametrize("changes, message", [
    ({"_class_name": "DDIMScheduler", "beta_end": 1.5}, "betas must lie in"),
    ({"_class_name": "DDPMScheduler", "beta_start": -0.1}, "betas must lie in"),
    ({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": -1.0}, "'shift'"),
    ({"_class_name": "DDIMScheduler", "num_train_timesteps": 2**31}, "out of range"),
    ({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 2**31}, "out of range"),
])
def test_scheduler_configs_that_cannot_be_right(changes, message):
    with pytest.raises(nodus.NodusError, match=message):
        nodus.Scheduler.from_config(changes)


def test_sizes_are_bounded():
    scheduler = nodus.Scheduler.from_config({"_class_name": "FlowMatchEulerDiscreteScheduler"})
    with pytest.raises(nodus.NodusError, match="1...100000"):
        scheduler.set_timesteps(2**31 - 1)
    with pytest.raises(nodus.NodusError, match="threads must be in"):
        nodus.load(os.path.join(FIXTURES, "dit-tiny"), threads=100_000)


def test_a_callback_may_use_the_scheduler_being_sampled():
    """Calling set_timesteps on the scheduler from the progress callback used to abort the host
    (Swift's exclusivity check); the sampler now steps a copy."""
    model = nodus.load(os.path.join(FIXTURES, "dit-tiny"))
    scheduler = nodus.Scheduler.from_config(os.path.join(FIXTURES, "scheduler-ddim"))
    seen = []

    def callback(done, total):
        scheduler.set_timesteps(3)
        seen.append(len(scheduler.timesteps))

    noise = nodus.randn((1, 4, 8, 8), seed=0)
    plain = nodus.sample(model, scheduler, steps=5, guidance_scale=4.0, init_noise=noise, class_labels=[3])
    again = nodus.sample(model, scheduler, steps=5, guidance_scale=4.0, init_noise=noise, class_labels=[3],
                         callback=callback)
    assert seen == [3] * 5
    np.testing.assert_array_equal(plain, again)


def test_weights_read_into_memory_survive_the_file_being_truncated(tmp_path):
    """mmap=False (params.read_files = 1) reads the weights into memory: truncating the file while the
    model lives cannot raise SIGBUS, and the model gives the same results as a mapped one."""
    folder = copy_folder(tmp_path, "dit-tiny")
    inputs = dict(sample=np.ones((2, 4, 8, 8), np.float32), timestep=np.array([10, 10]), class_labels=np.array([1, 10]))
    expected = nodus.load(os.path.join(FIXTURES, "dit-tiny")).forward(**inputs)
    model = nodus.load(str(folder), mmap=False)
    lora = tmp_path / "lora.safetensors"
    shutil.copy(os.path.join(FIXTURES, "dit-tiny-lora-A.safetensors"), lora)
    model.load_lora_weights(str(lora), adapter_name="A")
    model.disable_lora()
    for path in (folder / "diffusion_pytorch_model.safetensors", lora):
        with open(path, "r+b") as handle:
            handle.truncate(16)
    np.testing.assert_array_equal(model.forward(**inputs), expected)
    model.enable_lora()
    assert np.abs(model.forward(**inputs) - expected).max() > 0


def test_one_handle_used_from_several_threads_gives_every_caller_its_own_result():
    """Calls on one handle take turns (each holds the handle for its whole call): four threads
    forwarding different inputs, and one changing the adapters between, all get exact results."""
    import threading

    model = nodus.load(os.path.join(FIXTURES, "dit-tiny"), threads=2)
    model.load_lora_weights(os.path.join(FIXTURES, "dit-tiny-lora-A.safetensors"), adapter_name="A")
    rng = np.random.default_rng(0)
    inputs = [dict(sample=rng.standard_normal((2, 4, 8, 8), dtype=np.float32), timestep=np.array([999, 10 * k]),
                   class_labels=np.array([k % 10, 10])) for k in range(8)]
    expected = {}
    for weight in (0.0, 1.0):
        model.set_adapters(["A"], [weight])
        expected[weight] = [model.forward(**x) for x in inputs]
    model.set_adapters(["A"], [1.0])
    failures = []

    def forward_all():
        for _ in range(3):
            for k, x in enumerate(inputs):
                y = model.forward(**x)
                # The adapter switcher below may have run before this call: either state, never a mix.
                if not any(np.array_equal(y, expected[weight][k]) for weight in expected):
                    failures.append(k)

    def switch_adapters():
        for round in range(20):
            model.set_adapters(["A"], [float(round % 2)])
        model.set_adapters(["A"], [1.0])

    threads = [threading.Thread(target=forward_all) for _ in range(4)] + [threading.Thread(target=switch_adapters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, f"{len(failures)} of {4 * 3 * len(inputs)} outputs were torn or wrong"


def test_models_with_different_thread_counts_run_side_by_side():
    """Each model's `threads` holds for its own calls only (no process-wide setting between them)."""
    import threading

    one = nodus.load(os.path.join(FIXTURES, "unet-tiny"), threads=1)
    two = nodus.load(os.path.join(FIXTURES, "unet-tiny"), threads=2)
    rng = np.random.default_rng(1)
    x = dict(sample=rng.standard_normal((2, 4, 8, 8), dtype=np.float32), timestep=np.array([500, 500]),
             encoder_hidden_states=rng.standard_normal((2, 7, 32), dtype=np.float32))
    reference = one.forward(**x)
    results = []
    threads = [threading.Thread(target=lambda model=model: results.append(model.forward(**x)))
               for model in (one, two) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    for result in results:
        np.testing.assert_allclose(result, reference, rtol=0, atol=1e-5)
