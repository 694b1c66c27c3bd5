"""nodus.workflows.insert_nodule on the bundled demo model: the patch path against the
plain model pipeline, untouched pixels, DICOM round trips, bad inputs."""

import json
import os
import hashlib

import numpy as np
import pytest

pytest.importorskip("pydicom")
pytest.importorskip("highdicom")

import nodus  # noqa: E402
from nodus import medical, workflows  # noqa: E402
from nodus.workflows.patch_placement import PatchPlacement  # noqa: E402
from pydicom.uid import JPEG2000Lossless  # noqa: E402

from conftest import REPOSITORY  # noqa: E402
from medical_samples import dciodvfy_errors, make_dicom  # noqa: E402
from radiographs import synthetic_radiograph  # noqa: E402

DEMO = os.path.join(REPOSITORY, "models", "nodule-demo")


@pytest.fixture(scope="module")
def demo_model():
    return workflows.NoduleModel(DEMO)


def relative_error(ours, reference):
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def test_patch_path_equals_the_plain_pipeline(demo_model):
    """The workflow's paint step against the model README's recipe, with the
    conditioning diffusers computed (inputs.safetensors) and plain nodus calls."""
    from safetensors.numpy import load_file

    inputs = load_file(os.path.join(DEMO, "inputs.safetensors"))
    dit, vae = nodus.load(os.path.join(DEMO, "dit")), nodus.load(os.path.join(DEMO, "vae"))
    dit.load_lora_weights(os.path.join(DEMO, "lora-calcified.safetensors"), adapter_name="calcified")
    scheduler = nodus.Scheduler.from_config(os.path.join(DEMO, "scheduler"))
    scaling = vae.config["scaling_factor"]
    for case in range(inputs["background"].shape[0]):
        for weights in ({}, {"calcified": 0.7}):
            if weights:
                dit.set_adapters(list(weights), list(weights.values()))
            else:
                dit.disable_lora()
            conditioning = np.concatenate([inputs["latent_mask"][case:case + 1],
                                           inputs["masked_latent"][case:case + 1]], axis=1)
            latent = nodus.sample(dit, scheduler, steps=20, guidance_scale=3.5, class_labels=[0],
                                  init_noise=nodus.randn((1, 4, 8, 8), seed=case), conditioning=conditioning)
            dit.enable_lora()
            reference = vae.decode(latent / scaling)[0, 0]
            ours = demo_model.paint(inputs["background"][case, 0], inputs["mask"][case, 0], weights, seed=case,
                                    steps=20)
            assert relative_error(ours, reference) < 1e-5, (case, weights, relative_error(ours, reference))


