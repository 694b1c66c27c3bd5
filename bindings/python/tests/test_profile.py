"""nodus_model_profile / Model.profile on the tiny fixtures: what the profile
covers (every kind of operation, every step once), how it names layers
(diffusers module names: weights in the folder), the FLOPs it counts, and the
errors it gives. No assertion depends on how long anything takes."""

import ctypes
import json
import math
import os
import subprocess

import numpy as np
import pytest
from safetensors import safe_open

import nodus
from conftest import REPOSITORY, fixture_path
from nodus import _lib, _tensor

lib = _lib.lib

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")

# Every kind of step each fixture's plan runs (kernel names). The planner fuses a Linear with the activation that
# alone reads it (the feed-forward's GELU, the timestep MLP's SiLU): linear_gelu_tanh, linear_silu.
DIT_KINDS = {"patchify", "linear", "add", "timestep_embedding", "silu", "embedding_lookup", "modulated_layer_norm",
             "attention", "gated_residual", "linear_gelu_tanh", "linear_silu", "unpatchify"}
UNET_KINDS = {"timestep_embedding", "linear", "linear_silu", "conv2d", "group_norm", "add_per_channel", "add",
              "channels_to_tokens", "layer_norm", "attention", "geglu_projection", "tokens_to_channels", "concat_channels",
              "upsample_nearest_2x"}
VAE_DECODER_KINDS = {"conv2d", "group_norm", "add", "channels_to_tokens", "linear", "attention", "tokens_to_channels",
                     "upsample_nearest_2x"}


def weight_shapes(folder):
    """{name: shape} of every tensor in the fixture folder's weights file."""
    with safe_open(os.path.join(fixture_path(folder), "diffusion_pytorch_model.safetensors"), "np") as file:
        return {name: file.get_slice(name).get_shape() for name in file.keys()}


def dit_inputs(batch=2):
    return {"sample": nodus.randn((batch, 4, 8, 8), seed=0), "timestep": np.array([500] * batch),
            "class_labels": np.array([3, 10][:batch])}


def unet_inputs():
    return {"sample": nodus.randn((2, 4, 8, 8), seed=0), "timestep": np.array([500, 500]),
            "encoder_hidden_states": nodus.randn((2, 5, 32), seed=1)}


def check_consistent(profile, rounds, what):
    """The totals agree with each other: one entry per step in kinds and layers, shares sum to 1."""
    assert profile["rounds"] == rounds, f"{what}: rounds {profile['rounds']}, expected {rounds}"
    assert len(profile["round_seconds"]) == rounds, f"{what}: {len(profile['round_seconds'])} round times for {rounds} rounds"
    assert all(seconds >= 0 for seconds in profile["round_seconds"]), f"{what}: negative round time"
    for table in ("kinds", "layers"):
        entries = profile[table]
        calls = sum(entry["calls"] for entry in entries)
        assert calls == profile["steps"], f"{what}: {table} count {calls} calls for {profile['steps']} steps"
        shares = sum(entry["share"] for entry in entries)
        assert math.isclose(shares, 1, abs_tol=1e-9), f"{what}: {table} shares sum to {shares}, expected 1"
        seconds = sum(entry["seconds"] for entry in entries)
        assert math.isclose(seconds, profile["step_seconds"], rel_tol=1e-9, abs_tol=1e-12), (
            f"{what}: {table} seconds sum to {seconds}, step_seconds is {profile['step_seconds']}")
        flops = sum(entry["flops"] for entry in entries)
        assert flops == profile["flops"], f"{what}: {table} FLOPs sum to {flops}, total is {profile['flops']}"
        times = [entry["seconds"] for entry in entries]
        assert times == sorted(times, reverse=True), f"{what}: {table} are not sorted slowest first"
        for entry in entries:
            expected = entry["flops"] / entry["seconds"] / 1e9 if entry["seconds"] > 0 else 0
            assert math.isclose(entry["gflops"], expected, rel_tol=1e-9), f"{what}: gflops of {entry}"


