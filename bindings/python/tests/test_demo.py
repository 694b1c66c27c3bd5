"""What `make demo` claims, measured on its output (`nodus demo --tensors`):
nodules appear inside the mask, calcified ones are brighter, the subtlety
slider raises contrast, and the patch outside the mask is kept."""

import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import REPOSITORY

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")
MODEL = os.path.join(REPOSITORY, "models", "nodule-demo")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    result = subprocess.run([CLI, "demo", "--model", MODEL, "--output", str(folder / "demo.png"),
                             "--tensors", str(folder / "demo.safetensors")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (folder / "demo.png").stat().st_size > 0
    return load_file(str(folder / "demo.safetensors"))


def dilate(mask, radius):
    """Binary dilation of [N, H, W] masks by a square of side 2 * radius + 1."""
    padded = np.pad(mask, ((0, 0), (radius, radius), (radius, radius)))
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out = np.maximum(out, padded[:, dy:dy + mask.shape[1], dx:dx + mask.shape[2]])
    return out


def regions(demo):
    mask = (demo["mask"][:, 0] > 0).astype(np.float32)  # the mask column is drawn as -1 / 1
    ring = dilate(mask, 3) - mask
    outside = 1 - dilate(mask, 3)
    return mask, ring, outside


def mean_over(image, region):
    return (image[:, 0] * region).sum(axis=(1, 2)) / region.sum(axis=(1, 2))


def contrast(image, mask, ring):
    """Mean inside the mask minus mean in a 3-pixel ring around it, per patch."""
    return mean_over(image, mask) - mean_over(image, ring)


def test_nodules_appear_inside_the_mask(demo):
    mask, ring, _ = regions(demo)
    for key in ["base", "calcified", "spiculated", "merge"]:
        synthesized = contrast(demo[key], mask, ring)
        empty = contrast(demo["background"], mask, ring)
        # 0.05 = 2.5% of the [-1, 1] range above whatever contrast the empty patch has there
        assert np.all(synthesized > empty + 0.05), f"{key}: contrast {synthesized} vs background {empty}"


def test_calcified_is_brighter_than_plain(demo):
    mask, _, _ = regions(demo)
    calcified, plain = mean_over(demo["calcified"], mask), mean_over(demo["base"], mask)
    assert np.all(calcified > plain), f"mean inside the mask: calcified {calcified} vs plain {plain}"


def test_subtlety_slider_raises_contrast(demo):
    mask, ring, _ = regions(demo)
    weights = demo["subtlety_weights"]
    levels = [np.mean(contrast(demo[f"subtlety_{index}"], mask, ring)) for index in range(len(weights))]
    assert all(a < b for a, b in zip(levels, levels[1:])), f"contrast {levels} at weights {weights}"


def test_background_outside_the_mask_is_kept(demo):
    _, _, outside = regions(demo)
    for key in ["base", "calcified", "spiculated", "merge", "subtlety_0"]:
        difference = mean_over(np.abs(demo[key] - demo["background"]), outside)
        # The VAE's own reconstruction error of these patches is about 0.02.
        assert np.all(difference < 0.05), f"{key}: mean |change| outside the mask {difference}"


def test_masked_sampling_with_lora_matches_diffusers():
    """The demo's sampling path against diffusers + PEFT (tests/reference/make_demo_fixtures.py):
    the conditioning concatenated at every step, the calcified LoRA, CFG, every DDIM step."""
    import nodus
    from references import assert_close, load_ref

    ref = load_ref("demo-sample.safetensors")
    model = nodus.load(os.path.join(MODEL, "dit"))
    model.load_lora_weights(os.path.join(MODEL, "lora-calcified.safetensors"), adapter_name="calcified")
    scheduler = nodus.Scheduler.from_config(os.path.join(MODEL, "scheduler"))
    steps = len(ref["timesteps"])
    final, trajectory = nodus.sample(model, scheduler, steps=steps, guidance_scale=4.0, init_noise=ref["init_noise"],
                                     class_labels=ref["class_labels"], conditioning=ref["conditioning"],
                                     return_trajectory=True)
    assert np.array_equal(scheduler.timesteps, ref["timesteps"])
    for step in range(steps):
        assert_close(trajectory[step], ref["trajectory"][step], 1e-3, f"masked sampling step {step}")
