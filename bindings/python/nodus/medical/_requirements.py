"""The optional packages of the ``nodus[medical]`` extra, imported when first needed."""

import importlib

EXTRA_HINT = "pip install 'nodus[medical]' (pydicom, highdicom, nibabel, pillow)"


def require(module):
    """Imports `module`, or raises ImportError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"nodus.medical needs {module.split('.')[0]}: {EXTRA_HINT}") from error
