#!/usr/bin/env python
"""Generate the tiny Stable Diffusion pipeline folder and its references under Tests/Fixtures/.

    python tests/reference/make_pipeline_fixtures.py [--out DIR]

Needs Tests/Fixtures/clip-tokenizer/ (the real CLIP vocabulary, make_tokenizer_fixtures.py)
and Tests/Fixtures/unet-tiny/ (make_unet_fixtures.py). Deterministic: the same torch /
diffusers / transformers versions (recorded in GENERATED-pipeline-fixtures.md) give the same tensors
(diffusers writes the LoRA file's metadata in an order of its own, so its bytes may move).

What it writes:

  sd-tiny/                       a diffusers StableDiffusionPipeline folder (save_pretrained):
    tokenizer/                   CLIPTokenizer with CLIP's first 486 merges (vocabulary 1000:
                                 the 512 byte tokens, 486 merged tokens, <|startoftext|>,
                                 <|endoftext|>), model_max_length 77, padded with <|endoftext|>
    text_encoder/                CLIPTextModel (random, width 32, 2 layers, 77 positions)
    unet/                        Tests/Fixtures/unet-tiny (cross_attention_dim 32, sample 8)
    vae/                         AutoencoderKL (random, block_out_channels [8, 16]: downscale 2)
    scheduler/                   PNDMScheduler as SD-1.5 configures it
  sd-tiny-references.safetensors per case C (inputs in GENERATED-pipeline-fixtures.md and
                                 sd-tiny-cases.json): C.latents (output_type="latent") and
                                 C.images (output_type="np", [N, 16, 16, 3]); lora.latents: the
                                 ddim_clip_skip case without clip skip, with sd-tiny-lora at 0.8
  img2img.image                  [1, 16, 16, 3] in [0, 1]: a starting image; img2img.latents and
                                 img2img.images: StableDiffusionImg2ImgPipeline from it with the
                                 euler_ancestral case's prompt, strength 0.6, 10 steps, 2 images
  sd-tiny-inpaint/               the same pipeline with Tests/Fixtures/unet-tiny-inpaint (9 channels):
                                 model_index.json and relative symbolic links to sd-tiny's
                                 components and to unet-tiny-inpaint (no bytes twice)
  inpaint.mask                   [1, 16, 16] in [0, 1]: a disk (and soft values, binarized at 0.5)
  inpaint9.latents / .images     StableDiffusionInpaintPipeline on sd-tiny-inpaint: img2img.image, the
                                 mask, strength 1, Euler ancestral, 8 steps, guidance 5, 2 images
  inpaint4.latents / .images     the same on sd-tiny (4-channel UNet: the known region blended back)
  inpaint4_strength.latents      sd-tiny, strength 0.7, DDIM, 10 steps
  sd-tiny-lora.safetensors       one file with UNet keys (unet.*: rank 2 on to_q/to_k/to_v/to_out.0)
                                 and text-encoder keys (text_encoder.*: rank 2 on q/k/v/out_proj),
                                 written by StableDiffusionPipeline.save_lora_weights; the reference
                                 merges W + 0.8 * alpha / r * B A into both models by hand

Every case calls StableDiffusionPipeline.__call__ with generator=torch.Generator("cpu").manual_seed(seed).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import diffusers
import numpy as np
import safetensors
import torch
import transformers
from diffusers import (AutoencoderKL, DDIMScheduler, EulerAncestralDiscreteScheduler, PNDMScheduler,
                       StableDiffusionPipeline, UNet2DConditionModel)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

ROOT = Path(__file__).resolve().parents[2]
MERGES = 486

SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, trained_betas=None)

CASES = {
    "pndm": dict(scheduler="PNDMScheduler", prompt=["a chest x-ray", "right lower lobe nodule, 3.5 cm"],
                 negative_prompt=None, steps=10, guidance_scale=7.5, seed=0, images_per_prompt=1, clip_skip=None),
    "euler_ancestral": dict(scheduler="EulerAncestralDiscreteScheduler", prompt=["a chest x-ray"],
                            negative_prompt=["blurry"], steps=8, guidance_scale=5.0, seed=42, images_per_prompt=2,
                            clip_skip=None),
    "ddim_clip_skip": dict(scheduler="DDIMScheduler", prompt=["frontal radiograph, no acute findings"],
                           negative_prompt=None, steps=6, guidance_scale=7.5, seed=7, images_per_prompt=1,
                           clip_skip=1),
    "ddim_unguided": dict(scheduler="DDIMScheduler", prompt=["lateral view"], negative_prompt=None, steps=5,
                          guidance_scale=1.0, seed=3, images_per_prompt=1, clip_skip=None),
}


def bytes_to_unicode() -> list[str]:
    """CLIP's byte -> printable character table, in id order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return [chr(c) for c in characters]


def make_tokenizer(folder: Path) -> CLIPTokenizer:
    source = ROOT / "Tests" / "Fixtures" / "clip-tokenizer"
    lines = (source / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [line for line in lines[1:] if line][:MERGES]
    bytes_ = bytes_to_unicode()
    vocabulary = bytes_ + [b + "</w>" for b in bytes_] + ["".join(m.split()) for m in merges]
    vocabulary += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocabulary)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(source / name, folder / name)
    return CLIPTokenizer.from_pretrained(folder)


