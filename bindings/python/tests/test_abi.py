"""The C ABI through ctypes: every function of include/nodus.h is reachable and
called, and bad input comes back as a status (never a crash)."""

import ctypes
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import HEADER, fixture_path

import nodus
from nodus import _lib

lib = _lib.lib

OK, INVALID_ARGUMENT, IO, FORMAT, UNSUPPORTED, SHAPE, CANCELLED = 0, 1, 2, 3, 4, 5, 6


def header_functions():
    """Names of the functions the header declares (`nodus_xxx(` after a return type)."""
    with open(HEADER) as handle:
        text = re.sub(r"/\*.*?\*/", "", handle.read(), flags=re.S)
    return sorted(set(re.findall(r"\b(nodus_[a-z0-9_]+)\s*\(", text)) - {"nodus_progress_callback"})


class Recorder:
    """Wraps a ctypes function and records that it was called."""

    calls = set()

    def __init__(self, name, function):
        self.name = name
        self.function = function

    def __call__(self, *arguments):
        Recorder.calls.add(self.name)
        return self.function(*arguments)


# Record every call made through the binding's library object (the binding calls
# `_lib.lib.nodus_xxx`, so it goes through these wrappers too).
for _name in header_functions():
    if hasattr(lib, _name) and not isinstance(getattr(lib, _name), Recorder):
        setattr(lib, _name, Recorder(_name, getattr(lib, _name)))


def last_error():
    return lib.nodus_last_error().decode()


def tensor(array=None, name=None, dtype=None, shape=None, data=None, size_bytes=None):
    """A raw nodus_tensor (with the array kept alive on the struct)."""
    value = _lib.Tensor()
    if array is not None:
        array = np.ascontiguousarray(array)
        value._array = array
        value.dtype = {np.dtype(np.float32): 0, np.dtype(np.int64): 3, np.dtype(np.float64): 7}[array.dtype]
        shape = array.shape if shape is None else shape
        value.data = array.ctypes.data
        value.size_bytes = array.nbytes
    if name is not None:
        value._name = name.encode()
        value.name = value._name
    if dtype is not None:
        value.dtype = dtype
    if shape is not None:
        value.ndim = len(shape)
        for index, size in enumerate(shape[: _lib.MAX_DIMS]):
            value.shape[index] = size
    if data is not None:
        value.data = data
    if size_bytes is not None:
        value.size_bytes = size_bytes
    return value


def expect(status, code, *words):
    """Asserts a failed status and that the last error mentions every word."""
    assert status == code, f"expected status {code} ({lib.nodus_status_name(code).decode()}), got {status}: {last_error()}"
    message = last_error()
    assert message, "a failed call must leave a message"
    for word in words:
        assert word in message, f"message {message!r} should mention {word!r}"


# ---------------------------------------------------------------- coverage


def test_every_header_function_is_declared_and_exported():
    names = header_functions()
    assert len(names) >= 29, names
    missing = [name for name in names if name not in _lib.PROTOTYPES]
    assert not missing, f"functions of nodus.h without a ctypes prototype in nodus/_lib.py: {missing}"
    for name in names:
        assert isinstance(getattr(lib, name), Recorder), f"{name} is not reachable through ctypes"
    if shutil.which("nm"):
        output = subprocess.run(["nm", "-D", "--defined-only", _lib.path], capture_output=True, text=True).stdout
        exported = {line.split()[-1] for line in output.splitlines() if re.search(r"\snodus_", line)}
        assert exported == set(names), (
            f"exported but not in the header: {sorted(exported - set(names))}; "
            f"in the header but not exported: {sorted(set(names) - exported)}"
        )


