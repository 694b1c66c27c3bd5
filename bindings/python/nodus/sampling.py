"""The guided denoising loop ``nodus.sample(...)``, ensemble statistics, and ``nodus.randn``."""

import ctypes

import numpy as np

from . import _lib, _tensor
from .context import Context


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
    image_latents=None,
    strength=1.0,
    mask=None,
):
    """Runs a diffusers pipeline's denoising loop with classifier-free guidance.

    Args:
        model: a denoising ``nodus.Model``: DiT, UNet, a 3D DiT (MedSyn2), or an ONNX export of one;
            or a ``nodus.Context`` of one, to sample in that context (its threads and adapter
            strengths; an adapter schedule changes the context's strengths).
        scheduler: a ``nodus.Scheduler`` (its timesteps are set to ``steps``).
        steps: inference steps.
        guidance_scale: CFG scale; <= 1 disables guidance.
        init_noise: the starting noise [B, C, H, W] (or [B, C, D, H, W] for volumes), unscaled (float64 is converted
            to float32): ``sample`` multiplies it by ``scheduler.init_noise_sigma``
            after ``set_timesteps``, as diffusers pipelines do; with ``image_latents``,
            the noise added to the image (see there). A batch of K latents is a
            K-sample ensemble (see ``batch_statistics``). The model sees
            ``scheduler.scale_model_input`` of the latent at every timestep.
        class_labels: DiT labels: B labels (the null class is added) or 2B
            labels [cond..., null...].
        encoder_hidden_states: UNet context in Stable Diffusion order: a pair
            ``(uncond, cond)`` of [N, L, W] arrays (N = B, or 1 shared by the
            batch; without guidance only ``cond`` is used), or one array [2B or 2,
            L, W] ordered [uncond..., cond...] ([B or 1, L, W] without guidance).
        step_noise: [T, B, C, H, W] noise for steps that draw it (DDPM, Euler ancestral, LCM, SDE
            DPM-Solver), one per timestep that runs: T = len(scheduler.timesteps) after
            ``set_timesteps(steps)`` (``steps``, one more for a few trailing-spacing schedules,
            2 steps - 1 for Heun, steps + 1 or steps + 9 for PNDM).
        return_trajectory: also return the latent after every step.
        callback: ``fn(done, total)`` called after each step; return False to cancel
            (raises NodusError with status "cancelled").
        adapter_schedule: LoRA per step, ``[(step, {"A": 4.0}), ...]``: before
            step ``step`` (0-based) runs, exactly these adapters become active
            with these weights (a slider, or switching adapters). The model
            keeps the last set afterwards.
        conditioning: [B, C', H, W] (or [B, C', D, H, W]) channels concatenated after the
            noisy latent at every step (a baseline latent; the mask and masked-image latent of
            an inpainting model; MedSyn2's mask latent). With guidance it may have 2B rows, one
            per model-batch row in the guidance order (SD: [uncond..., cond...]), so that the
            unconditional half sees other channels (an empty mask latent).
        image_latents: img2img / inpainting: the known image's latent [B, C, H, W]
            (times the VAE's scaling factor). The last ``int(steps * strength)``
            timesteps run, from ``scheduler.add_noise(image_latents, init_noise, t0)``
            (from ``init_noise * init_noise_sigma`` when inpainting at strength 1),
            as diffusers' img2img and inpainting pipelines do.
        strength: in [0, 1]; below 1 needs ``image_latents``.
        mask: latent-blending inpainting for models without mask channels:
            [B or 1, 1, H, W], 1 where the latent is generated; after every step
            the rest is ``image_latents`` noised to the next timestep.
    Returns:
        ``final`` or ``(final, trajectory)`` when ``return_trajectory``.
    """
    if init_noise is None:
        raise ValueError("nodus: sample() needs init_noise, the starting latent [B, C, H, W]")
    steps_value = int(steps)
    if steps_value != steps or steps_value < 1:
        raise ValueError(f"nodus: steps must be a positive integer, not {steps!r}")

    params = _lib.SampleParams()
    _lib.lib.nodus_sample_params_init(ctypes.byref(params))
    params.steps = steps_value
    params.guidance_scale = float(guidance_scale)
    params.strength = float(strength)

    noise = _tensor.Input(_tensor.float32_array(init_noise, "init_noise"), "init_noise")
    if noise.array.ndim not in (4, 5):
        raise ValueError(f"nodus: init_noise must be [B, C, H, W] or [B, C, D, H, W], got shape {noise.array.shape}")
    params.init_noise = noise.pointer

    # One latent per timestep that runs: usually `steps`, one more for a few
    # trailing-spacing schedules, fewer from diffusers' get_timesteps with strength.
    scheduler.set_timesteps(steps_value, input_img_size_numel=int(np.prod(noise.array.shape[2:])))
    timestep_count = len(scheduler.timesteps)
    if image_latents is not None:
        timestep_count -= max(steps_value - min(int(steps_value * float(strength)), steps_value), 0) * scheduler.order

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
        if condition.array.ndim != noise.array.ndim:
            raise ValueError(f"nodus: conditioning must have init_noise's rank {noise.array.ndim}, got shape {condition.array.shape}")
        params.conditioning = condition.pointer

    inputs = {
        "encoder_hidden_states": _context(encoder_hidden_states, float(guidance_scale) > 1),
        "image_latents": image_latents,
        "mask": mask,
    }
    kept = []
    for name, value in inputs.items():
        if value is not None:
            tensor = _tensor.Input(_tensor.float32_array(value, name), name)
            kept.append(tensor)
            setattr(params, name, tensor.pointer)

    schedule = _adapter_schedule(adapter_schedule)
    if schedule is not None:
        params.adapter_schedule = schedule[0]
        params.adapter_schedule_count = len(schedule[0])

    progress = _lib.Progress(callback)
    progress.install(params)

    final = _tensor.Output(noise.array.shape)
    if isinstance(model, Context):
        params.context = model.handle
        model = model.model
    status = _lib.lib.nodus_sample(model.handle, scheduler.handle, ctypes.byref(params), final.pointer)
    progress.raise_failure()
    _lib.check(status)
    if return_trajectory:
        return final.result(), trajectory.result()
    return final.result()


