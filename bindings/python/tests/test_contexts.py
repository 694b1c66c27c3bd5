"""Run contexts (issue 18): one model's weights run from several threads at once, each context with
its own arenas, threads and adapter strengths; model-level adapter changes wait for running calls."""

import os
import threading

import numpy as np
import pytest

import nodus
from conftest import FIXTURES


def fixture(name):
    return os.path.join(FIXTURES, name)


def dit_inputs(count):
    rng = np.random.default_rng(7)
    return [dict(sample=rng.standard_normal((2, 4, 8, 8), dtype=np.float32), timestep=np.array([999, 37 * k]),
                 class_labels=np.array([k % 10, 10])) for k in range(count)]


def run_threads(targets):
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("source", ["dit-tiny", "unet-tiny", "onnx/dit-tiny-dynamo18.onnx"])
def test_contexts_in_parallel_threads_are_bit_identical_to_one_thread(source):
    model = nodus.load(fixture(source), threads=1)
    if source == "unet-tiny":
        rng = np.random.default_rng(3)
        inputs = [dict(sample=rng.standard_normal((2, 4, 8, 8), dtype=np.float32), timestep=np.array([500, 20 * k]),
                       encoder_hidden_states=rng.standard_normal((2, 7, 32), dtype=np.float32)) for k in range(6)]
    else:
        inputs = dit_inputs(6)
    expected = [model.forward(**x) for x in inputs]
    contexts = [model.context(threads=1) for _ in range(3)]
    results = {}

    def work(index, context):
        def run():
            results[index] = [[context.forward(**x) for x in inputs] for _ in range(2)]
        return run

    run_threads([work(index, context) for index, context in enumerate(contexts)])
    for index in range(len(contexts)):
        for round_outputs in results[index]:
            for k, output in enumerate(round_outputs):
                assert np.array_equal(output, expected[k]), f"context {index}, input {k} differs from one thread"


def test_each_context_has_its_own_adapter_strengths():
    model = nodus.load(fixture("dit-tiny"))
    x = dit_inputs(1)[0]
    base = model.forward(**x)
    model.load_lora_weights(fixture("dit-tiny-lora-A.safetensors"), adapter_name="A")
    with_a = model.forward(**x)  # loading makes A active in the default context
    plain = model.context()
    plain.set_adapters(["A"], [0.0])
    strong = model.context()  # starts with the default context's adapters: A at 1
    assert np.array_equal(strong.forward(**x), with_a)
    strong.set_adapters(["A"], [2.0])
    assert np.array_equal(plain.forward(**x), base)
    assert not np.allclose(strong.forward(**x), with_a)
    assert np.array_equal(model.forward(**x), with_a), "a context's strengths leaked into the model's"
    with pytest.raises(nodus.NodusError, match="no adapter named 'B'"):
        plain.set_adapters(["B"], [1.0])


def test_fusing_while_contexts_run_never_shows_a_half_fused_weight():
    model = nodus.load(fixture("dit-tiny"), threads=1)
    model.load_lora_weights(fixture("dit-tiny-lora-A.safetensors"), adapter_name="A")
    model.set_adapters(["A"], [1.0])
    inputs = dit_inputs(4)
    unfused = [model.forward(**x) for x in inputs]
    contexts = [model.context(threads=1) for _ in range(2)]
    for context in contexts:
        context.set_adapters(["A"], [0.0])  # with A fused into the weights, the side path must stay off
    model.set_adapters(["A"], [1.0])
    model.fuse_lora()
    fused = [contexts[0].forward(**x) for x in inputs]
    model.unfuse_lora()
    base = [contexts[0].forward(**x) for x in inputs]
    failures = []

    def forwards(context):
        def run():
            for _ in range(5):
                for k, x in enumerate(inputs):
                    y = context.forward(**x)
                    if not (np.array_equal(y, fused[k]) or np.array_equal(y, base[k])):
                        failures.append(k)
        return run

    def fuse_and_unfuse():
        for _ in range(5):
            model.fuse_lora()
            model.unfuse_lora()

    run_threads([forwards(context) for context in contexts] + [fuse_and_unfuse])
    assert not failures, f"{len(failures)} outputs were neither the fused nor the unfused model's"
    assert np.max(np.abs(fused[0] - unfused[0])) < 1e-5


def test_sampling_in_a_context_equals_sampling_in_the_model():
    model = nodus.load(fixture("dit-tiny"), threads=1)
    context = model.context(threads=2)
    assert context.threads == 2
    scheduler = nodus.Scheduler.from_config(fixture("scheduler-ddim"))
    noise = nodus.randn((1, 4, 8, 8), 0)
    expected = nodus.sample(model, scheduler, steps=5, init_noise=noise, class_labels=[3])
    assert np.allclose(nodus.sample(context, scheduler, steps=5, init_noise=noise, class_labels=[3]), expected,
                       rtol=0, atol=1e-6)


