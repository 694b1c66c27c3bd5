"""`nodus insert-nodule` (and the CLI's other workflow commands) against the Python
workflows: the same pixels, sidecars and errors."""

import json
import os
import subprocess

import numpy as np
import pytest

pytest.importorskip("pydicom", reason="the workflow tests need nodus[medical]")

from nodus import medical, workflows  # noqa: E402
from nodus.workflows.patch_placement import PatchPlacement  # noqa: E402

from conftest import REPOSITORY  # noqa: E402
from medical_samples import dciodvfy_errors, make_dicom  # noqa: E402
from nodule_variants import rgb_vae_variant  # noqa: E402
from radiographs import synthetic_radiograph  # noqa: E402

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")
DEMO = os.path.join(REPOSITORY, "models", "nodule-demo")


def run(*arguments):
    return subprocess.run([CLI, *map(str, arguments)], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_insert_nodule_matches_python(tmp_path, kind):
    stored = synthetic_radiograph(420, 380, seed=6)
    if kind == "png":
        source = tmp_path / "cxr.png"
        medical.write_png(source, samples=stored, bits=16)
    else:
        source = tmp_path / "cxr.dcm"
        make_dicom(source, 4095 - stored, bits_stored=12, photometric="MONOCHROME1", modality="CR",
                   window=(2048, 3000))
    arguments = dict(center=(120, 200), diameter=26, adapters={"spiculated": 0.5}, subtlety=-3, seed=2, steps=8)
    python = workflows.insert_nodule(DEMO, source, output_dir=tmp_path / "python", **arguments)
    result = run("insert-nodule", DEMO, "--image", source, "--center", "120,200", "--diameter", 26,
                 "--lora", "spiculated:0.5", "--subtlety", -3, "--seed", 2, "--steps", 8,
                 "--output-dir", tmp_path / "cli")
    assert result.returncode == 0, result.stderr
    name = os.path.basename(python["image"])
    ours, theirs = medical.read_image(tmp_path / "cli" / name), medical.read_image(python["image"])
    placement = PatchPlacement(420, 380, 240, 32, (120, 200))
    outside = ~placement.region()
    original = medical.read_image(source)
    assert np.array_equal(ours.values[outside], original.values[outside])
    assert np.abs(ours.values - theirs.values).max() <= 1, np.abs(ours.values - theirs.values).max()
    assert (ours.values != original.values).any()
    cli_mask = medical.read_png(tmp_path / "cli" / "cxr-nodule-mask.png").values
    assert np.array_equal(cli_mask > 0, placement.disk_mask_full(26) > 0)
    cli_sidecar = json.load(open(tmp_path / "cli" / "cxr-nodule.json"))
    python_sidecar = json.load(open(python["sidecar"]))
    for key in ("adapters", "seed", "steps", "scheduler", "scheduler_config", "patch_origin", "center", "nodus_version"):
        assert cli_sidecar[key] == python_sidecar[key], key
    for key in ("dit_sha256", "vae_sha256", "standard_size", "patch_size"):
        assert cli_sidecar["model"][key] == python_sidecar["model"][key], key
    assert cli_sidecar["input"]["sha256"] == python_sidecar["input"]["sha256"]
    if kind == "dicom":
        errors = dciodvfy_errors(tmp_path / "cli" / name)
        assert not errors, errors


def test_insert_nodule_bad_inputs(tmp_path):
    medical.write_png(tmp_path / "cxr.png", samples=synthetic_radiograph(120, 100), bits=16)
    medical.write_png(tmp_path / "mask.png", samples=np.ones((50, 50), np.uint8), bits=8)
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "rgb.png")
    from pydicom.uid import JPEG2000Lossless

    make_dicom(tmp_path / "j2k.dcm", np.zeros((64, 64), np.uint16), transfer_syntax=JPEG2000Lossless, modality="CR")
    out = tmp_path / "out"
    cases = [
        (["--image", tmp_path / "cxr.png", "--center", "100,40", "--diameter", 5], "is outside the 100x120 image"),
        (["--image", tmp_path / "cxr.png", "--center", "50,60", "--mask", tmp_path / "mask.png"],
         "is 50x50, the image"),
        (["--image", tmp_path / "rgb.png", "--center", "5,5", "--diameter", 3], "colour PNG"),
        (["--image", tmp_path / "j2k.dcm", "--center", "5,5", "--diameter", 3], "JPEG 2000"),
        (["--image", tmp_path / "cxr.png", "--center", "50,60", "--diameter", 5, "--lora", "glass:1"],
         "no LoRA for 'glass'"),
        (["--image", tmp_path / "cxr.png", "--center", "50,60", "--diameter", 40], "reaches beyond"),
    ]
    for arguments, message in cases:
        result = run("insert-nodule", DEMO, "--steps", 2, "--output-dir", out, *arguments)
        assert result.returncode != 0 and message in result.stderr, (message, result.stderr)
        assert not out.exists() or not os.listdir(out), os.listdir(out)


