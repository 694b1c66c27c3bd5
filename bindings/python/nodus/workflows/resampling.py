"""Resizing weights: the antialiased triangle (bilinear) filter of Pillow's and
torchvision's ``resize(..., antialias=True)``, as explicit matrices, so that a
patch can be cut from an image resized to the model's standard size (and pasted
back) without resizing the whole image."""

import numpy as np


def resize_weights(source_size, target_size, target_indices, source_start=0, source_stop=None):
    """Weights [len(target_indices), source_stop - source_start] of a 1-D resize from
    `source_size` to `target_size` samples, for the target samples `target_indices`
    and the source samples ``source_start ... source_stop - 1``.

    Pixel centres align (target sample i sits at source position
    ``(i + 0.5) * source_size / target_size``); the triangle widens by the scale
    when shrinking (antialiasing). Each row is normalised over the source samples
    given, as Pillow normalises at the image border.
    """
    source_stop = source_size if source_stop is None else source_stop
    scale = source_size / target_size
    support = max(scale, 1.0)
    centres = (np.asarray(target_indices, dtype=np.float64) + 0.5) * scale
    positions = np.arange(source_start, source_stop, dtype=np.float64) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(positions[None, :] - centres[:, None]) / support)
    totals = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