def test_every_header_function_is_called():
    """Calls every function once (error paths where no model is needed) and checks the record."""
    Recorder.calls.clear()
    value = ctypes.c_int32()
    count = ctypes.c_size_t()
    handle = ctypes.c_void_p()
    assert lib.nodus_version_number() == 1000
    assert lib.nodus_version() == b"0.1.0"
    assert lib.nodus_status_name(SHAPE) == b"shape"
    assert lib.nodus_dtype_name(0) == b"float32"
    assert lib.nodus_dtype_from_name(b"int64", ctypes.byref(value)) == OK and value.value == 3
    assert 0 <= lib.nodus_cpu_level() <= lib.nodus_cpu_level_supported() <= 3
    assert lib.nodus_cpu_level_note() is not None
    assert lib.nodus_isa_level_name(1) == b"avx2"
    assert lib.nodus_isa_level_from_name(b"avx512", ctypes.byref(value)) == OK and value.value == 2
    assert lib.nodus_dtype_size(2) == 2
    assert lib.nodus_model_kind_name(0) == b"dit"
    assert lib.nodus_model_kind_from_name(b"vae", ctypes.byref(value)) == OK and value.value == 2
    params = _lib.ModelParams()
    lib.nodus_model_params_init(ctypes.byref(params))
    assert lib.nodus_model_load(b"/nonexistent/model", ctypes.byref(params), ctypes.byref(handle)) == IO
    assert handle.value is None
    assert lib.nodus_last_error() != b""
    lib.nodus_model_free(None)
    assert lib.nodus_model_get_kind(None) == -1
    assert lib.nodus_model_config_json(None) is None
    out = tensor()
    assert lib.nodus_model_forward(None, None, 0, ctypes.byref(out)) == INVALID_ARGUMENT
    assert lib.nodus_model_decode(None, None, ctypes.byref(out)) == INVALID_ARGUMENT
    assert lib.nodus_model_forward_all(None, None, 0, ctypes.byref(out), 1) == INVALID_ARGUMENT
    info = _lib.TensorInfo()
    assert lib.nodus_model_input_count(None) == 0 and lib.nodus_model_output_count(None) == 0
    assert lib.nodus_model_input_info(None, 0, ctypes.byref(info)) == INVALID_ARGUMENT
    assert lib.nodus_model_output_info(None, 0, ctypes.byref(info)) == INVALID_ARGUMENT
    profile_json = ctypes.c_char_p()
    assert lib.nodus_model_profile(None, None, 0, 1, ctypes.byref(profile_json)) == INVALID_ARGUMENT
    assert profile_json.value is None
    assert lib.nodus_model_load_lora(None, b"lora.safetensors", b"A") == INVALID_ARGUMENT
    assert lib.nodus_model_set_adapters(None, None, None, 0) == INVALID_ARGUMENT
    assert lib.nodus_model_fuse_lora(None, None, 0, 1.0) == INVALID_ARGUMENT
    assert lib.nodus_model_unfuse_lora(None) == INVALID_ARGUMENT
    assert lib.nodus_model_enable_lora(None, 1) == INVALID_ARGUMENT
    assert lib.nodus_model_delete_adapters(None, None, 0) == INVALID_ARGUMENT
    assert lib.nodus_model_lora_state_json(None) is None
    assert lib.nodus_model_lora_compare_json(None, b"A", b"B") is None
    assert lib.nodus_model_save(None, b"/tmp/nowhere") == INVALID_ARGUMENT
    assert lib.nodus_scheduler_kind_name(1) == b"DDPMScheduler"
    assert lib.nodus_scheduler_kind_from_name(b"DDIMScheduler", ctypes.byref(value)) == OK and value.value == 0
    assert lib.nodus_scheduler_load(b"/nonexistent/scheduler", ctypes.byref(handle)) == IO
    assert lib.nodus_scheduler_from_json(b"{not json", ctypes.byref(handle)) == FORMAT
    lib.nodus_scheduler_free(None)
    assert lib.nodus_scheduler_get_kind(None) == -1
    assert lib.nodus_scheduler_set_timesteps(None, 10) == INVALID_ARGUMENT
    assert lib.nodus_scheduler_timesteps(None, None, 0, ctypes.byref(count), ctypes.byref(value)) == INVALID_ARGUMENT
    assert math.isnan(lib.nodus_scheduler_init_noise_sigma(None))
    assert lib.nodus_scheduler_step(None, None, 0.0, None, None, None) == INVALID_ARGUMENT
    assert lib.nodus_scheduler_scale_model_input(None, None, 0.0, None) == INVALID_ARGUMENT
    assert lib.nodus_scheduler_draws_noise(None) == -1
    assert lib.nodus_scheduler_order(None) == -1
    assert lib.nodus_pipeline_load(None, None, ctypes.byref(handle)) == INVALID_ARGUMENT
    assert lib.nodus_pipeline_load(b"/nonexistent/pipeline", None, ctypes.byref(handle)) == IO and not handle.value
    lib.nodus_pipeline_free(None)
    assert lib.nodus_pipeline_model(None, b"unet", ctypes.byref(handle)) == INVALID_ARGUMENT
    assert lib.nodus_pipeline_tokenizer(None, ctypes.byref(handle)) == INVALID_ARGUMENT
    assert lib.nodus_pipeline_set_scheduler(None, None) == INVALID_ARGUMENT
    assert lib.nodus_pipeline_scheduler(None, ctypes.byref(handle)) == INVALID_ARGUMENT
    assert lib.nodus_pipeline_load_lora(None, b"x", b"A") == INVALID_ARGUMENT
    assert lib.nodus_pipeline_set_adapters(None, None, None, 0) == INVALID_ARGUMENT
    assert lib.nodus_pipeline_output_name(1) == b"latent" and lib.nodus_pipeline_output_name(7) is None
    assert lib.nodus_pipeline_output_from_name(b"image", ctypes.byref(value)) == OK and value.value == 0
    assert lib.nodus_pipeline_output_from_name(b"pil", ctypes.byref(value)) == INVALID_ARGUMENT
    generate_params = _lib.GenerateParams()
    lib.nodus_generate_params_init(ctypes.byref(generate_params))
    assert generate_params.steps == 50 and abs(generate_params.guidance_scale - 7.5) < 1e-6
    assert lib.nodus_pipeline_generate(None, ctypes.byref(generate_params), None) == INVALID_ARGUMENT
    sample_params = _lib.SampleParams()
    lib.nodus_sample_params_init(ctypes.byref(sample_params))
    assert lib.nodus_sample(None, None, ctypes.byref(sample_params), None) == INVALID_ARGUMENT
    context_params = _lib.ContextParams()
    lib.nodus_context_params_init(ctypes.byref(context_params))
    lib.nodus_context_params_init(None)
    assert lib.nodus_context_new(None, ctypes.byref(context_params), None) == INVALID_ARGUMENT
    lib.nodus_context_free(None)
    assert lib.nodus_context_forward_all(None, None, 0, None, 0) == INVALID_ARGUMENT
    assert lib.nodus_context_set_adapters(None, None, None, 0) == INVALID_ARGUMENT
    assert lib.nodus_context_threads(None) == -1
    assert lib.nodus_context_decode(None, None, ctypes.byref(out)) == INVALID_ARGUMENT
    assert lib.nodus_context_encode(None, None, ctypes.byref(out), ctypes.byref(tensor())) == INVALID_ARGUMENT
    assert lib.nodus_context_encode_latent(None, None, None, ctypes.byref(out)) == INVALID_ARGUMENT
    window_params = _lib.WindowParams()
    lib.nodus_window_params_init(ctypes.byref(window_params))
    assert lib.nodus_model_forward_windowed(None, None, ctypes.byref(window_params), None) == INVALID_ARGUMENT
    assert lib.nodus_scheduler_set_timesteps_sized(None, 10, 64) == INVALID_ARGUMENT
    assert lib.nodus_randn(0, None) == INVALID_ARGUMENT
    assert lib.nodus_model_encode(None, None, ctypes.byref(out), ctypes.byref(tensor())) == INVALID_ARGUMENT
    assert lib.nodus_model_encode_latent(None, None, None, ctypes.byref(out)) == INVALID_ARGUMENT
    assert lib.nodus_model_set_vae_tiling(None, 1, 0) == INVALID_ARGUMENT
    assert lib.nodus_batch_statistics(None, 1, ctypes.byref(out), ctypes.byref(tensor())) == INVALID_ARGUMENT
    prompt_params = _lib.PromptParams()
    lib.nodus_prompt_params_init(ctypes.byref(prompt_params))
    assert prompt_params.struct_size == ctypes.sizeof(_lib.PromptParams) and prompt_params.comma_backtrack == 20
    assert lib.nodus_tokenizer_load(b"/nonexistent/tokenizer", ctypes.byref(handle)) == IO
    assert handle.value is None
    lib.nodus_tokenizer_free(None)
    assert lib.nodus_tokenizer_encode(None, b"a", 1, 0, None, 0, ctypes.byref(count)) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_encode_prompt(None, b"a", 1, ctypes.byref(prompt_params), None, None, 0,
                                             ctypes.byref(count)) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_max_length(None) == -1
    assert lib.nodus_tokenizer_bos_id(None) == lib.nodus_tokenizer_eos_id(None) == lib.nodus_tokenizer_pad_id(None) == -1
    assert lib.nodus_tokenizer_vocab_size(None) == -1
    assert lib.nodus_tokenizer_token_to_id(None, b"a", ctypes.byref(ctypes.c_int64())) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_id_to_token(None, 0, None, 0, ctypes.byref(count)) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_decode(None, None, 0, 0, None, 0, ctypes.byref(count)) == INVALID_ARGUMENT
    missing = sorted(set(header_functions()) - Recorder.calls)
    assert not missing, f"not exercised: {missing}"


