#!/usr/bin/env python
"""Opt-in real-size references (weights are never committed).

    python tests/reference/make_large_references.py [OUT] [--only dit|lora|vae|unet|unet-lora|vae-encode|clip]
    NODUS_LARGE_REFERENCES=OUT pytest bindings/python/tests/test_large.py

Writes to OUT (default /tmp/nodus-large):

  dit-xl-2/                    random-init DiT-XL/2 (DiTTransformer2DModel defaults: 28 layers,
                               16 heads x 72, patch 2, sample_size 32, 1000 classes, with
                               out_channels 8 = learned sigma as facebook/DiT-XL-2-256),
                               float32, save_pretrained (~2.7 GB)
  dit-xl-2-forward.safetensors sample [2,4,32,32], timestep int64 [2], class_labels int64 [2]
                               = [cond, null 1000], output [2,8,32,32]
  sd-vae/                      random-init AutoencoderKL with the SD-1.5 VAE config
                               (block_out_channels [128,256,512,512], layers_per_block 2,
                               scaling_factor 0.18215), float32 (~335 MB)
  sd-vae-decode.safetensors    latent [1,4,64,64], image [1,3,512,512] = vae.decode(latent).sample
  sd-vae-encode.safetensors    image [1,3,512,512] -> mean, logvar [1,4,64,64] = vae.encode(image).latent_dist
  sd-vae-tiled.safetensors     with vae.enable_tiling() (tiles 512 / 64): tiled_image [1,3,1024,1024] ->
                               tiled_mean, tiled_logvar [1,4,128,128]; tiled_latent [1,4,128,128] ->
                               tiled_decoded [1,3,1024,1024]
                               (--only vae-encode makes these two from an existing sd-vae/)
  sd-unet/                     (--only unet) random-init UNet2DConditionModel with the SD-1.5 config
                               (block_out_channels [320,640,1280,1280], layers_per_block 2,
                               attention_head_dim 8 = 8 heads, cross_attention_dim 768,
                               sample_size 64), float32, save_pretrained (~3.4 GB)
  unet-forward.safetensors     sample [2,4,64,64], timestep int64 [2], encoder_hidden_states
                               [2,77,768], output [2,4,64,64]
  sd-unet-lora-A.safetensors   (--only unet, or unet-lora alone) rank-8 LoRA (lora_alpha 8) on
                               to_q/to_k/to_v/to_out.0 of every attention (128 Linears), written
                               by diffusers' StableDiffusionLoraLoaderMixin (keys unet.*)
  unet-lora-forward.safetensors output [2,4,64,64]: the unet-forward inputs with the LoRA at 0.7
  clip-l/                      (--only clip) random-init transformers CLIPTextModel with CLIP ViT-L/14's
                               text config (SD-1.5's text encoder: 12 layers, width 768, 12 heads,
                               quick_gelu, 49408 tokens, 77 positions), hub keys (text_model.), float32
  clip-l-forward.safetensors   input_ids int64 [2,77] (BOS, ids, EOS, EOS padding), last_hidden_state
                               [2,77,768], pooler_output [2,768], clip_skip_1 [2,77,768] (diffusers'
                               encode_prompt with clip_skip=1)

Parameters that the default init leaves constant (all zeros / all ones: GroupNorm
affine in the VAE and the UNet, LayerNorm affine in the UNet; none in diffusers' DiT,
which does not zero-init AdaLN / proj_out the way the original DiT code does) get a
seeded N(0, 0.05) / 1 + N(0, 0.05).
Takes a few minutes on 2 cores (model construction, 3 GB of writes, the VAE decode);
--only unet another few (3.4 GB of writes, two SD-1.5 forwards at batch 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DiTTransformer2DModel, UNet2DConditionModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_model_fixtures import make_nonconstant, metadata, save_tensors  # noqa: E402

COMMAND = "python tests/reference/make_large_references.py OUT"

SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    act_fn="silu",
    scaling_factor=0.18215,
)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def save_model(model, folder: Path, max_shard_size: str) -> None:
    model.save_pretrained(str(fresh_dir(folder)), max_shard_size=max_shard_size)
    for f in folder.iterdir():
        f.chmod(0o644)


def log(msg: str, t0: float) -> None:
    print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)


def make_dit(out: Path, shard: str, t0: float) -> None:
    torch.manual_seed(5000)
    model = DiTTransformer2DModel(out_channels=8)  # defaults = DiT-XL/2 except learned sigma
    touched = make_nonconstant(model, 5001)
    n = sum(p.numel() for p in model.parameters())
    log(f"DiT-XL/2 built: {n / 1e6:.1f} M parameters, re-initialised constant params: {touched or 'none'}", t0)
    save_model(model.eval(), out / "dit-xl-2", shard)
    del model
    log("dit-xl-2/ written", t0)

    model = DiTTransformer2DModel.from_pretrained(str(out / "dit-xl-2"), torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(5100)
    sample = torch.randn(2, 4, 32, 32, generator=g)
    timestep = torch.tensor([500, 500], dtype=torch.int64)
    class_labels = torch.tensor([207, 1000], dtype=torch.int64)  # [cond, null]
    with torch.no_grad():
        output = model(sample, timestep=timestep, class_labels=class_labels).sample.float()
    log(f"DiT-XL/2 forward done, output {tuple(output.shape)}, max|out| {output.abs().max():.3f}", t0)
    save_tensors(
        out / "dit-xl-2-forward.safetensors",
        dict(sample=sample, timestep=timestep, class_labels=class_labels, output=output),
        metadata(
            "DiTTransformer2DModel(sample, timestep, class_labels).sample for the random-init DiT-XL/2 "
            "in dit-xl-2/ (batch [cond, null])",
            generator="tests/reference/make_large_references.py",
            command=COMMAND,
        ),
    )


def make_dit_lora(out: Path, t0: float) -> None:
    """A rank-32 LoRA on DiT-XL/2's q/k/v/out (112 Linears), written by diffusers'
    transformer LoRA writer, and the forward with it at weight 0.7."""
    import tempfile

    from diffusers.loaders.lora_pipeline import SanaLoraLoaderMixin
    from diffusers.loaders.peft import PeftAdapterMixin
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.numpy import load_file as load_numpy

    class DiTWithLora(DiTTransformer2DModel, PeftAdapterMixin):
        pass

    model = DiTWithLora.from_pretrained(str(out / "dit-xl-2"), torch_dtype=torch.float32).eval()
    torch.manual_seed(5200)
    model.add_adapter(LoraConfig(r=32, lora_alpha=32, target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
                      adapter_name="A")
    g = torch.Generator().manual_seed(5201)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.01)
    with tempfile.TemporaryDirectory() as tmp:
        SanaLoraLoaderMixin.save_lora_weights(
            tmp, transformer_lora_layers=get_peft_model_state_dict(model, adapter_name="A"),
            transformer_lora_adapter_metadata=model.peft_config["A"].to_dict())
        shutil.copy(Path(tmp) / "pytorch_lora_weights.safetensors", out / "dit-xl-2-lora-A.safetensors")
    reference = load_numpy(str(out / "dit-xl-2-forward.safetensors"))
    model.set_adapters(["A"], weights=[0.7])
    with torch.no_grad():
        output = model(torch.from_numpy(reference["sample"]), timestep=torch.from_numpy(reference["timestep"]),
                       class_labels=torch.from_numpy(reference["class_labels"])).sample.float()
    log(f"DiT-XL/2 LoRA forward done, max|out| {output.abs().max():.3f}", t0)
    save_tensors(
        out / "dit-xl-2-lora-forward.safetensors", dict(output=output),
        metadata("DiT-XL/2 forward (inputs of dit-xl-2-forward.safetensors) with dit-xl-2-lora-A.safetensors "
                 "(r=32, alpha=32, to_q/to_k/to_v/to_out.0) at weight 0.7, diffusers + PEFT",
                 generator="tests/reference/make_large_references.py", command=COMMAND),
    )


def make_vae(out: Path, shard: str, t0: float) -> None:
    torch.manual_seed(6000)
    vae = AutoencoderKL(**SD_VAE)
    touched = make_nonconstant(vae, 6001)
    log(f"SD VAE built, re-initialised {len(touched)} constant params", t0)
    save_model(vae.eval(), out / "sd-vae", shard)
    del vae
    vae = AutoencoderKL.from_pretrained(str(out / "sd-vae"), torch_dtype=torch.float32).eval()
    log("sd-vae/ written", t0)
    latent = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(6100))
    with torch.no_grad():
        image = vae.decode(latent).sample.float()
    log(f"SD VAE decode done, image {tuple(image.shape)}, max|img| {image.abs().max():.3f}", t0)
    save_tensors(
        out / "sd-vae-decode.safetensors",
        dict(latent=latent, image=image),
        metadata(
            "AutoencoderKL.decode(latent).sample for the random-init SD VAE in sd-vae/",
            generator="tests/reference/make_large_references.py",
            command=COMMAND,
        ),
    )


SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
    use_linear_projection=False,
)


def unet_inputs() -> dict:
    g = torch.Generator().manual_seed(7100)
    return dict(
        sample=torch.randn(2, 4, 64, 64, generator=g),
        timestep=torch.tensor([981, 21], dtype=torch.int64),
        encoder_hidden_states=torch.randn(2, 77, 768, generator=g),
    )


def make_unet(out: Path, shard: str, t0: float) -> None:
    torch.manual_seed(7000)
    model = UNet2DConditionModel(**SD15_UNET)
    touched = make_nonconstant(model, 7001)
    n = sum(p.numel() for p in model.parameters())
    log(f"SD-1.5 UNet built: {n / 1e6:.1f} M parameters, re-initialised {len(touched)} constant params", t0)
    save_model(model.eval(), out / "sd-unet", shard)
    del model
    log("sd-unet/ written", t0)

    model = UNet2DConditionModel.from_pretrained(str(out / "sd-unet"), torch_dtype=torch.float32).eval()
    inputs = unet_inputs()
    with torch.no_grad():
        output = model(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample.float()
    log(f"SD-1.5 UNet forward done, output {tuple(output.shape)}, max|out| {output.abs().max():.3f}", t0)
    save_tensors(
        out / "unet-forward.safetensors",
        dict(inputs, output=output),
        metadata(
            "UNet2DConditionModel(sample, timestep, encoder_hidden_states).sample for the random-init SD-1.5 UNet "
            "in sd-unet/ (batch 2, 4x64x64, context 77x768)",
            generator="tests/reference/make_large_references.py",
            command=COMMAND,
        ),
    )


def make_unet_lora(out: Path, t0: float) -> None:
    """A rank-8 LoRA on the SD-1.5 UNet's attention projections (to_q/to_k/to_v/to_out.0 of attn1
    and attn2 in all 16 transformer blocks: 128 Linears), written by diffusers' SD LoRA writer,
    loaded back from the file, and the forward with it at weight 0.7."""
    import tempfile

    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
    from peft import LoraConfig, get_peft_model_state_dict

    model = UNet2DConditionModel.from_pretrained(str(out / "sd-unet"), torch_dtype=torch.float32).eval()
    torch.manual_seed(7200)
    model.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]),
                      adapter_name="A")
    g = torch.Generator().manual_seed(7201)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.01)
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionLoraLoaderMixin.save_lora_weights(
            tmp, unet_lora_layers=get_peft_model_state_dict(model, adapter_name="A"),
            unet_lora_adapter_metadata=model.peft_config["A"].to_dict())
        shutil.copy(Path(tmp) / "pytorch_lora_weights.safetensors", out / "sd-unet-lora-A.safetensors")
    (out / "sd-unet-lora-A.safetensors").chmod(0o644)
    del model
    # the reference comes from the file as diffusers loads it
    model = UNet2DConditionModel.from_pretrained(str(out / "sd-unet"), torch_dtype=torch.float32).eval()
    model.load_lora_adapter(str(out / "sd-unet-lora-A.safetensors"), prefix="unet", adapter_name="A",
                            use_safetensors=True)
    n_lora = sum(1 for name, _ in model.named_modules() if name.endswith(("to_q", "to_k", "to_v", "to_out.0")))
    model.set_adapters(["A"], weights=[0.7])
    inputs = unet_inputs()
    with torch.no_grad():
        output = model(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample.float()
    from safetensors.torch import load_file

    base = load_file(str(out / "unet-forward.safetensors"))["output"]
    effect = float((output - base).abs().max() / base.abs().max())
    log(f"SD-1.5 UNet LoRA forward done ({n_lora} LoRA Linears), max|out| {output.abs().max():.3f}, "
        f"relative change from the base output {effect:.1e}", t0)
    assert effect > 1e-3, f"LoRA moves the output by only {effect:.1e} (tolerance 1e-4)"
    save_tensors(
        out / "unet-lora-forward.safetensors", dict(output=output),
        metadata("SD-1.5 UNet forward (inputs of unet-forward.safetensors) with sd-unet-lora-A.safetensors "
                 "(r=8, alpha=8, to_q/to_k/to_v/to_out.0 of attn1 and attn2) at weight 0.7, diffusers + PEFT",
                 generator="tests/reference/make_large_references.py", command=COMMAND),
    )


def make_vae_encode(out: Path, t0: float) -> None:
    """SD VAE encode at 512x512, and tiled encode / decode at 1024x1024 (3x3 tiles of 512 / 64)."""
    vae = AutoencoderKL.from_pretrained(str(out / "sd-vae"), torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(6200)
    image = torch.rand(1, 3, 512, 512, generator=g) * 2 - 1
    with torch.no_grad():
        dist = vae.encode(image).latent_dist
    log(f"SD VAE encode done, mean {tuple(dist.mean.shape)}", t0)
    save_tensors(
        out / "sd-vae-encode.safetensors",
        dict(image=image, mean=dist.mean, logvar=dist.logvar),
        metadata("AutoencoderKL.encode(image).latent_dist (mean, clamped logvar) for the SD VAE in sd-vae/",
                 generator="tests/reference/make_large_references.py", command=COMMAND),
    )
    tiled_image = torch.rand(1, 3, 1024, 1024, generator=g) * 2 - 1
    tiled_latent = torch.randn(1, 4, 128, 128, generator=g)
    vae.enable_tiling()
    with torch.no_grad():
        tiled = vae.encode(tiled_image).latent_dist
        log("SD VAE tiled encode done", t0)
        decoded = vae.decode(tiled_latent).sample.float()
    log("SD VAE tiled decode done", t0)
    save_tensors(
        out / "sd-vae-tiled.safetensors",
        dict(tiled_image=tiled_image, tiled_mean=tiled.mean, tiled_logvar=tiled.logvar, tiled_latent=tiled_latent,
             tiled_decoded=decoded),
        metadata("the SD VAE in sd-vae/ with enable_tiling() (tile_sample_min_size 512, tile_latent_min_size 64): "
                 "encode(tiled_image).latent_dist -> tiled_mean, tiled_logvar; decode(tiled_latent).sample -> "
                 "tiled_decoded", generator="tests/reference/make_large_references.py", command=COMMAND),
    )


def make_clip(out: Path, t0: float) -> None:
    from safetensors.torch import load_file as load_torch_file, save_file as save_torch_file
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(7200)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=1, projection_dim=768)
    model = CLIPTextModel(config).eval()
    touched = make_nonconstant(model, 7201)
    folder = fresh_dir(out / "clip-l")
    model.save_pretrained(str(folder))
    # As SD-1.5's text_encoder/model.safetensors holds them: every key under text_model.
    tensors = load_torch_file(str(folder / "model.safetensors"))
    save_torch_file({f"text_model.{key}": value for key, value in tensors.items()}, str(folder / "model.safetensors"),
                    metadata={"format": "pt"})
    log(f"clip-l/ written ({len(touched)} constant params re-initialised)", t0)
    model = CLIPTextModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(7202)
    ids = torch.full((2, 77), 49407, dtype=torch.int64)
    ids[:, 0] = 49406
    ids[0, 1:12] = torch.randint(0, 49406, (11,), generator=generator)
    ids[1, 1:76] = torch.randint(0, 49406, (75,), generator=generator)
    with torch.no_grad():
        output = model(ids, output_hidden_states=True)
        clip_skip = model.final_layer_norm(output.hidden_states[-2])
    save_tensors(
        out / "clip-l-forward.safetensors",
        dict(input_ids=ids, last_hidden_state=output.last_hidden_state, pooler_output=output.pooler_output,
             clip_skip_1=clip_skip),
        metadata("transformers CLIPTextModel(input_ids) for the random-init CLIP ViT-L/14 text encoder in clip-l/",
                 generator="tests/reference/make_large_references.py", command=COMMAND),
    )
    log("CLIP ViT-L/14 text forward done", t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", type=Path, default=Path("/tmp/nodus-large"))
    ap.add_argument("--only", choices=["dit", "lora", "vae", "unet", "unet-lora", "vae-encode", "clip"],
                    help="generate only one reference (lora needs dit-xl-2/, vae-encode sd-vae/ and unet-lora "
                         "sd-unet/ from a previous run; unet makes sd-unet/ and its LoRA reference)")
    ap.add_argument(
        "--max-shard-size",
        default="10GB",
        help='save_pretrained shard size (default "10GB" = one file; e.g. "1GB" to exercise sharded loading)',
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    log(f"writing to {args.out} with {torch.get_num_threads()} threads", t0)
    if args.only in (None, "dit"):
        make_dit(args.out, args.max_shard_size, t0)
    if args.only in (None, "lora"):
        make_dit_lora(args.out, t0)
    if args.only in (None, "vae"):
        make_vae(args.out, args.max_shard_size, t0)
    if args.only in (None, "vae", "vae-encode"):
        make_vae_encode(args.out, t0)
    if args.only in (None, "unet"):
        make_unet(args.out, args.max_shard_size, t0)
    if args.only in (None, "unet", "unet-lora"):
        make_unet_lora(args.out, t0)
    if args.only in (None, "clip"):
        make_clip(args.out, t0)
    (args.out / "README.json").write_text(
        json.dumps({"generator": "tests/reference/make_large_references.py", "command": COMMAND}, indent=2) + "\n"
    )
    log("done", t0)


if __name__ == "__main__":
    main()
