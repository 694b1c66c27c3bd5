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


def test_contexts_refuse_what_they_cannot_do():
    vae = nodus.load(fixture("vae-tiny"))
    with pytest.raises(nodus.NodusError, match="has no run contexts"):
        vae.context()
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
