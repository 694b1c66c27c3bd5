"""Variants of the demo nodule model for the workflow tests."""

import json
import os

import numpy as np

from conftest import REPOSITORY

DEMO = os.path.join(REPOSITORY, "models", "nodule-demo")


def rgb_vae_variant(folder):
    """models/nodule-demo with its gray VAE made an RGB one, as Stable Diffusion's: conv_in reads
    a third of each of 3 identical channels, conv_out writes the gray plane to all 3."""
    from safetensors.numpy import load_file, save_file

    os.makedirs(folder / "vae")
    for name in os.listdir(DEMO):
        if name != "vae":
            os.symlink(os.path.join(DEMO, name), folder / name)
    weights = load_file(os.path.join(DEMO, "vae", "diffusion_pytorch_model.safetensors"))
    weights["encoder.conv_in.weight"] = np.repeat(weights["encoder.conv_in.weight"] / 3, 3, axis=1)
    weights["decoder.conv_out.weight"] = np.repeat(weights["decoder.conv_out.weight"], 3, axis=0)
    weights["decoder.conv_out.bias"] = np.repeat(weights["decoder.conv_out.bias"], 3, axis=0)
    save_file(weights, folder / "vae" / "diffusion_pytorch_model.safetensors")
    config = json.load(open(os.path.join(DEMO, "vae", "config.json")))
    config["in_channels"] = config["out_channels"] = 3
    json.dump(config, open(folder / "vae" / "config.json", "w"))
    return folder