def randomized(model: torch.nn.Module, seed: int, scale: float) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def make_pipeline(out: Path) -> StableDiffusionPipeline:
    folder = out / "sd-tiny"
    shutil.rmtree(folder, ignore_errors=True)
    staging = out / "sd-tiny-tokenizer-staging"
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = make_tokenizer(staging)
    text_encoder = randomized(CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)), seed=1, scale=0.3)
    unet = UNet2DConditionModel.from_pretrained(ROOT / "Tests" / "Fixtures" / "unet-tiny").eval()
    vae = randomized(AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                                   up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 16],
                                   layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16),
                     seed=2, scale=0.2)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=PNDMScheduler(**SD15_SCHEDULER), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    shutil.rmtree(staging)
    return StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)


def run(pipeline: StableDiffusionPipeline, case: dict, output_type: str) -> torch.Tensor:
    schedulers = {"PNDMScheduler": PNDMScheduler, "EulerAncestralDiscreteScheduler": EulerAncestralDiscreteScheduler,
                  "DDIMScheduler": DDIMScheduler}
    pipeline.scheduler = schedulers[case["scheduler"]].from_config(pipeline.scheduler.config)
    prompts = dict(prompt=case["prompt"], negative_prompt=case["negative_prompt"])
    if case["clip_skip"]:
        prompts = clip_skipped_embeddings(pipeline, case)
    result = pipeline(**prompts, num_inference_steps=case["steps"], guidance_scale=case["guidance_scale"],
                      num_images_per_prompt=case["images_per_prompt"],
                      generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type=output_type)
    images = result.images
    return images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))


def clip_skipped_embeddings(pipeline: StableDiffusionPipeline, case: dict) -> dict:
    """encode_prompt's clip_skip branch, by hand: diffusers 0.42 reads text_encoder.text_model, which
    transformers 5's CLIPTextModel no longer has. The prompts' states hidden_states[-(clip_skip + 1)]
    through final_layer_norm; the negative prompts' the last state, as encode_prompt leaves them."""
    def ids(texts):
        return pipeline.tokenizer(texts, padding="max_length", max_length=pipeline.tokenizer.model_max_length,
                                  truncation=True, return_tensors="pt").input_ids
    encoder = pipeline.text_encoder
    with torch.no_grad():
        states = encoder(ids(case["prompt"]), output_hidden_states=True).hidden_states[-(case["clip_skip"] + 1)]
        positive = encoder.final_layer_norm(states)
        negative = encoder(ids(case["negative_prompt"] or [""] * len(case["prompt"]))).last_hidden_state
    return dict(prompt_embeds=positive, negative_prompt_embeds=negative)


def write_lora(pipeline: StableDiffusionPipeline, out: Path) -> torch.Tensor:
    """The two-component LoRA file, and the latents of the lora case with it merged at 0.8."""
    rank, alpha, weight = 2, 4, 0.8
    generator = torch.Generator().manual_seed(30)
    factors = {}
    for prefix, model, targets in (("unet", pipeline.unet, ("to_q", "to_k", "to_v", "to_out.0")),
                                   ("text_encoder", pipeline.text_encoder, ("q_proj", "k_proj", "v_proj", "out_proj"))):
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and any(name.endswith(target) for target in targets):
                down = 0.15 * torch.randn(rank, module.in_features, generator=generator)
                up = 0.15 * torch.randn(module.out_features, rank, generator=generator)
                factors[(prefix, name)] = (down, up)
    unet_layers = {f"{name}.lora_A.weight": d for (prefix, name), (d, u) in factors.items() if prefix == "unet"}
    unet_layers.update({f"{name}.lora_B.weight": u for (prefix, name), (d, u) in factors.items() if prefix == "unet"})
    text_layers = {f"{name}.lora_A.weight": d for (prefix, name), (d, u) in factors.items() if prefix != "unet"}
    text_layers.update({f"{name}.lora_B.weight": u for (prefix, name), (d, u) in factors.items() if prefix != "unet"})
    from peft import LoraConfig
    def metadata(targets):
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets)).to_dict()
        config["target_modules"] = sorted(config["target_modules"])
        return config
    StableDiffusionPipeline.save_lora_weights(
        out, unet_lora_layers=unet_layers, text_encoder_lora_layers=text_layers,
        unet_lora_adapter_metadata=metadata(["to_q", "to_k", "to_v", "to_out.0"]),
        text_encoder_lora_adapter_metadata=metadata(["q_proj", "k_proj", "v_proj", "out_proj"]),
        weight_name="sd-tiny-lora.safetensors", safe_serialization=True)
    merged = StableDiffusionPipeline.from_pretrained(out / "sd-tiny", torch_dtype=torch.float32)
    merged.set_progress_bar_config(disable=True)
    with torch.no_grad():
        for (prefix, name), (down, up) in factors.items():
            model = merged.unet if prefix == "unet" else merged.text_encoder
            dict(model.named_modules())[name].weight += weight * (alpha / rank) * (up @ down)
    case = dict(CASES["ddim_clip_skip"], clip_skip=None)
    return run(merged, case, "latent")


