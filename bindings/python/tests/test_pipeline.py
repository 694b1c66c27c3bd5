"""A whole tiny Stable Diffusion pipeline folder, prompt and seed to latents and images, against
diffusers' StableDiffusionPipeline (tests/reference/make_pipeline_fixtures.py)."""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

import nodus

from conftest import FIXTURES

FOLDER = os.path.join(FIXTURES, "sd-tiny")
BOUND = 1e-3  # SPEC: whole sampler runs below 1e-3
with open(os.path.join(FIXTURES, "sd-tiny-cases.json")) as handle:
    CASES = json.load(handle)


@pytest.fixture(scope="module")
def references():
    return load_file(os.path.join(FIXTURES, "sd-tiny-references.safetensors"))


@pytest.fixture(scope="module")
def pipe():
    with nodus.Pipeline.from_pretrained(FOLDER) as pipeline:
        yield pipeline


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def run(pipe, case, **overrides):
    with open(os.path.join(FOLDER, "scheduler", "scheduler_config.json")) as handle:
        config = json.load(handle)
    pipe.scheduler = nodus.Scheduler.from_config(dict(config, _class_name=case["scheduler"]))
    arguments = dict(negative_prompt=case["negative_prompt"], num_inference_steps=case["steps"],
                     guidance_scale=case["guidance_scale"], seed=case["seed"],
                     num_images_per_prompt=case["images_per_prompt"], clip_skip=case["clip_skip"])
    arguments.update(overrides)
    return pipe(case["prompt"], **arguments)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("output_type", ["latent", "np"])
def test_prompt_and_seed_to_diffusers_output(pipe, references, name, output_type):
    """PNDM (SD-1.5's), Euler ancestral (every step's noise from the seed's generator, two images
    per prompt), DDIM with clip_skip, and no guidance."""
    result = run(pipe, CASES[name], output_type=output_type)
    expected = references[f"{name}.{'latents' if output_type == 'latent' else 'images'}"]
    assert result.shape == expected.shape and result.dtype == np.float32
    error = relative_error(result, expected)
    assert error < BOUND, f"{name} {output_type}: relative error {error:.2e}"
    if output_type == "np":
        assert result.min() >= 0 and result.max() <= 1


def test_components_and_scheduler(pipe):
    assert (pipe.unet.kind, pipe.vae.kind, pipe.text_encoder.kind) == ("unet", "vae", "clip_text")
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.scheduler.config["_class_name"] if hasattr(pipe.scheduler, "config") else True
    with pytest.raises(ValueError, match="nodus.Scheduler"):
        pipe.scheduler = "PNDMScheduler"


def test_a_lora_file_with_unet_and_text_encoder_keys_loads_into_both(references):
    with nodus.Pipeline.from_pretrained(FOLDER) as pipe:
        reports = pipe.load_lora_weights(os.path.join(FIXTURES, "sd-tiny-lora.safetensors"), adapter_name="cxr")
        assert sorted(reports) == ["text_encoder", "unet"]
        assert len(reports["unet"]["matched"]) == 88 and len(reports["text_encoder"]["matched"]) == 8
        assert reports["unet"]["unmatched"] and reports["text_encoder"]["unmatched"]  # each reports the other's layers
        pipe.set_adapters(["cxr"], [0.8])
        case = dict(CASES["ddim_clip_skip"], clip_skip=None)
        unfused = run(pipe, case, output_type="latent")
        pipe.fuse_lora()
        fused = run(pipe, case, output_type="latent")
        pipe.unfuse_lora()
        for label, result in (("unfused", unfused), ("fused", fused)):
            error = relative_error(result, references["lora.latents"])
            assert error < BOUND, f"LoRA {label}: relative error {error:.2e}"
        with pytest.raises(nodus.NodusError, match="no adapter named 'other'"):
            pipe.set_adapters(["other"], [1.0])


def test_progress_and_cancel(pipe):
    seen = []
    run(pipe, CASES["ddim_unguided"], output_type="latent", callback=lambda done, total: seen.append((done, total)))
    assert seen == [(step, 5) for step in range(1, 6)]
    with pytest.raises(nodus.CancelledError):
        run(pipe, CASES["ddim_unguided"], output_type="latent", callback=lambda done, total: done < 2)


