"""A 2-D grayscale medical image: its modality values and what a viewer needs to show it."""

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .windows import apply_window, resolve_window


@dataclass
class PixelStorage:
    """How values are stored as integers: bit depth, signedness and the rescale
    ``value = stored * slope + intercept`` (Hounsfield units for CT)."""

    bits_allocated: int
    bits_stored: int
    is_signed: bool
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0

    @property
    def stored_range(self):
        if self.is_signed:
            return -(1 << (self.bits_stored - 1)), (1 << (self.bits_stored - 1)) - 1
        return 0, (1 << self.bits_stored) - 1

    def values(self, stored):
        """Modality values (float32) of stored values."""
        return (np.asarray(stored, dtype=np.float64) * self.rescale_slope + self.rescale_intercept).astype(np.float32)

    def stored(self, values):
        """The stored values (int32) nearest to modality values, clamped to the range."""
        exact = (np.asarray(values, dtype=np.float64) - self.rescale_intercept) / self.rescale_slope
        lower, upper = self.stored_range
        return np.clip(np.rint(exact), lower, upper).astype(np.int32)


@dataclass
class MedicalImage:
    """A radiograph or CT slice.

    Attributes:
        values: modality values, float32 [H, W] (HU for CT; the stored value for a
            radiograph without rescale, or a PNG's samples).
        photometric: "MONOCHROME1" (low values white) or "MONOCHROME2".
        storage: how the values are stored as integers (None for float data).
        windows: the file's (centre, width) windows, first preferred.
        voi_lut_function: "LINEAR", "LINEAR_EXACT" or "SIGMOID".
        voi_lut: (first_mapped, bits, table) of the file's VOI LUT, or None.
        pixel_spacing: (row, column) mm, or None.
        path: the file it was read from.
    """

    values: np.ndarray
    photometric: str = "MONOCHROME2"
    storage: Optional[PixelStorage] = None
    windows: list = field(default_factory=list)
    voi_lut_function: str = "LINEAR"
    voi_lut: Optional[Tuple[int, int, np.ndarray]] = None
    pixel_spacing: Optional[Tuple[float, float]] = None
    path: Optional[str] = None

    @property
    def stored(self):
        """The stored values (int32 [H, W]) through the inverse rescale."""
        if self.storage is None:
            raise ValueError("this image holds float values and has no stored form")
        return self.storage.stored(self.values)

    def display(self, window=None):
        """Brightness 0 (black) ... 1 (white), float32 [H, W], MONOCHROME1 inverted.

        `window`: None for the file's own (its first window, else its VOI LUT, else
        the stored range, else min...max), "range" for min...max, a preset name
        ("lung", "vessel", "soft-tissue", "bone"), "C/W" or (centre, width).
        """
        values = np.asarray(self.values, dtype=np.float64)
        if window is None and self.windows:
            brightness = apply_window(values, *self.windows[0], self.voi_lut_function)
        elif window is None and self.voi_lut is not None:
            first, bits, table = self.voi_lut
            index = np.clip(np.floor(values - first).astype(np.int64), 0, len(table) - 1)
            brightness = (np.asarray(table, dtype=np.float64)[index] / ((1 << bits) - 1)).astype(np.float32)
        elif window is None or window == "range":
            lower, upper = float(values.min()), float(values.max())
            storage = self.storage
            if window is None and storage and not storage.is_signed and storage.rescale_slope == 1 \
                    and storage.rescale_intercept == 0:
                lower, upper = storage.stored_range
            brightness = np.clip((values - lower) / max(upper - lower, 1e-12), 0, 1).astype(np.float32)
        else:
            brightness = apply_window(values, *resolve_window(window))
        return 1 - brightness if self.photometric == "MONOCHROME1" else brightness
