"""Models: ``nodus.load(path)`` and the Model handle."""

import ctypes
import json
import os

from . import _lib, _tensor
from ._handle import Handle


class Model(Handle):
    """A loaded model (``nodus_model *``). Free it with ``close()`` or a ``with`` block."""

    _free_function = "nodus_model_free"
    _label = "model"

    def __init__(self, handle, path):
        super().__init__(handle)
        self.path = path
        self._config = None

    def __repr__(self):
        state = "closed" if not self._handle else self.kind
        return f"<nodus.Model {state} {self.path!r}>"

    # -- properties -------------------------------------------------------

    @property
    def kind(self):
        """"dit", "unet", "vae", "clip_text", "onnx" or "dit3d"."""
        value = _lib.lib.nodus_model_get_kind(self.handle)
        name = _lib.lib.nodus_model_kind_name(value)
        return name.decode() if name else f"unknown({value})"

    @property
    def config(self):
        """The model's config.json as a dict (a fresh copy each time)."""
        if self._config is None:
            text = _lib.lib.nodus_model_config_json(self.handle)
            if text is None:
                _lib.check(8)
            self._config = text.decode()
        return json.loads(self._config)

    def _signatures(self, count_function, info_function):
        result = []
        for index in range(count_function(self.handle)):
            info = _lib.TensorInfo()
            _lib.check(info_function(self.handle, index, ctypes.byref(info)))
            shape = None
            if info.ndim >= 0:
                shape = tuple(None if info.shape[axis] < 0 else int(info.shape[axis]) for axis in range(info.ndim))
            dtype = _lib.lib.nodus_dtype_name(info.dtype)
            result.append((info.name.decode(), dtype.decode() if dtype else f"unknown({info.dtype})", shape))
        return result

    @property
    def inputs(self):
        """What ``forward`` takes: ``[(name, dtype, shape)]``, None for an axis of any size."""
        return self._signatures(_lib.lib.nodus_model_input_count, _lib.lib.nodus_model_input_info)

    @property
    def outputs(self):
        """What ``forward_all`` returns: ``[(name, dtype, shape)]`` (an ONNX graph's outputs; a text
        encoder's "last_hidden_state", "pooler_output" and maybe "text_embeds"; else "sample")."""
        return self._signatures(_lib.lib.nodus_model_output_count, _lib.lib.nodus_model_output_info)

    # -- computation ------------------------------------------------------

    def forward(self, **inputs):
        """One forward pass, ``model(**inputs).sample``; returns a numpy array.

        DiT: ``forward(sample=x, timestep=t, class_labels=c)``. float64 inputs are
        converted to float32 and integer inputs (Python ints too) to int64.
        An ONNX model takes its graph's input names and returns an array for one
        output, a dict by output name for several. A CLIP text encoder takes
        ``input_ids`` (int64 [B, N]) and optionally ``clip_skip=k`` (diffusers'
        ``encode_prompt``) and returns ``last_hidden_state`` (see ``forward_all``).
        """
        if self.kind == "onnx":
            results = self.forward_all(**inputs)
            return next(iter(results.values())) if len(results) == 1 else results
        prepared = self._prepared(inputs, "forward")
        array = (_lib.Tensor * len(prepared))(*[item.struct for item in prepared])
        handle = self.handle

        def call(output):
            return _lib.lib.nodus_model_forward(handle, array, len(prepared), output)

        # `prepared` owns the arrays the structs point to; it lives until this returns.
        return _tensor.call_with_output(call)

    def forward_all(self, **inputs):
        """Every output of one forward pass, as a dict by output name (``m.outputs``
        order): a text encoder's ``last_hidden_state`` and ``pooler_output`` (and
        ``text_embeds`` with a projection), an ONNX graph's outputs, or a diffusers
        model's ``sample``."""
        names = [name for name, _, _ in self.outputs]
        return self._forward_all(_lib.lib.nodus_model_forward_all, self.handle, inputs, names)

    @classmethod
    def _forward_all(cls, function, handle, inputs, names):
        """``function(handle, inputs, count, outputs, count)`` (a model's or a context's forward_all)."""
        prepared = cls._prepared(inputs, "forward_all")
        array = (_lib.Tensor * len(prepared))(*[item.struct for item in prepared])

        def call_all(*outputs):
            # The outputs must be contiguous: copy the caller's structs into one array and back.
            block = (_lib.Tensor * len(outputs))(*[output.contents for output in outputs])
            status = function(handle, array, len(prepared), block, len(outputs))
            for index, output in enumerate(outputs):
                output[0] = block[index]
            return status

        return dict(zip(names, _tensor.call_with_outputs(call_all, len(names))))

    def context(self, threads=None, memory_budget=None):
        """A run context of this model (``nodus.Context``): its own arenas, threads and adapter
        strengths over the model's weights, so that several threads run the model at once.
        ``memory_budget`` (bytes; None for none) bounds the activations the context's plans
        hold: a call whose plan alone exceeds it raises ``OutOfMemoryError`` before allocating."""
        from .context import Context

        return Context(self, threads, memory_budget)

    @staticmethod
    def _prepared(inputs, method):
        if not inputs:
            raise ValueError(f"nodus: {method}() needs named inputs, e.g. sample=..., timestep=...")
        return [_tensor.Input(_tensor.model_input_array(value, name), name) for name, value in inputs.items()]

    def profile(self, rounds=3, **inputs):
        """Times each step of one forward pass on ``inputs`` (those of ``forward``; a
        VAE takes ``latent=`` for its decoder or ``image=`` for its encoder), over
        ``rounds`` runs after one untimed warm-up; returns the parsed JSON of
        ``nodus_model_profile``: ``rounds``, ``round_seconds``, ``seconds`` (their
        median), ``step_seconds``, ``flops``, ``steps``, ``kinds`` (``kind``,
        ``seconds``, ``calls``, ``share``, ``flops``, ``gflops``) and ``layers``
        (``layer``, ``kind``, the same numbers), both slowest first.
        """
        if isinstance(rounds, bool) or int(rounds) != rounds or not 1 <= rounds < 2**31:
            raise ValueError(f"nodus: rounds must be a positive integer, not {rounds!r}")
        if not inputs:
            raise ValueError("nodus: profile() needs named inputs, e.g. sample=..., timestep=...")
        prepared = [_tensor.Input(_tensor.model_input_array(value, name), name) for name, value in inputs.items()]
        array = (_lib.Tensor * len(prepared))(*[item.struct for item in prepared])
        text = ctypes.c_char_p()
        _lib.check(_lib.lib.nodus_model_profile(self.handle, array, len(prepared), int(rounds), ctypes.byref(text)))
        return json.loads(text.value.decode())

    def decode(self, latent):
        """VAE decode, ``vae.decode(latent).sample``: the latent is z = latent / scaling_factor."""
        return self._decode(_lib.lib.nodus_model_decode, self.handle, latent)

    @staticmethod
    def _decode(function, handle, latent):
        source = _tensor.Input(_tensor.float32_array(latent, "latent"), "latent")
        return _tensor.call_with_output(lambda output: function(handle, source.pointer, output))

    def forward_windowed(self, x, window_size, overlap=0.25, mode="gaussian", sigma_scale=0.125, output=None,
                         callback=None):
        """Sliding-window inference over a volume (or image) ``x`` [B, C, spatial...], as MONAI's
        ``SlidingWindowInferer(roi_size=window_size, sw_batch_size=1, overlap=overlap, mode=mode,
        sigma_scale=sigma_scale)`` runs it: for a one-input model (an ONNX 3D VAE decoder or
        encoder), or a VAE's decode. ``output`` picks one output of a several-output model (an
        encoder's ``"z_mu"``; default the first). A window larger than ``x`` along an axis is
        clamped to it (MONAI pads instead). ``callback(done, total)`` runs after each window;
        returning False cancels."""
        source = _tensor.Input(_tensor.float32_array(x, "x"), "x")
        sizes = [int(size) for size in ((window_size,) * (source.array.ndim - 2)
                                        if isinstance(window_size, int) else window_size)]
        if not 1 <= len(sizes) <= 3:
            raise ValueError(f"nodus: window_size needs 1 to 3 sizes, got {window_size!r}")
        if mode not in ("gaussian", "constant"):
            raise ValueError(f"nodus: mode must be 'gaussian' or 'constant', got {mode!r}")
        params = _lib.WindowParams()
        _lib.lib.nodus_window_params_init(ctypes.byref(params))
        params.ndim = len(sizes)
        for index, size in enumerate(sizes):
            params.window_size[index] = size
        params.overlap = float(overlap)
        params.blend = 0 if mode == "gaussian" else 1
        params.sigma_scale = float(sigma_scale)
        name = output.encode() if output is not None else None
        params.output_name = name
        progress = _lib.Progress(callback)
        progress.install(params)
        handle = self.handle

        def call(target):
            return _lib.lib.nodus_model_forward_windowed(handle, source.pointer, ctypes.byref(params), target)

        try:
            return _tensor.call_with_output(call)
        finally:
            progress.raise_failure()

    # -- VAE encoding and tiling ------------------------------------------

    def encode(self, image):
        """VAE encode, ``vae.encode(image).latent_dist``: returns ``(mean, logvar)``.

        ``image`` is [B, C, H, W] in about [-1, 1], H and W multiples of 8 (SD VAE);
        logvar is clamped to [-30, 20] and std = exp(0.5 * logvar).
        """
        return self._encode(_lib.lib.nodus_model_encode, self.handle, image)

    @staticmethod
    def _encode(function, handle, image):
        source = _tensor.Input(_tensor.float32_array(image, "image"), "image")
        return _tensor.call_with_outputs(lambda mean, logvar: function(handle, source.pointer, mean, logvar), 2)

    def encode_latent(self, image, noise=None):
        """The scaled latent a pipeline feeds the denoiser:
        ``(latent_dist.sample() - shift_factor) * scaling_factor`` with ``noise`` as the
        normal draw (diffusers' ``torch.randn(shape, generator)``: ``nodus.randn``), or
        ``latent_dist.mode()`` scaled the same way when ``noise`` is None.
        """
        return self._encode_latent(_lib.lib.nodus_model_encode_latent, self.handle, image, noise)

    @staticmethod
    def _encode_latent(function, handle, image, noise):
        source = _tensor.Input(_tensor.float32_array(image, "image"), "image")
        draw = None if noise is None else _tensor.Input(_tensor.float32_array(noise, "noise"), "noise")
        pointer = None if draw is None else draw.pointer
        return _tensor.call_with_output(lambda output: function(handle, source.pointer, pointer, output))

    def enable_tiling(self, tile_sample_size=None):
        """Tiled VAE encode / decode, as diffusers' ``vae.enable_tiling()``.

        ``tile_sample_size`` is diffusers' ``tile_sample_min_size`` in pixels (the
        latent tile follows); None uses the config's ``sample_size``. It must be a
        multiple of 4 * 2^(levels - 1) (32 for the SD VAE).
        """
        size = 0 if tile_sample_size is None else tile_sample_size
        if int(size) != size or not 0 <= size < 2**31 or (tile_sample_size is not None and size == 0):
            raise ValueError(f"nodus: tile_sample_size must be a positive integer or None, not {tile_sample_size!r}")
        _lib.check(_lib.lib.nodus_model_set_vae_tiling(self.handle, 1, int(size)))

    def disable_tiling(self):
        """Encode and decode in one piece again (diffusers' ``vae.disable_tiling()``)."""
        _lib.check(_lib.lib.nodus_model_set_vae_tiling(self.handle, 0, 0))

    # -- LoRA adapters (diffusers' PEFT integration) ----------------------

    def load_lora_weights(self, path, adapter_name):
        """Loads a LoRA file (diffusers/PEFT or kohya) or PEFT adapter folder as
        ``adapter_name``, which becomes the only active adapter (weight 1).

        Returns the match report: ``{"format", "layers", "matched", "unmatched"}``.
        On failure (raises) the model and its other adapters are unchanged.
        """
        name = str(adapter_name)
        _lib.check(_lib.lib.nodus_model_load_lora(self.handle, os.fsencode(path), name.encode()))
        report = dict(self._lora_state()["reports"][name])
        report.pop("adapter_name", None)
        return report

    def set_adapters(self, adapter_names, weights=None):
        """Activates exactly these adapters; ``weights`` is a list, one float for all, or None (1.0 each)."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if weights is None:
            weights = [1.0] * len(names)
        elif isinstance(weights, (int, float)):
            weights = [float(weights)] * len(names)
        weights = [float(weight) for weight in weights]
        if len(weights) != len(names):
            raise ValueError(f"nodus: set_adapters got {len(names)} names and {len(weights)} weights")
        values = (ctypes.c_float * max(len(weights), 1))(*weights)
        _lib.check(_lib.lib.nodus_model_set_adapters(self.handle, _lib.string_array(names), values, len(names)))

    def get_active_adapters(self):
        """The active adapters' names."""
        return list(self._lora_state()["active"])

    def get_list_adapters(self):
        """Every loaded adapter's name."""
        return list(self._lora_state()["adapters"])

    def fuse_lora(self, adapter_names=None, lora_scale=1.0):
        """Merges the adapters (default: the active ones) into copies of the weights."""
        names = [] if adapter_names is None else ([adapter_names] if isinstance(adapter_names, str) else list(adapter_names))
        _lib.check(_lib.lib.nodus_model_fuse_lora(self.handle, _lib.string_array(names), len(names), float(lora_scale)))

    def unfuse_lora(self):
        """Restores the original weights exactly."""
        _lib.check(_lib.lib.nodus_model_unfuse_lora(self.handle))

    def disable_lora(self):
        """Runs the base model (the adapters stay loaded and set)."""
        _lib.check(_lib.lib.nodus_model_enable_lora(self.handle, 0))

    def enable_lora(self):
        """Runs the active adapters again."""
        _lib.check(_lib.lib.nodus_model_enable_lora(self.handle, 1))

    def delete_adapters(self, adapter_names):
        """Removes adapters."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        _lib.check(_lib.lib.nodus_model_delete_adapters(self.handle, _lib.string_array(names), len(names)))

    def compare_adapters(self, a, b):
        """Per Linear, how adapters ``a`` and ``b`` relate: a list of dicts with
        ``module``, ``interference`` (||dW_a dW_b^T||_F), ``cosine``, ``norm_a``, ``norm_b``."""
        text = _lib.lib.nodus_model_lora_compare_json(self.handle, str(a).encode(), str(b).encode())
        if text is None:
            raise _lib.error_for(1, _lib.last_error())  # an unknown adapter name (NODUS_ERROR_INVALID_ARGUMENT)
        return json.loads(text.decode())

    def save_pretrained(self, directory):
        """Writes the model, fused adapters baked in, as a new diffusers folder."""
        _lib.check(_lib.lib.nodus_model_save(self.handle, os.fsencode(directory)))

    def _lora_state(self):
        text = _lib.lib.nodus_model_lora_state_json(self.handle)
        if text is None:  # with a live handle, only a model that takes no adapters (NODUS_ERROR_UNSUPPORTED)
            raise _lib.error_for(4, _lib.last_error())
        return json.loads(text.decode())


def model_params(dtype, threads, mmap=True):
    """``nodus_model_params`` for ``load`` and ``Pipeline.from_pretrained``, checked."""
    params = _lib.ModelParams()
    _lib.lib.nodus_model_params_init(ctypes.byref(params))
    if not isinstance(dtype, str):
        raise ValueError(f"nodus: dtype must be a name such as 'float32', not {dtype!r}")
    code = ctypes.c_int32()
    _lib.check(_lib.lib.nodus_dtype_from_name(dtype.encode(), ctypes.byref(code)))
    params.dtype = code.value
    if threads is not None:
        if int(threads) != threads or not 0 <= threads < 2**31:
            raise ValueError(f"nodus: threads must be a non-negative integer, not {threads!r}")
        params.threads = int(threads)
    params.read_files = 0 if mmap else 1
    return params


def load(path, dtype="float32", threads=None, mmap=True):
    """Loads a diffusers model folder (config.json + safetensors weights), or an ONNX file
    (a path ending in ".onnx", from ``torch.onnx.export``; external data beside it).

    Args:
        path: the folder or .onnx file (a str or os.PathLike).
        dtype: compute precision of Linears and convolutions: "float32", or "bfloat16" (weights
            rounded to bf16 once, bf16 products summed in float32, as torch's bf16 autocast:
            about twice as fast, half the weight memory, within 3e-2 of float32).
        threads: worker threads; None or 0 for all cores.
        mmap: True (default) maps the weight files; False reads them into memory, so a file
            truncated or dropped (network or shared file systems) while the model runs cannot
            raise SIGBUS in the process (as torch.load's mmap=False).
    Raises:
        NodusError: the folder or file cannot be loaded (``.status`` says why; an ONNX op Nodus
            does not run is an UnsupportedError naming the op, its node and the opset).
    """
    params = model_params(dtype, threads, mmap)
    location = os.fsdecode(os.fspath(path))
    handle = ctypes.c_void_p()
    _lib.check(_lib.lib.nodus_model_load(os.fsencode(location), ctypes.byref(params), ctypes.byref(handle)))
    return Model(handle, location)