@pytest.mark.parametrize("baseline", ["slice.dcm", "ct.nii.gz"])
def test_follow_up_matches_python(tmp_path, baseline):
    from conftest import fixture_path

    make_dicom(tmp_path / "slice.dcm", synthetic_radiograph(40, 36, seed=3), bits_stored=12, intercept=-1024,
               window=(-600, 1500))
    volume = np.stack([synthetic_radiograph(20, 24, seed=seed).astype(np.float32) - 1024 for seed in range(3)])
    medical.write_nifti(tmp_path / "ct.nii.gz", volume, dtype="float32")
    np.save(tmp_path / "context.npy", np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32))
    unet, vae = fixture_path("unet-tiny-cond"), fixture_path("vae-tiny")
    python = workflows.follow_up(unet, vae, tmp_path / baseline, tmp_path / "context.npy", samples=3, seed=4, steps=6,
                                 guidance_scale=2.0, output_dir=tmp_path / "python")
    result = run("follow-up", unet, "--vae", vae, "--baseline", tmp_path / baseline, "--context",
                 tmp_path / "context.npy", "--samples", 3, "--seed", 4, "--steps", 6, "--guidance", 2,
                 "--output-dir", tmp_path / "cli")
    assert result.returncode == 0, result.stderr
    for key in ("mean", "variance"):
        ours = np.load(tmp_path / "cli" / os.path.basename(python[key]))
        theirs = np.load(python[key])
        assert np.abs(ours - theirs).max() <= 1e-5 * max(np.abs(theirs).max(), 1e-3), key
    for path in python["samples"]:
        ours = medical.read_png(tmp_path / "cli" / os.path.basename(path)).values
        assert np.abs(ours - medical.read_png(path).values).max() <= 1
    bad = run("follow-up", unet, "--vae", vae, "--baseline", tmp_path / baseline, "--context", tmp_path / "context.npy",
              "--samples", 1, "--output-dir", tmp_path / "bad")
    assert bad.returncode == 2 and "--samples" in bad.stderr and not (tmp_path / "bad").exists()


def test_an_rgb_vae_paints_the_nodule_a_gray_one_paints(tmp_path):
    rgb = rgb_vae_variant(tmp_path / "rgb-model")
    medical.write_png(tmp_path / "cxr.png", samples=synthetic_radiograph(300, 280, seed=4), bits=16)
    arguments = dict(center=(140, 150), diameter=24, adapters={"calcified": 1}, seed=5, steps=6)
    gray = workflows.insert_nodule(DEMO, tmp_path / "cxr.png", output_dir=tmp_path / "gray", **arguments)
    python = workflows.insert_nodule(rgb, tmp_path / "cxr.png", output_dir=tmp_path / "python", **arguments)
    result = run("insert-nodule", rgb, "--image", tmp_path / "cxr.png", "--center", "140,150", "--diameter", 24,
                 "--lora", "calcified:1", "--seed", 5, "--steps", 6, "--output-dir", tmp_path / "cli")
    assert result.returncode == 0, result.stderr
    name = os.path.basename(python["image"])
    ours = medical.read_image(tmp_path / "cli" / name).values.astype(np.int64)
    theirs = medical.read_image(python["image"]).values.astype(np.int64)
    reference = medical.read_image(gray["image"]).values.astype(np.int64)
    assert np.abs(ours - theirs).max() <= 1
    assert (reference != medical.read_image(tmp_path / "cxr.png").values).any()
    assert np.abs(theirs - reference).max() <= 2, np.abs(theirs - reference).max()