# ---------------------------------------------------------------- version, names, errors


def test_version_matches_package():
    assert nodus.__version__ == "0.1.0"
    assert nodus.version_number() == 1000
    assert lib.nodus_version().decode() == nodus.__version__


def test_status_names():
    names = ["ok", "invalid_argument", "io", "format", "unsupported", "shape", "cancelled", "out_of_memory", "internal"]
    for code, name in enumerate(names):
        assert lib.nodus_status_name(code).decode() == name
    assert lib.nodus_status_name(-1) == b"unknown"
    assert lib.nodus_status_name(9) == b"unknown"


def test_enum_names_round_trip():
    value = ctypes.c_int32()
    for code, name in enumerate(["float32", "float16", "bfloat16", "int64", "int32", "uint8", "bool", "float64"]):
        assert lib.nodus_dtype_name(code).decode() == name
        assert lib.nodus_dtype_from_name(name.encode(), ctypes.byref(value)) == OK and value.value == code
    assert [lib.nodus_dtype_size(code) for code in range(8)] == [4, 2, 2, 8, 4, 1, 1, 8]
    assert lib.nodus_dtype_name(8) is None and lib.nodus_dtype_name(-1) is None
    assert lib.nodus_dtype_size(99) == 0
    for code, name in enumerate(["dit", "unet", "vae", "clip_text", "onnx", "dit3d"]):
        assert lib.nodus_model_kind_name(code).decode() == name
        assert lib.nodus_model_kind_from_name(name.encode(), ctypes.byref(value)) == OK and value.value == code
    assert lib.nodus_model_kind_name(6) is None
    for code, name in enumerate(["baseline", "avx2", "avx512", "avx512_bf16"]):
        assert lib.nodus_isa_level_name(code).decode() == name
        assert lib.nodus_isa_level_from_name(name.encode(), ctypes.byref(value)) == OK and value.value == code
    assert lib.nodus_isa_level_name(4) is None and lib.nodus_isa_level_name(-1) is None
    expect(lib.nodus_isa_level_from_name(b"sse2", ctypes.byref(value)), INVALID_ARGUMENT, "sse2", "avx2")
    for code, name in enumerate(["DDIMScheduler", "DDPMScheduler", "FlowMatchEulerDiscreteScheduler"]):
        assert lib.nodus_scheduler_kind_name(code).decode() == name
        assert lib.nodus_scheduler_kind_from_name(name.encode(), ctypes.byref(value)) == OK and value.value == code
    assert lib.nodus_scheduler_kind_name(-1) is None


def test_unknown_names_fail():
    value = ctypes.c_int32(42)
    expect(lib.nodus_dtype_from_name(b"float128", ctypes.byref(value)), INVALID_ARGUMENT, "float128")
    expect(lib.nodus_model_kind_from_name(b"gan", ctypes.byref(value)), INVALID_ARGUMENT, "gan")
    expect(lib.nodus_scheduler_kind_from_name(b"NopeScheduler", ctypes.byref(value)), INVALID_ARGUMENT, "NopeScheduler")
    assert value.value == 42, "a failed call must not write its out-parameter"


def test_null_pointers_in_name_functions():
    value = ctypes.c_int32()
    expect(lib.nodus_dtype_from_name(None, ctypes.byref(value)), INVALID_ARGUMENT, "name")
    expect(lib.nodus_dtype_from_name(b"float32", None), INVALID_ARGUMENT, "out_dtype")
    expect(lib.nodus_model_kind_from_name(None, ctypes.byref(value)), INVALID_ARGUMENT, "name")
    expect(lib.nodus_model_kind_from_name(b"dit", None), INVALID_ARGUMENT, "out_kind")
    expect(lib.nodus_scheduler_kind_from_name(None, ctypes.byref(value)), INVALID_ARGUMENT, "name")
    expect(lib.nodus_scheduler_kind_from_name(b"DDIMScheduler", None), INVALID_ARGUMENT, "out_kind")


