"""ONNX models through nodus.load("x.onnx"): parity with onnxruntime and torch on
exports of the tiny diffusers models (both exporters, opsets 14-18; fixtures by
tests/reference/make_onnx_fixtures.py), the dynamic batch axis, inputs and
outputs, the CLI, and clear errors for broken files."""

import glob
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import FIXTURES, REPOSITORY, fixture_path

import nodus

EXPORTS = sorted(os.path.basename(path)[: -len("-io.safetensors")]
                 for path in glob.glob(os.path.join(FIXTURES, "onnx", "*-io.safetensors")))


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-30))


def load_export(name):
    model = nodus.load(fixture_path(f"onnx/{name}.onnx"))
    io = load_file(fixture_path(f"onnx/{name}-io.safetensors"))
    inputs = {input_name: io[input_name] for input_name, _, _ in model.inputs}
    outputs = [output_name for output_name, _, _ in model.outputs]
    return model, io, inputs, outputs


def test_every_model_family_and_exporter_has_a_fixture():
    assert len(EXPORTS) >= 8, EXPORTS
    for family in ["dit-tiny", "unet-micro", "vae-micro-decoder", "vae-micro-encoder"]:
        exporters = {name.split("-")[-1].rstrip("0123456789") for name in EXPORTS if name.startswith(family)}
        assert exporters >= {"dynamo", "torchscript"}, (family, EXPORTS)


@pytest.mark.parametrize("name", EXPORTS)
def test_matches_onnxruntime_and_torch(name):
    model, io, inputs, outputs = load_export(name)
    assert model.kind == "onnx"
    result = model.forward(**inputs)
    results = result if isinstance(result, dict) else {outputs[0]: result}
    assert list(results) == outputs
    for output in outputs:
        assert results[output].shape == io[output].shape, output
        ort = relative_error(results[output], io[output])
        torch = relative_error(results[output], io["torch." + output])
        assert ort < 1e-4, f"{name} {output}: {ort:.2e} from onnxruntime"
        assert torch < 1e-4, f"{name} {output}: {torch:.2e} from torch"


@pytest.mark.parametrize("name", [name for name in EXPORTS if "dit" in name or "unet" in name])
def test_dynamic_batch_axis(name):
    model, io, inputs, outputs = load_export(name)
    batch_axes = [shape[0] for _, _, shape in model.inputs]
    assert batch_axes and all(axis is None for axis in batch_axes), model.inputs
    first = model.forward(**{key: value[:1] for key, value in inputs.items()})
    reference = io[outputs[0]][:1]
    assert first.shape == reference.shape
    assert relative_error(first, reference) < 1e-4
    # Back to batch 2: a second plan, and the first still cached.
    assert relative_error(model.forward(**inputs), io[outputs[0]]) < 1e-4


def test_several_outputs_come_back_by_name():
    name = next(name for name in EXPORTS if "encoder" in name)
    model, io, inputs, outputs = load_export(name)
    assert len(outputs) == 2
    result = model.forward(**inputs)
    assert isinstance(result, dict) and set(result) == set(outputs)


def test_inputs_outputs_and_config_describe_the_graph():
    model, io, inputs, outputs = load_export("dit-tiny-dynamo18")
    names = [name for name, _, _ in model.inputs]
    assert set(names) == {"sample", "timestep", "class_labels"}
    dtypes = {name: dtype for name, dtype, _ in model.inputs}
    assert dtypes["sample"] == "float32" and dtypes["class_labels"] == "int64"
    sample_shape = next(shape for name, _, shape in model.inputs if name == "sample")
    assert sample_shape[0] is None and sample_shape[1:] == (4, 8, 8)
    config = model.config
    assert config["_class_name"] == "ONNXModel"
    assert config["opset_import"]["ai.onnx"] == 18
    assert config["op_counts"]["MatMul"] > 0


def test_wrong_inputs_are_clear_errors():
    model, io, inputs, outputs = load_export("dit-tiny-dynamo18")
    with pytest.raises(nodus.NodusError, match="missing input 'class_labels'"):
        model.forward(sample=inputs["sample"], timestep=inputs["timestep"])
    with pytest.raises(nodus.NodusError, match="unknown input 'latent'"):
        model.forward(latent=inputs["sample"], **inputs)
    with pytest.raises(nodus.NodusError, match="input 'sample'"):
        model.forward(**dict(inputs, sample=inputs["sample"][:, :3]))


