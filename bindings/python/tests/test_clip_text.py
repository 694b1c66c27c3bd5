"""CLIP text encoder (transformers CLIPTextModel) against references made by
tests/reference/make_clip_fixtures.py."""

import os

import numpy as np
import pytest
from safetensors.numpy import load_file

import nodus

from conftest import FIXTURES

TOLERANCE = 1e-4
FOLDERS = ["clip-tiny", "clip-tiny-bare", "clip-tiny-projection"]


@pytest.fixture(scope="module")
def references():
    return load_file(os.path.join(FIXTURES, "clip-tiny-forward.safetensors"))


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("name", FOLDERS)
def test_hidden_states_and_pooled_output(name, references):
    model = nodus.load(os.path.join(FIXTURES, name))
    assert model.kind == "clip_text"
    outputs = model.forward_all(input_ids=references["input_ids"])
    expected = ["last_hidden_state", "pooler_output"] + (["text_embeds"] if "projection" in name else [])
    assert list(outputs) == expected == [output[0] for output in model.outputs]
    for key, value in outputs.items():
        error = relative_error(value, references[f"{name}.{key}"])
        assert error < TOLERANCE, f"{name} {key}: relative error {error:.2e}"
    np.testing.assert_array_equal(model.forward(input_ids=references["input_ids"]), outputs["last_hidden_state"])


@pytest.mark.parametrize("name", FOLDERS)
@pytest.mark.parametrize("skip", [1, 2])
def test_clip_skip_as_diffusers_encode_prompt(name, skip, references):
    model = nodus.load(os.path.join(FIXTURES, name))
    hidden = model.forward(input_ids=references["input_ids"], clip_skip=skip)
    error = relative_error(hidden, references[f"{name}.clip_skip_{skip}"])
    assert error < TOLERANCE, f"{name} clip_skip {skip}: relative error {error:.2e}"


@pytest.mark.parametrize("name", FOLDERS)
def test_fewer_tokens_than_positions(name, references):
    model = nodus.load(os.path.join(FIXTURES, name))
    hidden = model.forward(input_ids=references["short_ids"])
    error = relative_error(hidden, references[f"{name}.short_last_hidden_state"])
    assert error < TOLERANCE, f"{name}: relative error {error:.2e}"


def test_bad_inputs_are_clear_errors(references):
    model = nodus.load(os.path.join(FIXTURES, "clip-tiny"))
    ids = references["input_ids"]
    with pytest.raises(ValueError, match="at most 16"):
        model.forward(input_ids=np.concatenate([ids, ids], axis=1))
    with pytest.raises(ValueError, match="integer token ids"):
        model.forward(input_ids=ids.astype(np.float32))
    with pytest.raises(ValueError, match="clip_skip"):
        model.forward(input_ids=ids, clip_skip=3)
    with pytest.raises(ValueError, match="unknown input 'attention_mask'"):
        model.forward(input_ids=ids, attention_mask=np.ones_like(ids))
    too_large = ids.copy()
    too_large[0, 2] = 1000
    with pytest.raises(ValueError, match="input_ids"):
        model.forward(input_ids=too_large)


def test_a_diffusers_config_is_not_mistaken_for_a_text_encoder(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(nodus.NodusError, match="'BertModel' is not supported.*CLIPTextModel"):
        nodus.load(str(tmp_path))


@pytest.mark.parametrize("folder", ["clip-tiny", "clip-tiny-bare"])
@pytest.mark.parametrize("lora", ["clip-tiny-lora-peft.safetensors", "clip-tiny-lora-kohya.safetensors"])
def test_text_encoder_lora_unfused_and_fused(folder, lora, references):
    """diffusers' text_encoder.* keys (transformers 5 names) and kohya's lora_te_text_model_* keys (hub
    names) on both key forms of the model; the UNet layer of the diffusers file is reported, not applied."""
    model = nodus.load(os.path.join(FIXTURES, folder))
    report = model.load_lora_weights(os.path.join(FIXTURES, lora), adapter_name="te")
    assert len(report["matched"]) == 18
    assert report["unmatched"] == (["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"]
                                   if "peft" in lora else [])
    model.set_adapters(["te"], [0.7])
    expected = references["clip-tiny.lora_last_hidden_state"]
    # clip-tiny-bare differs from clip-tiny in weights, activation and dtype: its LoRA output is not
    # the reference; only the folder with the reference's weights is compared.
    unfused = model.forward(input_ids=references["input_ids"])
    model.fuse_lora()
    fused = model.forward(input_ids=references["input_ids"])
    model.unfuse_lora()
    model.disable_lora()
    plain = model.forward(input_ids=references["input_ids"])
    if folder == "clip-tiny":
        for label, value in (("unfused", unfused), ("fused", fused)):
            error = relative_error(value, expected)
            assert error < TOLERANCE, f"{lora} {label}: relative error {error:.2e}"
        np.testing.assert_allclose(plain, references["clip-tiny.last_hidden_state"], rtol=0, atol=1e-5)
    assert relative_error(unfused, plain) > 1e-2, "the LoRA changed nothing"
