"""Atomic output files: written under a temporary name beside the target,
flushed to disk, then renamed; on any error nothing is left under either name."""

import os
import tempfile


def write_atomically(path, write, suffix=""):
    """Calls ``write(temporary_path)``, then moves the finished file to `path`.

    `suffix` keeps an extension a library decides the format by (".nii.gz").
    Raises OSError naming `path` when its folder is missing or not writable, or
    when the disk is full.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.partial-", suffix=suffix,
                                                 dir=folder)
    except FileNotFoundError:
        raise OSError(f"cannot write '{path}': its folder does not exist") from None
    except OSError as error:
        raise OSError(f"cannot write '{path}': {error.strerror}") from None
    os.close(descriptor)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        mask = os.umask(0)  # mkstemp makes 0600; give the mode a plain create would
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)
        os.replace(temporary, path)
    except BaseException as error:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        cause = _system_error(error)
        if cause is not None:
            raise OSError(cause.errno, f"cannot write '{path}': {cause.strerror}") from error
        raise


def _system_error(error):
    """The OSError with an errno behind `error` (pydicom re-raises write errors
    wrapped, without the errno), or None."""
    while error is not None:
        if isinstance(error, OSError) and error.errno is not None and error.strerror:
            return error
        error = error.__cause__ or error.__context__
    return None
