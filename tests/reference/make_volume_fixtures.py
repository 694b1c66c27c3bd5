#!/usr/bin/env python
"""Generate the committed 3D (volume) fixtures under Tests/Fixtures/volume/.

    .venv-bench/bin/python tests/reference/make_volume_fixtures.py

Run from the repository root with a venv holding torch, diffusers, onnx, onnxruntime,
onnxscript and monai (`make bench` creates `.venv-bench`; `pip install monai==1.6.1 einops`).
Library versions are recorded in every safetensors file's metadata and in
Tests/Fixtures/GENERATED-volume-fixtures.md.

What it writes (Tests/Fixtures/volume/):

  medsyn2-tiny/            MedSyn2Transformer3DModel (tests/reference/medsyn2.py) save_pretrained:
                           in_channels 5 (a 4-channel latent + a 1-channel mask latent), width 24
                           (2 heads of 12), 2 layers, text width 16, sample_size 4x6x8
  medsyn2-tiny-forward.safetensors
                           sample [2, 5, 4, 6, 8], timestep [2] (float), encoder_hidden_states [2, 7, 16]
                           -> sample_out; and a second shape (batch 1, 8x4x4 grid, 3 text tokens) as *.2
  medsyn2-tiny-<exporter><opset>.onnx (+ -io.safetensors)
                           the model exported by torch.onnx.export (dynamo 18, TorchScript 17), a dynamic
                           batch axis; onnxruntime's outputs and torch's (`torch.<output name>`)
  medsyn2-tiny-sample-<solver>.safetensors
                           a 10-step x-prediction rectified-flow CFG run (guidance 3) written as a plain
                           torch loop: diffusers' FlowMatchEulerDiscreteScheduler / FlowMatchHeunDiscreteScheduler
                           with MONAI RFlowScheduler's voxel-count shift, PRX's x0-to-velocity conversion
                           v = (x - x0) / max(t / 1000, 0.05); batch [uncond..., cond...] where the unconditional
                           half has the null text embedding and an empty (zero) mask latent
  medsyn2-scheduler-<solver>/scheduler_config.json   the scheduler configs of those runs
  medsyn2-tiny-rope/       the same architecture with pos_embed_type "rope" (3D RoPE on the self-attention's
                           q and k instead of the added sin-cos embedding)
  medsyn2-tiny-rope-forward.safetensors, medsyn2-tiny-rope-dynamo18.onnx (+ -io)
                           its forward (inputs as medsyn2-tiny-forward's) and its export
  medsyn2-tiny-lora.safetensors
                           a PEFT LoRA (r 4, alpha 8; to_q, to_k, to_v, to_out.0, to_gate, ff.net.0.proj,
                           B drawn at random) in diffusers' file layout (keys `transformer.<module>.lora_A.weight`,
                           metadata `lora_adapter_metadata`), and `forward` holding PEFT's output for the
                           forward inputs (`lora_output`)
  monai-vae3d-tiny-encoder-dynamo18.onnx (+ -io)     MONAI AutoencoderKL(spatial_dims=3).encode -> z_mu, z_sigma
  monai-vae3d-tiny-decoder-dynamo18.onnx (+ -io)     its decode, the same weights
  monai-vae3d-sliding-window.safetensors
                           monai.inferers.SlidingWindowInferer(mode="gaussian") over the decoder (a latent
                           [1, 4, 7, 6, 5], window 4x4x4, overlap 0.25 and 0.5) and over the encoder's z_mu
                           (an image [1, 1, 12, 10, 14], window 8x8x8, overlap 0.25), with the settings in
                           the metadata
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as mmf  # noqa: E402
import make_onnx_fixtures as mof  # noqa: E402
from medsyn2 import MedSyn2Transformer3DModel  # noqa: E402
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler  # noqa: E402
import monai  # noqa: E402
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model  # noqa: E402
from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.networks.nets import AutoencoderKL as MonaiAutoencoderKL  # noqa: E402

OUT = Path("Tests/Fixtures/volume")
MEDSYN2_TINY = dict(in_channels=5, out_channels=4, patch_size=2, num_layers=2, num_attention_heads=2,
                    attention_head_dim=12, cross_attention_dim=16, ff_mult=2, sample_size=(4, 6, 8))
# MONAI's RFlowScheduler time shift for 3D: ratio = (voxels / base_img_size_numel)^(1/3) * transform_scale.
VOXEL_SHIFT = dict(use_timestep_transform=True, base_img_size_numel=64, spatial_dim=3, transform_scale=1.0)
SAMPLE_STEPS = 10
GUIDANCE = 3.0
X0_CLAMP = 0.05


def versions() -> dict:
    result = mof.versions()
    result.update(mof.next_versions())
    result["monai"] = monai.__version__
    return result


def save(path: Path, tensors: dict, description: str, **extra) -> None:
    metadata = {"description": description, "generator": "tests/reference/make_volume_fixtures.py",
                "versions": json.dumps(versions(), sort_keys=True)}
    metadata.update({key: json.dumps(value, sort_keys=True) for key, value in extra.items()})
    mmf.save_tensors(path, tensors, metadata)


class Forward(torch.nn.Module):
    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.transformer(sample, timestep, encoder_hidden_states).sample


class MonaiVAEEncode(torch.nn.Module):
    """MONAI AutoencoderKL.encode(x) -> (z_mu, z_sigma)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode(sample)