def layers_of(profile, *kinds):
    return {entry["layer"]: entry for entry in profile["layers"] if entry["kind"] in kinds}


def test_dit_profile_covers_every_step_and_names_layers(dit):
    profile = dit.profile(rounds=2, **dit_inputs())
    check_consistent(profile, 2, "dit-tiny")
    kinds = {entry["kind"] for entry in profile["kinds"]}
    assert kinds == DIT_KINDS, f"dit-tiny kinds: missing {DIT_KINDS - kinds}, unexpected {kinds - DIT_KINDS}"
    shapes = weight_shapes("dit-tiny")
    linear_kinds = ("linear", "linear_gelu_tanh", "linear_silu")
    linears = layers_of(profile, *linear_kinds)
    assert len(linears) == sum(k["calls"] for k in profile["kinds"] if k["kind"] in linear_kinds)
    assert set(layers_of(profile, "linear_gelu_tanh")) == {f"transformer_blocks.{i}.ff.net.0.proj" for i in (0, 1)}
    for layer in linears:
        assert layer + ".weight" in shapes, f"linear layer {layer!r} is not a weight of dit-tiny"
    # 2 per multiply-add: tokens (2 x 4x4 patches) x in x out; the timestep MLP has one row per batch item.
    for layer, rows in [("transformer_blocks.0.attn1.to_q", 32), ("transformer_blocks.1.ff.net.0.proj", 32),
                        ("transformer_blocks.0.norm1.emb.timestep_embedder.linear_1", 2), ("proj_out_2", 32)]:
        out_features, in_features = shapes[layer + ".weight"]
        assert linears[layer]["flops"] == 2 * rows * in_features * out_features, (
            f"{layer}: {linears[layer]['flops']} FLOPs, expected 2 * {rows} * {in_features} * {out_features}")
    attention = layers_of(profile, "attention")
    assert set(attention) == {"transformer_blocks.0.attn1", "transformer_blocks.1.attn1"}, attention
    # q kᵀ and the weighted sum of v: 2 products of 16 x 16 tokens x 16 per head, 2 heads, batch 2.
    assert all(entry["flops"] == 2 * 2 * 2 * 2 * 16 * 16 * 16 for entry in attention.values()), attention
    assert all(entry["flops"] == 0 for entry in layers_of(profile, "gated_residual").values())


def test_dit_profile_leaves_forward_unchanged(dit):
    inputs = dit_inputs()
    before = dit.forward(**inputs)
    dit.profile(rounds=1, **inputs)
    np.testing.assert_array_equal(dit.forward(**inputs), before)


def test_unet_profile_conv_and_linear_layers_are_weights():
    with nodus.load(fixture_path("unet-tiny")) as unet:
        profile = unet.profile(rounds=1, **unet_inputs())
    check_consistent(profile, 1, "unet-tiny")
    kinds = {entry["kind"] for entry in profile["kinds"]}
    assert kinds == UNET_KINDS, f"unet-tiny kinds: missing {UNET_KINDS - kinds}, unexpected {kinds - UNET_KINDS}"
    shapes = weight_shapes("unet-tiny")
    convolutions = layers_of(profile, "conv2d")
    for kind in ("linear", "linear_silu", "conv2d", "group_norm", "layer_norm"):
        for layer in layers_of(profile, kind):
            assert layer + ".weight" in shapes, f"{kind} layer {layer!r} is not a weight of unet-tiny"
    # conv_in: 2 per multiply-add over [2, 8, 8, 8] outputs, each 4 channels x 3 x 3.
    out_channels, in_channels, height, width = shapes["conv_in.weight"]
    assert convolutions["conv_in"]["flops"] == 2 * 2 * out_channels * 8 * 8 * in_channels * height * width
    # Cross-attention: keys and values from the 5 context tokens.
    attention = layers_of(profile, "attention")
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2" in attention, sorted(attention)
    assert "mid_block.attentions.0.transformer_blocks.0.attn1" in attention, sorted(attention)


