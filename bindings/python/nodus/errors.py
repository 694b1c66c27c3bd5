"""Errors raised by the nodus binding.

Every failed C call raises a :class:`NodusError` carrying the status name
(``"shape"``, ``"io"``, ...) and the library's message.  Statuses that mean the
caller passed something wrong (``invalid_argument``, ``shape``) raise subclasses
that are also :class:`ValueError`, so ``except ValueError`` catches them.
"""

# Status names indexed by their nodus_status value (include/nodus.h).
STATUS_NAMES = (
    "ok",
    "invalid_argument",
    "io",
    "format",
    "unsupported",
    "shape",
    "cancelled",
    "out_of_memory",
    "internal",
)


class NodusError(RuntimeError):
    """A failed call into libnodus.

    Attributes:
        status: the status name, e.g. ``"io"`` or ``"shape"``.
        message: the library's message (``nodus_last_error()``).
    """

    def __init__(self, status, message):
        super().__init__(f"{message} [{status}]")
        self.status = status
        self.message = message


class InvalidArgumentError(NodusError, ValueError):
    """NODUS_ERROR_INVALID_ARGUMENT: a NULL pointer, out-of-range value or wrong name."""


class NodusIOError(NodusError):
    """NODUS_ERROR_IO: a file could not be opened, read or written."""


class FormatError(NodusError):
    """NODUS_ERROR_FORMAT: a file or JSON document is malformed."""


class UnsupportedError(NodusError):
    """NODUS_ERROR_UNSUPPORTED: valid, but not implemented by Nodus."""


class ShapeError(NodusError, ValueError):
    """NODUS_ERROR_SHAPE: a tensor's shape or dtype does not fit."""


class CancelledError(NodusError):
    """NODUS_ERROR_CANCELLED: a progress callback asked to stop."""


class OutOfMemoryError(NodusError, MemoryError):
    """NODUS_ERROR_OUT_OF_MEMORY."""


class InternalError(NodusError):
    """NODUS_ERROR_INTERNAL: a bug in Nodus."""


_CLASSES = {
    "invalid_argument": InvalidArgumentError,
    "io": NodusIOError,
    "format": FormatError,
    "unsupported": UnsupportedError,
    "shape": ShapeError,
    "cancelled": CancelledError,
    "out_of_memory": OutOfMemoryError,
    "internal": InternalError,
}


def status_name(status):
    """The name of a nodus_status value ("unknown" when out of range)."""
    return STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else "unknown"


def error_for(status, message):
    """The exception for a failed call: the subclass matching ``status``."""
    name = status_name(status)
    return _CLASSES.get(name, NodusError)(name, message)
