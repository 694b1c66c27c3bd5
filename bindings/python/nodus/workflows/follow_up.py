"""``follow_up``: NAMD's follow-up prediction, K samples of a slice one year on from a
baseline slice and an embedding of the patient's record, with their mean and
pixel-wise variance."""

import os

import numpy as np

from .. import medical
from .._lib import VERSION
from ..model import Model, load
from ..medical._atomic import write_atomically
from ..sampling import batch_statistics, randn, sample
from ..scheduler import Scheduler
from .intensity import IntensityMapping
from .output_files import OutputFiles
from .provenance import file_sha256, write_json
from .resampling import resize_weights

# Stable Diffusion 1.5's training schedule under DDIM, NAMD's sampler, when no scheduler is given.
SD_DDIM = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
           "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
           "prediction_type": "epsilon"}


def _baseline_image(path, slice_index):
    """A MedicalImage of the baseline: a DICOM or PNG slice, or one axial slice of a NIfTI volume."""
    lower = path.lower()
    if lower.endswith(".nii") or lower.endswith(".nii.gz"):
        volume = medical.read_nifti(path).values
        volume = volume[0] if volume.ndim == 4 else volume
        index = volume.shape[0] // 2 if slice_index is None else int(slice_index)
        if not 0 <= index < volume.shape[0]:
            raise ValueError(f"'{path}' has {volume.shape[0]} axial slices; slice {index} does not exist")
        return medical.MedicalImage(values=volume[index], path=path)
    if slice_index is not None:
        raise ValueError(f"slice_index applies to NIfTI volumes, not to '{path}'")
    return medical.read_image(path)


def _context(path):
    """The record's embedding [1, tokens, width] from .npy or .safetensors (its only tensor, else 'context')."""
    if path.endswith(".npy"):
        array = np.load(path)
    elif path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        tensors = load_file(path)
        if len(tensors) != 1 and "context" not in tensors:
            raise ValueError(f"'{path}' holds {sorted(tensors)}; name the embedding 'context'")
        array = tensors["context"] if "context" in tensors else next(iter(tensors.values()))
    else:
        raise ValueError(f"the context '{path}' must be a .npy or .safetensors file")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] != 1:
        raise ValueError(f"the context '{path}' must be [tokens, width] or [1, tokens, width], got {array.shape}")
    return array


