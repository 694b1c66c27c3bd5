"""numpy arrays <-> struct nodus_tensor.

An input keeps a reference to its (contiguous) array for as long as the C call
may read it; outputs are allocated here and filled by the library.
"""

import ctypes

import numpy as np

from . import _lib

# numpy dtype -> nodus_dtype (bfloat16 has no numpy dtype).
_TO_NODUS = {
    np.dtype(np.float32): _lib.DTYPE_FLOAT32,
    np.dtype(np.float16): _lib.DTYPE_FLOAT16,
    np.dtype(np.int64): _lib.DTYPE_INT64,
    np.dtype(np.int32): _lib.DTYPE_INT32,
    np.dtype(np.uint8): _lib.DTYPE_UINT8,
    np.dtype(np.bool_): _lib.DTYPE_BOOL,
    np.dtype(np.float64): _lib.DTYPE_FLOAT64,
}
_TO_NUMPY = {value: key for key, value in _TO_NODUS.items()}


def numpy_dtype(nodus_dtype):
    """The numpy dtype of a nodus_dtype value, or a ValueError."""
    try:
        return _TO_NUMPY[nodus_dtype]
    except KeyError:
        raise ValueError(f"nodus: the library returned dtype {nodus_dtype}, which numpy cannot hold") from None


def model_input_array(value, name):
    """``value`` as a C-contiguous array with a dtype a model takes.

    float64 becomes float32, any integer becomes int64 (Python ints included),
    float32 / float16 / bool stay; other dtypes raise a ValueError naming the input.
    """
    array = np.asarray(value)
    kind = array.dtype.kind
    if kind == "f":
        dtype = np.float16 if array.dtype == np.float16 else np.float32
    elif kind in "iu":
        dtype = np.int64
    elif kind == "b":
        dtype = np.bool_
    else:
        raise ValueError(f"nodus: input '{name}' has dtype {array.dtype}; expected a float, integer or bool array")
    return np.ascontiguousarray(array, dtype=dtype)


def float32_array(value, name):
    """``value`` as a C-contiguous float32 array (ValueError naming ``name`` otherwise)."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"nodus: '{name}' has dtype {array.dtype}; expected a float32 array")
    return np.ascontiguousarray(array, dtype=np.float32)


class Input:
    """A struct nodus_tensor describing ``array`` (kept alive by this object)."""

    def __init__(self, array, name=None):
        if array.ndim > _lib.MAX_DIMS:
            raise ValueError(f"nodus: '{name}' has {array.ndim} dimensions; at most {_lib.MAX_DIMS} are supported")
        try:
            dtype = _TO_NODUS[array.dtype]
        except KeyError:
            raise ValueError(f"nodus: '{name}' has dtype {array.dtype}, which nodus does not take") from None
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        self.array = array
        self._name = name.encode() if name is not None else None
        self.struct = _lib.Tensor()
        self.struct.name = self._name
        self.struct.dtype = dtype
        self.struct.ndim = array.ndim
        for index, size in enumerate(array.shape):
            self.struct.shape[index] = size
        self.struct.data = array.ctypes.data if array.size else None
        self.struct.size_bytes = array.nbytes

    @property
    def pointer(self):
        return ctypes.pointer(self.struct)


class Output:
    """A struct nodus_tensor the library fills, backed by a numpy array."""

    def __init__(self, shape=None, dtype=np.float32):
        self.struct = _lib.Tensor()
        self.array = None
        if shape is not None:
            self.allocate(shape, dtype)

    def allocate(self, shape, dtype):
        self.array = np.empty(tuple(int(size) for size in shape), dtype=dtype)
        self.struct.data = self.array.ctypes.data if self.array.size else None
        self.struct.size_bytes = self.array.nbytes
        # A zero-element result still needs a non-NULL pointer to be written.
        if not self.array.size:
            self._placeholder = ctypes.c_char(0)
            self.struct.data = ctypes.addressof(self._placeholder)

    @property
    def pointer(self):
        return ctypes.pointer(self.struct)

    def shape(self):
        return tuple(self.struct.shape[index] for index in range(self.struct.ndim))

    def result(self):
        """The filled array, reshaped to what the library reported."""
        shape = self.shape()
        dtype = numpy_dtype(self.struct.dtype)
        if self.array.shape != shape or self.array.dtype != dtype:
            raise ValueError(f"nodus: the library returned {dtype} {shape}, expected {self.array.dtype} {self.array.shape}")
        return self.array


def call_with_output(function):
    """Runs ``function(output_pointer) -> status`` twice: with data NULL to learn the
    result's shape and dtype, then with a buffer of that size. Returns the array."""
    return call_with_outputs(function, 1)[0]


def call_with_outputs(function, count):
    """``call_with_output`` for a call with ``count`` outputs, ``function(*output_pointers)``;
    returns a tuple of arrays."""
    outputs = [Output() for _ in range(count)]
    _lib.check(function(*[output.pointer for output in outputs]))
    for output in outputs:
        output.allocate(output.shape(), numpy_dtype(output.struct.dtype))
    _lib.check(function(*[output.pointer for output in outputs]))
    return tuple(output.result() for output in outputs)
