"""Where the model's patch sits in a radiograph: the seed standardises the whole
image to a square (960 x 960) and cuts a patch (256 x 256) around a centre. Only
the patch is resampled, in and out, so the rest of the image is never touched."""

from dataclasses import dataclass

import numpy as np

from .resampling import resize_weights


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class PatchPlacement:
    """A `patch_size` square of the image resized to `standard_size` x `standard_size`,
    around `center` (x = column, y = row, in pixels of the original image).

    The patch starts at ``round(standardised centre - patch_size / 2)``, moved inward
    when the centre is near an edge, so it always lies inside the standardised image.
    """

    height: int
    width: int
    standard_size: int
    patch_size: int
    center: tuple

    def __post_init__(self):
        x, y = self.center
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise ValueError(f"the centre ({x:g}, {y:g}) is outside the {self.width}x{self.height} image "
                             f"(x must be in 0 ... {self.width - 1}, y in 0 ... {self.height - 1})")
        if self.patch_size > self.standard_size:
            raise ValueError(f"the model's {self.patch_size}-pixel patch does not fit its standard size "
                             f"{self.standard_size}")

    @property
    def scale(self):
        """Standardised pixels per original pixel, (along x, along y)."""
        return self.standard_size / self.width, self.standard_size / self.height

    @property
    def origin(self):
        """The patch's first column and row in the standardised image."""
        return tuple(int(min(max(np.floor((coordinate + 0.5) * scale - self.patch_size / 2 + 0.5), 0),
                             self.standard_size - self.patch_size))
                     for coordinate, scale in zip(self.center, self.scale))

    def standardised_center(self):
        """The centre in patch pixel coordinates (x, y), pixel centres at integers."""
        return tuple((coordinate + 0.5) * scale - 0.5 - start
                     for coordinate, scale, start in zip(self.center, self.scale, self.origin))

    def cut(self, image):
        """The patch [patch_size, patch_size] of `image` [height, width] resized to the standard size."""
        column, row = self.origin
        indices = np.arange(self.patch_size)
        rows = resize_weights(self.height, self.standard_size, indices + row)
        columns = resize_weights(self.width, self.standard_size, indices + column)
        # Only the band of source pixels the weights reach (a few rows of a large radiograph).
        used_rows, used_columns = np.flatnonzero(rows.any(axis=0)), np.flatnonzero(columns.any(axis=0))
        first_row, last_row = used_rows[0], used_rows[-1] + 1
        first_column, last_column = used_columns[0], used_columns[-1] + 1
        block = np.asarray(image, dtype=np.float64)[first_row:last_row, first_column:last_column]
        return rows[:, first_row:last_row] @ block @ columns[:, first_column:last_column].T

    def _footprint(self, size, start):
        """The original pixels (along one axis) whose centres fall inside the patch,
        and their distance in standardised pixels to the patch's nearer edge."""
        scale = self.standard_size / size
        positions = (np.arange(size) + 0.5) * scale  # standardised coordinates, pixel edges at integers
        inside = np.flatnonzero((positions > start) & (positions < start + self.patch_size))
        distance = np.minimum(positions[inside] - start, start + self.patch_size - positions[inside])
        return inside, distance

    def feather_width(self):
        """The seam's width in standardised pixels: a sixteenth of the patch (2 for a
        32-pixel patch, 16 for the seed's 256)."""
        return max(self.patch_size / 16, 1.0)

    def paste(self, image, patch):
        """`image` [height, width] with `patch` (standardised pixels) blended in: weight 1
        inside, falling smoothly to 0 over `feather_width` at the patch's edge. Pixels
        outside the patch are the input's, as they were. Returns a new float64 array."""
        column, row = self.origin
        rows, row_distance = self._footprint(self.height, row)
        columns, column_distance = self._footprint(self.width, column)
        result = np.array(image, dtype=np.float64, copy=True)
        if rows.size == 0 or columns.size == 0:
            return result
        up_rows = resize_weights(self.standard_size, self.height, rows, row, row + self.patch_size)
        up_columns = resize_weights(self.standard_size, self.width, columns, column, column + self.patch_size)
        resized = up_rows @ np.asarray(patch, dtype=np.float64) @ up_columns.T
        feather = self.feather_width()
        weight = _smoothstep(row_distance / feather)[:, None] * _smoothstep(column_distance / feather)[None, :]
        block = result[np.ix_(rows, columns)]
        result[np.ix_(rows, columns)] = block + weight * (resized - block)
        return result

    def region(self, core=False):
        """A boolean [height, width] map of the pixels `paste` may change, or with `core`
        of those it replaces fully (weight 1, inside the seam)."""
        column, row = self.origin
        least = self.feather_width() if core else 0.0
        rows, row_distance = self._footprint(self.height, row)
        columns, column_distance = self._footprint(self.width, column)
        region = np.zeros((self.height, self.width), dtype=bool)
        region[np.ix_(rows[row_distance >= least], columns[column_distance >= least])] = True
        return region

    def disk_mask(self, diameter):
        """The nodule mask in the patch: a disk of `diameter` original pixels around the
        centre (an ellipse in standardised pixels when the image is not square)."""
        center_x, center_y = self.standardised_center()
        scale_x, scale_y = self.scale
        radius = diameter / 2
        y, x = np.mgrid[0:self.patch_size, 0:self.patch_size].astype(np.float64)
        inside = ((x - center_x) / (radius * scale_x)) ** 2 + ((y - center_y) / (radius * scale_y)) ** 2 <= 1
        return inside.astype(np.float32)

    def disk_mask_full(self, diameter):
        """The same disk at the original resolution [height, width] (the mask output)."""
        y, x = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        center_x, center_y = self.center
        return ((x - center_x) ** 2 + (y - center_y) ** 2 <= (diameter / 2) ** 2).astype(np.uint8)
