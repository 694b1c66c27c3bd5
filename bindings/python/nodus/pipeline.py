"""A whole diffusers pipeline folder: ``nodus.Pipeline.from_pretrained(path)``."""

import ctypes
import os

from . import _lib, _tensor
from ._handle import Handle
from .model import Model, model_params
from .scheduler import Scheduler
from .tokenizer import Tokenizer


class Pipeline(Handle):
    """diffusers' ``StableDiffusionPipeline`` (``nodus_pipeline *``): prompt in, images out.

    ``pipe.unet``, ``pipe.vae`` and ``pipe.text_encoder`` are :class:`Model` handles on the
    pipeline's own components (no copy), ``pipe.tokenizer`` its :class:`Tokenizer`. Assign
    ``pipe.scheduler = nodus.Scheduler.from_config(...)`` to swap the scheduler, as diffusers
    users do. Free it with ``close()`` or a ``with`` block.
    """

    _free_function = "nodus_pipeline_free"
    _label = "pipeline"

    def __init__(self, handle, path):
        super().__init__(handle)
        self.path = path
        self._components = {}

    @classmethod
    def from_pretrained(cls, path, dtype="float32", threads=None, mmap=True):
        """Loads a pipeline folder (model_index.json with tokenizer/, text_encoder/, unet/, vae/,
        scheduler/). ``dtype`` and ``threads`` apply to every model, as in :func:`nodus.load`."""
        params = model_params(dtype, threads, mmap)
        location = os.fsdecode(os.fspath(path))
        handle = ctypes.c_void_p()
        _lib.check(_lib.lib.nodus_pipeline_load(os.fsencode(location), ctypes.byref(params), ctypes.byref(handle)))
        return cls(handle, location)

    def __repr__(self):
        return f"<nodus.Pipeline {'closed' if not self._handle else 'open'} {self.path!r}>"

    def _model(self, name):
        if name not in self._components:
            handle = ctypes.c_void_p()
            _lib.check(_lib.lib.nodus_pipeline_model(self.handle, name.encode(), ctypes.byref(handle)))
            self._components[name] = Model(handle, os.path.join(self.path, name))
        return self._components[name]

    @property
    def unet(self):
        return self._model("unet")

    @property
    def vae(self):
        return self._model("vae")

    @property
    def text_encoder(self):
        return self._model("text_encoder")

    @property
    def tokenizer(self):
        if "tokenizer" not in self._components:
            handle = ctypes.c_void_p()
            _lib.check(_lib.lib.nodus_pipeline_tokenizer(self.handle, ctypes.byref(handle)))
            tokenizer = Tokenizer(handle)
            tokenizer._max_length = int(_lib.lib.nodus_tokenizer_max_length(handle))
            self._components["tokenizer"] = tokenizer
        return self._components["tokenizer"]

    @property
    def scheduler(self):
        """A copy of the pipeline's scheduler (changing it does not change the pipeline's)."""
        handle = ctypes.c_void_p()
        _lib.check(_lib.lib.nodus_pipeline_scheduler(self.handle, ctypes.byref(handle)))
        return Scheduler(handle)

    @scheduler.setter
    def scheduler(self, scheduler):
        if not isinstance(scheduler, Scheduler):
            raise ValueError(f"nodus: pipe.scheduler takes a nodus.Scheduler, not {type(scheduler).__name__}")
        _lib.check(_lib.lib.nodus_pipeline_set_scheduler(self.handle, scheduler.handle))

    # -- LoRA -------------------------------------------------------------

    def load_lora_weights(self, path, adapter_name="default"):
        """Loads a LoRA file or PEFT folder into the UNet and the text encoder, each taking the
        layers that name its Linears (diffusers ``pipeline.load_lora_weights``). Returns
        ``{"unet": report, "text_encoder": report}`` for the components that took layers."""
        name = str(adapter_name)
        _lib.check(_lib.lib.nodus_pipeline_load_lora(self.handle, os.fsencode(path), name.encode()))
        reports = {}
        for component in ("unet", "text_encoder"):
            state = self._model(component)._lora_state()
            if name in state["reports"]:
                report = dict(state["reports"][name])
                report.pop("adapter_name", None)
                reports[component] = report
        return reports

    def set_adapters(self, adapter_names, adapter_weights=None):
        """Activates exactly these adapters in every component that holds them."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if adapter_weights is None:
            adapter_weights = [1.0] * len(names)
        elif isinstance(adapter_weights, (int, float)):
            adapter_weights = [float(adapter_weights)] * len(names)
        weights = [float(weight) for weight in adapter_weights]
        if len(weights) != len(names):
            raise ValueError(f"nodus: set_adapters got {len(names)} names and {len(weights)} weights")
        values = (ctypes.c_float * max(len(weights), 1))(*weights)
        _lib.check(_lib.lib.nodus_pipeline_set_adapters(self.handle, _lib.string_array(names), values, len(names)))

    def _adaptable(self):
        return [model for model in (self.unet, self.text_encoder) if model._lora_state()["adapters"]]

    def fuse_lora(self, adapter_names=None, lora_scale=1.0):
        """Merges the active (or named) adapters into the weights of each component holding them."""
        for model in self._adaptable():
            held = [entry["name"] if isinstance(entry, dict) else entry for entry in model._lora_state()["adapters"]]
            names = None if adapter_names is None else [name for name in adapter_names if name in held]
            if names == []:
                continue
            model.fuse_lora(adapter_names=names, lora_scale=lora_scale)

    def unfuse_lora(self):
        for model in self._adaptable():
            model.unfuse_lora()

    def disable_lora(self):
        for model in self._adaptable():
            model.disable_lora()

    def enable_lora(self):
        for model in self._adaptable():
            model.enable_lora()

    # -- generation -------------------------------------------------------

    def __call__(self, prompt, negative_prompt=None, num_inference_steps=50, guidance_scale=7.5, height=None,
                 width=None, seed=0, num_images_per_prompt=1, output_type="np", clip_skip=None, callback=None,
                 image=None, strength=0.8, mask_image=None):
        """diffusers' ``StableDiffusionPipeline.__call__``: returns float32 images [N, H, W, 3] in
        [0, 1] (``output_type="np"``) or the latents [N, 4, H/8, W/8] (``"latent"``).

        ``seed`` gives the images diffusers gives with
        ``generator=torch.Generator("cpu").manual_seed(seed)``. ``callback(done, total)`` runs
        after each step; returning False cancels (CancelledError). With ``image`` (float
        [H, W, 3] or [1 or N, H, W, 3] in [0, 1]) and ``strength`` it is diffusers'
        ``StableDiffusionImg2ImgPipeline``; with ``mask_image`` too ([H, W] or [1 or N, H, W] in
        [0, 1], white repainted) its ``StableDiffusionInpaintPipeline`` (pass ``strength=1.0``, its
        default there).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or not all(isinstance(text, str) for text in prompts):
            raise ValueError("nodus: prompt must be a string or a non-empty list of strings")
        negatives = [] if negative_prompt is None else (
            [negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt))
        if not all(isinstance(text, str) for text in negatives):
            raise ValueError("nodus: negative_prompt must be a string or a list of strings")
        if output_type not in ("np", "latent"):
            raise ValueError(f"nodus: output_type must be 'np' or 'latent', not {output_type!r}")
        params = _lib.GenerateParams()
        _lib.lib.nodus_generate_params_init(ctypes.byref(params))
        prompt_array = (ctypes.c_char_p * len(prompts))(*[text.encode() for text in prompts])
        negative_array = (ctypes.c_char_p * max(len(negatives), 1))(*[text.encode() for text in negatives])
        params.prompts, params.prompt_count = prompt_array, len(prompts)
        params.negative_prompts, params.negative_prompt_count = negative_array, len(negatives)
        params.steps = _integer(num_inference_steps, "num_inference_steps")
        params.guidance_scale = float(guidance_scale)
        params.height = 0 if height is None else _integer(height, "height")
        params.width = 0 if width is None else _integer(width, "width")
        if int(seed) != seed or not 0 <= seed < 2**64:
            raise ValueError(f"nodus: seed must be an integer in [0, 2**64), not {seed!r}")
        params.seed = int(seed)
        params.images_per_prompt = _integer(num_images_per_prompt, "num_images_per_prompt")
        params.clip_skip = 0 if clip_skip is None else _integer(clip_skip, "clip_skip")
        params.output = 1 if output_type == "latent" else 0
        start = None
        if image is not None:
            pixels = _tensor.float32_array(image, "image")
            if pixels.ndim == 3:
                pixels = pixels[None]
            start = _tensor.Input(pixels, "image")
            params.image = ctypes.pointer(start.struct)
            params.strength = float(strength)
        mask = None
        if mask_image is not None:
            values = _tensor.float32_array(mask_image, "mask_image")
            if values.ndim == 2:
                values = values[None]
            mask = _tensor.Input(values, "mask_image")
            params.mask = ctypes.pointer(mask.struct)
        progress = _lib.Progress(callback)
        progress.install(params)
        handle = self.handle

        def call(output):
            return _lib.lib.nodus_pipeline_generate(handle, ctypes.byref(params), output)

        try:
            return _tensor.call_with_output(call)
        except Exception:
            progress.raise_failure()
            raise

    def close(self):
        for component in self._components.values():
            component.close()
        self._components = {}
        super().close()


def _integer(value, name):
    if int(value) != value or not -(2**31) <= value < 2**31:
        raise ValueError(f"nodus: {name} must be an integer, not {value!r}")
    return int(value)
