"""Volumes as NIfTI-1 through nibabel, with the same conventions as the CLI's niftilib writer."""

import os
from dataclasses import dataclass

import numpy as np

from ._atomic import write_atomically
from ._requirements import require
from .png import write_png
from .windows import apply_window, resolve_window

# MAISI's default output mapping: [0, 1] to [-1000, 1000] HU.
MAISI_HOUNSFIELD = (0.0, 1.0, -1000.0, 1000.0)


@dataclass
class Volume:
    """A CT volume: float32 values [D, H, W] or [C, D, H, W] (C order: width is
    NIfTI's i, height j, depth k; nibabel's get_fdata() is the transpose), and the
    4x4 affine from voxel (i, j, k) to world mm (RAS+)."""

    values: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self):
        """Voxel size in mm along width, height and depth (the affine's column lengths)."""
        return tuple(float(np.linalg.norm(self.affine[:3, axis])) for axis in range(3))


def affine_from_spacing(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    """An axis-aligned affine: `spacing` (x along width, y along height, z along depth) and the first voxel's position."""
    affine = np.diag([float(value) for value in spacing] + [1.0])
    affine[:3, 3] = [float(value) for value in origin]
    return affine


def to_hounsfield(values, mapping=MAISI_HOUNSFIELD):
    """Values [low, high] mapped linearly to HU [hu_low, hu_high], clipped."""
    low, high, hu_low, hu_high = (float(value) for value in mapping)
    unit = np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0, 1)
    return (hu_low + unit * (hu_high - hu_low)).astype(np.float32)


def write_nifti(path, values, *, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), affine=None, hounsfield=None,
                dtype="int16", description="nodus synthetic volume"):
    """Writes [D, H, W] or [C, D, H, W] values as NIfTI-1 (.nii or .nii.gz), atomically.

    `affine` (4x4) or `spacing` / `origin` set sform and qform (scanner anatomical,
    mm). `hounsfield`: None (values as they are), "maisi" or (low, high, hu_low,
    hu_high). `dtype`: "int16" (rounded; must fit) or "float32".
    """
    nibabel = require("nibabel")
    path = os.fspath(path)
    if not (path.endswith(".nii") or path.endswith(".nii.gz")):
        raise ValueError(f"cannot write '{path}': a NIfTI file must end in .nii or .nii.gz")
    values = np.asarray(values, dtype=np.float32)
    if values.ndim not in (3, 4):
        raise ValueError(f"a volume is [D, H, W] or [C, D, H, W]; got shape {values.shape}")
    if hounsfield is not None:
        values = to_hounsfield(values, MAISI_HOUNSFIELD if hounsfield == "maisi" else hounsfield)
    affine = affine_from_spacing(spacing, origin) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError("the affine must be a finite 4x4 matrix")
    if dtype == "int16":
        rounded = np.rint(values)
        if rounded.size and (rounded.min() < -32768 or rounded.max() > 32767):
            raise ValueError(f"cannot write '{path}': values {rounded.min()}...{rounded.max()} do not fit int16")
        data = rounded.astype(np.int16)
    elif dtype == "float32":
        data = values
    else:
        raise ValueError(f"dtype must be 'int16' or 'float32', got {dtype!r}")
    # [C, D, H, W] C order is NIfTI's (i, j, k, t) Fortran order: the transpose.
    data = np.ascontiguousarray(data.T) if data.ndim == 3 else np.ascontiguousarray(data.transpose(3, 2, 1, 0))
    image = nibabel.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = description.encode()[:79]
    suffix = ".nii.gz" if path.endswith(".nii.gz") else ".nii"
    write_atomically(path, lambda temporary: nibabel.save(image, temporary), suffix=suffix)


def read_nifti(path):
    """A NIfTI file as a Volume (values [D, H, W] or [C, D, H, W] float32, with
    scl_slope / scl_inter applied; the sform, else the qform)."""
    nibabel = require("nibabel")
    path = os.fspath(path)
    try:
        image = nibabel.load(path)
    except Exception as error:
        raise ValueError(f"cannot read '{path}' as NIfTI: {error}") from None
    data = np.asarray(image.get_fdata(dtype=np.float32))
    if data.ndim > 4 or data.ndim < 2:
        raise ValueError(f"'{path}' has {data.ndim} dimensions; 2 to 4 are supported")
    while data.ndim < 3:
        data = data[..., None]
    values = data.T if data.ndim == 3 else data.transpose(3, 2, 1, 0)
    return Volume(values=np.ascontiguousarray(values), affine=np.asarray(image.affine, dtype=np.float64))


def mid_planes(values, channel=0):
    """The mid axial (H x W), coronal and sagittal (D x W, D x H; last slice on top) planes."""
    volume = np.asarray(values, dtype=np.float32)
    if volume.ndim == 4:
        volume = volume[channel]
    depth, height, width = volume.shape
    return {
        "axial": volume[depth // 2],
        "coronal": volume[::-1, height // 2, :],
        "sagittal": volume[::-1, :, width // 2],
    }


def write_previews(values, prefix, window="lung", channel=0):
    """8-bit PNGs of the three mid planes of a volume in HU, through `window` (a
    preset, "C/W" or (centre, width)): PREFIX-axial.png, -coronal.png, -sagittal.png.
    Returns the paths."""
    centre, width = resolve_window(window)
    paths = []
    for plane, image in mid_planes(values, channel).items():
        path = f"{prefix}-{plane}.png"
        write_png(path, brightness=apply_window(image, centre, width), bits=8)
        paths.append(path)
    return paths