def test_vae_profiles_decoder_and_encoder(vae):
    decoder = vae.profile(rounds=2, latent=nodus.randn((1, 4, 4, 4), seed=0))
    check_consistent(decoder, 2, "vae-tiny decoder")
    kinds = {entry["kind"] for entry in decoder["kinds"]}
    assert kinds == VAE_DECODER_KINDS, f"vae-tiny decoder kinds: missing {VAE_DECODER_KINDS - kinds}, unexpected {kinds - VAE_DECODER_KINDS}"
    shapes = weight_shapes("vae-tiny")
    for layer in list(layers_of(decoder, "conv2d")) + list(layers_of(decoder, "linear")):
        assert layer.startswith(("decoder.", "post_quant_conv")) and layer + ".weight" in shapes, layer
    assert set(layers_of(decoder, "attention")) == {"decoder.mid_block.attentions.0"}
    encoder = vae.profile(rounds=1, image=nodus.randn((1, 3, 16, 16), seed=0))
    check_consistent(encoder, 1, "vae-tiny encoder")
    assert "encoder.conv_in" in layers_of(encoder, "conv2d") and "quant_conv" in layers_of(encoder, "conv2d")


def test_lora_side_paths_are_profiled_under_their_linear():
    with nodus.load(fixture_path("dit-tiny")) as model:
        model.load_lora_weights(fixture_path("dit-tiny-lora-A.safetensors"), adapter_name="A")
        profile = model.profile(rounds=1, **dit_inputs())
        check_consistent(profile, 1, "dit-tiny with LoRA A")
        updates = layers_of(profile, "low_rank_update")
        state = json.loads(lib.nodus_model_lora_state_json(model.handle).decode())
        assert set(updates) == set(state["reports"]["A"]["matched"]), sorted(updates)
        shapes = weight_shapes("dit-tiny")
        linears = layers_of(profile, "linear")
        with safe_open(fixture_path("dit-tiny-lora-A.safetensors"), "np") as file:
            ranks = {name: file.get_slice(name).get_shape()[0] for name in file.keys() if ".lora_A." in name}
        for layer, entry in updates.items():
            (rank,) = {r for name, r in ranks.items() if f".{layer}.lora_A." in name}
            out_features, in_features = shapes[layer + ".weight"]
            rows = linears[layer]["flops"] // (2 * in_features * out_features)
            assert entry["flops"] == 2 * rows * rank * (in_features + out_features), (layer, rows, rank, entry)
        model.set_adapters(["A"], [0.0])  # a zero weight skips the products
        idle = model.profile(rounds=1, **dit_inputs())
        assert all(entry["flops"] == 0 for entry in layers_of(idle, "low_rank_update").values())


def test_profile_bad_input(dit, vae):
    with pytest.raises(ValueError, match="rounds"):
        dit.profile(rounds=0, **dit_inputs())
    with pytest.raises(ValueError, match="named inputs"):
        dit.profile()
    with pytest.raises(nodus.InvalidArgumentError, match="class_labels"):
        dit.profile(sample=dit_inputs()["sample"], timestep=np.array([1, 1]))
    with pytest.raises(nodus.ShapeError, match="sample"):
        dit.profile(**{**dit_inputs(), "sample": np.zeros((2, 3, 8, 8), dtype=np.float32)})
    with pytest.raises(nodus.InvalidArgumentError, match="unknown input 'latents'"):
        dit.profile(**dit_inputs(), latents=np.zeros(1, dtype=np.float32))
    with pytest.raises(nodus.InvalidArgumentError, match="class_labels value 11"):
        dit.profile(**{**dit_inputs(), "class_labels": np.array([11, 0])})
    with pytest.raises(nodus.InvalidArgumentError, match="decoder .*latent.* or its encoder"):
        vae.profile(latent=np.zeros((1, 4, 4, 4), dtype=np.float32), image=np.zeros((1, 3, 16, 16), dtype=np.float32))


