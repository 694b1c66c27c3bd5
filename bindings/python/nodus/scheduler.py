"""Schedulers: ``nodus.Scheduler.from_config(path_or_dict)``."""

import ctypes
import json
import os

import numpy as np

from . import _lib, _tensor
from ._handle import Handle


class Scheduler(Handle):
    """A diffusers scheduler (``nodus_scheduler *``) built from its scheduler_config.json.

    Free it with ``close()`` or a ``with`` block.
    """

    _free_function = "nodus_scheduler_free"
    _label = "scheduler"

    def __init__(self, handle):
        super().__init__(handle)

    @classmethod
    def from_config(cls, path_or_dict):
        """From a scheduler_config.json path, a folder holding one, or the config as a dict."""
        handle = ctypes.c_void_p()
        if isinstance(path_or_dict, dict):
            text = json.dumps(path_or_dict)
            _lib.check(_lib.lib.nodus_scheduler_from_json(text.encode(), ctypes.byref(handle)))
        elif isinstance(path_or_dict, (str, bytes, os.PathLike)):
            location = os.fsencode(path_or_dict)
            _lib.check(_lib.lib.nodus_scheduler_load(location, ctypes.byref(handle)))
        else:
            raise ValueError(f"nodus: Scheduler.from_config takes a path or a dict, not {type(path_or_dict).__name__}")
        return cls(handle)

    def __repr__(self):
        return f"<nodus.Scheduler {self.class_name if self._handle else 'closed'}>"

    # -- state ------------------------------------------------------------

    @property
    def class_name(self):
        """The diffusers class name ("DDIMScheduler", ...)."""
        kind = _lib.lib.nodus_scheduler_get_kind(self.handle)
        name = _lib.lib.nodus_scheduler_kind_name(kind)
        return name.decode() if name else f"unknown({kind})"

    def set_timesteps(self, num_inference_steps):
        """Prepares ``num_inference_steps`` steps (diffusers ``set_timesteps``)."""
        steps = int(num_inference_steps)
        if steps != num_inference_steps or not 1 <= steps < 2**31:
            raise ValueError(f"nodus: set_timesteps needs a positive integer, not {num_inference_steps!r}")
        _lib.check(_lib.lib.nodus_scheduler_set_timesteps(self.handle, steps))

    @property
    def timesteps(self):
        """The timesteps: np.int64 for DDIM/DDPM, np.float32 for flow matching."""
        count = ctypes.c_size_t()
        is_integer = ctypes.c_int32()
        _lib.check(_lib.lib.nodus_scheduler_timesteps(self.handle, None, 0, ctypes.byref(count), ctypes.byref(is_integer)))
        values = np.zeros(count.value, dtype=np.float64)
        buffer = values.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        _lib.check(_lib.lib.nodus_scheduler_timesteps(self.handle, buffer, count.value, ctypes.byref(count), ctypes.byref(is_integer)))
        return values.astype(np.int64 if is_integer.value else np.float32)

    @property
    def init_noise_sigma(self):
        """The standard deviation the initial noise is scaled by."""
        return float(_lib.lib.nodus_scheduler_init_noise_sigma(self.handle))

    def step(self, model_output, t, x, noise=None):
        """One step; returns prev_sample (float32) as diffusers ``step(...).prev_sample``.

        ``noise`` (shape of ``x``) is the noise diffusers would draw inside step (DDPM,
        DDIM with eta > 0).
        """
        output = _tensor.Input(_tensor.float32_array(model_output, "model_output"), "model_output")
        sample = _tensor.Input(_tensor.float32_array(x, "sample"), "sample")
        extra = None if noise is None else _tensor.Input(_tensor.float32_array(noise, "noise"), "noise")
        timestep = np.asarray(t)
        if timestep.size != 1 or timestep.dtype.kind not in "fiu":
            raise ValueError(f"nodus: the timestep must be one number, not {t!r}")
        result = _tensor.Output(sample.array.shape)
        _lib.check(
            _lib.lib.nodus_scheduler_step(
                self.handle,
                output.pointer,
                float(timestep.reshape(())),
                sample.pointer,
                extra.pointer if extra is not None else None,
                result.pointer,
            )
        )
        return result.result()