def medsyn2_model() -> MedSyn2Transformer3DModel:
    torch.manual_seed(9010)
    model = MedSyn2Transformer3DModel(**MEDSYN2_TINY).eval()
    mmf.make_nonconstant(model, 9011)
    mmf.save_model(model, OUT / "medsyn2-tiny")
    return MedSyn2Transformer3DModel.from_pretrained(str(OUT / "medsyn2-tiny")).eval()


def forward_fixtures(model) -> dict:
    g = mmf.gen(9020)
    inputs = {"sample": torch.randn(2, 5, 4, 6, 8, generator=g),
              "timestep": torch.tensor([250.0, 875.5]),
              "encoder_hidden_states": torch.randn(2, 7, 16, generator=g)}
    second = {"sample": torch.randn(1, 5, 16, 8, 8, generator=g), "timestep": torch.tensor([40.25]),
              "encoder_hidden_states": torch.randn(1, 3, 16, generator=g)}
    with torch.no_grad():
        tensors = dict(inputs, sample_out=model(**inputs).sample)
        tensors.update({f"{key}.2": value for key, value in second.items()})
        tensors["sample_out.2"] = model(**second).sample
        # Sensitivity: the output must move when the text changes (cross-attention is live).
        moved = model(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"] * 0.5).sample
        assert mmf.rel_err(moved, tensors["sample_out"]) > 1e-3
    save(OUT / "medsyn2-tiny-forward.safetensors", tensors,
         "MedSyn2Transformer3DModel (medsyn2-tiny) forward: inputs and sample_out; *.2 a second shape")
    return inputs


def rope_fixtures(inputs) -> None:
    torch.manual_seed(9070)
    model = MedSyn2Transformer3DModel(**MEDSYN2_TINY, pos_embed_type="rope").eval()
    mmf.make_nonconstant(model, 9071)
    mmf.save_model(model, OUT / "medsyn2-tiny-rope")
    model = MedSyn2Transformer3DModel.from_pretrained(str(OUT / "medsyn2-tiny-rope")).eval()
    with torch.no_grad():
        output = model(**inputs).sample
    save(OUT / "medsyn2-tiny-rope-forward.safetensors", dict(inputs, sample_out=output),
         "MedSyn2Transformer3DModel with 3D RoPE (medsyn2-tiny-rope) forward: inputs and sample_out")
    mof.write_export("medsyn2-tiny-rope", Forward(model).eval(), inputs, ["sample_out"], "dynamo", 18, OUT,
                     source="torch (tests/reference/medsyn2.py)")


def lora_fixture(model, inputs) -> None:
    adapted = copy.deepcopy(model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0", "to_gate",
                                                            "ff.net.0.proj"])
    inject_adapter_in_model(config, adapted)
    g = mmf.gen(9060)
    with torch.no_grad():
        for name, parameter in sorted(adapted.named_parameters()):
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.05)
        output = adapted(**inputs).sample
        assert mmf.rel_err(output, model(**inputs).sample) > 1e-3
    state = {f"transformer.{key}": value for key, value in get_peft_model_state_dict(adapted).items()}
    settings = {key: sorted(value) if isinstance(value, set) else value for key, value in config.to_dict().items()}
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(
        {f"transformer.{key}": value for key, value in settings.items()}, sort_keys=True, default=str)}
    mmf.save_tensors(OUT / "medsyn2-tiny-lora.safetensors", state, metadata)
    save(OUT / "medsyn2-tiny-lora-forward.safetensors", dict(inputs, lora_output=output),
         "medsyn2-tiny with medsyn2-tiny-lora.safetensors (PEFT, scale alpha / r = 2): the forward inputs and output")


