"""Writes tiny LoRA files the way diffusers and PEFT write them, with the rank, alpha and
scale PEFT gives each layer, for Tests/NodusTests/LoRAFileTests.swift.

Run: PYTHONHASHSEED=0 python tests/reference/make_lora_format_fixtures.py
(the seed fixes the order PEFT lists target_modules in, which comes from a set).
Outputs (in Tests/Fixtures/lora):
  pipeline-prefixed.safetensors  SD3LoraLoaderMixin.save_lora_weights: "transformer." keys,
                                 metadata {"transformer.r": ..., "transformer.rank_pattern": ...}
  model-adapter.safetensors      PeftAdapterMixin.save_lora_adapter: unprefixed keys and metadata
  rslora.safetensors             save_lora_adapter with use_rslora = True
  peft-folder/                   PeftModel.save_pretrained: adapter_config.json + adapter_model.safetensors
  expected.json                  per file: module -> [r, lora_alpha, scaling] read from PEFT's layers
"""
import json
import os
import sys

import diffusers
import peft
import safetensors
import torch
from diffusers import DiTTransformer2DModel
from diffusers.loaders import SD3LoraLoaderMixin
from diffusers.loaders.peft import PeftAdapterMixin
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "lora")


class LoRADiT(DiTTransformer2DModel, PeftAdapterMixin):
    """DiTTransformer2DModel has no PeftAdapterMixin in diffusers; the mixin works on it unchanged."""


def add_adapter(model, lora_config):
    model.add_adapter(lora_config)


def tiny_transformer():
    torch.manual_seed(0)
    return LoRADiT(num_attention_heads=2, attention_head_dim=4, in_channels=4, out_channels=4,
                                 num_layers=2, sample_size=4, patch_size=2, num_embeds_ada_norm=10)


def config(use_rslora=False):
    # Patterns are tried in (sorted) order and the first match wins: "attn1.to_q" matches the
    # to_q of both blocks, so "transformer_blocks.1.attn1.to_q" below never applies.
    return LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False, use_rslora=use_rslora,
        target_modules=["to_q", "to_k", "to_v", "proj_out_2"],
        rank_pattern={r"transformer_blocks\.1\.attn1\.to_[qk]": 2, "^proj_out_2": 3},
        alpha_pattern={"attn1.to_q": 2.5, "transformer_blocks.1.attn1.to_q": 6, "to_v": 16},
    )


def scales(model):
    result = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            name = name.removeprefix("base_model.model.")
            result[name] = [module.r["default"], module.lora_alpha["default"], module.scaling["default"]]
    return result


def main():
    expected = {}
    transformer = tiny_transformer()
    add_adapter(transformer, config())
    state = get_peft_model_state_dict(transformer)
    SD3LoraLoaderMixin.save_lora_weights(
        HERE, transformer_lora_layers=state, weight_name="pipeline-prefixed.safetensors",
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
    expected["pipeline-prefixed.safetensors"] = scales(transformer)
    transformer.save_lora_adapter(HERE, weight_name="model-adapter.safetensors")
    expected["model-adapter.safetensors"] = scales(transformer)

    transformer = tiny_transformer()
    add_adapter(transformer, config(use_rslora=True))
    transformer.save_lora_adapter(HERE, weight_name="rslora.safetensors")
    expected["rslora.safetensors"] = scales(transformer)

    model = get_peft_model(tiny_transformer(), config())
    model.save_pretrained(os.path.join(HERE, "peft-folder"))
    os.remove(os.path.join(HERE, "peft-folder", "README.md"))  # PEFT's model card; not read
    expected["peft-folder"] = scales(model)

    expected["versions"] = {"python": sys.version.split()[0], "torch": torch.__version__,
                            "diffusers": diffusers.__version__, "peft": peft.__version__,
                            "safetensors": safetensors.__version__}
    with open(os.path.join(HERE, "expected.json"), "w") as handle:
        json.dump(expected, handle, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
