"""Reading the committed reference fixtures and comparing against them, shared by the parity suites."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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


def run_without_avx512(body: str, tmp_path: Path) -> dict[str, np.ndarray]:
    """Runs `body` (Python with `nodus`, `np` and `load_file` imported) under valgrind, whose virtual
    CPU has AVX2 but no AVX-512, so the library takes its AVX2 paths (NODUS_CPU=baseline in the
    environment lowers them further); returns what it saved with `save(name=array, ...)`."""
    import nodus

    out = tmp_path / "out.npz"
    script = "\n".join([
        "import sys",
        f"sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(nodus.__file__)))!r})",
        "import numpy as np, nodus",
        "from safetensors.numpy import load_file",
        f"save = lambda **arrays: np.savez({str(out)!r}, **arrays)",
        textwrap.dedent(body),
    ])
    # valgrind's DWARF reader gives up on some of the toolchain's debug sections: run a copy without them.
    library = tmp_path / "libnodus.so"
    subprocess.run(["objcopy", "--strip-debug", nodus._lib.path, str(library)], check=True)
    run = subprocess.run(["valgrind", "-q", "--tool=none", sys.executable, "-c", script], capture_output=True,
                         text=True, timeout=600,
                         env={**os.environ, "OPENBLAS_CORETYPE": "", "NODUS_LIBRARY": str(library)})
    assert run.returncode == 0, f"under valgrind (no AVX-512): exit {run.returncode}\n{run.stderr[-3000:]}"
    return dict(np.load(out))
