"""Paths (issue 18): a Linux path is bytes and need not be UTF-8, so a model folder named in
Latin-1 loads like any other, through every call that takes a path; and symlinks follow a stated
policy (a model folder's files may link anywhere, as the Hugging Face cache's snapshots do, while
an ONNX file's external data must stay inside its folder)."""

import os
import shutil

import numpy as np
import pytest

import nodus
from conftest import FIXTURES


def fixture(name):
    return os.path.join(FIXTURES, name)


def dit_inputs():
    rng = np.random.default_rng(5)
    return dict(sample=rng.standard_normal((2, 4, 8, 8), dtype=np.float32), timestep=np.array([999, 10]),
                class_labels=np.array([1, 10]))


@pytest.fixture
def latin1(tmp_path):
    """A folder whose name is 'müller' in Latin-1: bytes that are not UTF-8."""
    folder = os.path.join(os.fsencode(tmp_path), b"m\xfcller")
    os.mkdir(folder)
    return folder


def copy(name, folder, as_name=None):
    source = fixture(name)
    target = os.path.join(folder, os.fsencode(as_name or os.path.basename(source)))
    (shutil.copytree if os.path.isdir(source) else shutil.copyfile)(os.fsencode(source), target)
    return target


def test_every_path_taking_call_accepts_a_folder_that_is_not_utf8(latin1):
    x = dit_inputs()
    expected = nodus.load(fixture("dit-tiny")).forward(**x)
    folder = copy("dit-tiny", latin1)
    for path in (folder, os.fsdecode(folder)):  # bytes, and Python's surrogate-escaped str
        assert np.array_equal(nodus.load(path).forward(**x), expected)
    model = nodus.load(folder)
    reference = nodus.load(fixture("dit-tiny"))
    reference.load_lora_weights(fixture("dit-tiny-lora-A.safetensors"), adapter_name="A")
    model.load_lora_weights(copy("dit-tiny-lora-A.safetensors", latin1), adapter_name="A")
    # A file whose own name is not UTF-8.
    model.load_lora_weights(copy("dit-tiny-lora-A.safetensors", latin1, "\udce9t\udce9.safetensors"), adapter_name="B")
    model.set_adapters(["A"])
    assert np.array_equal(model.forward(**x), reference.forward(**x))
    saved = os.path.join(latin1, b"fused-\xe9")
    model.fuse_lora()
    model.save_pretrained(saved)
    assert np.array_equal(nodus.load(saved).forward(**x), model.forward(**x))

    scheduler = nodus.Scheduler.from_config(copy("scheduler-ddim", latin1))
    assert scheduler.class_name == nodus.Scheduler.from_config(fixture("scheduler-ddim")).class_name
    tokenizer = nodus.Tokenizer.from_pretrained(copy("clip-tokenizer", latin1))
    assert tokenizer.vocab_size == nodus.Tokenizer.from_pretrained(fixture("clip-tokenizer")).vocab_size
    pipeline = nodus.Pipeline.from_pretrained(copy("sd-tiny", latin1))
    assert pipeline.unet.kind == "unet"


def test_onnx_files_and_external_data_in_a_folder_that_is_not_utf8(latin1):
    onnx = os.path.join(latin1, b"onnx")
    os.mkdir(onnx)
    model = copy("onnx/vae-micro-encoder-dynamo18-external.onnx", onnx)
    copy("onnx/vae-micro-encoder-dynamo18-external.onnx.data", onnx)
    expected = nodus.load(fixture("onnx/vae-micro-encoder-dynamo18-external.onnx"))
    image = np.random.default_rng(2).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    want = expected.forward_all(**{expected.inputs[0][0]: image})
    got = nodus.load(model).forward_all(**{expected.inputs[0][0]: image})
    assert want.keys() == got.keys() and all(np.array_equal(got[key], want[key]) for key in want)
    # An ONNX file without external data is found by being a file, whatever its name.
    single = copy("onnx/dit-tiny-dynamo18.onnx", latin1, "d\udce9t")
    assert nodus.load(single).kind == "onnx"


def test_a_missing_path_that_is_not_utf8_is_named_with_escapes(latin1):
    with pytest.raises(nodus.NodusError) as caught:
        nodus.load(os.path.join(latin1, b"nowhere\xff"))
    assert "m\\xFCller" in str(caught.value), str(caught.value)
    with pytest.raises(nodus.NodusError, match=r"m\\xFCller"):
        nodus.load(os.path.join(latin1, b"missing", b"model"))


def test_symlinks_in_a_model_folder_may_lead_anywhere_as_in_the_hub_cache(tmp_path):
    # The Hugging Face cache's layout: snapshots/<rev>/ holds links into blobs/.
    blobs = tmp_path / "blobs"
    snapshot = tmp_path / "snapshots" / "abc123"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    for name in os.listdir(fixture("dit-tiny")):
        shutil.copyfile(os.path.join(fixture("dit-tiny"), name), blobs / name)
        os.symlink(os.path.join("..", "..", "blobs", name), snapshot / name)
    x = dit_inputs()
    assert np.array_equal(nodus.load(str(snapshot)).forward(**x), nodus.load(fixture("dit-tiny")).forward(**x))
    # A link to something that is not a regular file is refused at once.
    weights = snapshot / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    os.symlink("/dev/zero", weights)
    with pytest.raises(nodus.NodusError, match="not a regular file"):
        nodus.load(str(snapshot))


def test_onnx_external_data_may_not_leave_the_model_folder(tmp_path):
    outside = tmp_path / "outside"
    inside = tmp_path / "model"
    outside.mkdir()
    inside.mkdir()
    shutil.copyfile(fixture("onnx/vae-micro-encoder-dynamo18-external.onnx"), inside / "m.onnx")
    shutil.copyfile(fixture("onnx/vae-micro-encoder-dynamo18-external.onnx.data"), outside / "data")
    os.symlink(outside / "data", inside / "vae-micro-encoder-dynamo18-external.onnx.data")
    with pytest.raises(nodus.NodusError, match="outside the model's folder"):
        nodus.load(str(inside / "m.onnx"))
