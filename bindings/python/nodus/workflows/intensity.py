"""The linear map between a radiograph's modality values and the model's pixels in
[-1, 1] (-1 black, 1 white), and back."""

from dataclasses import dataclass


@dataclass(frozen=True)
class IntensityMapping:
    """``pixel = 2 * (value - lower) / (upper - lower) - 1``, flipped for MONOCHROME1
    (low values shown white). Linear and unclipped, so the way back is exact and
    blending in pixels is blending in values."""

    lower: float
    upper: float
    inverted: bool = False

    @classmethod
    def of(cls, image):
        """From a MedicalImage: its first window (centre +- width / 2), else the full
        range of its storage through the rescale (an 8- or 16-bit PNG: 0 ... 2^bits - 1)."""
        if image.windows:
            centre, width = image.windows[0]
            lower, upper = centre - width / 2, centre + width / 2
        elif image.storage is not None:
            low, high = image.storage.stored_range
            lower, upper = sorted(float(value) for value in image.storage.values([low, high]))
        else:
            lower, upper = float(image.values.min()), float(image.values.max())
        if not upper > lower:
            raise ValueError(f"'{image.path}' has no intensity range to map to the model's pixels "
                             f"({lower} ... {upper})")
        return cls(float(lower), float(upper), image.photometric == "MONOCHROME1")

    def to_pixels(self, values):
        brightness = (values - self.lower) / (self.upper - self.lower)
        return 2 * ((1 - brightness) if self.inverted else brightness) - 1

    def to_values(self, pixels):
        brightness = (pixels + 1) / 2
        return self.lower + ((1 - brightness) if self.inverted else brightness) * (self.upper - self.lower)
