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

    def set_timesteps(self, num_inference_steps, input_img_size_numel=None):
        """Prepares ``num_inference_steps`` steps (diffusers ``set_timesteps``).

        ``input_img_size_numel``: the latent's elements per channel (depth x height x width), as
        MONAI's ``RFlowScheduler.set_timesteps`` takes it; flow-matching configs with
        ``use_timestep_transform`` need it, the others ignore it."""
        steps = int(num_inference_steps)
        if steps != num_inference_steps or not 1 <= steps < 2**31:
            raise ValueError(f"nodus: set_timesteps needs a positive integer, not {num_inference_steps!r}")
        if input_img_size_numel is None:
            _lib.check(_lib.lib.nodus_scheduler_set_timesteps(self.handle, steps))
            return
        size = int(input_img_size_numel)
        if size != input_img_size_numel or size < 1:
            raise ValueError(f"nodus: input_img_size_numel must be a positive integer, not {input_img_size_numel!r}")
        _lib.check(_lib.lib.nodus_scheduler_set_timesteps_sized(self.handle, steps, size))

    @property
    def timesteps(self):
        """The timesteps: np.int64 for DDIM, DDPM, DPM-Solver, UniPC, PNDM, LCM; np.float32 for
        flow matching, Euler, Euler ancestral, Heun, LMS (Heun: 2N - 1 entries for N steps)."""
        count = ctypes.c_size_t()
        is_integer = ctypes.c_int32()
        _lib.check(_lib.lib.nodus_scheduler_timesteps(self.handle, None, 0, ctypes.byref(count), ctypes.byref(is_integer)))
        values = np.zeros(count.value, dtype=np.float64)
        buffer = values.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        _lib.check(_lib.lib.nodus_scheduler_timesteps(self.handle, buffer, count.value, ctypes.byref(count), ctypes.byref(is_integer)))
        return values.astype(np.int64 if is_integer.value else np.float32)

    @property
    def init_noise_sigma(self):
        """The standard deviation the initial noise is scaled by, as diffusers computes it
        (after ``set_timesteps`` for the sigma-based schedulers: Euler, Euler ancestral, Heun, LMS)."""
        return float(_lib.lib.nodus_scheduler_init_noise_sigma(self.handle))

    @property
    def draws_noise(self):
        """True when ``step`` needs ``noise`` (diffusers draws it inside the step: DDPM, DDIM with
        eta > 0, Euler ancestral, LCM, Euler with s_churn > 0, SDE DPM-Solver): one tensor per step."""
        return _lib.lib.nodus_scheduler_draws_noise(self.handle) == 1

    @property
    def order(self):
        """diffusers' class attribute ``order``: timesteps per inference step (2 for Heun, else 1)."""
        return int(_lib.lib.nodus_scheduler_order(self.handle))

    def scale_model_input(self, x, t):
        """diffusers ``scale_model_input(x, t)`` as float32: ``x / sqrt(sigma**2 + 1)`` for Euler,
        Euler ancestral, Heun and LMS, ``x`` itself for the others. The scheduler does not move."""
        sample = _tensor.Input(_tensor.float32_array(x, "sample"), "sample")
        timestep = np.asarray(t)
        if timestep.size != 1 or timestep.dtype.kind not in "fiu":
            raise ValueError(f"nodus: the timestep must be one number, not {t!r}")
        result = _tensor.Output(sample.array.shape)
        _lib.check(
            _lib.lib.nodus_scheduler_scale_model_input(
                self.handle, sample.pointer, float(timestep.reshape(())), result.pointer
            )
        )
        return result.result()

    def step(self, model_output, t, x, noise=None):
        """One step; returns prev_sample (float32) as diffusers ``step(...).prev_sample``.

        ``noise`` (shape of ``x``) is the noise diffusers would draw inside step (DDPM,
        DDIM with eta > 0, Euler ancestral, LCM, SDE DPM-Solver); a step that needs it
        and gets None raises InvalidArgumentError. Multistep schedulers keep state:
        step the timesteps in order.
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