def test_bad_requests_are_clear_errors(pipe):
    case = CASES["ddim_unguided"]
    with pytest.raises(nodus.NodusError, match="multiples of 8"):
        run(pipe, case, height=20)
    with pytest.raises(nodus.NodusError, match="2 negative prompts for 1 prompts"):
        run(pipe, case, negative_prompt=["a", "b"])
    with pytest.raises(nodus.NodusError, match="clip_skip"):
        run(pipe, case, clip_skip=5)
    with pytest.raises(ValueError, match="output_type"):
        run(pipe, case, output_type="pil")
    with pytest.raises(ValueError, match="prompt"):
        pipe([], num_inference_steps=2)


def test_broken_folders(tmp_path):
    def copy(name):
        target = tmp_path / name
        shutil.copytree(FOLDER, target)
        return target

    missing = copy("missing")
    shutil.rmtree(missing / "tokenizer")
    with pytest.raises(nodus.NodusError, match="tokenizer"):
        nodus.Pipeline.from_pretrained(missing)
    unknown = copy("unknown")
    index = json.loads((unknown / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "KDPM2DiscreteScheduler"]
    (unknown / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(nodus.UnsupportedError, match="KDPM2DiscreteScheduler"):
        nodus.Pipeline.from_pretrained(unknown)
    with pytest.raises(nodus.NodusIOError, match="not a diffusers pipeline folder"):
        nodus.Pipeline.from_pretrained(tmp_path)


@pytest.mark.parametrize("output_type", ["latent", "np"])
def test_img2img_as_diffusers(pipe, references, output_type):
    """StableDiffusionImg2ImgPipeline: the image's sampled latent, the noise and the Euler-ancestral steps
    all from the seed's one generator; strength 0.6 of 10 steps; one image for 2 outputs."""
    case = dict(CASES["euler_ancestral"], prompt=["a chest x-ray"], negative_prompt=None, steps=10, seed=11)
    result = run(pipe, case, output_type=output_type, image=references["img2img.image"][0], strength=0.6)
    expected = references[f"img2img.{'latents' if output_type == 'latent' else 'images'}"]
    error = relative_error(result, expected)
    assert error < BOUND, f"img2img {output_type}: relative error {error:.2e}"


def test_img2img_bad_input(pipe, references):
    case = CASES["ddim_unguided"]
    image = references["img2img.image"]
    with pytest.raises(nodus.NodusError, match="strength"):
        run(pipe, case, image=image, strength=1.5)
    with pytest.raises(nodus.NodusError, match="differs from the starting image"):
        run(pipe, case, image=image, height=32, width=32)
    with pytest.raises(nodus.NodusError, match="starting image"):
        run(pipe, case, image=image[..., :2])


@pytest.mark.parametrize("folder, name, scheduler, strength, steps", [
    ("sd-tiny-inpaint", "inpaint9", "EulerAncestralDiscreteScheduler", 1.0, 8),   # 9-channel inpainting UNet
    ("sd-tiny", "inpaint4", "EulerAncestralDiscreteScheduler", 1.0, 8),           # 4 channels: blending
    ("sd-tiny", "inpaint4_strength", "DDIMScheduler", 0.7, 10),
])
def test_inpainting_as_diffusers(references, folder, name, scheduler, strength, steps):
    """StableDiffusionInpaintPipeline: the mask binarized and resized, the masked image encoded, the draws
    in its order (image latents, noise, masked-image latents, then each ancestral step), two images."""
    with nodus.Pipeline.from_pretrained(os.path.join(FIXTURES, folder)) as pipe:
        case = dict(CASES["euler_ancestral"], scheduler=scheduler, prompt=["a chest x-ray"], negative_prompt=None,
                    steps=steps, seed=13)
        outputs = [("latent", "latents")] + ([("np", "images")] if name != "inpaint4_strength" else [])
        for output_type, key in outputs:
            result = run(pipe, case, output_type=output_type, image=references["img2img.image"][0],
                         mask_image=references["inpaint.mask"][0], strength=strength)
            error = relative_error(result, references[f"{name}.{key}"])
            assert error < BOUND, f"{name} {output_type}: relative error {error:.2e}"


def test_inpainting_bad_input(pipe, references):
    case = CASES["ddim_unguided"]
    image, mask = references["img2img.image"], references["inpaint.mask"]
    with pytest.raises(nodus.NodusError, match="mask must be"):
        run(pipe, case, image=image, mask_image=mask[:, :8])
    with pytest.raises(nodus.NodusError, match="a mask needs the image"):
        run(pipe, case, mask_image=mask)
