"""The lifetime every library object shares: an owned handle, freed once."""

from . import _lib


class Handle:
    """Owns a ``nodus_*`` handle and frees it with ``_free_function``.

    Subclasses set ``_free_function`` (the C destructor's name) and ``_label``
    (for messages). Free with ``close()`` or a ``with`` block.
    """

    _free_function = None
    _label = "object"

    def __init__(self, handle):
        self._handle = handle

    def close(self):
        """Frees the object; later calls raise ValueError. Safe to call twice."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            getattr(_lib.lib, self._free_function)(handle)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may already be gone
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def handle(self):
        """The raw C handle (a ctypes.c_void_p)."""
        if not self._handle:
            raise ValueError(f"nodus: the {self._label} is closed")
        return self._handle