def test_last_error_is_per_thread_and_kept_after_success():
    import threading

    value = ctypes.c_int32()
    expect(lib.nodus_dtype_from_name(b"first-failure", ctypes.byref(value)), INVALID_ARGUMENT, "first-failure")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(lib.nodus_last_error()))
    thread.start()
    thread.join()
    assert seen == [b""], "another thread must not see this thread's message"
    assert lib.nodus_dtype_from_name(b"float32", ctypes.byref(value)) == OK
    assert "first-failure" in last_error(), "success must not clear the last error"


def test_params_init_with_null_is_a_no_op():
    lib.nodus_model_params_init(None)
    lib.nodus_sample_params_init(None)
    lib.nodus_window_params_init(None)


def test_params_defaults():
    params = _lib.ModelParams()
    lib.nodus_model_params_init(ctypes.byref(params))
    assert (params.struct_size, params.threads, params.dtype) == (ctypes.sizeof(_lib.ModelParams), 0, 0)
    sample = _lib.SampleParams()
    lib.nodus_sample_params_init(ctypes.byref(sample))
    assert sample.struct_size == ctypes.sizeof(_lib.SampleParams)
    assert sample.steps == 50 and sample.guidance_scale == 4.0
    assert not sample.init_noise and not sample.class_labels and sample.class_label_count == 0
    assert not sample.step_noise and not sample.trajectory and not sample.progress
    window = _lib.WindowParams()
    lib.nodus_window_params_init(ctypes.byref(window))
    assert window.struct_size == ctypes.sizeof(_lib.WindowParams) and window.ndim == 0
    assert (window.overlap, window.blend, window.sigma_scale) == (0.25, 0, 0.125) and not window.output_name


def test_uninitialised_params_are_rejected():
    params = _lib.ModelParams()  # struct_size 0
    handle = ctypes.c_void_p()
    expect(lib.nodus_model_load(b"/tmp", ctypes.byref(params), ctypes.byref(handle)), INVALID_ARGUMENT, "nodus_model_params_init")
    params.struct_size = 4096
    expect(lib.nodus_model_load(b"/tmp", ctypes.byref(params), ctypes.byref(handle)), INVALID_ARGUMENT, "struct_size")
    lib.nodus_model_params_init(ctypes.byref(params))
    params.threads = -1
    expect(lib.nodus_model_load(b"/tmp", ctypes.byref(params), ctypes.byref(handle)), INVALID_ARGUMENT, "threads")
    lib.nodus_model_params_init(ctypes.byref(params))
    params.dtype = 99
    expect(lib.nodus_model_load(b"/tmp", ctypes.byref(params), ctypes.byref(handle)), INVALID_ARGUMENT, "dtype")


# ---------------------------------------------------------------- loading


def test_model_load_null_pointers():
    handle = ctypes.c_void_p(1234)
    expect(lib.nodus_model_load(None, None, ctypes.byref(handle)), INVALID_ARGUMENT, "path")
    assert handle.value is None, "*out_model must be NULL after a failure"
    expect(lib.nodus_model_load(b"/nonexistent", None, None), INVALID_ARGUMENT, "out_model")


def test_model_load_nonexistent_path():
    with pytest.raises(nodus.NodusError) as caught:
        nodus.load("/nonexistent/model-folder")
    assert caught.value.status == "io"
    assert "/nonexistent/model-folder" in caught.value.message


def test_model_load_folder_without_config(tmp_path):
    with pytest.raises(nodus.NodusError) as caught:
        nodus.load(tmp_path)
    assert caught.value.status in ("io", "format")
    assert "config.json" in caught.value.message