BROKEN = {
    "truncated.onnx": "",
    "not-onnx.onnx": "",
    "cycle.onnx": "cycle",
    "missing-output.onnx": "output",
    "external-absolute.onnx": "",
    "external-dotdot.onnx": "",
    "short-external.onnx": "",
    "dtype-data-mismatch.onnx": "",
    "inline-2gb.onnx": "",
    "input-initializer-conflict.onnx": "",
    "duplicate-producer.onnx": "",
    "undefined-input.onnx": "",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_are_clear_errors(name):
    path = fixture_path(f"onnx/broken/{name}")
    with pytest.raises(nodus.NodusError) as caught:
        nodus.load(path)
    message = str(caught.value)
    assert "broken" in message or name in message, message
    assert BROKEN[name] in message


@pytest.mark.parametrize("name, words", [
    ("unsupported-op.onnx", ["NonMaxSuppression", "'nms'", "opset 17"]),
    ("custom-domain.onnx", ["FancyGelu", "com.example", "'fancy'"]),
])
def test_unsupported_op_names_the_op_node_and_opset(name, words):
    with pytest.raises(nodus.UnsupportedError) as caught:
        nodus.load(fixture_path(f"onnx/unsupported/{name}"))
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_cli_info_and_forward(tmp_path):
    cli = os.path.join(REPOSITORY, ".build", "release", "nodus")
    path = fixture_path("onnx/vae-micro-encoder-dynamo18.onnx")
    info = subprocess.run([cli, "info", path], capture_output=True, text=True, check=True).stdout
    assert "kind:   onnx" in info and "latent_mean: float32" in info and "InstanceNormalization" in info, info
    io = load_file(fixture_path("onnx/vae-micro-encoder-dynamo18-io.safetensors"))
    save_file({"sample": io["sample"]}, str(tmp_path / "in.safetensors"))
    subprocess.run([cli, "forward", path, "--input", str(tmp_path / "in.safetensors"), "--output",
                    str(tmp_path / "out.safetensors")], capture_output=True, text=True, check=True)
    out = load_file(str(tmp_path / "out.safetensors"))
    assert relative_error(out["latent_mean"], io["latent_mean"]) < 1e-4
    assert relative_error(out["latent_logvar"], io["latent_logvar"]) < 1e-4


@pytest.mark.parametrize("name, fused", [
    ("dit-tiny-dynamo18", {"linear", "attention", "gelu_tanh", "silu", "modulated_layer_norm", "gated_residual",
                           "linear_gelu_tanh", "linear_silu"}),
    ("dit-tiny-torchscript17", {"linear", "attention", "gelu_tanh", "silu", "modulated_layer_norm", "gated_residual",
                                "linear_gelu_tanh", "linear_silu"}),
    ("unet-micro-dynamo18", {"linear", "attention", "geglu", "geglu_projection", "group_norm_silu"}),
    ("unet-micro-torchscript17", {"linear", "attention", "geglu", "geglu_projection", "group_norm_silu"}),
    ("vae-micro-decoder-dynamo18", {"attention", "group_norm_silu"}),
])
def test_exports_run_on_the_fused_kernels(name, fused):
    """The passes raise the exported patterns to the kernels native models use: no N x N attention scores,
    no MatMul by a weight, no elementwise GELU / SiLU chains left."""
    config = nodus.load(fixture_path(f"onnx/{name}.onnx")).config
    assert fused <= set(config["fused"]), config["fused"]
    planned = config["planned_ops"]
    for primitive in ["mat_mul", "softmax", "instance_norm", "erf", "tanh", "sigmoid"]:
        assert primitive not in planned, (primitive, planned)


# ---------------------------------------------------------------- LoRA on exports


@pytest.mark.parametrize("name", ["dit-tiny-dynamo18", "dit-tiny-torchscript17"])
def test_diffusers_lora_on_an_export_matches_diffusers(name):
    """A diffusers/PEFT LoRA applied to the ONNX export of dit-tiny (no re-export) gives diffusers' LoRA output
    (the references of make_lora_fixtures.py), unfused, with weights, fused, and exactly the base after unfuse."""
    reference = load_file(fixture_path("dit-tiny-lora-forward.safetensors"))
    model = nodus.load(fixture_path(f"onnx/{name}.onnx"))
    inputs = {key: reference[key] for key in ["sample", "timestep", "class_labels"]}
    base = model.forward(**inputs)
    assert relative_error(base, reference["base"]) < 1e-4
    report = model.load_lora_weights(fixture_path("dit-tiny-lora-A.safetensors"), adapter_name="A")
    assert len(report["matched"]) == 8 and not report["unmatched"], report
    assert relative_error(model.forward(**inputs), reference["A"]) < 1e-4
    model.load_lora_weights(fixture_path("dit-tiny-lora-B"), adapter_name="B")
    model.set_adapters(["A", "B"], [0.7, 0.5])
    assert relative_error(model.forward(**inputs), reference["AB_07_05"]) < 1e-4
    model.set_adapters(["A"], [4.0])
    assert relative_error(model.forward(**inputs), reference["A_x4"]) < 1e-4
    model.set_adapters(["A"], [1.0])
    model.fuse_lora()
    assert relative_error(model.forward(**inputs), reference["A_fused"]) < 1e-4
    model.unfuse_lora()
    model.disable_lora()
    assert np.array_equal(model.forward(**inputs), base), "unfuse must restore the export's weights exactly"


def test_kohya_lora_on_an_export():
    reference = load_file(fixture_path("dit-tiny-lora-forward.safetensors"))
    model = nodus.load(fixture_path("onnx/dit-tiny-dynamo18.onnx"))
    model.load_lora_weights(fixture_path("dit-tiny-lora-A-kohya.safetensors"), adapter_name="A")
    inputs = {key: reference[key] for key in ["sample", "timestep", "class_labels"]}
    assert relative_error(model.forward(**inputs), reference["A"]) < 1e-4


@pytest.mark.parametrize("name", ["unet-micro-dynamo18", "unet-micro-torchscript17"])
def test_diffusers_lora_on_a_unet_export_matches_diffusers(name):
    """A diffusers LoRA on the UNet export's attention projections (keys `unet.<module>`; the TorchScript
    export names its modules only in node names) gives diffusers' output, unfused and fused."""
    reference = load_file(fixture_path("onnx/unet-micro-lora-A-forward.safetensors"))
    model = nodus.load(fixture_path(f"onnx/{name}.onnx"))
    inputs = {key: reference[key] for key in ["sample", "timestep", "encoder_hidden_states"]}
    base = model.forward(**inputs)
    report = model.load_lora_weights(fixture_path("onnx/unet-micro-lora-A.safetensors"), adapter_name="A")
    assert report["matched"] and not report["unmatched"], report
    moved = relative_error(base, reference["A"])
    assert moved > 1e-3, f"the adapter must change the output ({moved:.1e})"
    assert relative_error(model.forward(**inputs), reference["A"]) < 1e-4
    model.fuse_lora()
    assert relative_error(model.forward(**inputs), reference["A"]) < 1e-4
    model.unfuse_lora()
    model.disable_lora()
    assert np.array_equal(model.forward(**inputs), base)


@pytest.mark.parametrize("name", ["dit-tiny-dynamo18", "unet-micro-torchscript17", "vae-micro-decoder-dynamo18"])
def test_bfloat16_mode_on_an_export(name):
    """dtype="bfloat16" on an export: Linear ([in, out] weights too) and convolution products in bf16, within the
    bf16 bound of onnxruntime's float32 output."""
    model = nodus.load(fixture_path(f"onnx/{name}.onnx"), dtype="bfloat16")
    io = load_file(fixture_path(f"onnx/{name}-io.safetensors"))
    output = model.forward(**{input_name: io[input_name] for input_name, _, _ in model.inputs})
    error = relative_error(output, io[model.outputs[0][0]])
    assert 1e-5 < error < 3e-2, f"bf16 error {error:.1e} (0 would mean bf16 did not run)"


def test_sampling_an_exported_dit_matches_the_native_model():
    """nodus.sample runs an ONNX DiT as the native one: the same class conditioning (the null class read off
    the export's class table), the same 20-step DDIM CFG trajectory."""
    exported = nodus.load(fixture_path("onnx/dit-tiny-dynamo18.onnx"))
    native = nodus.load(fixture_path("dit-tiny"))
    x = nodus.randn((1, 4, 8, 8), seed=0)
    runs = []
    for model in (native, exported):
        scheduler = nodus.Scheduler.from_config(fixture_path("scheduler-ddim"))
        runs.append(nodus.sample(model, scheduler, steps=20, guidance_scale=4.0, init_noise=x, class_labels=[3]))
    assert relative_error(runs[1], runs[0]) < 1e-5


def test_sampling_an_exported_unet_follows_the_guidance_loop():
    """An ONNX UNet in nodus.sample: [uncond, cond] context, e = e_u + g (e_c - e_u), DDIM steps (checked
    against the same loop written here with forward and Scheduler.step)."""
    model = nodus.load(fixture_path("onnx/unet-micro-dynamo18.onnx"))
    context = np.random.default_rng(0).standard_normal((2, 5, 32)).astype(np.float32)
    x = nodus.randn((1, 4, 8, 8), seed=1)
    scheduler = nodus.Scheduler.from_config(fixture_path("scheduler-ddim"))
    sampled = nodus.sample(model, scheduler, steps=5, guidance_scale=7.5, init_noise=x,
                           encoder_hidden_states=(context[:1], context[1:]))
    scheduler = nodus.Scheduler.from_config(fixture_path("scheduler-ddim"))
    scheduler.set_timesteps(5)
    latent = x.copy()
    for t in scheduler.timesteps:
        out = model.forward(sample=np.concatenate([latent, latent]), timestep=np.array([t, t], dtype=np.int64),
                            encoder_hidden_states=context)
        guided = out[:1] + 7.5 * (out[1:] - out[:1])
        latent = scheduler.step(guided, t, latent)
    assert relative_error(sampled, latent) < 1e-5


def test_cli_samples_an_export_as_the_native_model(tmp_path):
    cli = os.path.join(REPOSITORY, ".build", "release", "nodus")
    common = ["--scheduler", fixture_path("scheduler-ddim"), "--class", "3", "--seed", "0", "--steps", "10",
              "--guidance", "4"]
    for model, name in [(fixture_path("onnx/dit-tiny-dynamo18.onnx"), "onnx"), (fixture_path("dit-tiny"), "native")]:
        subprocess.run([cli, "sample", model, *common, "--npy", str(tmp_path / f"{name}.npy")], check=True,
                       capture_output=True, text=True)
    assert relative_error(np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "native.npy")) < 1e-5
