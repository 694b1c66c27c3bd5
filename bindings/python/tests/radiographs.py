"""A synthetic chest radiograph for the workflow tests: two dark lung fields with
rib shadows in a bright body, 12-bit stored values (noise from a seed)."""

import numpy as np


def synthetic_radiograph(height, width, seed=0, bits=12):
    """Stored values [height, width] (uint16 below 2^bits), brighter = denser (MONOCHROME2)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    brightness = np.full((height, width), 0.75)
    for side in (0.3, 0.7):  # lung fields: dark ellipses
        lung = ((u - side) / 0.17) ** 2 + ((v - 0.5) / 0.33) ** 2
        brightness -= 0.45 / (1 + np.exp((lung - 1) * 12))
    brightness += 0.08 * (np.sin(v * 2 * np.pi * 9 + 4 * (u - 0.5) ** 2) > 0.6)  # rib shadows
    brightness += rng.normal(0, 0.01, (height, width))
    top = (1 << bits) - 1
    return np.clip(np.rint(brightness * top), 0, top).astype(np.uint16)
