"""8- and 16-bit grayscale PNG, samples exactly as stored (through Pillow)."""

import os

import numpy as np

from ._atomic import write_atomically
from ._requirements import require
from .image import MedicalImage, PixelStorage


def read_png(path):
    """A gray PNG as a MedicalImage whose values are its samples; colour refused."""
    image_module = require("PIL.Image")
    path = os.fspath(path)
    with image_module.open(path) as image:
        if image.format != "PNG":
            raise ValueError(f"'{path}' is not a PNG file")
        if image.mode not in ("L", "I;16", "I;16B", "I", "1"):
            raise ValueError(f"'{path}' is a {image.mode} PNG; only grayscale images are supported "
                             "(convert it to gray first)")
        if image.mode == "1":
            image = image.convert("L")
        samples = np.asarray(image)
    bits = 16 if samples.dtype.itemsize > 1 else 8
    samples = samples.astype(np.uint16 if bits == 16 else np.uint8)
    return MedicalImage(values=samples.astype(np.float32),
                        storage=PixelStorage(bits_allocated=bits, bits_stored=bits, is_signed=False), path=path)


def write_png(path, samples=None, *, brightness=None, bits=8):
    """Writes a gray PNG: integer `samples` [H, W] (must fit `bits`), or
    `brightness` in 0...1 rounded to `bits` 8 or 16. Atomic."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if (samples is None) == (brightness is None):
        raise ValueError("give samples or brightness")
    if brightness is not None:
        unit = np.clip(np.nan_to_num(np.asarray(brightness, dtype=np.float64)), 0, 1)
        samples = np.rint(unit * ((1 << bits) - 1))
    samples = np.asarray(samples)
    if samples.ndim != 2:
        raise ValueError(f"a gray PNG is [H, W]; got shape {samples.shape}")
    if samples.size and (samples.min() < 0 or samples.max() >= (1 << bits)):
        raise ValueError(f"samples {samples.min()}...{samples.max()} do not fit {bits} bits")
    image_module = require("PIL.Image")
    array = samples.astype(np.uint16 if bits == 16 else np.uint8)
    image = image_module.fromarray(array)  # uint8 -> "L", uint16 -> "I;16"
    write_atomically(path, lambda temporary: image.save(temporary, format="PNG"), suffix=".png")
