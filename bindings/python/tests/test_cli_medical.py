"""`nodus convert`: the CLI's DICOM (DCMTK), NIfTI (niftilib) and PNG I/O, checked
with pydicom, nibabel, Pillow and dciodvfy (dicom3tools, when installed)."""

import os
import subprocess

import numpy as np
import pytest

from conftest import REPOSITORY
from medical_samples import CASES, dciodvfy_errors, make_dicom, run_on_tiny_filesystem, source  # noqa: F401

pydicom = pytest.importorskip("pydicom", reason="the medical tests need nodus[medical]")
nibabel = pytest.importorskip("nibabel", reason="the medical tests need nodus[medical]")
Image = pytest.importorskip("PIL.Image", reason="the medical tests need nodus[medical]")
from pydicom.uid import JPEG2000Lossless, RLELossless  # noqa: E402

from nodus.medical import apply_window  # noqa: E402

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")


def run(*arguments):
    return subprocess.run([CLI, *map(str, arguments)], capture_output=True, text=True, timeout=120)


def convert(*arguments):
    result = run("convert", *arguments)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module", autouse=True)
def built():
    if not os.path.exists(CLI):
        pytest.fail(f"{CLI} is missing: run `make build` first")


def png_samples(path):
    with Image.open(path) as image:
        return np.asarray(image)


def modality(dataset):
    return dataset.pixel_array.astype(np.float64) * float(dataset.get("RescaleSlope", 1)) \
        + float(dataset.get("RescaleIntercept", 0))


rng = np.random.default_rng(7)



def test_convert_has_help():
    result = run("convert", "--help")
    assert result.returncode == 0 and "usage: nodus convert" in result.stdout
    assert "--window" in result.stdout and "--hounsfield" in result.stdout
    assert "convert" in run("--help").stdout


def test_dicom_to_png_shows_the_files_window_or_range(source, tmp_path):
    dataset = pydicom.dcmread(source)
    convert(source, tmp_path / "out.png")
    values = modality(dataset)
    if "WindowCenter" in dataset:
        brightness = apply_window(values, float(dataset.WindowCenter), float(dataset.WindowWidth))
    else:  # no window: the stored range, as a viewer without VOI shows it
        brightness = dataset.pixel_array / ((1 << dataset.BitsStored) - 1) if dataset.get("RescaleSlope", 1) == 1 \
            and dataset.get("RescaleIntercept", 0) == 0 and dataset.PixelRepresentation == 0 else (values - values.min()) / (values.max() - values.min())
    if dataset.PhotometricInterpretation == "MONOCHROME1":
        brightness = 1 - brightness
    expected = np.rint(np.clip(brightness, 0, 1) * 255)
    assert np.abs(png_samples(tmp_path / "out.png").astype(np.int64) - expected).max() <= 1


def test_presets_and_explicit_windows_on_hounsfield_units(tmp_path):
    path = tmp_path / "ct.dcm"
    dataset = make_dicom(path, **CASES["ct-12bit-intercept"])
    hounsfield = modality(pydicom.dcmread(path))
    for option, (centre, width) in {"lung": (-600, 1500), "vessel": (100, 700), "soft-tissue": (50, 350),
                                    "bone": (300, 2000), "-300/900": (-300, 900)}.items():
        convert(path, tmp_path / "w.png", "--window", option, "--bits", "16")
        expected = np.rint(apply_window(hounsfield, centre, width).astype(np.float64) * 65535)
        samples = png_samples(tmp_path / "w.png")
        assert samples.dtype == np.uint16, option
        assert np.abs(samples.astype(np.int64) - expected).max() <= 1, option
    assert dataset.Rows == samples.shape[0]


def test_voi_lut_matches_pydicom(tmp_path):
    from pydicom.pixels import apply_voi_lut

    path = tmp_path / "lut.dcm"
    table = np.linspace(0, 4095, 1024).astype(np.uint16)[::-1].copy()  # a decreasing LUT, so direction matters
    make_dicom(path, rng.integers(0, 4096, (20, 24)).astype(np.uint16), bits_stored=12, modality="CR",
               voi_lut=(1000, 12, table))
    dataset = pydicom.dcmread(path)
    expected = np.rint(apply_voi_lut(dataset.pixel_array, dataset).astype(np.float64) / 4095 * 255)
    convert(path, tmp_path / "lut.png")
    assert np.abs(png_samples(tmp_path / "lut.png").astype(np.int64) - expected).max() <= 1