def test_output_is_the_pasted_patch_and_the_rest_is_untouched(demo_model, tmp_path):
    """At the standard size the cut patch is the image itself; the written core is the
    painted patch through the intensity mapping; every pixel outside is the input's."""
    size = demo_model.standard_size
    stored = synthetic_radiograph(size, size, seed=1, bits=16)
    medical.write_png(tmp_path / "cxr.png", samples=stored, bits=16)
    center = (70, 120)
    result = workflows.insert_nodule(demo_model, tmp_path / "cxr.png", center=center, diameter=12, seed=3, steps=10,
                                     output_dir=tmp_path / "out")
    output = medical.read_png(result["image"]).values
    placement = PatchPlacement(size, size, size, demo_model.patch_size, center)
    pixels = stored.astype(np.float64) / 65535 * 2 - 1
    patch = placement.cut(pixels)
    np.testing.assert_allclose(patch, pixels[placement.origin[1]:placement.origin[1] + 32,
                                             placement.origin[0]:placement.origin[0] + 32], atol=1e-12)
    painted = demo_model.paint(patch, placement.disk_mask(12), {}, seed=3, steps=10)
    expected = np.rint((np.clip(painted, -1, 1).astype(np.float64) + 1) / 2 * 65535)
    column, row = placement.origin
    core_patch = np.zeros((32, 32), bool)
    core_patch[2:30, 2:30] = True
    block = output[row:row + 32, column:column + 32]
    assert np.abs(block[core_patch] - expected[core_patch]).max() <= 1
    outside = ~placement.region()
    assert np.array_equal(output[outside], stored[outside].astype(np.float32))
    assert (block != stored[row:row + 32, column:column + 32]).any()
    mask = medical.read_png(result["mask"]).values
    assert mask.shape == (size, size) and set(np.unique(mask)) == {0, 255}


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_in_dicom_out(demo_model, tmp_path, photometric):
    """A 12-bit CR at twice the standard size, not square: a derived DICOM of the input's
    size and bit depth, the mask as a SEG, both accepted by pydicom and dciodvfy."""
    import pydicom

    stored = synthetic_radiograph(500, 460, seed=2)
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    make_dicom(tmp_path / "cxr.dcm", stored, bits_stored=12, photometric=photometric, modality="CR",
               window=(2048, 4096))
    result = workflows.insert_nodule(DEMO, tmp_path / "cxr.dcm", center=(150, 260), diameter=30,
                                     adapters={"calcified": 0.7}, subtlety=-2, seed=0, steps=10,
                                     output_dir=tmp_path / "out")
    derived = pydicom.dcmread(result["image"])
    assert (derived.Rows, derived.Columns, derived.BitsStored) == (500, 460, 12)
    assert derived.PhotometricInterpretation == photometric
    assert list(derived.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "SYNTHETIC" in derived.ImageComments and "insert_nodule" in derived.DerivationDescription
    placement = PatchPlacement(500, 460, demo_model.standard_size, demo_model.patch_size, (150, 260))
    outside = ~placement.region()
    assert np.array_equal(derived.pixel_array[outside], stored[outside])
    assert (derived.pixel_array[~outside] != stored[~outside]).any()
    # The nodule is brighter than its surroundings on screen, whatever the photometric interpretation.
    shown = medical.read_dicom(result["image"]).display()
    before = medical.read_dicom(tmp_path / "cxr.dcm").display()
    disk = placement.disk_mask_full(30).astype(bool)
    assert (shown[disk] - before[disk]).mean() > 0.02
    segmentation = pydicom.dcmread(result["mask"])
    assert segmentation.Modality == "SEG"
    assert segmentation.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID \
        == derived.SOPInstanceUID
    for path in (result["image"], result["mask"]):
        errors = dciodvfy_errors(path)
        assert not errors, (path, errors)
    sidecar = json.load(open(result["sidecar"]))
    with open(os.path.join(DEMO, "lora-calcified.safetensors"), "rb") as stream:
        calcified = hashlib.sha256(stream.read()).hexdigest()
    assert sidecar["adapters"] == {"calcified": {"weight": 0.7, "sha256": calcified},
                                   "subtlety": {"weight": 1.0, "sha256": sidecar["adapters"]["subtlety"]["sha256"]}}
    assert sidecar["seed"] == 0 and sidecar["steps"] == 10 and sidecar["scheduler"] == "DDIMScheduler"
    assert sidecar["nodus_version"] == nodus.__version__ and len(sidecar["model"]["dit_sha256"]) == 64


def test_same_inputs_same_pixels_and_mask_file(demo_model, tmp_path):
    stored = synthetic_radiograph(300, 300, seed=4)
    medical.write_png(tmp_path / "cxr.png", samples=stored, bits=16)
    mask = np.zeros((300, 300), np.uint8)
    mask[140:160, 100:118] = 255
    medical.write_png(tmp_path / "mask.png", samples=mask, bits=8)
    first = workflows.insert_nodule(demo_model, tmp_path / "cxr.png", center=(109, 150), mask=tmp_path / "mask.png",
                                    seed=5, steps=5, output_dir=tmp_path / "a")
    second = workflows.insert_nodule(demo_model, tmp_path / "cxr.png", center=(109, 150), mask=tmp_path / "mask.png",
                                     seed=5, steps=5, output_dir=tmp_path / "b")
    assert open(first["image"], "rb").read() == open(second["image"], "rb").read()
    assert np.array_equal(medical.read_png(first["mask"]).values > 0, mask > 0)


def test_bad_inputs_raise_clear_errors_and_write_nothing(demo_model, tmp_path):
    out = tmp_path / "out"
    make_dicom(tmp_path / "j2k.dcm", np.zeros((64, 64), np.uint16), transfer_syntax=JPEG2000Lossless, modality="CR")
    make_dicom(tmp_path / "rgb.dcm", np.zeros((64, 64, 3), np.uint8), photometric="RGB", samples_per_pixel=3,
               modality="CR")
    medical.write_png(tmp_path / "cxr.png", samples=synthetic_radiograph(120, 100), bits=16)
    medical.write_png(tmp_path / "small-mask.png", samples=np.ones((50, 50), np.uint8), bits=8)
    cases = [
        (dict(image=tmp_path / "j2k.dcm", center=(10, 10), diameter=5), "JPEG 2000"),
        (dict(image=tmp_path / "rgb.dcm", center=(10, 10), diameter=5), "colour image"),
        (dict(image=tmp_path / "cxr.png", center=(100, 40), diameter=5), r"centre \(100, 40\) is outside the 100x120"),
        (dict(image=tmp_path / "cxr.png", center=(50, 60), mask=tmp_path / "small-mask.png"),
         "is 50x50, the image .* is 100x120"),
        (dict(image=tmp_path / "cxr.png", center=(50, 60), diameter=40), "reaches beyond the model's 32-pixel patch"),
        (dict(image=tmp_path / "cxr.png", center=(50, 60), diameter=5, adapters={"ground-glass": 1}),
         "no LoRA for 'ground-glass'"),
    ]
    for arguments, message in cases:
        with pytest.raises(ValueError, match=message):
            workflows.insert_nodule(demo_model, output_dir=out, steps=2, **arguments)
        assert not out.exists() or not os.listdir(out), (message, os.listdir(out))