def follow_up(unet, vae, baseline, context, samples=20, seed=0, output_dir=".", steps=50, guidance_scale=1.0,
              scheduler=None, name=None, slice_index=None, threads=None):
    """Predicts a follow-up slice K = `samples` times and writes the samples, their mean
    and their pixel-wise variance.

    Args:
        unet: an 8-channel UNet2DConditionModel folder (noisy latent + baseline latent) or a loaded Model.
        vae: its AutoencoderKL folder or loaded Model.
        baseline: a DICOM or PNG slice, or a NIfTI volume (its middle axial slice, or `slice_index`).
        context: the record's embedding, .npy or .safetensors, [tokens, width] (the UNet's context width).
        samples: K (at least 2, for the variance).
        seed: the initial noise is ``nodus.randn([K, 4, h, w], seed)``.
        steps: sampler steps; scheduler: a config path or dict (default: SD-1.5's DDIM).
        guidance_scale: > 1 runs CFG against a zero context (SD order [uncond, cond]).

    The baseline is mapped linearly to [-1, 1] (its first window, else its storage's
    range, else its values' range; MONOCHROME1 flipped), resized to the UNet's sample
    size times the VAE's downsampling, copied to the VAE's input channels and encoded
    (posterior mean x scaling factor). The samples are decoded and averaged over
    channels. Outputs, in the model's [-1, 1] pixel units: NAME-mean.npy,
    NAME-variance.npy (``torch.var(samples, 0, correction=1)``), NAME-sample-<k>.png
    (16-bit, brightness (x + 1) / 2), and NAME.json. Returns
    {"mean": path, "variance": path, "samples": [paths], "sidecar": path}.
    """
    count = int(samples)
    if count != samples or count < 2:
        raise ValueError(f"samples must be an integer of at least 2 (the variance needs two), not {samples!r}")
    unet_model = unet if isinstance(unet, Model) else load(unet, threads=threads)
    vae_model = vae if isinstance(vae, Model) else load(vae, threads=threads)
    if unet_model.kind != "unet" or vae_model.kind != "vae":
        raise ValueError(f"follow_up needs a UNet and a VAE, got a {unet_model.kind} and a {vae_model.kind}")
    vae_config, unet_config = vae_model.config, unet_model.config
    latent_channels = int(vae_config.get("latent_channels", 4))
    if int(unet_config["in_channels"]) != 2 * latent_channels:
        raise ValueError(f"the UNet takes {unet_config['in_channels']} channels; the follow-up path needs "
                         f"{2 * latent_channels} (noisy latent + baseline latent)")
    baseline_path, context_path = os.fspath(baseline), os.fspath(context)
    image = _baseline_image(baseline_path, slice_index)
    embedding = _context(context_path)
    if embedding.shape[2] != int(unet_config["cross_attention_dim"]):
        raise ValueError(f"the context '{context_path}' is {embedding.shape[2]} wide; the UNet attends to "
                         f"{unet_config['cross_attention_dim']}")

    latent_size = int(unet_config["sample_size"])
    size = latent_size * 2 ** (len(vae_config["block_out_channels"]) - 1)
    mapping = IntensityMapping.of(image)
    height, width = image.values.shape
    pixels = mapping.to_pixels(np.asarray(image.values, dtype=np.float64))
    resized = resize_weights(height, size, np.arange(size)) @ pixels @ resize_weights(width, size, np.arange(size)).T
    channels = int(vae_config.get("in_channels", 3))
    picture = np.repeat(np.clip(resized, -1, 1).astype(np.float32)[None, None], channels, axis=1)
    scaling = float(vae_config.get("scaling_factor", 0.18215))
    mean_latent, _ = vae_model.encode(picture)
    baseline_latent = np.repeat(mean_latent * scaling, count, axis=0)

    scheduler_config = SD_DDIM if scheduler is None else scheduler
    noise_scheduler = Scheduler.from_config(scheduler_config)
    guided = float(guidance_scale) > 1
    states = (np.zeros_like(embedding), embedding) if guided else embedding
    noise = randn((count, latent_channels, latent_size, latent_size), seed=int(seed))
    latents = sample(unet_model, noise_scheduler, steps=int(steps), guidance_scale=float(guidance_scale),
                     init_noise=noise, encoder_hidden_states=states, conditioning=baseline_latent)
    decoded = vae_model.decode(latents / scaling).mean(axis=1)  # [K, size, size]
    mean, variance = batch_statistics(decoded, correction=1)

    stem = name or os.path.basename(baseline_path).split(".")[0] + "-follow-up"
    os.makedirs(output_dir, exist_ok=True)
    paths = {"mean": os.path.join(output_dir, stem + "-mean.npy"),
             "variance": os.path.join(output_dir, stem + "-variance.npy"),
             "samples": [os.path.join(output_dir, f"{stem}-sample-{index}.png") for index in range(count)],
             "sidecar": os.path.join(output_dir, stem + ".json")}
    provenance = {
        "workflow": "follow_up",
        "nodus_version": VERSION,
        "unet": {"path": unet_model.path, "sha256": file_sha256(unet_model.path)},
        "vae": {"path": vae_model.path, "sha256": file_sha256(vae_model.path)},
        "baseline": {"path": baseline_path, "sha256": file_sha256(baseline_path), "slice_index": slice_index},
        "context": {"path": context_path, "sha256": file_sha256(context_path)},
        "samples": count, "seed": int(seed), "steps": int(steps), "guidance_scale": float(guidance_scale),
        "scheduler": noise_scheduler.class_name,
        "scheduler_config": scheduler_config if isinstance(scheduler_config, dict) else os.fspath(scheduler_config),
        "intensity": {"lower": mapping.lower, "upper": mapping.upper, "inverted": mapping.inverted},
        "size": size,
        "outputs": {"mean": os.path.basename(paths["mean"]), "variance": os.path.basename(paths["variance"]),
                    "samples": [os.path.basename(path) for path in paths["samples"]]},
    }
    with OutputFiles() as outputs:
        for key in ("mean", "variance"):
            array = mean if key == "mean" else variance
            write_atomically(outputs.add(paths[key]), lambda temporary, data=array: np.save(temporary, data),
                                     suffix=".npy")
        for index, path in enumerate(paths["samples"]):
            medical.write_png(outputs.add(path), brightness=(decoded[index] + 1) / 2, bits=16)
        write_json(outputs.add(paths["sidecar"]), provenance)
    return paths
