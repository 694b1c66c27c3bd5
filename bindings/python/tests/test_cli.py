"""The `nodus` CLI: each command on the fixtures, and clear failures on bad input."""

import json
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import FIXTURES, REPOSITORY

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")


def run(*arguments):
    return subprocess.run([CLI, *map(str, arguments)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module", autouse=True)
def built():
    if not os.path.exists(CLI):
        pytest.fail(f"{CLI} is missing: run `make build` first")


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def test_every_command_has_help():
    for command in ["", "info", "forward", "sample", "randn", "version"]:
        result = run(*([command] if command else []), "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: nodus" in result.stdout


def test_info_prints_kind_and_config():
    result = run("info", os.path.join(FIXTURES, "dit-tiny"))
    assert result.returncode == 0, result.stderr
    assert "dit" in result.stdout and "num_embeds_ada_norm" in result.stdout


def test_forward_matches_the_reference(tmp_path):
    reference = load_file(os.path.join(FIXTURES, "dit-tiny-forward.safetensors"))
    inputs = tmp_path / "inputs.safetensors"
    save_file({name: reference[name] for name in ["sample", "timestep", "class_labels"]}, str(inputs))
    output = tmp_path / "y.npy"
    result = run("forward", os.path.join(FIXTURES, "dit-tiny"), "--input", inputs, "--output", output)
    assert result.returncode == 0, result.stderr
    error = relative_error(np.load(output), reference["output"])
    assert error < 1e-4, f"CLI forward relative error {error} (bound 1e-4)"


def test_randn_equals_the_torch_fixture(tmp_path):
    with open(os.path.join(FIXTURES, "randn.json")) as file:
        cases = [c for c in json.load(file)["cases"] if len(c["shapes"]) == 1]
    for case in cases:
        shape = case["shapes"][0]
        output = tmp_path / "noise.npy"
        result = run("randn", "--seed", case["seed"], "--shape", ",".join(map(str, shape)), "--output", output)
        assert result.returncode == 0, result.stderr
        expected = np.array(case["values"][0], dtype=np.uint32).view(np.float32).reshape(shape)
        assert np.array_equal(np.load(output), expected), f"seed {case['seed']} shape {shape}"


def test_sample_writes_latent_and_png(tmp_path):
    latent, image = tmp_path / "z.npy", tmp_path / "x.png"
    result = run("sample", os.path.join(FIXTURES, "dit-tiny"), "--scheduler", os.path.join(FIXTURES, "scheduler-ddim"),
                 "--vae", os.path.join(FIXTURES, "vae-tiny"), "--steps", 5, "--class", 3, "--seed", 1,
                 "--npy", latent, "--output", image)
    assert result.returncode == 0, result.stderr
    assert np.load(latent).shape == (1, 4, 8, 8)
    with open(image, "rb") as file:
        header = file.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 16 and int.from_bytes(header[20:24], "big") == 16


@pytest.mark.parametrize("arguments, fragment", [
    (["info", "/nonexistent/model"], "/nonexistent/model"),
    (["forward", "MODEL", "--output", "y.npy"], "--input"),
    (["randn", "--shape", "1,-4", "--output", "x.npy"], "shape"),
    (["sample", "MODEL", "--scheduler", "SCHEDULER", "--npy", "z.npy", "--steps", "ten"], "--steps"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_fails_with_a_message(tmp_path, arguments, fragment):
    places = {"MODEL": os.path.join(FIXTURES, "dit-tiny"), "SCHEDULER": os.path.join(FIXTURES, "scheduler-ddim")}
    arguments = [places.get(a, a) for a in arguments]
    arguments = [str(tmp_path / a) if a.endswith(".npy") else a for a in arguments]
    result = run(*arguments)
    assert result.returncode != 0
    assert fragment in result.stderr, result.stderr
