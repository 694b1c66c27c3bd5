"""Display windows: DICOM's VOI transformation (PS3.3 C.11.2.1.2) and the seed's CT presets."""

import numpy as np

# centre, width in Hounsfield units (the seed work's CT windows).
WINDOW_PRESETS = {
    "lung": (-600.0, 1500.0),
    "vessel": (100.0, 700.0),
    "soft-tissue": (50.0, 350.0),
    "bone": (300.0, 2000.0),
}


def resolve_window(window):
    """A preset name, "C/W" text or a (centre, width) pair as (centre, width)."""
    if isinstance(window, str):
        if window in WINDOW_PRESETS:
            return WINDOW_PRESETS[window]
        try:
            centre, width = (float(part) for part in window.split("/"))
        except ValueError:
            raise ValueError(f"unknown window {window!r}: use one of {sorted(WINDOW_PRESETS)}, "
                             "'CENTRE/WIDTH' or a (centre, width) pair") from None
        window = (centre, width)
    centre, width = (float(value) for value in window)
    if not (np.isfinite(centre) and np.isfinite(width) and width >= 1):
        raise ValueError(f"a window needs a finite centre and a width of at least 1, got {window!r}")
    return centre, width


def apply_window(values, centre, width, function="LINEAR"):
    """Brightness 0 (black) ... 1 (white) of modality values, as DICOM defines it."""
    x = np.asarray(values, dtype=np.float64)
    if function == "LINEAR_EXACT":
        return np.clip((x - centre) / width + 0.5, 0, 1).astype(np.float32)
    if function == "SIGMOID":
        return (1 / (1 + np.exp(-4 * (x - centre) / width))).astype(np.float32)
    if width == 1:
        return (x > centre - 0.5).astype(np.float32)
    lower, upper = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    y = (x - (centre - 0.5)) / (width - 1) + 0.5
    return np.where(x <= lower, 0.0, np.where(x > upper, 1.0, y)).astype(np.float32)


def invert_window(brightness, centre, width):
    """The modality values a LINEAR window shows with `brightness` (0...1)."""
    unit = np.clip(np.asarray(brightness, dtype=np.float64), 0, 1)
    return ((unit - 0.5) * (width - 1) + centre - 0.5).astype(np.float32)