def test_derived_dicom_round_trip(source, tmp_path):
    output = tmp_path / "derived.dcm"
    convert(source, output, "--source", source, "--description", "nodule inserted (test)")
    original, derived = pydicom.dcmread(source), pydicom.dcmread(output)
    assert np.array_equal(derived.pixel_array, original.pixel_array)
    for keyword in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation",
                    "Rows", "Columns", "PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID",
                    "StudyDate", "AccessionNumber", "Modality", "SOPClassUID"):
        assert derived.get(keyword) == original.get(keyword), keyword
    assert derived.SOPInstanceUID != original.SOPInstanceUID
    assert derived.SeriesInstanceUID != original.SeriesInstanceUID
    assert derived.file_meta.MediaStorageSOPInstanceUID == derived.SOPInstanceUID
    assert list(derived.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert list(derived.ImageType)[2:] == list(original.ImageType)[2:]
    for sequence in (derived.SourceImageSequence, derived.ReferencedImageSequence):
        assert sequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
        assert sequence[0].ReferencedSOPClassUID == original.SOPClassUID
    assert derived.ImageComments.startswith("SYNTHETIC CONTENT")
    assert derived.DerivationDescription == "nodule inserted (test)"
    assert derived.BurnedInAnnotation == "NO"
    assert derived.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    errors = dciodvfy_errors(output)
    if errors is not None:
        assert errors == [], errors


def test_stored_values_through_a_16_bit_png_and_back(tmp_path):
    path = tmp_path / "cr.dcm"
    make_dicom(path, **CASES["cr-monochrome1"])
    convert(path, tmp_path / "raw.png", "--window", "none")
    samples = png_samples(tmp_path / "raw.png")
    assert samples.dtype == np.uint16 and np.array_equal(samples, pydicom.dcmread(path).pixel_array)
    samples = samples.copy()
    samples[5:10, 5:10] = 4000  # an edit, as a workflow would paint
    Image.fromarray(samples).save(tmp_path / "edited.png")
    convert(tmp_path / "edited.png", tmp_path / "edited.dcm", "--source", path)
    assert np.array_equal(pydicom.dcmread(tmp_path / "edited.dcm").pixel_array, samples)


def test_png_in_a_window_maps_back_to_hounsfield_units(tmp_path):
    path = tmp_path / "ct.dcm"
    make_dicom(path, **CASES["ct-signed16"])
    convert(path, tmp_path / "lung.png", "--window", "lung", "--bits", "16")
    convert(tmp_path / "lung.png", tmp_path / "back.dcm", "--source", path, "--window", "lung")
    original, back = modality(pydicom.dcmread(path)), modality(pydicom.dcmread(tmp_path / "back.dcm"))
    inside = (original > -1350) & (original < 150)
    assert np.abs(back - original)[inside].max() <= 1  # 16-bit steps of a 1500 HU window: < 0.03 HU, then rounding


def test_png_samples_read_exactly(tmp_path):
    samples16 = rng.integers(0, 65536, (17, 23)).astype(np.uint16)
    Image.fromarray(samples16).save(tmp_path / "in16.png")
    convert(tmp_path / "in16.png", tmp_path / "in16.npy")
    assert np.array_equal(np.load(tmp_path / "in16.npy"), samples16.astype(np.float32))
    samples8 = rng.integers(0, 256, (9, 11)).astype(np.uint8)
    Image.fromarray(samples8).save(tmp_path / "in8.png")
    convert(tmp_path / "in8.png", tmp_path / "out8.png", "--window", "none")
    assert np.array_equal(png_samples(tmp_path / "out8.png"), samples8)
    convert(tmp_path / "in16.png", tmp_path / "down.png")  # the full 16-bit range to 8 bits
    assert np.abs(png_samples(tmp_path / "down.png").astype(np.int64)
                  - np.rint(samples16 / 65535 * 255)).max() <= 1


def test_rle_compressed_dicom_is_decoded(tmp_path):
    pixels = CASES["ct-signed16"]["pixels"]
    make_dicom(tmp_path / "rle.dcm", pixels, signed=True, transfer_syntax=RLELossless)
    convert(tmp_path / "rle.dcm", tmp_path / "rle.npy")
    assert np.array_equal(np.load(tmp_path / "rle.npy"), pixels.astype(np.float32))
    convert(tmp_path / "rle.dcm", tmp_path / "rle-derived.dcm", "--source", tmp_path / "rle.dcm")
    assert np.array_equal(pydicom.dcmread(tmp_path / "rle-derived.dcm").pixel_array, pixels)


def test_nifti_from_npy_with_spacing_hounsfield_and_previews(tmp_path):
    volume = rng.random((12, 20, 16)).astype(np.float32)  # [D, H, W] in [0, 1]
    np.save(tmp_path / "volume.npy", volume)
    convert(tmp_path / "volume.npy", tmp_path / "ct.nii.gz", "--spacing", "0.8,0.9,2.5", "--origin", "-10,20,5",
            "--hounsfield", "maisi", "--previews", tmp_path / "ct", "--window", "lung")
    image = nibabel.load(tmp_path / "ct.nii.gz")
    hounsfield = np.rint(volume * 2000 - 1000)
    assert image.get_data_dtype() == np.int16
    assert image.shape == (16, 20, 12)
    assert np.array_equal(np.asarray(image.dataobj), hounsfield.T)
    expected_affine = np.array([[0.8, 0, 0, -10], [0, 0.9, 0, 20], [0, 0, 2.5, 5], [0, 0, 0, 1]])
    assert np.allclose(image.affine, expected_affine, atol=1e-6)
    assert np.allclose(image.get_qform(), expected_affine, atol=1e-5)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    assert np.allclose(image.header.get_zooms(), (0.8, 0.9, 2.5))
    planes = {"axial": hounsfield[6], "coronal": hounsfield[::-1, 10, :], "sagittal": hounsfield[::-1, :, 8]}
    for plane, values in planes.items():
        expected = np.rint(apply_window(values, -600, 1500).astype(np.float64) * 255)
        preview = png_samples(tmp_path / f"ct-{plane}.png")
        assert preview.shape == values.shape, plane
        assert np.abs(preview.astype(np.int64) - expected).max() <= 1, plane
    convert(tmp_path / "ct.nii.gz", tmp_path / "back.npy")
    assert np.array_equal(np.load(tmp_path / "back.npy"), hounsfield.astype(np.float32))


def test_nifti_float32_affine_channels_and_slices(tmp_path):
    volume = rng.standard_normal((2, 6, 8, 10)).astype(np.float32)  # [C, D, H, W]
    np.save(tmp_path / "channels.npy", volume)
    affine = [0, -1.5, 0, 10, 1.2, 0, 0, -5, 0, 0, 3, 7, 0, 0, 0, 1]  # rotated in-plane
    convert(tmp_path / "channels.npy", tmp_path / "c.nii", "--affine", ",".join(map(str, affine)))
    image = nibabel.load(tmp_path / "c.nii")
    assert image.get_data_dtype() == np.float32 and image.shape == (10, 8, 6, 2)
    assert np.array_equal(np.asarray(image.dataobj), volume.transpose(3, 2, 1, 0))
    assert np.allclose(image.affine, np.array(affine).reshape(4, 4), atol=1e-6)
    assert np.allclose(image.get_qform(), np.array(affine).reshape(4, 4), atol=1e-5)
    convert(tmp_path / "c.nii", tmp_path / "slice.npy", "--plane", "axial", "--slice", "2", "--channel", "1")
    assert np.array_equal(np.load(tmp_path / "slice.npy"), volume[1, 2])


def test_nibabel_volume_read_by_the_cli(tmp_path):
    data = rng.integers(-1000, 2000, (10, 12, 7)).astype(np.int16)  # nibabel's (x, y, z)
    image = nibabel.Nifti1Image(data, np.diag([0.7, 0.7, 1.5, 1]))
    image.header.set_slope_inter(0.5, -20)
    nibabel.save(image, tmp_path / "nib.nii.gz")
    convert(tmp_path / "nib.nii.gz", tmp_path / "nib.npy")
    assert np.allclose(np.load(tmp_path / "nib.npy"), (data * 0.5 - 20).T)


def test_dicom_slice_to_nifti_keeps_pixel_spacing(tmp_path):
    make_dicom(tmp_path / "ct.dcm", **CASES["ct-signed16"])
    convert(tmp_path / "ct.dcm", tmp_path / "slice.nii.gz", "--datatype", "int16")
    image = nibabel.load(tmp_path / "slice.nii.gz")
    assert np.allclose(image.header.get_zooms()[:3], (0.7, 0.7, 1.25))
    assert np.array_equal(np.asarray(image.dataobj)[:, :, 0], CASES["ct-signed16"]["pixels"].T)


def assert_fails(result, *words):
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr, result.stderr


def test_compressed_syntax_dcmtk_cannot_decode_is_refused_by_name(tmp_path):
    path = tmp_path / "j2k.dcm"
    make_dicom(path, np.zeros((8, 8), np.uint16), transfer_syntax=JPEG2000Lossless)
    assert_fails(run("convert", path, tmp_path / "out.png"), str(path), "JPEG 2000", "1.2.840.10008.1.2.4.90",
                 "cannot decode")
    assert not (tmp_path / "out.png").exists()


def test_colour_image_is_refused(tmp_path):
    path = tmp_path / "rgb.dcm"
    make_dicom(path, np.zeros((8, 8, 3), np.uint8), photometric="RGB", samples_per_pixel=3, modality="CR")
    assert_fails(run("convert", path, tmp_path / "out.png"), str(path), "colour", "RGB")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    assert_fails(run("convert", tmp_path / "rgb.png", tmp_path / "out.npy"), "rgb.png", "RGB colour")


def test_unwritable_output_path_leaves_nothing(tmp_path):
    make_dicom(tmp_path / "ct.dcm", **CASES["ct-signed16"])
    missing = tmp_path / "no-such-folder" / "out.dcm"
    assert_fails(run("convert", tmp_path / "ct.dcm", missing, "--source", tmp_path / "ct.dcm"), str(missing),
                 "folder does not exist")
    (tmp_path / "file").write_text("")
    for output in ("out.png", "out.nii.gz"):
        assert_fails(run("convert", tmp_path / "ct.dcm", tmp_path / "file" / output), output)
    wrong = tmp_path / "small.png"
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(wrong)
    assert_fails(run("convert", wrong, tmp_path / "x.dcm", "--source", tmp_path / "ct.dcm"), "4x4", "48")
    assert sorted(os.listdir(tmp_path)) == ["ct.dcm", "file", "small.png"]


@pytest.mark.parametrize("output", ["out.dcm", "out.png", "out.nii.gz"])
def test_full_disk_leaves_no_partial_file(tmp_path, output):
    size = 256
    pixels = rng.integers(0, 4096, (size, size)).astype(np.uint16)
    make_dicom(tmp_path / "ct.dcm", pixels, bits_stored=12, intercept=-1024)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    extra = "--source " + str(tmp_path / "ct.dcm") if output.endswith(".dcm") else \
        "--window none --bits 16" if output.endswith(".png") else "--datatype float32"
    result = run_on_tiny_filesystem(tiny, f"{CLI} convert {tmp_path / 'ct.dcm'} \"$TINY/{output}\" {extra}; "
                                    "echo status=$?; ls -A \"$TINY\"", size="48k")
    if result is None:
        pytest.skip("cannot mount a tmpfs here (needs root and unshare)")
    assert "status=1" in result.stdout, result.stdout + result.stderr
    assert "No space left on device" in result.stderr or "disk full" in result.stderr, result.stderr
    listing = result.stdout.split("status=1", 1)[1].split()
    assert listing == [], listing  # neither the output nor a temporary file


def test_read_only_folder_is_refused(tmp_path):
    make_dicom(tmp_path / "ct.dcm", **CASES["ct-signed16"])
    folder = tmp_path / "ro"
    folder.mkdir()
    result = run_on_tiny_filesystem(folder, f"{CLI} convert {tmp_path / 'ct.dcm'} \"$TINY/out.png\"; "
                                    "echo status=$?", read_only=True)
    if result is None:
        pytest.skip("cannot mount a tmpfs here (needs root and unshare)")
    assert "status=1" in result.stdout and "Read-only file system" in result.stderr, result.stderr
