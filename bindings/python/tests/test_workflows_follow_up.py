"""nodus.workflows.follow_up on the 8-channel UNet fixture: the samples are the plain
pipeline's, the variance map is torch.var(correction=1) over them."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("pydicom")

import nodus  # noqa: E402
from nodus import medical, workflows  # noqa: E402
from nodus.workflows.follow_up import SD_DDIM  # noqa: E402

from conftest import fixture_path  # noqa: E402
from medical_samples import make_dicom  # noqa: E402
from radiographs import synthetic_radiograph  # noqa: E402


def test_follow_up_matches_the_plain_pipeline(tmp_path):
    stored = synthetic_radiograph(40, 40, seed=3)
    make_dicom(tmp_path / "slice.dcm", stored, bits_stored=12, intercept=-1024, window=(-600, 1500))
    context = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "context.npy", context)
    result = workflows.follow_up(fixture_path("unet-tiny-cond"), fixture_path("vae-tiny"), tmp_path / "slice.dcm",
                                 tmp_path / "context.npy", samples=4, seed=1, steps=10, output_dir=tmp_path / "out")
    mean, variance = np.load(result["mean"]), np.load(result["variance"])
    assert mean.shape == variance.shape == (16, 16) and len(result["samples"]) == 4

    # The same steps by hand: window to [-1, 1], resize 40 -> 16, encode, sample, decode.
    unet, vae = nodus.load(fixture_path("unet-tiny-cond")), nodus.load(fixture_path("vae-tiny"))
    image = medical.read_dicom(tmp_path / "slice.dcm")
    pixels = (image.values.astype(np.float64) - (-600 - 750)) / 1500 * 2 - 1
    from nodus.workflows.resampling import resize_weights

    weights = resize_weights(40, 16, np.arange(16))
    picture = np.clip(weights @ pixels @ weights.T, -1, 1).astype(np.float32)
    latent_mean, _ = vae.encode(np.repeat(picture[None, None], 3, axis=1))
    latents = nodus.sample(unet, nodus.Scheduler.from_config(SD_DDIM), steps=10, guidance_scale=1.0,
                           init_noise=nodus.randn((4, 4, 8, 8), seed=1), encoder_hidden_states=context[None],
                           conditioning=np.repeat(latent_mean * 0.18215, 4, axis=0))
    decoded = vae.decode(latents / 0.18215).mean(axis=1).astype(np.float64)
    scale = np.abs(decoded).max()
    assert np.abs(mean - decoded.mean(axis=0)).max() / scale < 1e-5
    assert np.abs(variance - decoded.var(axis=0, ddof=1)).max() / decoded.var(axis=0, ddof=1).max() < 1e-5
    first = medical.read_png(result["samples"][0]).values
    assert np.abs(first / 65535 - (np.clip(decoded[0], -1, 1) + 1) / 2).max() <= 1 / 65535
    sidecar = json.load(open(result["sidecar"]))
    assert sidecar["samples"] == 4 and sidecar["seed"] == 1 and sidecar["scheduler"] == "DDIMScheduler"


def test_follow_up_reads_png_and_nifti(tmp_path):
    np.save(tmp_path / "context.npy", np.zeros((2, 64), np.float32))
    medical.write_png(tmp_path / "slice.png", samples=synthetic_radiograph(24, 30, seed=1), bits=16)
    volume = np.stack([synthetic_radiograph(20, 20, seed=seed).astype(np.float32) - 1024 for seed in range(3)])
    medical.write_nifti(tmp_path / "ct.nii.gz", volume, dtype="float32")
    for baseline in ("slice.png", "ct.nii.gz"):
        result = workflows.follow_up(fixture_path("unet-tiny-cond"), fixture_path("vae-tiny"), tmp_path / baseline,
                                     tmp_path / "context.npy", samples=2, steps=3, output_dir=tmp_path / ("out-" + baseline))
        assert np.load(result["variance"]).min() >= 0


def test_follow_up_bad_inputs(tmp_path):
    np.save(tmp_path / "narrow.npy", np.zeros((2, 32), np.float32))
    medical.write_png(tmp_path / "slice.png", samples=synthetic_radiograph(24, 30, seed=1), bits=16)
    with pytest.raises(ValueError, match="is 32 wide; the UNet attends to 64"):
        workflows.follow_up(fixture_path("unet-tiny-cond"), fixture_path("vae-tiny"), tmp_path / "slice.png",
                            tmp_path / "narrow.npy", samples=2, steps=2, output_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="at least 2"):
        workflows.follow_up(fixture_path("unet-tiny-cond"), fixture_path("vae-tiny"), tmp_path / "slice.png",
                            tmp_path / "narrow.npy", samples=1, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
