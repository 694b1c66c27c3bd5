"""Reading the committed reference fixtures and comparing against them, shared by the parity suites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

FIXTURES = Path(__file__).resolve().parents[3] / "Tests" / "Fixtures"
REGENERATE = "the scripts in tests/reference (make_model_fixtures.py, make_lora_fixtures.py, make_vae_fixtures.py)"


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    assert path.exists(), f"missing fixture {path}; regenerate with {REGENERATE}"
    return path


def load_ref(name: str) -> dict[str, np.ndarray]:
    return load_file(str(fixture_path(name)))


def rel_err(ours, ref) -> float:
    """The relative max error max|ours - ref| / max|ref| (SPEC section 5)."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} differs from the reference shape {ref.shape}"
    scale = np.max(np.abs(ref))
    assert scale > 0, "reference is all zeros"
    return float(np.max(np.abs(ours - ref)) / scale)


def assert_close(ours, ref, bound: float, what: str) -> None:
    err = rel_err(ours, ref)
    assert np.isfinite(err) and err < bound, (
        f"{what}: relative max error max|ours-ref|/max|ref| = {err:.3e}, bound {bound:.0e}"
    )
