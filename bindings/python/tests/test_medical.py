"""nodus.medical (the nodus[medical] extra): DICOM, PNG and NIfTI through pydicom,
highdicom, nibabel and Pillow, agreeing with the CLI's DCMTK / niftilib path."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPOSITORY
from medical_samples import CASES, dciodvfy_errors, make_dicom, run_on_tiny_filesystem, source  # noqa: F401

pydicom = pytest.importorskip("pydicom", reason="the medical tests need nodus[medical]")
nibabel = pytest.importorskip("nibabel", reason="the medical tests need nodus[medical]")
highdicom = pytest.importorskip("highdicom", reason="the medical tests need nodus[medical]")
from PIL import Image  # noqa: E402
from pydicom.uid import JPEG2000Lossless  # noqa: E402

from nodus import medical  # noqa: E402

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")
rng = np.random.default_rng(11)



def test_read_dicom_gives_modality_values(source):
    from pydicom.pixels import apply_modality_lut

    dataset = pydicom.dcmread(source)
    image = medical.read_dicom(source)
    assert np.allclose(image.values, apply_modality_lut(dataset.pixel_array, dataset))
    assert np.array_equal(image.stored, dataset.pixel_array)
    assert image.photometric == dataset.PhotometricInterpretation
    assert image.storage.bits_stored == dataset.BitsStored
    assert image.storage.is_signed == (dataset.PixelRepresentation == 1)


def test_display_agrees_with_the_cli(source, tmp_path):
    if not os.path.exists(CLI):
        pytest.fail(f"{CLI} is missing: run `make build` first")
    image = medical.read_dicom(source)
    for window in (None, "lung", "40/400"):
        arguments = ["--window", window] if window else []
        result = subprocess.run([CLI, "convert", source, tmp_path / "cli.png", "--bits", "16", *arguments],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        cli = np.asarray(Image.open(tmp_path / "cli.png")).astype(np.int64)
        ours = np.rint(image.display(window).astype(np.float64) * 65535)
        assert np.abs(cli - ours).max() <= 1, window


def test_derived_dicom_and_segmentation(source, tmp_path):
    image = medical.read_dicom(source)
    values = image.values.copy()
    values[4:12, 6:14] = values.max()  # "the nodule"
    derived_path = tmp_path / "derived.dcm"
    derived = medical.write_derived_dicom(values, source, derived_path, "nodule inserted (test)")
    original = pydicom.dcmread(source)
    assert np.array_equal(medical.read_dicom(derived_path).values, values)
    assert derived.SOPInstanceUID != original.SOPInstanceUID
    assert derived.SeriesInstanceUID != original.SeriesInstanceUID
    assert derived.StudyInstanceUID == original.StudyInstanceUID and derived.PatientID == original.PatientID
    assert list(derived.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert derived.ReferencedImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert derived.ImageComments == medical.SYNTHETIC_CONTENT_COMMENT and derived.BurnedInAnnotation == "NO"
    for keyword in ("BitsAllocated", "BitsStored", "PixelRepresentation", "PhotometricInterpretation"):
        assert derived.get(keyword) == original.get(keyword)

    mask = np.zeros(values.shape, np.uint8)
    mask[4:12, 6:14] = 1
    segmentation = medical.write_segmentation(mask, derived_path, tmp_path / "seg.dcm")
    reread = highdicom.seg.segread(tmp_path / "seg.dcm")
    assert reread.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    reference = reread.ReferencedSeriesSequence[0]
    assert reference.SeriesInstanceUID == derived.SeriesInstanceUID
    assert reference.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == derived.SOPInstanceUID
    assert np.array_equal(reread.pixel_array.reshape(mask.shape), mask)
    assert segmentation.SegmentSequence[0].SegmentLabel == "nodule"
    for path in (derived_path, tmp_path / "seg.dcm"):
        errors = dciodvfy_errors(path)
        if errors is not None:
            assert errors == [], (path, errors)


def test_the_cli_reads_what_python_derives_and_back(tmp_path):
    if not os.path.exists(CLI):
        pytest.fail(f"{CLI} is missing: run `make build` first")
    path = tmp_path / "ct.dcm"
    make_dicom(path, **CASES["ct-signed16"])
    values = medical.read_dicom(path).values + 10
    medical.write_derived_dicom(values, path, tmp_path / "python.dcm", "plus 10 HU")
    result = subprocess.run([CLI, "convert", tmp_path / "python.dcm", tmp_path / "cli.npy"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(tmp_path / "cli.npy"), values)
    result = subprocess.run([CLI, "convert", tmp_path / "python.dcm", tmp_path / "cli.dcm", "--source",
                             tmp_path / "python.dcm"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(medical.read_dicom(tmp_path / "cli.dcm").values, values)


def test_png_round_trip_8_and_16_bits(tmp_path):
    for bits, dtype in ((8, np.uint8), (16, np.uint16)):
        samples = rng.integers(0, 1 << bits, (13, 17)).astype(dtype)
        medical.write_png(tmp_path / f"p{bits}.png", samples, bits=bits)
        image = medical.read_png(tmp_path / f"p{bits}.png")
        assert image.storage.bits_allocated == bits
        assert np.array_equal(image.stored, samples)
    medical.write_png(tmp_path / "b.png", brightness=np.linspace(0, 1, 12).reshape(3, 4), bits=16)
    assert np.asarray(Image.open(tmp_path / "b.png")).max() == 65535
    with pytest.raises(ValueError, match="do not fit 8 bits"):
        medical.write_png(tmp_path / "x.png", np.full((2, 2), 300), bits=8)
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png.*only grayscale"):
        medical.read_png(tmp_path / "rgb.png")


def test_nifti_round_trip_and_cli_agreement(tmp_path):
    volume = rng.random((10, 14, 12)).astype(np.float32)
    medical.write_nifti(tmp_path / "py.nii.gz", volume, spacing=(0.8, 0.9, 2.0), origin=(1, 2, 3), hounsfield="maisi")
    image = nibabel.load(tmp_path / "py.nii.gz")
    hounsfield = np.rint(volume * 2000 - 1000)
    assert image.get_data_dtype() == np.int16 and np.array_equal(np.asarray(image.dataobj), hounsfield.T)
    read = medical.read_nifti(tmp_path / "py.nii.gz")
    assert np.array_equal(read.values, hounsfield) and np.allclose(read.spacing, (0.8, 0.9, 2.0))
    if os.path.exists(CLI):  # the same volume written by niftilib reads back the same
        np.save(tmp_path / "v.npy", volume)
        result = subprocess.run([CLI, "convert", tmp_path / "v.npy", tmp_path / "cli.nii.gz", "--spacing",
                                 "0.8,0.9,2", "--origin", "1,2,3", "--hounsfield", "maisi"], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr
        cli = medical.read_nifti(tmp_path / "cli.nii.gz")
        assert np.array_equal(cli.values, read.values) and np.allclose(cli.affine, read.affine, atol=1e-6)
    channels = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    medical.write_nifti(tmp_path / "c.nii", channels, dtype="float32")
    assert np.array_equal(medical.read_nifti(tmp_path / "c.nii").values, channels)


def test_previews_and_presets(tmp_path):
    assert medical.WINDOW_PRESETS == {"lung": (-600, 1500), "vessel": (100, 700), "soft-tissue": (50, 350),
                                      "bone": (300, 2000)}
    hounsfield = rng.uniform(-1000, 1000, (8, 10, 12)).astype(np.float32)
    paths = medical.write_previews(hounsfield, tmp_path / "v", window="bone")
    assert [os.path.basename(path) for path in paths] == ["v-axial.png", "v-coronal.png", "v-sagittal.png"]
    axial = np.asarray(Image.open(paths[0]))
    assert axial.shape == (10, 12)
    assert np.abs(axial.astype(np.int64) - np.rint(medical.apply_window(hounsfield[4], 300, 2000) * 255)).max() <= 1
    with pytest.raises(ValueError, match="unknown window"):
        medical.resolve_window("liver-ish")


def test_bad_inputs_raise_clear_errors_and_leave_nothing(tmp_path):
    make_dicom(tmp_path / "j2k.dcm", np.zeros((8, 8), np.uint16), transfer_syntax=JPEG2000Lossless)
    with pytest.raises(ValueError, match=r"j2k.dcm' is compressed as JPEG 2000.*cannot decode"):
        medical.read_dicom(tmp_path / "j2k.dcm")
    make_dicom(tmp_path / "rgb.dcm", np.zeros((8, 8, 3), np.uint8), photometric="RGB", samples_per_pixel=3,
               modality="CR")
    with pytest.raises(ValueError, match="rgb.dcm' is a colour image"):
        medical.read_dicom(tmp_path / "rgb.dcm")
    make_dicom(tmp_path / "ct.dcm", **CASES["ct-signed16"])
    with pytest.raises(OSError, match="folder does not exist"):
        medical.write_derived_dicom(medical.read_dicom(tmp_path / "ct.dcm"), tmp_path / "ct.dcm",
                                    tmp_path / "missing" / "out.dcm", "x")
    with pytest.raises(ValueError, match="its source"):
        medical.write_derived_dicom(np.zeros((4, 4)), tmp_path / "ct.dcm", tmp_path / "out.dcm", "x")
    with pytest.raises(ValueError, match="the mask is"):
        medical.write_segmentation(np.zeros((3, 3)), tmp_path / "ct.dcm", tmp_path / "seg.dcm")
    assert sorted(os.listdir(tmp_path)) == ["ct.dcm", "j2k.dcm", "rgb.dcm"]


def test_full_disk_leaves_no_partial_file(tmp_path):
    make_dicom(tmp_path / "ct.dcm", rng.integers(0, 4096, (256, 256)).astype(np.uint16), bits_stored=12,
               intercept=-1024)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    script = (
        "import os, sys, numpy as np\n"
        f"sys.path.insert(0, {os.path.join(REPOSITORY, 'bindings', 'python')!r})\n"
        "from nodus import medical\n"
        "tiny = os.environ['TINY']\n"
        f"image = medical.read_dicom({str(tmp_path / 'ct.dcm')!r})\n"
        "jobs = [lambda: medical.write_derived_dicom(image, image.path, tiny + '/out.dcm', 'x'),\n"
        "        lambda: medical.write_png(tiny + '/out.png', image.stored, bits=16),\n"
        "        lambda: medical.write_nifti(tiny + '/out.nii.gz', np.random.rand(64, 64, 64), dtype='float32')]\n"
        "for job in jobs:\n"
        "    try:\n"
        "        job(); print('written')\n"
        "    except OSError as error:\n"
        "        print('error:', error)\n"
        "print('left:', sorted(os.listdir(tiny)))\n"
    )
    (tmp_path / "job.py").write_text(script)
    result = run_on_tiny_filesystem(tiny, f"{sys.executable} {tmp_path / 'job.py'}", size="48k")
    if result is None:
        pytest.skip("cannot mount a tmpfs here (needs root and unshare)")
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["error"] * 3, result.stdout + result.stderr
    assert all("No space left on device" in line for line in lines[:3]), lines
    assert lines[3] == "left: []"


def test_missing_extra_names_it(tmp_path):
    script = (
        "import sys\n"
        f"sys.path.insert(0, {os.path.join(REPOSITORY, 'bindings', 'python')!r})\n"
        "sys.modules['pydicom'] = None  # as if nodus[medical] were not installed\n"
        "from nodus import medical\n"
        "try:\n"
        f"    medical.read_dicom({str(tmp_path / 'x.dcm')!r})\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "nodus.medical needs pydicom" in result.stdout and "nodus[medical]" in result.stdout, result.stdout + \
        result.stderr
