"""The seed's nodule model, loaded once: a mask-conditioned DiT, its VAE, its
scheduler and the characteristic LoRAs of one model folder."""

import json
import os

import numpy as np

from ..model import load
from ..sampling import randn, sample
from ..scheduler import Scheduler
from .provenance import file_sha256

# The seed samples at the SD VAE's 256-pixel patch cut from a 960 x 960 radiograph.
SEED_STANDARD_SIZE = 960


class NoduleModel:
    """A nodule model folder: ``dit/``, ``vae/``, ``scheduler/``, LoRAs named
    ``lora-<characteristic>.safetensors`` or ``lora-<characteristic>/`` (PEFT
    folder), and optionally ``workflow.json``:

        {"standard_size": 960, "class_label": 0, "guidance_scale": 4.0,
         "subtlety_adapter": "subtlety"}

    (those are the defaults). The patch is the DiT's sample size times the VAE's
    downsampling (the seed: 32 x 8 = 256). The DiT's input is
    ``[noisy latent, latent mask, masked-image latent]`` (``in_channels`` =
    2 x latent channels + 1), as in models/nodule-demo/README.md.
    """

    def __init__(self, folder, threads=None, scheduler=None):
        self.folder = os.fspath(folder)
        settings = {}
        settings_path = os.path.join(self.folder, "workflow.json")
        if os.path.exists(settings_path):
            with open(settings_path) as stream:
                settings = json.load(stream)
        self.standard_size = int(settings.get("standard_size", SEED_STANDARD_SIZE))
        self.class_label = int(settings.get("class_label", 0))
        self.guidance_scale = float(settings.get("guidance_scale", 4.0))
        self.subtlety_adapter = settings.get("subtlety_adapter", "subtlety")
        for part in ("dit", "vae"):
            if not os.path.isdir(os.path.join(self.folder, part)):
                raise ValueError(f"'{self.folder}' is not a nodule model folder: it has no {part}/")
        self.dit = load(os.path.join(self.folder, "dit"), threads=threads)
        self.vae = load(os.path.join(self.folder, "vae"), threads=threads)
        if self.dit.kind != "dit" or self.vae.kind != "vae":
            raise ValueError(f"'{self.folder}': dit/ must hold a DiT and vae/ a VAE, "
                             f"found a {self.dit.kind} and a {self.vae.kind}")
        self.scheduler_config = self._scheduler_config(scheduler)
        self.scheduler = Scheduler.from_config(self.scheduler_config)
        self.adapter_paths = self._adapter_paths()
        for name, path in self.adapter_paths.items():
            self.dit.load_lora_weights(path, adapter_name=name)
        vae_config = self.vae.config
        self.scaling_factor = float(vae_config.get("scaling_factor", 0.18215))
        self.latent_channels = int(vae_config.get("latent_channels", 4))
        # A gray VAE, or an RGB one such as Stable Diffusion's: the gray patch goes to every input
        # channel, and the decoded channels are averaged back to gray.
        self.image_channels = int(vae_config.get("in_channels", 3))
        downsampling = 2 ** (len(vae_config.get("block_out_channels", [0, 0, 0, 0])) - 1)
        self.latent_size = int(self.dit.config["sample_size"])
        self.patch_size = self.latent_size * downsampling
        expected = 2 * self.latent_channels + 1
        if int(self.dit.config["in_channels"]) != expected:
            raise ValueError(f"'{self.folder}/dit' takes {self.dit.config['in_channels']} channels; a mask-conditioned "
                             f"nodule model takes {expected} (latent, mask, masked-image latent)")
        self._digests = None

    def _scheduler_config(self, override):
        """The folder's scheduler config, or another scheduler class on its training betas
        (`override`: a class name such as "DPMSolverMultistepScheduler", or a full config dict)."""
        if isinstance(override, dict):
            return dict(override)
        path = os.path.join(self.folder, "scheduler", "scheduler_config.json")
        with open(path) as stream:
            config = json.load(stream)
        if override is not None:
            config["_class_name"] = str(override)
            if override == "DPMSolverMultistepScheduler":
                config.setdefault("algorithm_type", "dpmsolver++")
                config.setdefault("solver_order", 2)
        return config

    def _adapter_paths(self):
        adapters = {}
        for entry in sorted(os.listdir(self.folder)):
            if not entry.startswith("lora-"):
                continue
            name = entry[len("lora-"):]
            if name.endswith(".safetensors"):
                name = name[: -len(".safetensors")]
            elif not os.path.isdir(os.path.join(self.folder, entry)):
                continue
            adapters[name] = os.path.join(self.folder, entry)
        return adapters

    def adapter_weights(self, adapters=None, subtlety=None):
        """The active adapters as {name: weight}: `adapters` by characteristic, plus the
        subtlety slider's adapter at 2^(2 + subtlety) when `subtlety` is given."""
        weights = {str(name): float(weight) for name, weight in (adapters or {}).items()}
        if subtlety is not None:
            if self.subtlety_adapter in weights:
                raise ValueError(f"give the '{self.subtlety_adapter}' adapter a weight or a subtlety level, not both")
            weights[self.subtlety_adapter] = float(2.0 ** (2 + float(subtlety)))
        unknown = sorted(set(weights) - set(self.adapter_paths))
        if unknown:
            raise ValueError(f"'{self.folder}' has no LoRA for {', '.join(map(repr, unknown))}; "
                             f"it has {', '.join(sorted(self.adapter_paths)) or 'none'}")
        return weights

    def digests(self):
        """SHA-256 of every part (computed once): {"dit", "vae", "scheduler", "adapters": {...}}."""
        if self._digests is None:
            self._digests = {
                "dit": file_sha256(os.path.join(self.folder, "dit")),
                "vae": file_sha256(os.path.join(self.folder, "vae")),
                "adapters": {name: file_sha256(path) for name, path in self.adapter_paths.items()},
            }
        return self._digests

    def paint(self, patch, mask, weights, seed, steps, guidance_scale=None):
        """A nodule painted into `patch` [P, P] (pixels in [-1, 1]) inside `mask` [P, P]
        (1 = nodule): the masked patch is VAE-encoded (the posterior mean, as in
        training), the DiT samples with guidance from ``nodus.randn`` noise of `seed`,
        and the latent is decoded. Returns the decoded patch [P, P] (float32)."""
        size = self.patch_size
        patch = np.asarray(patch, dtype=np.float32).reshape(1, 1, size, size)
        mask = np.asarray(mask, dtype=np.float32).reshape(1, 1, size, size)
        mean, _ = self.vae.encode(np.repeat(patch * (1 - mask), self.image_channels, axis=1))
        masked_latent = mean * self.scaling_factor
        factor = size // self.latent_size
        latent_mask = mask.reshape(1, 1, self.latent_size, factor, self.latent_size, factor).max(axis=(3, 5))
        noise = randn((1, self.latent_channels, self.latent_size, self.latent_size), seed=seed)
        schedule = [(0, weights)] if weights else None
        if not weights and self.adapter_paths:
            self.dit.disable_lora()
        elif weights:
            self.dit.enable_lora()
        latent = sample(self.dit, self.scheduler, steps=steps,
                        guidance_scale=self.guidance_scale if guidance_scale is None else guidance_scale,
                        init_noise=noise, class_labels=[self.class_label],
                        conditioning=np.concatenate([latent_mask, masked_latent], axis=1),
                        adapter_schedule=schedule)
        decoded = self.vae.decode(latent / self.scaling_factor)[0]
        if len(decoded) == 1:
            return decoded[0]
        gray = decoded[0].copy()
        for plane in decoded[1:]:  # summed in channel order, as the CLI does
            gray += plane
        return gray / np.float32(len(decoded))
