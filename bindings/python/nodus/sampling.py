"""The guided denoising loop: ``nodus.sample(...)``, and ``nodus.randn``."""

import ctypes

import numpy as np

from . import _lib, _tensor
from .errors import UnsupportedError


def sample(
    model,
    scheduler,
    steps=50,
    guidance_scale=4.0,
    init_noise=None,
    class_labels=None,
    encoder_hidden_states=None,
    step_noise=None,
    return_trajectory=False,
    callback=None,
    adapter_schedule=None,
    conditioning=None,
):
    """Runs a diffusers pipeline's denoising loop with classifier-free guidance.

    Args:
        model: a DiT ``nodus.Model``.
        scheduler: a ``nodus.Scheduler`` (its timesteps are set to ``steps``).
        steps: inference steps.
        guidance_scale: CFG scale; <= 1 disables guidance.
        init_noise: the starting latent [B, C, H, W], already scaled by
            ``scheduler.init_noise_sigma`` (float64 is converted to float32).
        class_labels: DiT labels: B labels (the null class is added) or 2B
            labels [cond..., null...].
        encoder_hidden_states: UNet conditioning (not supported yet by the C ABI).
        step_noise: [T, B, C, H, W] noise for steps that draw it (DDPM), T = len(scheduler.timesteps)
            after ``set_timesteps(steps)`` (``steps``, or one more for a few trailing-spacing schedules).
        return_trajectory: also return the latent after every step.
        callback: ``fn(done, total)`` called after each step; return False to cancel
            (raises NodusError with status "cancelled").
        adapter_schedule: LoRA per step, ``[(step, {"A": 4.0}), ...]``: before
            step ``step`` (0-based) runs, exactly these adapters become active
            with these weights (a slider, or switching adapters). The model
            keeps the last set afterwards.
        conditioning: [B, C', H, W] channels concatenated after the noisy latent at
            every step (mask and masked-image latent of an inpainting-style model).
    Returns:
        ``final`` or ``(final, trajectory)`` when ``return_trajectory``.
    """
    if init_noise is None:
        raise ValueError("nodus: sample() needs init_noise, the starting latent [B, C, H, W]")
    if encoder_hidden_states is not None:
        raise UnsupportedError("unsupported", "nodus.sample: encoder_hidden_states (UNet) is not supported yet")
    steps_value = int(steps)
    if steps_value != steps or steps_value < 1:
        raise ValueError(f"nodus: steps must be a positive integer, not {steps!r}")

    params = _lib.SampleParams()
    _lib.lib.nodus_sample_params_init(ctypes.byref(params))
    params.steps = steps_value
    params.guidance_scale = float(guidance_scale)

    # One latent per timestep: usually `steps`, one more for a few trailing-spacing schedules.
    scheduler.set_timesteps(steps_value)
    timestep_count = len(scheduler.timesteps)

    noise = _tensor.Input(_tensor.float32_array(init_noise, "init_noise"), "init_noise")
    if noise.array.ndim != 4:
        raise ValueError(f"nodus: init_noise must be [B, C, H, W], got shape {noise.array.shape}")
    params.init_noise = noise.pointer

    labels = None
    if class_labels is not None:
        labels = np.asarray(class_labels)
        if labels.dtype.kind not in "iu":
            raise ValueError(f"nodus: class_labels must be integers, got dtype {labels.dtype}")
        labels = np.ascontiguousarray(labels.reshape(-1), dtype=np.int64)
        params.class_labels = labels.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        params.class_label_count = labels.size

    extra = None
    if step_noise is not None:
        extra = _tensor.Input(_tensor.float32_array(step_noise, "step_noise"), "step_noise")
        expected = (timestep_count,) + noise.array.shape
        if extra.array.shape != expected:
            raise ValueError(f"nodus: step_noise must have shape {expected}, got {extra.array.shape}")
        params.step_noise = extra.pointer

    trajectory = None
    if return_trajectory:
        trajectory = _tensor.Output((timestep_count,) + noise.array.shape)
        params.trajectory = trajectory.pointer

    condition = None
    if conditioning is not None:
        condition = _tensor.Input(_tensor.float32_array(conditioning, "conditioning"), "conditioning")
        if condition.array.ndim != 4:
            raise ValueError(f"nodus: conditioning must be [B, C, H, W], got shape {condition.array.shape}")
        params.conditioning = condition.pointer

    schedule = _adapter_schedule(adapter_schedule)
    if schedule is not None:
        params.adapter_schedule = schedule[0]
        params.adapter_schedule_count = len(schedule[0])

    failure = []
    if callback is not None:

        def progress(done, total, user_data):
            try:
                return 1 if callback(done, total) is False else 0
            except BaseException as error:  # re-raised after the C call returns
                failure.append(error)
                return 1

        params.progress = _lib.ProgressCallback(progress)

    final = _tensor.Output(noise.array.shape)
    status = _lib.lib.nodus_sample(model.handle, scheduler.handle, ctypes.byref(params), final.pointer)
    if failure:
        raise failure[0]
    _lib.check(status)
    if return_trajectory:
        return final.result(), trajectory.result()
    return final.result()


def randn(shape, seed):
    """``torch.randn(shape, generator=torch.Generator().manual_seed(seed))`` as float32, bit for bit."""
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(size) for size in shape)
    if len(shape) > _lib.MAX_DIMS or any(size < 0 for size in shape):
        raise ValueError(f"nodus: randn needs at most {_lib.MAX_DIMS} non-negative sizes, got {shape}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"nodus: seed must be in 0 ... 2**64-1, got {seed}")
    output = _tensor.Output(shape)
    output.struct.dtype = _lib.DTYPE_FLOAT32
    output.struct.ndim = len(shape)
    for index, size in enumerate(shape):
        output.struct.shape[index] = size
    _lib.check(_lib.lib.nodus_randn(seed, output.pointer))
    return output.array


def _adapter_schedule(schedule):
    """The C entries for ``[(step, {name: weight}), ...]`` and the buffers they point into."""
    if not schedule:
        return None
    entries = (_lib.AdapterScheduleEntry * len(schedule))()
    keep = []
    for index, item in enumerate(schedule):
        try:
            step, adapters = item
        except (TypeError, ValueError):
            raise ValueError(f"nodus: adapter_schedule[{index}] must be (step, {{name: weight}}), not {item!r}") from None
        if not isinstance(adapters, dict):
            raise ValueError(f"nodus: adapter_schedule[{index}] must map adapter names to weights")
        names = _lib.string_array(list(adapters))
        weights = (ctypes.c_float * max(len(adapters), 1))(*[float(weight) for weight in adapters.values()])
        keep += [names, weights]
        entries[index].step = int(step)
        entries[index].count = len(adapters)
        entries[index].names = ctypes.cast(names, ctypes.POINTER(ctypes.c_char_p))
        entries[index].weights = ctypes.cast(weights, ctypes.POINTER(ctypes.c_float))
    return entries, keep
