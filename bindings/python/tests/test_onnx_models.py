"""The next model families through nodus.load("x.onnx"): transformers' CLIPTextModel, a
MedSyn2-style 3D DiT (Conv3d patchify, gated self- and cross-attention, depthwise Conv3d), and
MONAI's 3D DiffusionModelUNet and AutoencoderKL decoder, exported by both torch.onnx exporters
(fixtures in Tests/Fixtures/onnx/models, made by tests/reference/make_onnx_fixtures.py).

Every export is compared with onnxruntime's outputs and torch's (the -io.safetensors file), at
batch 2 and at (dynamic) batch 1. A failure names the export, the step (load, forward, output),
the error or the error's size, and the graph's op counts."""

import glob
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import FIXTURES, fixture_path

import nodus

TOLERANCE = 1e-4
FOLDER = "onnx/models"
EXPORTS = sorted(os.path.basename(path)[: -len("-io.safetensors")]
                 for path in glob.glob(os.path.join(FIXTURES, FOLDER, "*-io.safetensors")))

# (export, the graph's inputs as (name, dtype)): what make_onnx_fixtures.py writes.
EXPECTED = {
    "clip-text-tiny-dynamo18": [("input_ids", "int64")],
    "clip-text-tiny-torchscript17": [("input_ids", "int64")],
    "dit3d-tiny-dynamo18": [("sample", "float32"), ("timestep", "float32"), ("encoder_hidden_states", "float32")],
    "dit3d-tiny-torchscript17": [("sample", "float32"), ("timestep", "float32"),
                                 ("encoder_hidden_states", "float32")],
    "monai-unet3d-tiny-dynamo18": [("sample", "float32"), ("timestep", "int64"), ("encoder_hidden_states", "float32")],
    "monai-vae3d-tiny-decoder-dynamo18": [("latent_sample", "float32")],
}


def relative_error(ours, reference):
    ours = np.asarray(ours, np.float64)
    reference = np.asarray(reference, np.float64)
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-30))


def describe(model):
    """The graph's op counts (from the importer), for failure messages."""
    try:
        counts = model.config.get("op_counts", {})
    except Exception as error:  # noqa: BLE001  (a message helper: never hides the real failure)
        return f"(no op counts: {error})"
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))


def load_export(name):
    path = fixture_path(f"{FOLDER}/{name}.onnx")
    io = load_file(fixture_path(f"{FOLDER}/{name}-io.safetensors"))
    try:
        model = nodus.load(path)
    except Exception as error:  # noqa: BLE001  (reported with the export's name, below)
        failure = f"{name}: nodus.load failed: {type(error).__name__}: {error}"
    else:
        failure = None
    if failure:
        pytest.fail(failure, pytrace=False)
    inputs = {input_name: io[input_name] for input_name, _, _ in model.inputs}
    outputs = [output_name for output_name, _, _ in model.outputs]
    return model, io, inputs, outputs


def run(name, model, inputs, outputs, what):
    try:
        result = model.forward(**inputs)
    except Exception as error:  # noqa: BLE001  (reported with the export's name and ops, below)
        failure = f"{name}: forward ({what}) failed: {type(error).__name__}: {error}\n  ops: {describe(model)}"
    else:
        failure = None
    if failure:
        pytest.fail(failure, pytrace=False)
    return result if isinstance(result, dict) else {outputs[0]: result}


def compare(name, model, results, expected, outputs, what):
    """Every output against onnxruntime's and torch's; one message for all of them."""
    assert list(results) == outputs, f"{name} ({what}): outputs {list(results)}, the graph's are {outputs}"
    problems, summary = [], []
    for output in outputs:
        ours, ort, torch = results[output], expected[output], expected["torch." + output]
        if ours.shape != ort.shape:
            problems.append(f"{output}: shape {ours.shape}, onnxruntime's {ort.shape}")
            continue
        if not np.all(np.isfinite(ours)):
            problems.append(f"{output}: {int(np.sum(~np.isfinite(ours)))} of {ours.size} values not finite")
            continue
        versus_ort, versus_torch = relative_error(ours, ort), relative_error(ours, torch)
        worst = np.unravel_index(int(np.argmax(np.abs(ours.astype(np.float64) - ort))), ours.shape)
        line = (f"{output} {tuple(ours.shape)}: {versus_ort:.2e} from onnxruntime, {versus_torch:.2e} from torch "
                f"(worst at {tuple(int(i) for i in worst)}: {float(ours[worst]):.6g} vs {float(ort[worst]):.6g})")
        summary.append(line)
        if versus_ort >= TOLERANCE or versus_torch >= TOLERANCE:
            problems.append(line)
    assert not problems, (f"{name} ({what}): " + "; ".join(problems)
                          + "\n  all outputs: " + "; ".join(summary) + f"\n  ops: {describe(model)}")


def test_every_next_model_has_its_fixtures():
    assert sorted(EXPECTED) == EXPORTS, f"expected {sorted(EXPECTED)}, found {EXPORTS}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inputs_and_outputs_describe_the_graph(name):
    model, io, inputs, outputs = load_export(name)
    assert model.kind == "onnx"
    assert [(input_name, dtype) for input_name, dtype, _ in model.inputs] == EXPECTED[name], model.inputs
    for input_name, _, shape in model.inputs:
        assert shape[0] is None, f"{name}: input {input_name} has a fixed batch axis: {shape}"
        assert tuple(shape[1:]) == io[input_name].shape[1:], (input_name, shape, io[input_name].shape)
    assert outputs and all(output in io and "torch." + output in io for output in outputs), (outputs, sorted(io))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_matches_onnxruntime_and_torch(name):
    model, io, inputs, outputs = load_export(name)
    results = run(name, model, inputs, outputs, "batch 2")
    compare(name, model, results, io, outputs, "batch 2")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dynamic_batch_axis(name):
    """Batch 1 from the batch-2 fixture (rows are independent), then batch 2 again."""
    model, io, inputs, outputs = load_export(name)
    results = run(name, model, {key: value[:1] for key, value in inputs.items()}, outputs, "batch 1")
    first = {key: value[:1] for key, value in io.items() if key not in inputs}
    compare(name, model, results, first, outputs, "batch 1")
    results = run(name, model, inputs, outputs, "batch 2 after batch 1")
    compare(name, model, results, io, outputs, "batch 2 after batch 1")


# The 3D DiT normalises q and k (RMSNorm over each head) between the head split and q kᵀ: the fusion
# takes the norm before the split, so its attention runs on the streaming kernel too.
@pytest.mark.parametrize("name", [name for name in sorted(EXPECTED) if "3d" in name])
def test_3d_attention_runs_on_the_streaming_kernel(name):
    """3D models have very long token sequences: their attention must be raised to the fused kernel
    (no N x N scores, no Softmax primitive left in the plan)."""
    model, io, inputs, outputs = load_export(name)
    run(name, model, inputs, outputs, "batch 2")
    config = model.config
    fused = set(config.get("fused", []))
    planned = config.get("planned_ops", {})
    assert "attention" in fused and "softmax" not in planned, (
        f"{name}: fused {sorted(fused)}; planned primitives {planned}")
