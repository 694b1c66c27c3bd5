"""Loads libnodus with ctypes and declares the C ABI of include/nodus.h.

The library is found through the ``NODUS_LIBRARY`` environment variable (a path)
if set, else ``libnodus.so`` beside this package, else the repository's
``.build/release/libnodus.so``.  Its ``nodus_version_number()`` must equal this
package's version, or the import fails with an ImportError.
"""

import ctypes
import os

from .errors import error_for

VERSION = "0.1.0"
VERSION_NUMBER = (lambda x, y, z: x * 1000000 + y * 1000 + z)(*map(int, VERSION.split(".")))

MAX_DIMS = 8

# nodus_dtype values and the numpy dtype names they stand for.
DTYPE_FLOAT32, DTYPE_FLOAT16, DTYPE_BFLOAT16, DTYPE_INT64 = 0, 1, 2, 3
DTYPE_INT32, DTYPE_UINT8, DTYPE_BOOL, DTYPE_FLOAT64 = 4, 5, 6, 7


class Tensor(ctypes.Structure):
    """struct nodus_tensor."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.c_int64 * MAX_DIMS),
        ("data", ctypes.c_void_p),
        ("size_bytes", ctypes.c_size_t),
    ]


class TensorInfo(ctypes.Structure):
    """struct nodus_tensor_info."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("shape", ctypes.c_int64 * MAX_DIMS),
    ]


class ModelParams(ctypes.Structure):
    """struct nodus_model_params."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("threads", ctypes.c_int32),
        ("dtype", ctypes.c_int32),
        ("read_files", ctypes.c_int32),
    ]


ProgressCallback = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)


class Progress:
    """A ``params.progress`` for ``callback(done, total)`` (returning False cancels). An exception
    the callback raises cancels the C call and is raised again by ``raise_failure()`` after it."""

    def __init__(self, callback):
        self.failure = None
        self.function = ProgressCallback(self._call) if callback is not None else None
        self._callback = callback

    def _call(self, done, total, user_data):
        try:
            return 1 if self._callback(done, total) is False else 0
        except BaseException as error:  # re-raised after the C call returns
            self.failure = error
            return 1

    def install(self, params):
        if self.function is not None:
            params.progress = self.function

    def raise_failure(self):
        if self.failure is not None:
            raise self.failure


class AdapterScheduleEntry(ctypes.Structure):
    """struct nodus_adapter_schedule_entry."""

    _fields_ = [
        ("step", ctypes.c_int32),
        ("count", ctypes.c_size_t),
        ("names", ctypes.POINTER(ctypes.c_char_p)),
        ("weights", ctypes.POINTER(ctypes.c_float)),
    ]


class SampleParams(ctypes.Structure):
    """struct nodus_sample_params."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("steps", ctypes.c_int32),
        ("guidance_scale", ctypes.c_float),
        ("init_noise", ctypes.POINTER(Tensor)),
        ("class_labels", ctypes.POINTER(ctypes.c_int64)),
        ("class_label_count", ctypes.c_size_t),
        ("step_noise", ctypes.POINTER(Tensor)),
        ("trajectory", ctypes.POINTER(Tensor)),
        ("progress", ProgressCallback),
        ("progress_user_data", ctypes.c_void_p),
        ("adapter_schedule", ctypes.POINTER(AdapterScheduleEntry)),
        ("adapter_schedule_count", ctypes.c_size_t),
        ("conditioning", ctypes.POINTER(Tensor)),
        ("encoder_hidden_states", ctypes.POINTER(Tensor)),
        ("image_latents", ctypes.POINTER(Tensor)),
        ("strength", ctypes.c_double),
        ("mask", ctypes.POINTER(Tensor)),
        ("context", ctypes.c_void_p),
    ]


class ContextParams(ctypes.Structure):
    """struct nodus_context_params."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("threads", ctypes.c_int32),
        ("memory_budget", ctypes.c_int64),
    ]


class WindowParams(ctypes.Structure):
    """struct nodus_window_params."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("ndim", ctypes.c_int32),
        ("window_size", ctypes.c_int64 * 3),
        ("overlap", ctypes.c_float),
        ("blend", ctypes.c_int32),
        ("sigma_scale", ctypes.c_float),
        ("output_name", ctypes.c_char_p),
        ("progress", ProgressCallback),
        ("progress_user_data", ctypes.c_void_p),
    ]


