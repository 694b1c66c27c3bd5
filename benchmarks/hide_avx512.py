"""`--hide-avx512`: run a benchmark as on an AVX2-only CPU, every engine in it.

The script re-executes itself with `hide_avx512.c` preloaded (built here into
.build/bench). Every CPUID the process and its subprocesses run then reports no
AVX-512, so torch (ATen, oneDNN, MKL), onnxruntime's MLAS, OpenBLAS and Nodus all
choose their AVX2 + FMA kernels, as on a Zen 3 or a recent Intel desktop. This
differs from `--cpu avx2`, which lowers Nodus alone. The hardware underneath is
still this machine's: its caches, clock and memory, and its execution units for
256-bit instructions.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = Path(__file__).with_suffix(".c")
LIBRARY = REPO / ".build" / "bench" / "hide_avx512.so"
# glibc picks its string functions in the dynamic loader, before the preload runs.
GLIBC_TUNABLES = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD"


def add_option(parser):
    parser.add_argument("--hide-avx512", action="store_true",
                        help="hide AVX-512 from every engine (CPUID faulting), to measure as on an AVX2-only CPU")


def active():
    return str(LIBRARY) in os.environ.get("LD_PRELOAD", "").split(":")


def apply(args):
    """With --hide-avx512, re-executes this script with the mask preloaded (once)."""
    if not args.hide_avx512 or active():
        return
    flags = Path("/proc/cpuinfo").read_text().split()
    if "cpuid_fault" not in flags:
        sys.exit("--hide-avx512 needs CPUID faulting ('cpuid_fault' in /proc/cpuinfo), which this kernel or CPU lacks")
    if not LIBRARY.exists() or LIBRARY.stat().st_mtime < SOURCE.stat().st_mtime:
        if not shutil.which("cc"):
            sys.exit("--hide-avx512 builds benchmarks/hide_avx512.c and needs a C compiler ('cc')")
        LIBRARY.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o", str(LIBRARY),
                        str(SOURCE)], check=True)
    preload = ":".join(filter(None, [str(LIBRARY), os.environ.get("LD_PRELOAD")]))
    os.environ.update(LD_PRELOAD=preload, GLIBC_TUNABLES=GLIBC_TUNABLES)
    os.execv(sys.executable, [sys.executable, *sys.argv])


def note():
    """The Machine line's addition: how AVX-512 was hidden, and what the engines chose."""
    if not active():
        return ""
    import torch

    return (", **AVX-512 hidden from every engine** by CPUID faulting (`--hide-avx512`, "
            f"benchmarks/hide_avx512.c): torch's ATen kernels {torch.backends.cpu.get_cpu_capability()}, "
            "MLAS and oneDNN on their AVX2 paths; the execution units are still this CPU's")


def suffix():
    """Report file names under the mask: forward-avx2-only-<date>.md."""
    return "-avx2-only" if active() else ""