def test_vae_contexts_in_parallel_threads_equal_the_model_bit_for_bit():
    vae = nodus.load(fixture("vae-tiny"), threads=1)
    rng = np.random.default_rng(11)
    latents = [rng.standard_normal((1, 4, 4 + 2 * (k % 2), 4), dtype=np.float32) for k in range(4)]
    images = [rng.uniform(-1, 1, (1, 3, 16, 8 + 8 * (k % 2))).astype(np.float32) for k in range(4)]
    noises = [nodus.randn((1, 4, 8, 4 + 4 * (k % 2)), k) / 8 for k in range(4)]
    expected = [(vae.decode(z), vae.encode(x), vae.encode_latent(x, noise=n)) for z, x, n in zip(latents, images, noises)]
    contexts = [vae.context(threads=1) for _ in range(3)]
    results = {}

    def work(index):
        for round in range(3):
            k = (index + round) % 4
            results[index, round] = (k, contexts[index].decode(latents[k]), contexts[index].encode(images[k]),
                                     contexts[index].encode_latent(images[k], noise=noises[k]))

    run_threads([lambda index=index: work(index) for index in range(3)])
    for k, image, (mean, logvar), latent in results.values():
        want_image, (want_mean, want_logvar), want_latent = expected[k]
        assert np.array_equal(image, want_image) and np.array_equal(latent, want_latent)
        assert np.array_equal(mean, want_mean) and np.array_equal(logvar, want_logvar)
    # Tiling is the model's setting: a context follows it from its next call.
    vae.enable_tiling(8)
    big = rng.standard_normal((1, 4, 6, 6), dtype=np.float32)
    assert np.array_equal(contexts[0].decode(big), vae.decode(big))
    with pytest.raises(nodus.NodusError, match="cannot decode latents"):
        nodus.load(fixture("dit-tiny")).context().decode(latents[0])


def test_a_memory_budget_is_honoured_before_allocating():
    model = nodus.load(fixture("dit-tiny"), threads=1)
    x = dit_inputs(1)[0]
    expected = model.forward(**x)
    tight = model.context(memory_budget=4096)
    with pytest.raises(nodus.OutOfMemoryError, match="memory budget") as caught:
        tight.forward(**x)
    assert "'sample' [2, 4, 8, 8]" in str(caught.value)
    assert np.array_equal(model.forward(**x), expected)  # nothing else changed
    # A budget for one plan: a second input shape drops the first plan, and both stay exact.
    one = model.context(threads=1, memory_budget=4 << 20)
    wide = dict(sample=np.tile(x["sample"], (1, 1, 2, 2)), timestep=x["timestep"], class_labels=x["class_labels"])
    for _ in range(2):
        assert np.array_equal(one.forward(**x), expected)
        assert np.array_equal(one.forward(**wide), model.forward(**wide))
    vae = nodus.load(fixture("vae-tiny"))
    with pytest.raises(nodus.OutOfMemoryError, match="memory budget"):
        vae.context(memory_budget=1024).decode(np.zeros((1, 4, 4, 4), np.float32))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            model.context(memory_budget=bad)


def test_contexts_refuse_what_they_cannot_do():
    model = nodus.load(fixture("dit-tiny"))
    other = nodus.load(fixture("dit-tiny")).context()
    scheduler = nodus.Scheduler.from_config(fixture("scheduler-ddim"))
    import ctypes
    from nodus import _lib
    params = _lib.SampleParams()
    _lib.lib.nodus_sample_params_init(ctypes.byref(params))
    noise = nodus.randn((1, 4, 8, 8), 0)
    source = _lib.Tensor()
    source.name, source.dtype, source.ndim = b"init_noise", 0, 4
    for axis, size in enumerate(noise.shape):
        source.shape[axis] = size
    source.data = noise.ctypes.data_as(ctypes.c_void_p)
    source.size_bytes = noise.nbytes
    params.init_noise = ctypes.pointer(source)
    params.context = other.handle
    assert _lib.lib.nodus_sample(model.handle, scheduler.handle, ctypes.byref(params), ctypes.byref(_lib.Tensor())) != 0
    assert "context of another model" in _lib.lib.nodus_last_error().decode()
    with pytest.raises(ValueError):
        model.context(threads=-1)
    # The context keeps its model: freeing the model handle first is fine.
    context = model.context()
    x = dit_inputs(1)[0]
    expected = model.forward(**x)
    model.close()
    assert np.array_equal(context.forward(**x), expected)
