"""examples/cpp/pacs_insert_nodule.cpp, the C++ PACS host (libnodus's C ABI and DCMTK), built
with its Makefile: on a DICOM radiograph and the demo model it writes the stored pixels
`nodus insert-nodule` writes, bit for bit, in a derived DICOM that pydicom and dciodvfy accept;
bad inputs give a clear error and leave nothing behind."""

import os
import subprocess

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="the C++ example's test reads its output with pydicom")

from pydicom.uid import RLELossless  # noqa: E402

from nodus.workflows.patch_placement import PatchPlacement  # noqa: E402

from conftest import REPOSITORY  # noqa: E402
from medical_samples import dciodvfy_errors, make_dicom, run_on_tiny_filesystem  # noqa: E402
from nodule_variants import rgb_vae_variant  # noqa: E402
from radiographs import synthetic_radiograph  # noqa: E402

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")
EXAMPLE = os.path.join(REPOSITORY, ".build", "examples", "pacs_insert_nodule")
DEMO = os.path.join(REPOSITORY, "models", "nodule-demo")

# A 12-bit MONOCHROME1 CR with a window (the intensity map flips and uses the window); an 8-bit
# MONOCHROME2 one without (the map spans the stored range) with the nodule near a corner (the
# patch moves inward); an RLE-compressed CT slice, signed, with a rescale slope of 0.5 (DCMTK
# decodes it; stored values go back through the rescale). Few steps: each run takes well under
# a second.
CASES = {
    "cr-monochrome1-12bit": dict(
        image=dict(height=420, width=380, bits=12, photometric="MONOCHROME1", window=(2048, 3000)),
        center=(120, 200), diameter=26, options=["--lora", "spiculated:0.5", "--subtlety", "-3"], seed=2, steps=8),
    "cr-8bit-corner": dict(
        image=dict(height=160, width=200, bits=8, photometric="MONOCHROME2", window=None),
        center=(20, 15), diameter=6, options=["--lora", "calcified:1"], seed=0, steps=6),
    "cr-8bit-rgb-vae": dict(
        image=dict(height=160, width=200, bits=8, photometric="MONOCHROME2", window=None),
        center=(90, 100), diameter=12, options=["--lora", "calcified:1"], seed=1, steps=6, rgb_vae=True),
    "ct-signed-rle": dict(
        image=dict(height=128, width=144, bits=16, photometric="MONOCHROME2", window=(400, 2500), modality="CT",
                   signed=True, slope=0.5, intercept=-100, transfer_syntax=RLELossless),
        center=(70, 60), diameter=10, options=[], seed=5, steps=6),
}