def expect_invalid_argument(status, *words):
    message = lib.nodus_last_error().decode()
    assert status == 1, f"expected invalid_argument (1), got {status}: {message}"
    for word in words:
        assert word in message, f"message {message!r} should mention {word!r}"


def test_profile_null_pointers_and_rounds():
    text = ctypes.c_char_p(b"unchanged")
    expect_invalid_argument(lib.nodus_model_profile(None, None, 0, 1, ctypes.byref(text)), "`model` is NULL")
    assert text.value is None, "*out_json must be NULL after a failure"
    with nodus.load(fixture_path("dit-tiny")) as model:
        inputs = [_tensor.Input(_tensor.model_input_array(value, name), name) for name, value in dit_inputs().items()]
        array = (_lib.Tensor * len(inputs))(*[item.struct for item in inputs])
        expect_invalid_argument(lib.nodus_model_profile(model.handle, array, len(inputs), 1, None), "out_json")
        expect_invalid_argument(lib.nodus_model_profile(model.handle, None, 3, 1, ctypes.byref(text)), "`inputs` is NULL")
        for rounds in (0, -5):
            status = lib.nodus_model_profile(model.handle, array, len(inputs), rounds, ctypes.byref(text))
            expect_invalid_argument(status, f"rounds is {rounds}")
        assert lib.nodus_model_profile(model.handle, array, len(inputs), 2, ctypes.byref(text)) == 0, lib.nodus_last_error()
        assert json.loads(text.value.decode())["rounds"] == 2


def run_cli(*arguments):
    return subprocess.run([CLI, *map(str, arguments)], capture_output=True, text=True, timeout=300)


def test_cli_bench_profile():
    result = run_cli("bench", "--profile", fixture_path("dit-tiny"), "--rounds", 2, "--top", 5, "--threads", 1)
    assert result.returncode == 0, result.stderr
    assert "linear" in result.stdout and "attention" in result.stdout and "GFLOP/s" in result.stdout
    assert "transformer_blocks.0.attn1" in result.stdout or "transformer_blocks.1.attn1" in result.stdout
    result = run_cli("bench", "--profile", "--json", fixture_path("unet-tiny"), "--rounds", 1)
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    assert {entry["kind"] for entry in profile["kinds"]} == UNET_KINDS
    result = run_cli("bench", "--profile", fixture_path("vae-tiny"), "--rounds", 1)
    assert result.returncode == 0 and "conv2d" in result.stdout, result.stderr
    result = run_cli("bench", "--profile", "--fold", fixture_path("dit-tiny"), "--rounds", 1, "--top", 50)
    assert result.returncode == 0, result.stderr
    assert "transformer_blocks.*.attn1 " in result.stdout and "transformer_blocks.0." not in result.stdout, result.stdout


def test_cli_bench_times_forwards(tmp_path):
    result = run_cli("bench", fixture_path("unet-tiny"), "--rounds", 2)
    assert result.returncode == 0, result.stderr
    assert "median" in result.stdout and "min" in result.stdout
    latent = tmp_path / "latent.npy"
    np.save(latent, nodus.randn((1, 4, 4, 4), seed=0))
    result = run_cli("bench", fixture_path("vae-tiny"), "--input", f"latent={latent}", "--rounds", 1)
    assert result.returncode == 0, result.stderr


def test_cli_bench_errors():
    result = run_cli("bench", fixture_path("dit-tiny"), "--top", 3)
    assert result.returncode == 2 and "--top needs --profile" in result.stderr, result.stderr
    result = run_cli("bench", "--profile", fixture_path("dit-tiny"), "--rounds", 0)
    assert result.returncode == 2 and "--rounds" in result.stderr, result.stderr
    result = run_cli("bench", "--profile", "/nonexistent/model")
    assert result.returncode == 1 and "/nonexistent/model" in result.stderr, result.stderr