class GenerateParams(ctypes.Structure):
    """struct nodus_generate_params."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("prompts", ctypes.POINTER(ctypes.c_char_p)),
        ("prompt_count", ctypes.c_size_t),
        ("negative_prompts", ctypes.POINTER(ctypes.c_char_p)),
        ("negative_prompt_count", ctypes.c_size_t),
        ("steps", ctypes.c_int32),
        ("guidance_scale", ctypes.c_float),
        ("height", ctypes.c_int32),
        ("width", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("images_per_prompt", ctypes.c_int32),
        ("clip_skip", ctypes.c_int32),
        ("output", ctypes.c_int32),
        ("progress", ProgressCallback),
        ("progress_user_data", ctypes.c_void_p),
        ("image", ctypes.POINTER(Tensor)),
        ("strength", ctypes.c_double),
        ("mask", ctypes.POINTER(Tensor)),
    ]


class PromptParams(ctypes.Structure):
    """struct nodus_prompt_params."""

    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("parse_weights", ctypes.c_int32),
        ("comma_backtrack", ctypes.c_int32),
        ("max_chunks", ctypes.c_int32),
    ]


_status = ctypes.c_int32
_p = ctypes.c_void_p
_str = ctypes.c_char_p
_size = ctypes.c_size_t
_tensor_p = ctypes.POINTER(Tensor)

# name: (restype, argtypes), one entry per function of include/nodus.h.
PROTOTYPES = {
    "nodus_version_number": (ctypes.c_int32, []),
    "nodus_version": (_str, []),
    "nodus_status_name": (_str, [_status]),
    "nodus_last_error": (_str, []),
    "nodus_cpu_level": (ctypes.c_int32, []),
    "nodus_cpu_level_supported": (ctypes.c_int32, []),
    "nodus_cpu_level_note": (_str, []),
    "nodus_isa_level_name": (_str, [ctypes.c_int32]),
    "nodus_isa_level_from_name": (_status, [_str, ctypes.POINTER(ctypes.c_int32)]),
    "nodus_dtype_name": (_str, [ctypes.c_int32]),
    "nodus_dtype_from_name": (_status, [_str, ctypes.POINTER(ctypes.c_int32)]),
    "nodus_dtype_size": (_size, [ctypes.c_int32]),
    "nodus_model_kind_name": (_str, [ctypes.c_int32]),
    "nodus_model_kind_from_name": (_status, [_str, ctypes.POINTER(ctypes.c_int32)]),
    "nodus_model_params_init": (None, [ctypes.POINTER(ModelParams)]),
    "nodus_model_load": (_status, [_str, ctypes.POINTER(ModelParams), ctypes.POINTER(_p)]),
    "nodus_model_free": (None, [_p]),
    "nodus_model_get_kind": (ctypes.c_int32, [_p]),
    "nodus_model_config_json": (_str, [_p]),
    "nodus_model_forward": (_status, [_p, _tensor_p, _size, _tensor_p]),
    "nodus_model_decode": (_status, [_p, _tensor_p, _tensor_p]),
    "nodus_model_forward_all": (_status, [_p, _tensor_p, _size, _tensor_p, _size]),
    "nodus_context_params_init": (None, [ctypes.POINTER(ContextParams)]),
    "nodus_context_new": (_status, [_p, ctypes.POINTER(ContextParams), ctypes.POINTER(ctypes.c_void_p)]),
    "nodus_context_free": (None, [_p]),
    "nodus_context_forward_all": (_status, [_p, _tensor_p, _size, _tensor_p, _size]),
    "nodus_context_set_adapters": (_status, [_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_float), _size]),
    "nodus_context_threads": (ctypes.c_int32, [_p]),
    "nodus_context_decode": (_status, [_p, _tensor_p, _tensor_p]),
    "nodus_context_encode": (_status, [_p, _tensor_p, _tensor_p, _tensor_p]),
    "nodus_context_encode_latent": (_status, [_p, _tensor_p, _tensor_p, _tensor_p]),
    "nodus_model_input_count": (_size, [_p]),
    "nodus_model_input_info": (_status, [_p, _size, ctypes.POINTER(TensorInfo)]),
    "nodus_model_output_count": (_size, [_p]),
    "nodus_model_output_info": (_status, [_p, _size, ctypes.POINTER(TensorInfo)]),
    "nodus_model_load_lora": (_status, [_p, _str, _str]),
    "nodus_model_set_adapters": (_status, [_p, ctypes.POINTER(_str), ctypes.POINTER(ctypes.c_float), _size]),
    "nodus_model_fuse_lora": (_status, [_p, ctypes.POINTER(_str), _size, ctypes.c_float]),
    "nodus_model_unfuse_lora": (_status, [_p]),
    "nodus_model_enable_lora": (_status, [_p, ctypes.c_int32]),
    "nodus_model_delete_adapters": (_status, [_p, ctypes.POINTER(_str), _size]),
    "nodus_model_lora_state_json": (_str, [_p]),
    "nodus_model_lora_compare_json": (_str, [_p, _str, _str]),
    "nodus_model_save": (_status, [_p, _str]),
    "nodus_scheduler_kind_name": (_str, [ctypes.c_int32]),
    "nodus_scheduler_kind_from_name": (_status, [_str, ctypes.POINTER(ctypes.c_int32)]),
    "nodus_scheduler_load": (_status, [_str, ctypes.POINTER(_p)]),
    "nodus_scheduler_from_json": (_status, [_str, ctypes.POINTER(_p)]),
    "nodus_scheduler_free": (None, [_p]),
    "nodus_scheduler_get_kind": (ctypes.c_int32, [_p]),
    "nodus_scheduler_set_timesteps": (_status, [_p, ctypes.c_int32]),
    "nodus_scheduler_set_timesteps_sized": (_status, [_p, ctypes.c_int32, ctypes.c_int64]),
    "nodus_scheduler_timesteps": (
        _status,
        [_p, ctypes.POINTER(ctypes.c_double), _size, ctypes.POINTER(_size), ctypes.POINTER(ctypes.c_int32)],
    ),
    "nodus_scheduler_init_noise_sigma": (ctypes.c_float, [_p]),
    "nodus_scheduler_draws_noise": (ctypes.c_int32, [_p]),
    "nodus_scheduler_order": (ctypes.c_int32, [_p]),
    "nodus_scheduler_step": (_status, [_p, _tensor_p, ctypes.c_double, _tensor_p, _tensor_p, _tensor_p]),
    "nodus_scheduler_scale_model_input": (_status, [_p, _tensor_p, ctypes.c_double, _tensor_p]),
    "nodus_sample_params_init": (None, [ctypes.POINTER(SampleParams)]),
    "nodus_window_params_init": (None, [ctypes.POINTER(WindowParams)]),
    "nodus_model_forward_windowed": (_status, [_p, _tensor_p, ctypes.POINTER(WindowParams), _tensor_p]),
    "nodus_sample": (_status, [_p, _p, ctypes.POINTER(SampleParams), _tensor_p]),
    "nodus_batch_statistics": (_status, [_tensor_p, ctypes.c_int32, _tensor_p, _tensor_p]),
    "nodus_randn": (_status, [ctypes.c_uint64, _tensor_p]),
    "nodus_model_encode": (_status, [_p, _tensor_p, _tensor_p, _tensor_p]),
    "nodus_model_encode_latent": (_status, [_p, _tensor_p, _tensor_p, _tensor_p]),
    "nodus_model_set_vae_tiling": (_status, [_p, ctypes.c_int32, ctypes.c_int32]),
    "nodus_model_profile": (_status, [_p, _tensor_p, _size, ctypes.c_int32, ctypes.POINTER(_str)]),
    "nodus_tokenizer_load": (_status, [_str, ctypes.POINTER(_p)]),
    "nodus_tokenizer_free": (None, [_p]),
    # out_ids as a plain address (void *), so a row of a numpy array goes in without a ctypes cast.
    "nodus_tokenizer_encode": (_status, [_p, _p, _size, ctypes.c_int32, _p, _size, ctypes.POINTER(_size)]),
    "nodus_prompt_params_init": (None, [ctypes.POINTER(PromptParams)]),
    "nodus_tokenizer_encode_prompt": (
        _status, [_p, _p, _size, ctypes.POINTER(PromptParams), ctypes.POINTER(ctypes.c_int64),
                  ctypes.POINTER(ctypes.c_float), _size, ctypes.POINTER(_size)]),
    "nodus_tokenizer_max_length": (ctypes.c_int32, [_p]),
    "nodus_tokenizer_bos_id": (ctypes.c_int64, [_p]),
    "nodus_tokenizer_eos_id": (ctypes.c_int64, [_p]),
    "nodus_tokenizer_pad_id": (ctypes.c_int64, [_p]),
    "nodus_tokenizer_vocab_size": (ctypes.c_int64, [_p]),
    "nodus_tokenizer_token_to_id": (_status, [_p, _str, ctypes.POINTER(ctypes.c_int64)]),
    "nodus_tokenizer_id_to_token": (_status, [_p, ctypes.c_int64, _p, _size, ctypes.POINTER(_size)]),
    "nodus_tokenizer_decode": (
        _status, [_p, ctypes.POINTER(ctypes.c_int64), _size, ctypes.c_int32, _p, _size, ctypes.POINTER(_size)]),
    "nodus_pipeline_load": (_status, [_str, ctypes.POINTER(ModelParams), ctypes.POINTER(_p)]),
    "nodus_pipeline_free": (None, [_p]),
    "nodus_pipeline_model": (_status, [_p, _str, ctypes.POINTER(_p)]),
    "nodus_pipeline_tokenizer": (_status, [_p, ctypes.POINTER(_p)]),
    "nodus_pipeline_set_scheduler": (_status, [_p, _p]),
    "nodus_pipeline_scheduler": (_status, [_p, ctypes.POINTER(_p)]),
    "nodus_pipeline_load_lora": (_status, [_p, _str, _str]),
    "nodus_pipeline_set_adapters": (_status, [_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_float), _size]),
    "nodus_pipeline_output_name": (_str, [ctypes.c_int32]),
    "nodus_pipeline_output_from_name": (_status, [_str, ctypes.POINTER(ctypes.c_int32)]),
    "nodus_generate_params_init": (None, [ctypes.POINTER(GenerateParams)]),
    "nodus_pipeline_generate": (_status, [_p, ctypes.POINTER(GenerateParams), _tensor_p]),
}


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    explicit = os.environ.get("NODUS_LIBRARY")
    if explicit:
        return [explicit]
    repository = os.path.abspath(os.path.join(here, "..", "..", ".."))
    return [os.path.join(here, "libnodus.so"), os.path.join(repository, ".build", "release", "libnodus.so")]


def _load():
    candidates = _candidates()
    for path in candidates:
        if os.path.exists(path):
            try:
                library = ctypes.CDLL(path)
            except OSError as error:
                raise ImportError(f"nodus: cannot load {path}: {error}") from error
            break
    else:
        raise ImportError(
            "nodus: libnodus.so not found (looked at " + ", ".join(candidates) + "); "
            "build it with `make build` or set NODUS_LIBRARY to its path"
        )
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            function = getattr(library, name)
        except AttributeError as error:
            raise ImportError(f"nodus: {path} does not export {name}: rebuild the library") from error
        function.restype = restype
        function.argtypes = argtypes
    found = library.nodus_version_number()
    if found != VERSION_NUMBER:
        raise ImportError(
            f"nodus: {path} is version {library.nodus_version().decode()} ({found}), "
            f"but this package is {VERSION} ({VERSION_NUMBER}): rebuild or reinstall one of them"
        )
    return library, path


lib, path = _load()


def last_error():
    """The library's message for the last failed call on this thread."""
    return lib.nodus_last_error().decode("utf-8", "replace")


def check(status):
    """Raises the NodusError subclass for ``status`` unless it is NODUS_OK."""
    if status != 0:
        raise error_for(status, last_error())


def string_array(names):
    """A ctypes ``const char *[]`` for ``names`` (keep the result alive during the call)."""
    encoded = [os.fsencode(name) if isinstance(name, os.PathLike) else str(name).encode() for name in names]
    return (ctypes.c_char_p * max(len(encoded), 1))(*encoded)
