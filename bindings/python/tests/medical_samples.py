"""Small DICOM files made with pydicom for the medical I/O tests: CT slices and
computed radiographs with the attributes their IODs require, so that dciodvfy
judges what the writers add rather than what the inputs lack."""

import shutil
import subprocess

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)


def sample_cases(seed):
    """The inputs the medical tests run on: MONOCHROME1 and 2, rescale slope and
    intercept, signed 16-bit, 12-bit stored, 8-bit; keyword arguments of make_dicom."""
    rng = np.random.default_rng(seed)
    return {
        "ct-signed16": dict(pixels=rng.integers(-1024, 3000, (48, 40)).astype(np.int16), signed=True,
                            window=(-600, 1500)),
        "ct-12bit-intercept": dict(pixels=rng.integers(0, 4096, (40, 56)).astype(np.uint16), bits_stored=12,
                                   intercept=-1024, window=(40, 400)),
        "ct-slope-half": dict(pixels=rng.integers(0, 4096, (32, 32)).astype(np.uint16), bits_stored=12, slope=0.5,
                              intercept=-100),
        "cr-monochrome1": dict(pixels=rng.integers(0, 4096, (36, 44)).astype(np.uint16), bits_stored=12,
                               photometric="MONOCHROME1", modality="CR"),
        "cr-8bit": dict(pixels=rng.integers(0, 256, (30, 50)).astype(np.uint8), modality="CR", window=(128, 200)),
    }


CASES = sample_cases(7)


@pytest.fixture(params=sorted(CASES))
def source(request, tmp_path):
    """Each of CASES as a DICOM file (a test module imports this fixture to run once per case)."""
    path = tmp_path / f"{request.param}.dcm"
    make_dicom(path, **CASES[request.param])
    return path


def make_dicom(path, pixels, *, photometric="MONOCHROME2", bits_stored=None, signed=False, slope=None,
               intercept=None, window=None, voi_lut=None, modality="CT", samples_per_pixel=1,
               transfer_syntax=ExplicitVRLittleEndian):
    """Writes `pixels` (2-D stored values; [H, W, 3] for colour) as a CT slice
    (modality "CT") or a computed radiograph ("CR") and returns the dataset."""
    pixels = np.asarray(pixels)
    bits_allocated = 8 if pixels.dtype.itemsize == 1 else 16
    bits_stored = bits_stored or bits_allocated
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    # RLE is made by compressing an uncompressed dataset.
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if transfer_syntax == RLELossless else transfer_syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P0001"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "S1"
    ds.AccessionNumber = "A1"
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "Nodus tests"
    ds.PatientOrientation = "" if modality == "CT" else ["A", "F"]
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = samples_per_pixel
    ds.PhotometricInterpretation = photometric
    if samples_per_pixel > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if modality == "CT":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = generate_uid()
        ds.PositionReferenceIndicator = ""
        ds.PixelSpacing = [0.7, 0.7]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100, -100, 50]
        ds.SliceThickness = 1.25
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.Laterality = ""
        ds.AcquisitionNumber = 1
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "PA"
        ds.ImagerPixelSpacing = [0.15, 0.15]
    if slope is not None or modality == "CT":
        ds.RescaleSlope = slope if slope is not None else 1
        ds.RescaleIntercept = intercept if intercept is not None else 0
        ds.RescaleType = "HU" if modality == "CT" else "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        first, bits, table = voi_lut
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        item = Dataset()
        item.LUTDescriptor = [len(table), first, bits]
        item.LUTData = np.asarray(table, dtype=np.uint16).tobytes()
        item["LUTData"].VR = "OW"
        ds.VOILUTSequence = Sequence([item])
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(bits_allocated, signed)]
    if transfer_syntax == JPEG2000Lossless:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 64])  # a J2K start: enough to be refused
        ds["PixelData"].VR = "OB"
    elif transfer_syntax == RLELossless:
        ds.PixelData = pixels.astype(dtype).tobytes()
        ds.compress(RLELossless, encoding_plugin="pydicom")
    else:
        ds.PixelData = pixels.astype(dtype).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return ds


def dciodvfy_errors(path):
    """dciodvfy's error lines (warnings ignored), or None when dicom3tools is not installed."""
    if shutil.which("dciodvfy") is None:
        return None
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def run_on_tiny_filesystem(folder, script, size="64k", read_only=False):
    """Runs the shell `script` with a tiny (or read-only) tmpfs mounted on `folder`
    (exported as $TINY) in a private mount namespace, so the mount ends with the
    script; returns the CompletedProcess, or None when no namespace or mount can
    be made here (not root)."""
    if shutil.which("unshare") is None:
        return None
    options = "ro,size=" + size if read_only else "size=" + size
    wrapper = f"TINY='{folder}' && mount -t tmpfs -o {options} none \"$TINY\" && export TINY && " + script
    result = subprocess.run(["unshare", "-m", "sh", "-c", wrapper], capture_output=True, text=True, timeout=120)
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        return None
    return result
