"""The nodule mask as a DICOM Segmentation (highdicom) referencing the derived image."""

import os

import numpy as np

from ._atomic import write_atomically
from ._requirements import require


def write_segmentation(mask, image, path, *, label="nodule", series_description="Nodus nodule mask",
                       series_number=1001):
    """Writes the binary `mask` [H, W] as a DICOM SEG of the DICOM image `image`
    (a path or a pydicom Dataset: the derived image the nodule was inserted in).
    The segment is SNOMED "Nodule" in "Morphologically abnormal structure", drawn
    manually (the mask the nodule was generated in). Atomic. Returns the SEG dataset.
    """
    highdicom = require("highdicom")
    pydicom = require("pydicom")
    codes = require("pydicom.sr.codedict").codes
    source = pydicom.dcmread(os.fspath(image)) if not isinstance(image, pydicom.Dataset) else image
    mask = np.asarray(mask)
    if mask.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(f"the mask is {mask.shape}, the image is {(int(source.Rows), int(source.Columns))} (rows, columns)")
    description = highdicom.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    from .. import __version__

    segmentation = highdicom.seg.Segmentation(
        source_images=[source],
        pixel_array=(mask > 0).astype(np.uint8),
        segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=highdicom.UID(),
        series_number=series_number,
        sop_instance_uid=highdicom.UID(),
        instance_number=1,
        manufacturer="Nodus",
        manufacturer_model_name="nodus",
        software_versions=str(__version__),
        device_serial_number="none",
        series_description=series_description,
    )
    if "ImageOrientationPatient" not in segmentation and "PatientOrientation" not in segmentation:
        # A projection radiograph has no plane orientation; the General Image module then needs
        # Patient Orientation (type 2C), which highdicom leaves out: the source's, or empty (unknown).
        segmentation.PatientOrientation = source.get("PatientOrientation", "")
    write_atomically(path, lambda temporary: segmentation.save_as(temporary), suffix=".dcm")
    return segmentation
