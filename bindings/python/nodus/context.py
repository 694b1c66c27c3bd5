"""Run contexts: one model's weights run from several threads at once (``m.context()``)."""

import ctypes

from . import _lib
from ._handle import Handle


class Context(Handle):
    """A run context of a model, as llama.cpp separates a context from its model.

    It has its own activation arenas, thread count and LoRA adapter strengths, over the
    model's weights (stored once): contexts of one model run at the same time from different
    threads, while the calls of one context take turns. A new context starts with the adapters
    active in the model; ``set_adapters`` changes the context's strengths only. Loading,
    deleting, fusing and unfusing adapters are the model's (``m.fuse_lora()``...): they wait for
    running calls, and every context runs the new weights from its next call. The context
    keeps its model alive. ``nodus.sample(context, ...)`` samples in it.
    """

    _free_function = "nodus_context_free"
    _label = "context"

    def __init__(self, model, threads=None, memory_budget=None):
        params = _lib.ContextParams()
        _lib.lib.nodus_context_params_init(ctypes.byref(params))
        if threads is not None:
            count = int(threads)
            if count != threads or count < 0:
                raise ValueError(f"nodus: threads must be a non-negative integer, not {threads!r}")
            params.threads = count
        if memory_budget is not None:
            if isinstance(memory_budget, bool) or int(memory_budget) != memory_budget or not 0 < memory_budget < 2**63:
                raise ValueError(f"nodus: memory_budget must be a positive byte count or None, not {memory_budget!r}")
            params.memory_budget = int(memory_budget)
        handle = ctypes.c_void_p()
        _lib.check(_lib.lib.nodus_context_new(model.handle, ctypes.byref(params), ctypes.byref(handle)))
        super().__init__(handle)
        self.model = model
        # Kept here: the context outlives a closed model handle.
        self._kind = model.kind
        self._output_names = [name for name, _, _ in model.outputs]

    @property
    def threads(self):
        """Worker threads of this context's calls (0 = every core)."""
        return int(_lib.lib.nodus_context_threads(self.handle))

    def forward(self, **inputs):
        """``model.forward`` in this context."""
        results = self.forward_all(**inputs)
        if self._kind == "onnx" and len(results) > 1:
            return results
        return next(iter(results.values()))

    def forward_all(self, **inputs):
        """``model.forward_all`` in this context."""
        from .model import Model

        return Model._forward_all(_lib.lib.nodus_context_forward_all, self.handle, inputs, self._output_names)

    def decode(self, latent):
        """``model.decode`` (a VAE's) in this context."""
        from .model import Model

        return Model._decode(_lib.lib.nodus_context_decode, self.handle, latent)

    def encode(self, image):
        """``model.encode`` (a VAE's) in this context: ``(mean, logvar)``."""
        from .model import Model

        return Model._encode(_lib.lib.nodus_context_encode, self.handle, image)

    def encode_latent(self, image, noise=None):
        """``model.encode_latent`` (a VAE's) in this context."""
        from .model import Model

        return Model._encode_latent(_lib.lib.nodus_context_encode_latent, self.handle, image, noise)

    def set_adapters(self, adapter_names, weights=None):
        """``model.set_adapters`` for this context only."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        values = [1.0] * len(names) if weights is None else [float(weight) for weight in weights]
        if len(values) != len(names):
            raise ValueError(f"nodus: {len(names)} adapter names and {len(values)} weights")
        encoded = (ctypes.c_char_p * len(names))(*[name.encode() for name in names])
        floats = (ctypes.c_float * len(values))(*values)
        _lib.check(_lib.lib.nodus_context_set_adapters(self.handle, encoded, floats, len(names)))