def batch_statistics(samples, correction=1):
    """Pixel-wise ``(mean, variance)`` over the first axis of ``samples`` [K, ...] (K >= 2),
    as ``torch.mean(x, 0)`` and ``torch.var(x, 0, correction=correction)``."""
    source = _tensor.Input(_tensor.float32_array(samples, "samples"), "samples")
    if source.array.ndim < 1 or source.array.shape[0] < 2:
        raise ValueError(f"nodus: samples must be [K, ...] with K >= 2, got shape {source.array.shape}")
    mean = _tensor.Output(source.array.shape[1:])
    variance = _tensor.Output(source.array.shape[1:])
    _lib.check(_lib.lib.nodus_batch_statistics(source.pointer, int(correction), mean.pointer, variance.pointer))
    return mean.result(), variance.result()


def _context(states, guided):
    """The C layout of ``encoder_hidden_states``: a pair (uncond, cond) becomes [uncond..., cond...]."""
    if not isinstance(states, (tuple, list)):
        return states
    if len(states) != 2:
        raise ValueError("nodus: encoder_hidden_states must be one array or a pair (uncond, cond)")
    uncond, cond = (_tensor.float32_array(part, name) for part, name in zip(states, ("uncond", "cond")))
    if uncond.shape != cond.shape or cond.ndim != 3:
        raise ValueError(f"nodus: encoder_hidden_states (uncond, cond) must both be [N, L, W], got {uncond.shape} and {cond.shape}")
    return np.concatenate([uncond, cond]) if guided else cond


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