def img2img(pipeline: StableDiffusionPipeline) -> dict[str, torch.Tensor]:
    """StableDiffusionImg2ImgPipeline on the same components: the encode's sample, the noise and every
    ancestral step draw from one generator."""
    from diffusers import StableDiffusionImg2ImgPipeline

    y, x = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    image = torch.stack([x, y, (x * y) ** 0.5], dim=-1)[None].contiguous()  # [1, 16, 16, 3] in [0, 1]
    pipe = StableDiffusionImg2ImgPipeline(**pipeline.components)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipeline.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    result = {"img2img.image": image}
    for output_type, key in (("latent", "img2img.latents"), ("np", "img2img.images")):
        images = pipe(["a chest x-ray"], image=image.permute(0, 3, 1, 2) * 2 - 1, strength=0.6, num_inference_steps=10,
                      guidance_scale=5.0, num_images_per_prompt=2,
                      generator=torch.Generator("cpu").manual_seed(11), output_type=output_type).images
        result[key] = (images if isinstance(images, torch.Tensor) else torch.from_numpy(images)).float().contiguous()
    return result


def make_inpaint_folder(out: Path) -> None:
    """sd-tiny-inpaint/: sd-tiny with the 9-channel unet-tiny-inpaint, by relative links."""
    folder = out / "sd-tiny-inpaint"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in ("text_encoder", "tokenizer", "vae", "scheduler"):
        (folder / name).symlink_to(Path("..") / "sd-tiny" / name)
    (folder / "unet").symlink_to(Path("..") / "unet-tiny-inpaint")
    index = json.loads((out / "sd-tiny" / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def inpainting(pipeline: StableDiffusionPipeline, out: Path, image: torch.Tensor) -> dict[str, torch.Tensor]:
    from diffusers import StableDiffusionInpaintPipeline

    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    mask = (1.2 - ((x - 9.5) ** 2 + (y - 6.5) ** 2) / 20).clamp(0, 1)[None]  # [1, 16, 16], soft edge
    make_inpaint_folder(out)
    result = {"inpaint.mask": mask.contiguous()}
    cases = {
        "inpaint9": (out / "sd-tiny-inpaint", EulerAncestralDiscreteScheduler, 1.0, 8),
        "inpaint4": (out / "sd-tiny", EulerAncestralDiscreteScheduler, 1.0, 8),
        "inpaint4_strength": (out / "sd-tiny", DDIMScheduler, 0.7, 10),
    }
    for name, (folder, scheduler, strength, steps) in cases.items():
        pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, torch_dtype=torch.float32)
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        for output_type in ("latent", "np"):
            if name == "inpaint4_strength" and output_type == "np":
                continue
            images = pipe(["a chest x-ray"], image=image.permute(0, 3, 1, 2) * 2 - 1, mask_image=mask[:, None],
                          strength=strength, num_inference_steps=steps, guidance_scale=5.0, num_images_per_prompt=2,
                          generator=torch.Generator("cpu").manual_seed(13), output_type=output_type).images
            key = f"{name}.{'latents' if output_type == 'latent' else 'images'}"
            result[key] = (images if isinstance(images, torch.Tensor) else torch.from_numpy(images)).float().contiguous()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "Tests" / "Fixtures")
    out = parser.parse_args().out
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    pipeline = make_pipeline(out)
    pipeline.set_progress_bar_config(disable=True)
    tensors = {}
    for name, case in CASES.items():
        tensors[f"{name}.latents"] = run(pipeline, case, "latent").contiguous()
        tensors[f"{name}.images"] = run(pipeline, case, "np").float().contiguous()
        assert tensors[f"{name}.images"].std() > 0.02, f"{name}: the images are flat"
    tensors.update(img2img(pipeline))
    tensors.update(inpainting(pipeline, out, tensors["img2img.image"]))
    tensors["lora.latents"] = write_lora(pipeline, out).contiguous()
    assert (tensors["lora.latents"] - run(pipeline, dict(CASES["ddim_clip_skip"], clip_skip=None), "latent")).abs().max() > 1e-2
    versions = {"torch": torch.__version__, "diffusers": diffusers.__version__,
                "transformers": transformers.__version__, "safetensors": safetensors.__version__,
                "python": platform.python_version()}
    save_file(tensors, out / "sd-tiny-references.safetensors", metadata={"versions": json.dumps(versions)})
    (out / "sd-tiny-cases.json").write_text(json.dumps(CASES, indent=2) + "\n")
    (out / "GENERATED-pipeline-fixtures.md").write_text(
        "# Tiny Stable Diffusion pipeline\n\nMade by `tests/reference/make_pipeline_fixtures.py` (see its docstring) "
        "with " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". The cases are in `sd-tiny-cases.json`.\n")
    print(f"wrote sd-tiny/ and {len(tensors)} reference tensors")


if __name__ == "__main__":
    main()
