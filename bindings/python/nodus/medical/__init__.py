"""Medical image I/O for Nodus (the ``nodus[medical]`` extra: pydicom, highdicom,
nibabel, pillow). libnodus itself reads no medical formats: these turn files into
the numpy arrays it takes, and its results back into files, as the CLI does
through DCMTK and niftilib.

    from nodus import medical
    image = medical.read_image("cxr.dcm")           # DICOM or PNG -> MedicalImage
    brightness = image.display("lung")            # 0...1, MONOCHROME1 inverted
    medical.write_derived_dicom(new_values, "cxr.dcm", "out.dcm", "nodule inserted by Nodus")
    medical.write_segmentation(mask, "out.dcm", "out-seg.dcm")
    medical.write_nifti("ct.nii.gz", volume, spacing=(1.5, 1.5, 2), hounsfield="maisi")
    medical.write_previews(hu_volume, "ct", window="lung")

Each writer is atomic (temporary file, fsync, rename): on error nothing is left
under the output name. The pydicom-backed functions import their packages when
called; a missing one raises ImportError naming the extra.
"""

import os

from .dicom import SYNTHETIC_CONTENT_COMMENT, read_dicom, write_derived_dicom
from .image import MedicalImage, PixelStorage
from .nifti import MAISI_HOUNSFIELD, Volume, affine_from_spacing, mid_planes, read_nifti, to_hounsfield, \
    write_nifti, write_previews
from .png import read_png, write_png
from .segmentation import write_segmentation
from .windows import WINDOW_PRESETS, apply_window, invert_window, resolve_window


def read_image(path):
    """A DICOM or PNG radiograph / slice as a MedicalImage (by extension, or the DICM marker)."""
    path = os.fspath(path)
    if path.lower().endswith(".png"):
        return read_png(path)
    return read_dicom(path)


__all__ = [
    "MAISI_HOUNSFIELD",
    "MedicalImage",
    "PixelStorage",
    "SYNTHETIC_CONTENT_COMMENT",
    "Volume",
    "WINDOW_PRESETS",
    "affine_from_spacing",
    "apply_window",
    "invert_window",
    "mid_planes",
    "read_dicom",
    "read_image",
    "read_nifti",
    "read_png",
    "resolve_window",
    "to_hounsfield",
    "write_derived_dicom",
    "write_nifti",
    "write_png",
    "write_previews",
    "write_segmentation",
]