@pytest.fixture(scope="module")
def example():
    """The example, built (or found up to date) by its Makefile."""
    result = subprocess.run(["make", "-s", "-C", os.path.join(REPOSITORY, "examples", "cpp")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return EXAMPLE


def make_radiograph(path, height, width, bits, photometric, window, modality="CR", signed=False, **settings):
    """A synthetic chest radiograph as a DICOM file (settings: make_dicom's slope, intercept, transfer_syntax)."""
    stored = synthetic_radiograph(height, width, seed=6, bits=min(bits, 12))
    if photometric == "MONOCHROME1":
        stored = (1 << bits) - 1 - stored
    pixels = stored.astype(np.int16) - 1024 if signed else stored.astype(np.uint8) if bits == 8 else stored
    make_dicom(path, pixels, bits_stored=bits, photometric=photometric, modality=modality, signed=signed,
               window=window, **settings)


def run(*arguments):
    return subprocess.run(list(map(str, arguments)), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", sorted(CASES))
def test_example_writes_the_clis_pixels_in_a_valid_derived_dicom(example, tmp_path, case):
    settings = CASES[case]
    source = tmp_path / "cxr.dcm"
    make_radiograph(source, **settings["image"])
    center = "{},{}".format(*settings["center"])
    common = ["--center", center, "--diameter", settings["diameter"], *settings["options"],
              "--seed", settings["seed"], "--steps", settings["steps"]]
    output = tmp_path / "derived.dcm"
    model = rgb_vae_variant(tmp_path / "rgb-model") if settings.get("rgb_vae") else DEMO
    ours = run(example, model, source, output, *common)
    assert ours.returncode == 0, ours.stderr
    assert f"wrote {output}" in ours.stdout
    cli = run(CLI, "insert-nodule", model, "--image", source, *common, "--output-dir", tmp_path / "cli")
    assert cli.returncode == 0, cli.stderr

    original, derived = pydicom.dcmread(source), pydicom.dcmread(output)
    reference = pydicom.dcmread(tmp_path / "cli" / "cxr-nodule.dcm")
    # The same stored pixels as the CLI, exactly; outside the patch, the input's.
    difference = np.abs(derived.pixel_array.astype(np.int64) - reference.pixel_array.astype(np.int64))
    assert difference.max() == 0, f"{int((difference > 0).sum())} pixels differ from the CLI's, by up to {difference.max()}"
    height, width = original.pixel_array.shape
    placement = PatchPlacement(height, width, 240, 32, settings["center"])
    outside = ~placement.region()
    assert np.array_equal(derived.pixel_array[outside], original.pixel_array[outside])
    changed = derived.pixel_array != original.pixel_array
    assert changed.any() and not changed[outside].any()

    # A derived image of the source, in its bit layout, saying it is synthetic.
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "PhotometricInterpretation", "SOPClassUID", "PatientName", "PatientID", "PatientBirthDate",
                    "StudyInstanceUID", "StudyDate", "AccessionNumber", "Modality"):
        assert derived[keyword].value == original[keyword].value, keyword
    assert list(derived.ImageType[:2]) == ["DERIVED", "SECONDARY"]
    assert derived.SOPInstanceUID != original.SOPInstanceUID
    assert derived.SeriesInstanceUID != original.SeriesInstanceUID
    assert derived.file_meta.MediaStorageSOPInstanceUID == derived.SOPInstanceUID
    for sequence in ("SourceImageSequence", "ReferencedImageSequence"):
        item = derived[sequence][0]
        assert item.ReferencedSOPInstanceUID == original.SOPInstanceUID, sequence
        assert item.ReferencedSOPClassUID == original.SOPClassUID, sequence
    assert derived.ImageComments == reference.ImageComments and "SYNTHETIC CONTENT" in derived.ImageComments
    assert derived.BurnedInAnnotation == "NO"
    assert "insert_nodule" in derived.DerivationDescription and f"seed {settings['seed']}" in derived.DerivationDescription
    errors = dciodvfy_errors(output)
    assert not errors, errors
    left = sorted(name for name in os.listdir(tmp_path) if name != "rgb-model")
    assert left == ["cli", "cxr.dcm", "derived.dcm"]  # no temporary file left


def test_bad_inputs_give_a_clear_error_and_no_output(example, tmp_path):
    from pydicom.uid import JPEG2000Lossless

    make_radiograph(tmp_path / "cxr.dcm", height=120, width=100, bits=12, photometric="MONOCHROME2", window=None)
    make_dicom(tmp_path / "rgb.dcm", np.zeros((40, 40, 3), np.uint8), photometric="RGB", samples_per_pixel=3,
               modality="CR")
    make_dicom(tmp_path / "j2k.dcm", np.zeros((64, 64), np.uint16), transfer_syntax=JPEG2000Lossless, modality="CR")
    out = tmp_path / "out"
    out.mkdir()
    good = ["--center", "50,60", "--diameter", 5]
    cases = [  # (input, extra arguments, exit code, what the message must say)
        ("rgb.dcm", good, 1, ["rgb.dcm' is a colour image", "RGB", "3 samples per pixel"]),
        ("j2k.dcm", good, 1, ["j2k.dcm' is compressed as JPEG 2000", "1.2.840.10008.1.2.4.90", "cannot decode"]),
        ("missing.dcm", good, 1, ["cannot read", "missing.dcm' as DICOM", "No such file"]),
        ("cxr.dcm", ["--center", "100,40", "--diameter", 5], 2, ["is outside the 100x120 image"]),
        ("cxr.dcm", [*good, "--lora", "glass:1"], 2, ["has no LoRA for 'glass'", "calcified, spiculated, subtlety"]),
        ("cxr.dcm", ["--center", "50,60", "--diameter", 40], 2, ["reaches beyond"]),
    ]
    for name, arguments, code, messages in cases:
        result = run(example, DEMO, tmp_path / name, out / "derived.dcm", *arguments, "--steps", 2)
        assert result.returncode == code, (name, arguments, result.returncode, result.stderr)
        for message in messages:
            assert message in result.stderr, (message, result.stderr)
        assert os.listdir(out) == [], (name, os.listdir(out))
    # The source is never overwritten.
    result = run(example, DEMO, tmp_path / "cxr.dcm", tmp_path / "cxr.dcm", *good, "--steps", 2)
    assert result.returncode == 2 and "is the input" in result.stderr, result.stderr


def test_full_disk_leaves_no_partial_file(example, tmp_path):
    make_radiograph(tmp_path / "cxr.dcm", height=300, width=260, bits=12, photometric="MONOCHROME2", window=None)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    result = run_on_tiny_filesystem(
        tiny, f"{example} {DEMO} {tmp_path / 'cxr.dcm'} \"$TINY/derived.dcm\" --center 130,150 --diameter 8 "
              "--steps 2; echo status=$?; ls -A \"$TINY\"", size="48k")
    if result is None:
        pytest.skip("cannot mount a tmpfs here (needs root and unshare)")
    assert "status=1" in result.stdout, result.stdout + result.stderr
    assert "No space left on device" in result.stderr and "derived.dcm" in result.stderr, result.stderr
    listing = result.stdout.split("status=1", 1)[1].split()
    assert listing == [], listing  # neither the output nor a temporary file