def test_model_load_config_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{ this is not json")
    with pytest.raises(nodus.NodusError) as caught:
        nodus.load(tmp_path)
    assert caught.value.status == "format"
    assert "config.json" in caught.value.message


def test_model_load_unknown_dtype_name():
    with pytest.raises(ValueError):
        nodus.load("/nonexistent", dtype="float128")


def test_scheduler_load_null_pointers():
    handle = ctypes.c_void_p(1234)
    expect(lib.nodus_scheduler_load(None, ctypes.byref(handle)), INVALID_ARGUMENT, "path")
    assert handle.value is None
    expect(lib.nodus_scheduler_load(b"/nonexistent", None), INVALID_ARGUMENT, "out_scheduler")
    expect(lib.nodus_scheduler_from_json(None, ctypes.byref(handle)), INVALID_ARGUMENT, "json")
    expect(lib.nodus_scheduler_from_json(b"{}", None), INVALID_ARGUMENT, "out_scheduler")


def test_scheduler_errors(tmp_path):
    with pytest.raises(nodus.NodusError) as caught:
        nodus.Scheduler.from_config({"_class_name": "NopeScheduler"})
    assert "NopeScheduler" in caught.value.message
    with pytest.raises(nodus.NodusError) as caught:
        nodus.Scheduler.from_config(str(tmp_path / "missing.json"))
    assert caught.value.status == "io"
    (tmp_path / "scheduler_config.json").write_text("[1, 2")
    with pytest.raises(nodus.NodusError) as caught:
        nodus.Scheduler.from_config(tmp_path)
    assert caught.value.status == "format"
    with pytest.raises(ValueError):
        nodus.Scheduler.from_config(42)


# ---------------------------------------------------------------- randn


def test_randn_matches_torch():
    # torch.randn(3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(nodus.randn((3,), 0), [1.5410, -0.2934, -2.1788], atol=1e-4)
    values = nodus.randn((2, 4, 8, 8), 42)
    assert values.dtype == np.float32 and values.shape == (2, 4, 8, 8)
    assert np.array_equal(values, nodus.randn((2, 4, 8, 8), 42))
    assert not np.array_equal(values, nodus.randn((2, 4, 8, 8), 43))
    assert abs(float(values.mean())) < 0.2 and 0.8 < float(values.std()) < 1.2
    assert nodus.randn((0, 3), 1).shape == (0, 3)


def test_randn_bad_outputs():
    buffer = np.zeros(16, dtype=np.float32)
    expect(lib.nodus_randn(0, None), INVALID_ARGUMENT, "output")
    expect(lib.nodus_randn(0, ctypes.byref(tensor(buffer, dtype=3))), SHAPE, "float32")
    expect(lib.nodus_randn(0, ctypes.byref(tensor(buffer, dtype=42))), INVALID_ARGUMENT, "dtype")
    expect(lib.nodus_randn(0, ctypes.byref(tensor(buffer, shape=(32,)))), SHAPE, "bytes")
    expect(lib.nodus_randn(0, ctypes.byref(tensor(buffer, shape=(4, -4)))), SHAPE, "negative")
    expect(lib.nodus_randn(0, ctypes.byref(tensor(buffer, shape=(1,) * 9))), SHAPE, "ndim")
    overflow = tensor(buffer, shape=(2**40, 2**40, 2**40))
    expect(lib.nodus_randn(0, ctypes.byref(overflow)), SHAPE, "too large")
    no_data = tensor(dtype=0, shape=(4,), size_bytes=16)
    expect(lib.nodus_randn(0, ctypes.byref(no_data)), INVALID_ARGUMENT, "data")
    bad = tensor(buffer)
    bad.ndim = -1
    expect(lib.nodus_randn(0, ctypes.byref(bad)), SHAPE, "ndim")
    assert not buffer.any(), "a failed call must not write the buffer"
    with pytest.raises(ValueError):
        nodus.randn((-1, 2), 0)


# ---------------------------------------------------------------- models (need the lead's model code)


def dit_inputs(model, batch=2):
    config = model.config
    channels, size = config["in_channels"], config["sample_size"]
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    timestep = np.array([10, 500][:batch] + [1] * max(0, batch - 2), dtype=np.int64)
    labels = np.arange(batch, dtype=np.int64) % config["num_embeds_ada_norm"]
    return sample, timestep, labels


def test_model_properties(dit):
    assert dit.kind == "dit"
    config = dit.config
    assert config["_class_name"] == "DiTTransformer2DModel"
    text = lib.nodus_model_config_json(dit.handle).decode()
    assert json.loads(text) == config


def test_model_forward(dit):
    sample, timestep, labels = dit_inputs(dit)
    output = dit.forward(sample=sample, timestep=timestep, class_labels=labels)
    config = dit.config
    expected_channels = config.get("out_channels") or config["in_channels"]
    assert output.dtype == np.float32
    assert output.shape == (2, expected_channels) + sample.shape[2:]
    assert np.isfinite(output).all()
    again = dit.forward(sample=sample.astype(np.float64), timestep=[10, 500], class_labels=labels.tolist())
    np.testing.assert_array_equal(output, again)


def test_model_forward_reports_shape_with_null_data(dit):
    sample, timestep, labels = dit_inputs(dit)
    inputs = (_lib.Tensor * 3)(tensor(sample, "sample"), tensor(timestep, "timestep"), tensor(labels, "class_labels"))
    output = tensor()
    assert lib.nodus_model_forward(dit.handle, inputs, 3, ctypes.byref(output)) == OK, last_error()
    shape = tuple(output.shape[index] for index in range(output.ndim))
    assert output.dtype == 0 and output.size_bytes == 4 * int(np.prod(shape))
    small = np.zeros(int(np.prod(shape)) - 1, dtype=np.float32)
    too_small = tensor(small, size_bytes=small.nbytes)
    expect(lib.nodus_model_forward(dit.handle, inputs, 3, ctypes.byref(too_small)), SHAPE, "bytes")
    assert not small.any()


def test_model_forward_null_pointers(dit):
    sample, timestep, labels = dit_inputs(dit)
    inputs = (_lib.Tensor * 3)(tensor(sample, "sample"), tensor(timestep, "timestep"), tensor(labels, "class_labels"))
    output = tensor()
    expect(lib.nodus_model_forward(None, inputs, 3, ctypes.byref(output)), INVALID_ARGUMENT, "model")
    expect(lib.nodus_model_forward(dit.handle, None, 3, ctypes.byref(output)), INVALID_ARGUMENT, "inputs")
    expect(lib.nodus_model_forward(dit.handle, inputs, 3, None), INVALID_ARGUMENT, "output")
    unnamed = (_lib.Tensor * 1)(tensor(sample))
    expect(lib.nodus_model_forward(dit.handle, unnamed, 1, ctypes.byref(output)), INVALID_ARGUMENT, "name")
    no_data = (_lib.Tensor * 3)(
        tensor(dtype=0, shape=sample.shape, name="sample"), tensor(timestep, "timestep"), tensor(labels, "class_labels")
    )
    expect(lib.nodus_model_forward(dit.handle, no_data, 3, ctypes.byref(output)), INVALID_ARGUMENT, "sample")
    twice = (_lib.Tensor * 2)(tensor(sample, "sample"), tensor(sample, "sample"))
    expect(lib.nodus_model_forward(dit.handle, twice, 2, ctypes.byref(output)), INVALID_ARGUMENT, "sample")


def test_model_forward_bad_tensors(dit):
    sample, timestep, labels = dit_inputs(dit)
    for bad, word in [
        (tensor(sample, "sample", dtype=99), "dtype"),
        (tensor(sample, "sample", shape=(1,) * 9), "ndim"),
        (tensor(sample, "sample", shape=(2, -1, 4, 4)), "negative"),
    ]:
        inputs = (_lib.Tensor * 3)(bad, tensor(timestep, "timestep"), tensor(labels, "class_labels"))
        status = lib.nodus_model_forward(dit.handle, inputs, 3, ctypes.byref(tensor()))
        assert status in (INVALID_ARGUMENT, SHAPE), last_error()
        assert word in last_error() and "sample" in last_error()


def test_model_forward_wrong_shapes_name_the_input(dit):
    sample, timestep, labels = dit_inputs(dit)
    with pytest.raises(ValueError, match="sample") as caught:
        dit.forward(sample=sample[:, :1], timestep=timestep, class_labels=labels)
    assert isinstance(caught.value, nodus.NodusError) and caught.value.status == "shape"
    with pytest.raises(ValueError, match="sample"):
        dit.forward(sample=sample[0], timestep=timestep, class_labels=labels)
    with pytest.raises(ValueError, match="class_labels"):
        dit.forward(sample=sample, timestep=timestep, class_labels=labels[:1].repeat(3))
    with pytest.raises(ValueError, match="timestep"):
        dit.forward(sample=sample, timestep=np.zeros((2, 2), dtype=np.int64), class_labels=labels)
    with pytest.raises(ValueError, match="class_labels"):
        dit.forward(sample=sample, timestep=timestep)
    with pytest.raises(ValueError, match="nonsense"):
        dit.forward(sample=sample, timestep=timestep, class_labels=labels, nonsense=sample)


def test_model_forward_wrong_dtypes(dit):
    sample, timestep, labels = dit_inputs(dit)
    with pytest.raises(ValueError, match="sample"):
        dit.forward(sample=sample.astype(np.complex64), timestep=timestep, class_labels=labels)
    with pytest.raises(ValueError, match="class_labels"):
        dit.forward(sample=sample, timestep=timestep, class_labels=labels.astype(np.float32) + 0.5)
    with pytest.raises(ValueError, match="sample"):
        dit.forward(sample=sample > 0, timestep=timestep, class_labels=labels)


def test_model_decode_on_dit_fails(dit):
    with pytest.raises(nodus.NodusError):
        dit.decode(np.zeros((1, 4, 4, 4), dtype=np.float32))
    output = tensor()
    expect(lib.nodus_model_decode(dit.handle, None, ctypes.byref(output)), INVALID_ARGUMENT, "latent")


def test_vae_decode(vae):
    config = vae.config
    channels = config["latent_channels"]
    latent = nodus.randn((1, channels, 4, 4), 0)
    image = vae.decode(latent)
    assert image.dtype == np.float32
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    assert image.shape == (1, config["out_channels"], 4 * factor, 4 * factor)
    assert np.isfinite(image).all()
    expect(lib.nodus_model_decode(vae.handle, ctypes.byref(tensor(latent)), None), INVALID_ARGUMENT, "output")
    with pytest.raises(ValueError, match="latent"):
        vae.decode(latent[:, :1])


def test_model_close_and_context_manager():
    model = nodus.load(fixture_path("dit-tiny"))
    assert model.kind == "dit"
    model.close()
    model.close()
    with pytest.raises(ValueError):
        model.kind


# ---------------------------------------------------------------- schedulers


def test_scheduler_timesteps_and_step(ddim):
    assert ddim.class_name == "DDIMScheduler"
    assert ddim.init_noise_sigma == 1.0
    ddim.set_timesteps(10)
    steps = ddim.timesteps
    assert steps.dtype == np.int64 and steps.shape == (10,)
    assert (np.diff(steps) < 0).all()
    x = nodus.randn((1, 4, 8, 8), 0)
    eps = nodus.randn((1, 4, 8, 8), 1)
    previous = ddim.step(eps, steps[0], x)
    assert previous.shape == x.shape and previous.dtype == np.float32 and np.isfinite(previous).all()
    # [B, 2C] model outputs (learned variance) are accepted.
    doubled = ddim.step(np.concatenate([eps, eps], axis=1), int(steps[0]), x)
    np.testing.assert_allclose(doubled, previous, rtol=1e-6)


def test_scheduler_timesteps_capacity(ddim):
    ddim.set_timesteps(7)
    count, is_integer = ctypes.c_size_t(), ctypes.c_int32(-1)
    assert lib.nodus_scheduler_timesteps(ddim.handle, None, 0, ctypes.byref(count), ctypes.byref(is_integer)) == OK
    assert count.value == 7 and is_integer.value == 1
    buffer = (ctypes.c_double * 3)()
    assert lib.nodus_scheduler_timesteps(ddim.handle, buffer, 3, ctypes.byref(count), ctypes.byref(is_integer)) == OK
    assert count.value == 7 and list(buffer) == list(ddim.timesteps[:3].astype(float))
    expect(lib.nodus_scheduler_timesteps(ddim.handle, None, 3, ctypes.byref(count), ctypes.byref(is_integer)), INVALID_ARGUMENT, "out")
    expect(lib.nodus_scheduler_timesteps(ddim.handle, buffer, 3, None, ctypes.byref(is_integer)), INVALID_ARGUMENT, "out_count")
    expect(lib.nodus_scheduler_timesteps(ddim.handle, buffer, 3, ctypes.byref(count), None), INVALID_ARGUMENT, "out_is_integer")


def test_scheduler_bad_input(ddim):
    expect(lib.nodus_scheduler_set_timesteps(ddim.handle, 0), INVALID_ARGUMENT, "steps")
    expect(lib.nodus_scheduler_set_timesteps_sized(ddim.handle, 10, 0), INVALID_ARGUMENT, "spatial_size")
    with pytest.raises(ValueError):
        ddim.set_timesteps(0)
    ddim.set_timesteps(10)
    x = np.zeros((1, 4, 8, 8), dtype=np.float32)
    t = float(ddim.timesteps[0])
    out = tensor(np.zeros_like(x))
    expect(lib.nodus_scheduler_step(None, ctypes.byref(tensor(x)), t, ctypes.byref(tensor(x)), None, ctypes.byref(out)), INVALID_ARGUMENT, "scheduler")
    expect(lib.nodus_scheduler_step(ddim.handle, None, t, ctypes.byref(tensor(x)), None, ctypes.byref(out)), INVALID_ARGUMENT, "model_output")
    expect(lib.nodus_scheduler_step(ddim.handle, ctypes.byref(tensor(x)), t, None, None, ctypes.byref(out)), INVALID_ARGUMENT, "sample")
    expect(lib.nodus_scheduler_step(ddim.handle, ctypes.byref(tensor(x)), t, ctypes.byref(tensor(x)), None, None), INVALID_ARGUMENT, "prev_sample")
    with pytest.raises(ValueError, match="shape"):
        ddim.step(x[:, :3], t, x)
    with pytest.raises(ValueError, match="noise"):
        ddim.step(x, t, x, noise=x[:, :2])
    with pytest.raises(ValueError):
        ddim.step(x, "ten", x)


def test_scheduler_from_dict_and_step_noise():
    config = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear"}
    with nodus.Scheduler.from_config(config) as ddpm:
        assert ddpm.class_name == "DDPMScheduler"
        ddpm.set_timesteps(5)
        x = nodus.randn((1, 4, 8, 8), 0)
        t = ddpm.timesteps[0]
        with pytest.raises(ValueError, match="noise"):
            ddpm.step(x, t, x)  # DDPM draws noise: the caller must pass it
        assert ddpm.step(x, t, x, noise=nodus.randn((1, 4, 8, 8), 1)).shape == x.shape


def test_flow_match_timesteps_are_float():
    with nodus.Scheduler.from_config({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 1.0}) as flow:
        flow.set_timesteps(4)
        assert flow.timesteps.dtype == np.float32


# ---------------------------------------------------------------- sampling


def test_sample_with_trajectory_and_callback(dit, ddim):
    config = dit.config
    shape = (1, config["in_channels"], config["sample_size"], config["sample_size"])
    x0 = nodus.randn(shape, 0) * ddim.init_noise_sigma
    seen = []
    final, trajectory = nodus.sample(
        dit, ddim, steps=4, guidance_scale=4.0, init_noise=x0, class_labels=[1],
        return_trajectory=True, callback=lambda done, total: seen.append((done, total)),
    )
    assert final.shape == shape and trajectory.shape == (4,) + shape
    np.testing.assert_array_equal(trajectory[-1], final)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    again = nodus.sample(dit, ddim, steps=4, guidance_scale=4.0, init_noise=x0.astype(np.float64), class_labels=[1])
    np.testing.assert_array_equal(again, final)


def test_sample_cancel(dit, ddim):
    config = dit.config
    x0 = nodus.randn((1, config["in_channels"], config["sample_size"], config["sample_size"]), 0)
    with pytest.raises(nodus.NodusError) as caught:
        nodus.sample(dit, ddim, steps=5, init_noise=x0, class_labels=[0], callback=lambda done, total: done < 2)
    assert caught.value.status == "cancelled"

    def broken(done, total):
        raise KeyError("from the callback")

    with pytest.raises(KeyError):
        nodus.sample(dit, ddim, steps=5, init_noise=x0, class_labels=[0], callback=broken)


def test_sample_bad_input(dit, ddim):
    config = dit.config
    x0 = nodus.randn((1, config["in_channels"], config["sample_size"], config["sample_size"]), 0)
    params = _lib.SampleParams()
    lib.nodus_sample_params_init(ctypes.byref(params))
    out = tensor(np.zeros_like(x0))
    expect(lib.nodus_sample(dit.handle, ddim.handle, ctypes.byref(params), ctypes.byref(out)), INVALID_ARGUMENT, "init_noise")
    start = tensor(x0)
    params.init_noise = ctypes.pointer(start)
    expect(lib.nodus_sample(None, ddim.handle, ctypes.byref(params), ctypes.byref(out)), INVALID_ARGUMENT, "model")
    expect(lib.nodus_sample(dit.handle, None, ctypes.byref(params), ctypes.byref(out)), INVALID_ARGUMENT, "scheduler")
    expect(lib.nodus_sample(dit.handle, ddim.handle, None, ctypes.byref(out)), INVALID_ARGUMENT, "params")
    expect(lib.nodus_sample(dit.handle, ddim.handle, ctypes.byref(params), None), INVALID_ARGUMENT, "output")
    params.class_label_count = 1
    expect(lib.nodus_sample(dit.handle, ddim.handle, ctypes.byref(params), ctypes.byref(out)), INVALID_ARGUMENT, "class_labels")
    params.class_label_count = 0
    params.steps = 0
    expect(lib.nodus_sample(dit.handle, ddim.handle, ctypes.byref(params), ctypes.byref(out)), INVALID_ARGUMENT, "steps")
    params.steps = 3
    small = tensor(np.zeros(4, dtype=np.float32))
    params.trajectory = ctypes.pointer(small)
    expect(lib.nodus_sample(dit.handle, ddim.handle, ctypes.byref(params), ctypes.byref(out)), SHAPE, "trajectory")
    params.struct_size = 0
    expect(lib.nodus_sample(dit.handle, ddim.handle, ctypes.byref(params), ctypes.byref(out)), INVALID_ARGUMENT, "nodus_sample_params_init")
    with pytest.raises(ValueError):
        nodus.sample(dit, ddim, steps=2, init_noise=None)
    with pytest.raises(ValueError):
        nodus.sample(dit, ddim, steps=2, init_noise=x0[0], class_labels=[0])
    with pytest.raises(ValueError):
        nodus.sample(dit, ddim, steps=2, init_noise=x0, class_labels=[0.5])
    with pytest.raises(ValueError, match="step_noise"):
        nodus.sample(dit, ddim, steps=2, init_noise=x0, class_labels=[0], step_noise=np.zeros((3,) + x0.shape))
    with pytest.raises(nodus.InvalidArgumentError, match="takes class_labels"):
        nodus.sample(dit, ddim, steps=2, init_noise=x0, class_labels=[0], encoder_hidden_states=np.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match="must both be"):
        nodus.sample(dit, ddim, steps=2, init_noise=x0, class_labels=[0], encoder_hidden_states=(x0, x0))
    with pytest.raises(nodus.InvalidArgumentError, match="strength"):
        nodus.sample(dit, ddim, steps=2, init_noise=x0, class_labels=[0], strength=0.5)


def test_batch_statistics():
    samples = np.random.default_rng(3).standard_normal((5, 2, 3, 4)).astype(np.float32)
    mean, variance = nodus.batch_statistics(samples)
    np.testing.assert_allclose(mean, samples.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(variance, samples.astype(np.float64).var(0, ddof=1), rtol=1e-6, atol=1e-7)
    _, population = nodus.batch_statistics(samples, correction=0)
    np.testing.assert_allclose(population, samples.astype(np.float64).var(0), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):
        nodus.batch_statistics(samples[:1])
    with pytest.raises(nodus.InvalidArgumentError, match="correction"):
        nodus.batch_statistics(samples, correction=5)
    broken = samples.copy()
    broken[2, 1, 1, 1] = np.nan
    with pytest.raises(nodus.InvalidArgumentError, match="NaN"):
        nodus.batch_statistics(broken)


def test_sample_ddpm_needs_step_noise(dit):
    config = dit.config
    shape = (1, config["in_channels"], config["sample_size"], config["sample_size"])
    x0 = nodus.randn(shape, 0)
    with nodus.Scheduler.from_config({"_class_name": "DDPMScheduler"}) as ddpm:
        with pytest.raises(ValueError, match="noise"):
            nodus.sample(dit, ddpm, steps=3, init_noise=x0, class_labels=[0])
        final = nodus.sample(dit, ddpm, steps=3, init_noise=x0, class_labels=[0], step_noise=nodus.randn((3,) + shape, 1))
        assert final.shape == shape and np.isfinite(final).all()


# ---------------------------------------------------------------- the C side (examples/c/abi_check.c)


def test_c_abi_check_and_struct_layout(tmp_path):
    """Compiles examples/c/abi_check.c against the loaded library, runs it on the
    fixtures, and compares the struct layout it prints with the ctypes mirror."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.fail("no C compiler: make test needs cc to build the C examples")
    from conftest import REPOSITORY

    library_dir = os.path.dirname(os.path.abspath(_lib.path))
    binary = tmp_path / "abi_check"
    build = subprocess.run(
        [compiler, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(REPOSITORY, "include"),
         os.path.join(REPOSITORY, "examples", "c", "abi_check.c"), "-o", str(binary),
         "-L", library_dir, "-lnodus", "-lm", f"-Wl,-rpath,{library_dir}"],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run(
        [str(binary), fixture_path("dit-tiny"), fixture_path("scheduler-ddim")], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    mirrors = {"nodus_tensor": _lib.Tensor, "nodus_model_params": _lib.ModelParams, "nodus_sample_params": _lib.SampleParams,
               "nodus_adapter_schedule_entry": _lib.AdapterScheduleEntry, "nodus_prompt_params": _lib.PromptParams}
    seen = 0
    for line in run.stdout.splitlines():
        words = line.split()
        if words[:1] == ["sizeof"]:
            assert ctypes.sizeof(mirrors[words[1]]) == int(words[2]), line
            seen += 1
        elif words[:1] == ["layout"]:
            struct, field = words[1].split(".")
            descriptor = getattr(mirrors[struct], field)
            assert (descriptor.offset, descriptor.size) == (int(words[3]), int(words[5])), line
            seen += 1
    assert seen == 5 + 6 + 3 + 17 + 4 + 4  # sizeof lines, then each struct's fields


def test_model_signatures_and_forward_all():
    """Inputs and outputs of a native model, and nodus_model_forward_all with its checks."""
    model = nodus.load(fixture_path("dit-tiny"))
    assert [name for name, _, _ in model.inputs] == ["sample", "timestep", "class_labels"]
    assert model.inputs[0][2] == (None, 4, None, None) and model.inputs[2][1] == "int64"
    assert model.outputs == [("sample", "float32", None)]
    info = _lib.TensorInfo()
    expect(lib.nodus_model_input_info(model.handle, 3, ctypes.byref(info)), INVALID_ARGUMENT, "index 3", "has 3")
    expect(lib.nodus_model_output_info(model.handle, 0, None), INVALID_ARGUMENT, "out_info")
    out = (_lib.Tensor * 2)()
    expect(lib.nodus_model_forward_all(model.handle, None, 0, out, 2), INVALID_ARGUMENT, "output_count is 2", "1 outputs")
    x = nodus.randn((2, 4, 8, 8), seed=0)
    inputs = [_tensor_input(x, "sample"), _tensor_input(np.array([10, 20]), "timestep"),
              _tensor_input(np.array([1, 2]), "class_labels")]
    array = (_lib.Tensor * 3)(*[item.struct for item in inputs])
    assert lib.nodus_model_forward_all(model.handle, array, 3, out, 1) == OK
    assert out[0].ndim == 4 and out[0].shape[1] == 8
    expected = model.forward(sample=x, timestep=np.array([10, 20]), class_labels=np.array([1, 2]))
    result = np.empty(expected.shape, np.float32)
    out[0].data, out[0].size_bytes = result.ctypes.data, result.nbytes
    assert lib.nodus_model_forward_all(model.handle, array, 3, out, 1) == OK
    assert np.array_equal(result, expected)
    model.close()


def _tensor_input(array, name):
    from nodus import _tensor

    return _tensor.Input(_tensor.model_input_array(array, name), name)
