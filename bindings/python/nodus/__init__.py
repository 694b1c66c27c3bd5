"""Nodus: a diffusion inference runtime (ctypes bindings over libnodus, numpy in and out).

    import nodus
    m = nodus.load("dit-folder")
    s = nodus.Scheduler.from_config("scheduler-folder")
    noise = nodus.randn((1, 4, 32, 32), seed=0)   # sample() multiplies it by s.init_noise_sigma
    final = nodus.sample(m, s, steps=50, guidance_scale=4.0, init_noise=noise, class_labels=[3])
"""

from ._lib import VERSION as __version__
from .errors import (
    CancelledError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    NodusError,
    NodusIOError,
    OutOfMemoryError,
    ShapeError,
    UnsupportedError,
)
from .context import Context
from .model import Model, load
from .pipeline import Pipeline
from .sampling import batch_statistics, randn, sample
from .scheduler import Scheduler
from .tokenizer import Tokenizer
from . import medical  # DICOM / PNG / NIfTI I/O; its packages (nodus[medical]) load when first used
from . import workflows  # insert_nodule, follow_up: the seed workflows over medical files
from . import batch  # manifests of workflow jobs on local worker processes or Ray

__all__ = [
    "__version__",
    "CancelledError",
    "Context",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "Model",
    "NodusError",
    "NodusIOError",
    "OutOfMemoryError",
    "Pipeline",
    "Scheduler",
    "ShapeError",
    "Tokenizer",
    "UnsupportedError",
    "batch",
    "batch_statistics",
    "cpu_level",
    "load",
    "medical",
    "randn",
    "sample",
    "version_number",
    "workflows",
]


def version_number():
    """The loaded library's nodus_version_number() (X*1000000 + Y*1000 + Z)."""
    from ._lib import lib

    return lib.nodus_version_number()


def cpu_level(supported=False):
    """The CPU level the kernels run at: "avx512_bf16", "avx512", "avx2" or "baseline".

    Chosen once per process from the CPU; the NODUS_CPU environment variable
    (set before the library loads) can lower it. With ``supported=True``, the
    highest level this CPU supports instead.
    """
    from ._lib import lib

    level = lib.nodus_cpu_level_supported() if supported else lib.nodus_cpu_level()
    return lib.nodus_isa_level_name(level).decode()
