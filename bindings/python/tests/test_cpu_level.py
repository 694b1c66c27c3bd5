"""The CPU level: chosen once per process, lowered (never raised) by NODUS_CPU.

Each case runs in a fresh interpreter, since the level is fixed at the first call.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import HERE, REPOSITORY, fixture_path

import nodus

LEVELS = ["baseline", "avx2", "avx512", "avx512_bf16"]


def run_with(level, code="import nodus; print(nodus.cpu_level())", **extra):
    environment = dict(os.environ, NODUS_CPU=level, PYTHONPATH=os.path.dirname(HERE), **extra)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), result.stderr


def test_level_names_the_cpu():
    supported = nodus.cpu_level(supported=True)
    assert supported in LEVELS
    assert LEVELS.index(nodus.cpu_level()) <= LEVELS.index(supported)


@pytest.mark.parametrize("level", LEVELS)
def test_override_lowers_and_never_raises(level):
    supported = nodus.cpu_level(supported=True)
    used, stderr = run_with(level)
    if LEVELS.index(level) <= LEVELS.index(supported):
        assert used == level
        assert stderr == ""
    else:
        assert used == supported
        assert f"NODUS_CPU={level} asks for a level this CPU lacks; using {supported}" in stderr


def test_unknown_override_keeps_the_supported_level_and_says_why():
    used, stderr = run_with("sse9")
    assert used == nodus.cpu_level(supported=True)
    assert "NODUS_CPU='sse9' is not a CPU level" in stderr
    note, _ = run_with("sse9", "import nodus; from nodus._lib import lib; print(lib.nodus_cpu_level_note().decode())")
    assert "is not a CPU level" in note


def test_every_level_computes_the_same_forward():
    """The DiT forward at each level this CPU has, within float32 rounding of each other."""
    code = (
        "import numpy as np, nodus\n"
        f"m = nodus.load({fixture_path('dit-tiny')!r})\n"
        "x = nodus.randn((2, 4, 8, 8), seed=0)\n"
        "y = m.forward(sample=x, timestep=np.array([999, 10]), class_labels=np.array([3, 10]))\n"
        "print(' '.join(repr(float(v)) for v in y.ravel()))"
    )
    supported = LEVELS.index(nodus.cpu_level(supported=True))
    results = {level: np.array([float(v) for v in run_with(level, code)[0].split()]) for level in LEVELS[: supported + 1]}
    top = results[LEVELS[supported]]
    for level, values in results.items():
        error = np.abs(values - top).max() / np.abs(top).max()
        assert error < 1e-5, f"{level} differs from {LEVELS[supported]} by {error:.2e}"


def test_a_cpu_that_reports_no_avx512_runs_the_avx2_kernels(tmp_path):
    """As on a Zen 3: every CPUID reports no AVX-512 (benchmarks/hide_avx512.c, through
    CPUID faulting). Detection lands on avx2, an override asking for more says so, and
    the forward is the one NODUS_CPU=avx2 gives, bit for bit."""
    flags = open("/proc/cpuinfo").read().split()
    if "avx512f" not in flags or "cpuid_fault" not in flags or not shutil.which("cc"):
        pytest.skip("needs an AVX-512 CPU with CPUID faulting, and a C compiler")
    preload = tmp_path / "hide_avx512.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(preload),
                    os.path.join(REPOSITORY, "benchmarks", "hide_avx512.c")], check=True)
    levels = "import nodus; print(nodus.cpu_level(), nodus.cpu_level(supported=True))"
    used, stderr = run_with("avx512", levels, LD_PRELOAD=str(preload))
    assert used == "avx2 avx2"
    assert "NODUS_CPU=avx512 asks for a level this CPU lacks; using avx2" in stderr
    forward = (
        "import numpy as np, nodus\n"
        f"m = nodus.load({fixture_path('dit-tiny')!r})\n"
        "y = m.forward(sample=nodus.randn((2, 4, 8, 8), seed=0), timestep=np.array([999, 10]),"
        " class_labels=np.array([3, 10]))\n"
        "print(y.tobytes().hex())"
    )
    masked, _ = run_with("", forward, LD_PRELOAD=str(preload))
    lowered, _ = run_with("avx2", forward)
    assert masked == lowered

