#!/usr/bin/env python
"""Generate the small, committed CLIP text-encoder parity fixtures under Tests/Fixtures/.

    python tests/reference/make_clip_fixtures.py [--out DIR]

Deterministic (fixed seeds, one CPU thread): re-running it with the same torch /
transformers / safetensors versions (recorded in GENERATED-clip-fixtures.md and in
the references file's metadata) reproduces the files.

What it writes (random weights, vocabulary 1000, 3 layers, width 32, 2 heads,
16 positions):

  clip-tiny/             CLIPTextModel as hub files store it: every key under
                         `text_model.` (transformers 4 / SD-1.5's model.safetensors),
                         float32, quick_gelu, eos_token_id 999 (pooled at the first eos)
  clip-tiny-bare/        CLIPTextModel as transformers 5's save_pretrained writes it
                         (no `text_model.` prefix), float16 weights, hidden_act "gelu",
                         eos_token_id 2 (the legacy rule: pooled at the largest id)
  clip-tiny-projection/  CLIPTextModelWithProjection (text_projection, projection_dim 24)
  clip-tiny-forward.safetensors
      input_ids int64 [3, 16] (rows: eos at 5 then eos padding as SD-1.5 pads;
      a full row; an eos then other ids), short_ids int64 [2, 7];
      per folder F (clip-tiny, clip-tiny-bare, clip-tiny-projection):
        F.last_hidden_state [3, 16, 32], F.pooler_output [3, 32],
        F.short_last_hidden_state [2, 7, 32],
        F.clip_skip_1 / F.clip_skip_2 [3, 16, 32]: diffusers' encode_prompt
          (hidden_states[-(clip_skip + 1)] through final_layer_norm);
      clip-tiny-projection.text_embeds [3, 24].
  clip-tiny-lora-peft.safetensors
      rank-4 LoRA (lora_alpha 8) on q/k/v/out_proj, fc1 and fc2 of every layer, written by
      diffusers' StableDiffusionLoraLoaderMixin.save_lora_weights(text_encoder_lora_layers=...)
      from a PEFT model of transformers 5's CLIPTextModel: keys text_encoder.encoder.layers.*,
      the LoraConfig in the lora_adapter_metadata; beside it a UNet layer (unet.*) that a
      text encoder must report as not matching
  clip-tiny-lora-kohya.safetensors
      the same factors as kohya / A1111 write them: lora_te_text_model_encoder_layers_*
      (hub names) .lora_down / .lora_up / .alpha
  clip-tiny-forward.safetensors, also:
      clip-tiny.lora_last_hidden_state [3, 16, 32]: clip-tiny with that LoRA at weight 0.7
      (W + 0.7 * alpha / r * B A in every targeted Linear)

References come from the folders as reloaded with from_pretrained(dtype=float32).
The script checks that each reference moves by far more than the test tolerance
when a semantic is dropped (no causal mask, no final norm, wrong pooled token).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import diffusers
import numpy as np
import peft
import safetensors
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

ROOT = Path(__file__).resolve().parents[2]
LAYERS, WIDTH, HEADS, POSITIONS, VOCAB = 3, 32, 2, 16, 1000
TOLERANCE = 1e-4


def config(**overrides) -> CLIPTextConfig:
    values = dict(vocab_size=VOCAB, hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS,
                  num_attention_heads=HEADS, max_position_embeddings=POSITIONS, bos_token_id=998,
                  eos_token_id=999, pad_token_id=1, projection_dim=24)
    values.update(overrides)
    return CLIPTextConfig(**values)


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights large enough that every path matters (the default init is tiny)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.2 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def save_hub_style(model: CLIPTextModel, folder: Path) -> None:
    """save_pretrained, then every key under `text_model.` as hub files have them."""
    model.save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    save_file({f"text_model.{name}": tensor for name, tensor in tensors.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})


def references(folder: Path, cls, ids: torch.Tensor, short: torch.Tensor) -> dict[str, torch.Tensor]:
    model = cls.from_pretrained(folder, dtype=torch.float32).eval()
    text_model = model.text_model if hasattr(model, "text_model") else model
    name = folder.name
    with torch.no_grad():
        output = model(ids, output_hidden_states=True)
        hidden = output.last_hidden_state
        result = {f"{name}.last_hidden_state": hidden,
                  f"{name}.short_last_hidden_state": model(short).last_hidden_state}
        if cls is CLIPTextModelWithProjection:
            result[f"{name}.text_embeds"] = output.text_embeds
            pooled = text_model(ids).pooler_output
        else:
            pooled = output.pooler_output
        result[f"{name}.pooler_output"] = pooled
        for skip in (1, 2):
            # diffusers StableDiffusionPipeline.encode_prompt with clip_skip.
            state = output.hidden_states[-(skip + 1)]
            result[f"{name}.clip_skip_{skip}"] = text_model.final_layer_norm(state)
        check_sensitivity(text_model, ids, hidden, pooled, name)
    return {key: value.contiguous() for key, value in result.items()}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def check_sensitivity(text_model, ids, hidden, pooled, name) -> None:
    """Each semantic a runtime could drop moves the reference far past the tolerance."""
    embeddings = text_model.embeddings(input_ids=ids)
    state = embeddings
    for layer in text_model.encoder.layers:  # no causal mask
        state = layer(state, attention_mask=None)
        state = state[0] if isinstance(state, tuple) else state
    unmasked = text_model.final_layer_norm(state)
    assert relative(unmasked, hidden) > 100 * TOLERANCE, f"{name}: the causal mask does not matter"
    no_norm = text_model.encoder(inputs_embeds=embeddings, attention_mask=None).last_hidden_state
    assert relative(no_norm, hidden) > 100 * TOLERANCE, f"{name}: final_layer_norm does not matter"
    last_token = hidden[:, -1]
    assert relative(last_token, pooled) > 100 * TOLERANCE, f"{name}: the pooled token does not matter"


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def write_lora_files(folder: Path, out: Path, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The LoRA files, and clip-tiny's output with the LoRA at 0.7 (merged by hand)."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    rank, alpha, weight = 4, 8, 0.7
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS, init_lora_weights=False)
    # As diffusers' training scripts' text_encoder.add_adapter(config) does, then get_peft_model_state_dict.
    peft_model = inject_adapter_in_model(config, CLIPTextModel.from_pretrained(folder, dtype=torch.float32))
    generator = torch.Generator().manual_seed(20)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    layers = get_peft_model_state_dict(peft_model)
    metadata = config.to_dict()
    metadata["base_model_name_or_path"] = None  # no machine path in a committed file
    metadata["target_modules"] = sorted(metadata["target_modules"])
    unet_layer = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(rank, 8),
                  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(8, rank)}
    StableDiffusionPipeline.save_lora_weights(
        out, text_encoder_lora_layers=layers, unet_lora_layers=unet_layer,
        text_encoder_lora_adapter_metadata=metadata,
        unet_lora_adapter_metadata=LoraConfig(r=rank, lora_alpha=alpha, target_modules=["to_q"]).to_dict(),
        weight_name="clip-tiny-lora-peft.safetensors", safe_serialization=True)

    kohya = {}
    for key, value in layers.items():
        module = key.rsplit(".lora_", 1)[0]  # encoder.layers.0.self_attn.q_proj
        stem = "lora_te_text_model_" + module.replace(".", "_")
        kohya[f"{stem}.lora_down.weight" if ".lora_A." in key else f"{stem}.lora_up.weight"] = value.contiguous()
        kohya[f"{stem}.alpha"] = torch.tensor(float(alpha))
    save_file(kohya, out / "clip-tiny-lora-kohya.safetensors")

    model = CLIPTextModel.from_pretrained(folder, dtype=torch.float32).eval()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, down in layers.items():
            if ".lora_A." not in key:
                continue
            module = key.rsplit(".lora_A.", 1)[0]
            up = layers[key.replace(".lora_A.", ".lora_B.")]
            modules[module].weight += weight * (alpha / rank) * (up @ down)
        lora_output = model(ids).last_hidden_state
        plain = CLIPTextModel.from_pretrained(folder, dtype=torch.float32).eval()(ids).last_hidden_state
    assert relative(lora_output, plain) > 100 * TOLERANCE, "the LoRA does not change the output"
    return {"clip-tiny.lora_last_hidden_state": lora_output.contiguous()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "Tests" / "Fixtures")
    out = parser.parse_args().out
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    folders = {
        "clip-tiny": (CLIPTextModel, config(), torch.float32, save_hub_style),
        "clip-tiny-bare": (CLIPTextModel, config(hidden_act="gelu", eos_token_id=2), torch.float16,
                           lambda model, folder: model.save_pretrained(folder)),
        "clip-tiny-projection": (CLIPTextModelWithProjection, config(), torch.float32,
                                 lambda model, folder: model.save_pretrained(folder)),
    }
    # Row 0: 4 ids, eos at 5, eos padding (SD-1.5's tokenizer pads with eos); row 1: a full row
    # ending in eos; row 2: an early eos then higher ids (first eos and largest id differ).
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 990, (3, POSITIONS), generator=generator)
    ids[:, 0] = 998
    ids[0, 5:] = 999
    ids[1, -1] = 999
    ids[2, 3] = 999
    ids[2, 9] = 995
    short = torch.randint(3, 990, (2, 7), generator=generator)
    short[:, 0], short[:, -1] = 998, 999

    tensors: dict[str, torch.Tensor] = {"input_ids": ids, "short_ids": short}
    for seed, (name, (cls, model_config, dtype, save)) in enumerate(folders.items()):
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        model = randomized(cls(model_config), seed=10 + seed).to(dtype)
        save(model, folder)
        tensors.update(references(folder, cls, ids, short))
    tensors.update(write_lora_files(out / "clip-tiny", out, ids))

    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "diffusers": diffusers.__version__, "peft": peft.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__,
                "python": platform.python_version()}
    save_file(tensors, out / "clip-tiny-forward.safetensors", metadata={"versions": json.dumps(versions)})
    (out / "GENERATED-clip-fixtures.md").write_text(
        "# CLIP text-encoder fixtures\n\nMade by `tests/reference/make_clip_fixtures.py` "
        "(see its docstring for what each file holds) with "
        + ", ".join(f"{key} {value}" for key, value in versions.items()) + ".\n")
    print(f"wrote {len(tensors)} tensors and {len(folders)} folders under {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