def voxel_shift(latent_shape) -> float:
    voxels = math.prod(latent_shape[2:])
    return (voxels / VOXEL_SHIFT["base_img_size_numel"]) ** (1 / VOXEL_SHIFT["spatial_dim"]) * VOXEL_SHIFT["transform_scale"]


def sample_fixture(model, solver: str) -> None:
    config = {"num_train_timesteps": 1000, "shift": 1.0, "prediction_type": "sample", "sample_clamp_min": X0_CLAMP}
    config.update(VOXEL_SHIFT)
    cls = {"euler": FlowMatchEulerDiscreteScheduler, "heun": FlowMatchHeunDiscreteScheduler}[solver]
    folder = mmf.fresh_dir(OUT / f"medsyn2-scheduler-{solver}")
    (folder / "scheduler_config.json").write_text(json.dumps(dict({"_class_name": cls.__name__}, **config), indent=2) + "\n")

    g = mmf.gen(9030 if solver == "euler" else 9040)
    batch, shape = 2, (2, 4, 4, 6, 8)
    init_noise = torch.randn(*shape, generator=g)
    mask = (torch.rand(batch, 1, 4, 6, 8, generator=g) > 0.5).float()
    text = torch.randn(batch, 7, 16, generator=g)
    null_text = torch.randn(1, 7, 16, generator=g) * 0.1
    # The torch loop: the scheduler has the voxel shift as its static shift; the rest is PRX's loop.
    scheduler = cls(num_train_timesteps=1000, shift=voxel_shift(shape))
    scheduler.set_timesteps(SAMPLE_STEPS)
    context = torch.cat([null_text.expand(batch, -1, -1), text])
    conditioning = torch.cat([torch.zeros_like(mask), mask])
    latents = init_noise.clone()
    trajectory = []
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_input = torch.cat([torch.cat([latents, latents]), conditioning], dim=1)
            prediction = model(model_input, t.expand(2 * batch), context).sample
            uncond, cond = prediction.chunk(2)
            x0 = uncond + GUIDANCE * (cond - uncond)
            t_x = torch.clamp(t.float() / scheduler.config.num_train_timesteps, min=X0_CLAMP)
            velocity = (latents - x0) / t_x
            latents = scheduler.step(velocity, t, latents).prev_sample
            trajectory.append(latents)
    save(OUT / f"medsyn2-tiny-sample-{solver}.safetensors",
         {"init_noise": init_noise, "mask_latent": mask, "encoder_hidden_states": text, "null_text": null_text,
          "timesteps": scheduler.timesteps.float(), "final": latents, "trajectory": torch.stack(trajectory)},
         f"medsyn2-tiny, {SAMPLE_STEPS}-step x-prediction rectified-flow CFG ({cls.__name__}, guidance {GUIDANCE}, "
         "voxel shift); cond half: encoder_hidden_states + mask_latent; uncond half: null_text + zero mask",
         shift=voxel_shift(shape), guidance=GUIDANCE, steps=SAMPLE_STEPS, x0_clamp=X0_CLAMP)


def monai_vae():
    """The same MONAI VAE as make_onnx_fixtures.py's monai-vae3d-tiny (its seeds)."""
    torch.manual_seed(7720)
    vae = MonaiAutoencoderKL(**mof.MONAI_VAE_3D).eval()
    mmf.make_nonconstant(vae, 7721)
    return vae


def sliding_window_fixtures(vae) -> None:
    g = mmf.gen(9050)
    decoder, encoder = mof.MonaiVAEDecode(vae).eval(), MonaiVAEEncode(vae).eval()
    mof.write_export("monai-vae3d-tiny-decoder", decoder, {"latent_sample": torch.randn(2, 4, 4, 4, 4, generator=g)},
                     ["sample"], "dynamo", 18, OUT, source="monai")
    mof.write_export("monai-vae3d-tiny-encoder", encoder, {"sample": torch.randn(2, 1, 8, 8, 8, generator=g)},
                     ["z_mu", "z_sigma"], "dynamo", 18, OUT, source="monai")
    latent = torch.randn(1, 4, 7, 6, 5, generator=g)
    image = torch.randn(1, 1, 12, 10, 14, generator=g)
    tensors = {"latent": latent, "image": image}
    settings = {}
    with torch.no_grad():
        for name, overlap in (("decoded_overlap25", 0.25), ("decoded_overlap50", 0.5)):
            inferer = SlidingWindowInferer(roi_size=(4, 4, 4), sw_batch_size=1, overlap=overlap, mode="gaussian",
                                           sigma_scale=0.125, padding_mode="constant", cval=0.0)
            tensors[name] = inferer(latent, decoder)
            settings[name] = {"roi_size": [4, 4, 4], "overlap": overlap}
        inferer = SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=1, overlap=0.25, mode="gaussian",
                                       sigma_scale=0.125)
        tensors["encoded_mean"] = inferer(image, lambda x: encoder(x)[0])
        settings["encoded_mean"] = {"roi_size": [8, 8, 8], "overlap": 0.25}
        # Whole-volume runs: the sliding window must differ from them (the blend is exercised).
        whole = decoder(latent)
        assert mmf.rel_err(tensors["decoded_overlap25"], whole) > 1e-3
    save(OUT / "monai-vae3d-sliding-window.safetensors", tensors,
         "MONAI SlidingWindowInferer(mode='gaussian', sigma_scale=0.125, sw_batch_size=1) over the 3D VAE's "
         "decoder (latent) and encoder mean (image); settings per output in `settings`", settings=settings)


def write_readme() -> None:
    lines = ["# Tests/Fixtures/volume", "", "Generated by `tests/reference/make_volume_fixtures.py` (see its docstring).",
             "", "Library versions:", ""]
    lines += [f"- {key} {value}" for key, value in sorted(versions().items())]
    Path("Tests/Fixtures/GENERATED-volume-fixtures.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    model = medsyn2_model()
    inputs = forward_fixtures(model)
    lora_fixture(model, inputs)
    rope_fixtures(inputs)
    for exporter, opset in (("dynamo", 18), ("torchscript", 17)):
        mof.write_export("medsyn2-tiny", Forward(model).eval(), inputs, ["sample_out"], exporter, opset, OUT,
                         source="torch (tests/reference/medsyn2.py)")
    for solver in ("euler", "heun"):
        sample_fixture(model, solver)
    sliding_window_fixtures(monai_vae())
    write_readme()


if __name__ == "__main__":
    main()
