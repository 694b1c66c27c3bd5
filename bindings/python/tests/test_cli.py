"""The `nodus` CLI: each command on the fixtures, and clear failures on bad input."""

import json
import os
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import nodus
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
    for command in ["", "info", "forward", "sample", "generate", "randn", "version", "encode"]:
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


def test_sample_unet_ensemble_matches_the_reference(tmp_path):
    """nodus sample on a UNet: a context file (uncond, cond), K samples in one batch, statistics maps."""
    reference = load_file(os.path.join(FIXTURES, "unet-tiny-sample-ddim.safetensors"))
    states = reference["encoder_hidden_states"]
    save_file({"uncond": states[:1], "cond": states[1:]}, str(tmp_path / "context.safetensors"))
    result = run("sample", os.path.join(FIXTURES, "unet-tiny"), "--scheduler", os.path.join(FIXTURES, "scheduler-ddim"),
                 "--context", tmp_path / "context.safetensors", "--steps", 5, "--guidance", 7.5, "--samples", 3,
                 "--seed", 7, "--npy", tmp_path / "latent.npy", "--stats", tmp_path / "maps")
    assert result.returncode == 0, result.stderr
    latent = np.load(tmp_path / "latent.npy")
    assert latent.shape == (3, 4, 8, 8)
    model = nodus.load(os.path.join(FIXTURES, "unet-tiny"))
    scheduler = nodus.Scheduler.from_config(os.path.join(FIXTURES, "scheduler-ddim"))
    expected = nodus.sample(model, scheduler, steps=5, guidance_scale=7.5, init_noise=nodus.randn((3, 4, 8, 8), seed=7),
                            encoder_hidden_states=(states[:1], states[1:]))
    np.testing.assert_array_equal(latent, expected)
    np.testing.assert_allclose(np.load(tmp_path / "maps-mean.npy"), latent.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "maps-variance.npy"), latent.astype(np.float64).var(0, ddof=1),
                               rtol=1e-5, atol=1e-6)
    missing = run("sample", os.path.join(FIXTURES, "unet-tiny"), "--scheduler", os.path.join(FIXTURES, "scheduler-ddim"), "--npy", tmp_path / "x.npy")
    assert missing.returncode != 0 and "--context" in missing.stderr


def test_sample_decodes_tiled(tmp_path):
    image = tmp_path / "x.png"
    result = run("sample", os.path.join(FIXTURES, "dit-tiny"), "--scheduler", os.path.join(FIXTURES, "scheduler-ddim"),
                 "--vae", os.path.join(FIXTURES, "vae-tiny"), "--steps", 2, "--tile-size", 8, "--output", image)
    assert result.returncode == 0, result.stderr
    assert image.exists()


def test_encode_matches_the_reference(tmp_path):
    reference = load_file(os.path.join(FIXTURES, "vae-tiny-encode.safetensors"))
    tiled = load_file(os.path.join(FIXTURES, "vae-tiny-tiled.safetensors"))
    vae = os.path.join(FIXTURES, "vae-tiny")
    image = tmp_path / "image.npy"
    np.save(image, reference["image"])
    scaling = 0.18215
    cases = [
        (["--input", image, "--seed", 7100], reference["latent"], "sample"),
        (["--input", image, "--mode"], reference["latent_mode"], "mode"),
        (["--input", os.path.join(FIXTURES, "vae-tiny-tiled.safetensors"), "--tensor", "tiled_image", "--mode",
          "--tiled", "--tile-size", 16], tiled["tiled_mean"] * np.float32(scaling), "tiled mode"),
    ]
    for arguments, expected, label in cases:
        output = tmp_path / "latent.safetensors"
        result = run("encode", vae, *arguments, "--output", output)
        assert result.returncode == 0, result.stderr
        error = relative_error(load_file(str(output))["latent"], expected)
        assert error < 1e-4, f"CLI encode ({label}) relative error {error} (bound 1e-4)"


@pytest.mark.parametrize("arguments, fragment", [
    (["encode", "VAE", "--input", "IMAGE17", "--output", "z.npy"], "multiples of 2"),
    (["encode", "VAE", "--input", "IMAGE17", "--tensor", "image", "--output", "z.npy"], "--tensor"),
    (["encode", "VAE", "--input", "IMAGE17", "--output", "z.npy", "--tile-size", 12], "multiple of 8"),
    (["encode", "VAE", "--input", "IMAGE17", "--output", "z.npy", "--mode", "--seed", 1], "--mode"),
    (["encode", "VAE", "--input", os.path.join(FIXTURES, "dit-tiny-forward.safetensors"), "--output", "z.npy"],
     "no tensor 'image'"),
    (["sample", "MODEL", "--scheduler", "SCHEDULER", "--npy", "z.npy", "--tiled"], "--vae"),
    (["info", "/nonexistent/model"], "/nonexistent/model"),
    (["forward", "MODEL", "--output", "y.npy"], "--input"),
    (["randn", "--shape", "1,-4", "--output", "x.npy"], "shape"),
    (["sample", "MODEL", "--scheduler", "SCHEDULER", "--npy", "z.npy", "--steps", "ten"], "--steps"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_fails_with_a_message(tmp_path, arguments, fragment):
    image = tmp_path / "image17.npy"
    np.save(image, np.zeros((1, 3, 17, 16), np.float32))
    places = {"MODEL": os.path.join(FIXTURES, "dit-tiny"), "SCHEDULER": os.path.join(FIXTURES, "scheduler-ddim"),
              "VAE": os.path.join(FIXTURES, "vae-tiny"), "IMAGE17": str(image)}
    arguments = [places.get(a, a) for a in map(str, arguments)]
    arguments = [str(tmp_path / a) if a.endswith(".npy") else a for a in arguments]
    result = run(*arguments)
    assert result.returncode != 0
    assert fragment in result.stderr, result.stderr


# -- nodus lora ---------------------------------------------------------------

LORA_A = os.path.join(FIXTURES, "dit-tiny-lora-A.safetensors")
LORA_A_KOHYA = os.path.join(FIXTURES, "dit-tiny-lora-A-kohya.safetensors")
LORA_B = os.path.join(FIXTURES, "dit-tiny-lora-B")


def lora_json(*arguments):
    result = run("lora", *arguments, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dense_updates(weights_path, prefix, config):
    """dW = scale * B @ A per module (float64), the module named from the tensor keys; the
    scale is lora_alpha / r of the PEFT LoraConfig, rank_pattern and alpha_pattern applied."""
    tensors = load_file(weights_path)

    def pattern(patterns, module, default):
        return next((v for k, v in patterns.items() if module == k or module.endswith("." + k)), default)

    updates = {}
    for key in tensors:
        if key.endswith(".lora_A.weight"):
            module = key[len(prefix):-len(".lora_A.weight")]
            down = tensors[key].astype(np.float64)
            up = tensors[key.replace(".lora_A.", ".lora_B.")].astype(np.float64)
            rank = pattern(config["rank_pattern"], module, config["r"])
            alpha = pattern(config["alpha_pattern"], module, config["lora_alpha"])
            assert down.shape[0] == rank, f"{key}: rank {down.shape[0]}, config says {rank}"
            updates[module] = alpha / rank * up @ down
    return updates


def updates_of_a():
    from safetensors import safe_open
    with safe_open(LORA_A, "np") as file:
        metadata = json.loads(file.metadata()["lora_adapter_metadata"])
    config = {k[len("transformer."):]: v for k, v in metadata.items() if k.startswith("transformer.")}
    return dense_updates(LORA_A, "transformer.", config)


def updates_of_b():
    with open(os.path.join(LORA_B, "adapter_config.json")) as file:
        config = json.load(file)
    return dense_updates(os.path.join(LORA_B, "adapter_model.safetensors"), "base_model.model.", config)


def assert_relative(ours, expected, what, bound=1e-6):
    assert abs(ours - expected) <= bound * max(abs(expected), 1e-12), f"{what}: {ours} vs numpy {expected} (bound {bound} relative)"


def test_lora_subcommands_have_help():
    listing = run("lora", "--help")
    assert listing.returncode == 0, listing.stderr
    assert all(name in listing.stdout for name in ["inspect", "compare", "merge"]), listing.stdout
    for name in ["inspect", "compare", "merge"]:
        result = run("lora", name, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: nodus lora {name} " in result.stdout, result.stdout


def test_lora_inspect_diffusers_file():
    report = lora_json("inspect", LORA_A)
    assert report["format"] == "peft" and report["layers"] == 8, report
    assert report["ranks"] == [4] and report["alphas"] == [8] and report["scales"] == [2], report
    assert report["targets"] == {"to_q": 2, "to_k": 2, "to_v": 2, "to_out.0": 2}, report["targets"]
    assert report["parameters"] == 8 * (4 * 32 + 32 * 4) and report["bytes"] == 4 * report["parameters"], report
    norms = {name: np.linalg.norm(update) for name, update in updates_of_a().items()}
    for layer in report["modules"]:
        assert_relative(layer["norm"], norms[layer["module"]], f"norm of {layer['module']}")
    assert_relative(report["norm"]["median"], float(np.median(list(norms.values()))), "median norm")
    text = run("lora", "inspect", LORA_A, "--verbose")
    assert text.returncode == 0 and "to_out.0 (2)" in text.stdout and "transformer_blocks.1.attn1.to_v" in text.stdout


def test_lora_inspect_kohya_file_equals_a():
    kohya, peft = lora_json("inspect", LORA_A_KOHYA), lora_json("inspect", LORA_A)
    assert kohya["format"] == "kohya" and kohya["layers"] == 8 and kohya["ranks"] == [4] and kohya["scales"] == [2], kohya
    assert kohya["targets"] == peft["targets"], kohya["targets"]
    assert sorted(m["norm"] for m in kohya["modules"]) == pytest.approx(sorted(m["norm"] for m in peft["modules"]), rel=1e-6)


def test_lora_inspect_peft_folder():
    report = lora_json("inspect", LORA_B)
    assert report["format"] == "peft" and report["layers"] == 8, report
    assert report["ranks"] == [2, 4] and report["scales"] == [0.75, 1.5, 3], report
    assert report["targets"] == {"to_q": 2, "to_v": 2, "ff.net.0.proj": 2, "ff.net.2": 2}, report["targets"]
    norms = {name: np.linalg.norm(update) for name, update in updates_of_b().items()}
    for layer in report["modules"]:
        assert_relative(layer["norm"], norms[layer["module"]], f"norm of {layer['module']}")


def test_lora_compare_matches_numpy():
    rows = lora_json("compare", LORA_A, LORA_B, "--model", os.path.join(FIXTURES, "dit-tiny"))
    a, b = updates_of_a(), updates_of_b()
    assert {row["module"] for row in rows} == set(a) | set(b), [row["module"] for row in rows]
    for row in rows:
        module = row["module"]
        shape = (a.get(module) if module in a else b[module]).shape
        da, db = a.get(module, np.zeros(shape)), b.get(module, np.zeros(shape))
        norm_a, norm_b = np.linalg.norm(da), np.linalg.norm(db)
        cosine = float(np.sum(da * db) / (norm_a * norm_b)) if norm_a > 0 and norm_b > 0 else 0.0
        assert_relative(row["interference"], np.linalg.norm(da @ db.T), f"interference of {module}")
        assert_relative(row["cosine"], cosine, f"cosine of {module}")
        assert_relative(row["norm_a"], norm_a, f"norm A of {module}")
        assert_relative(row["norm_b"], norm_b, f"norm B of {module}")
    table = run("lora", "compare", LORA_A, LORA_B, "--model", os.path.join(FIXTURES, "dit-tiny"))
    assert table.returncode == 0, table.stderr
    worst = max(rows, key=lambda row: row["interference"])["module"]
    assert f"largest interference: {worst}" in table.stdout and "4 by both" in table.stdout, table.stdout


def test_lora_merge_equals_unfused_a_at_half(tmp_path):
    import nodus

    output = tmp_path / "merged"
    result = run("lora", "merge", os.path.join(FIXTURES, "dit-tiny"), "--lora", f"{LORA_A}:0.5", "--output", output)
    assert result.returncode == 0, result.stderr
    assert "lora0" in result.stdout and "8 matched, 0 unmatched" in result.stdout, result.stdout
    reference = load_file(os.path.join(FIXTURES, "dit-tiny-lora-forward.safetensors"))
    inputs = {name: reference[name] for name in ["sample", "timestep", "class_labels"]}
    with nodus.load(str(output)) as merged:
        ours = merged.forward(**inputs)
    with nodus.load(os.path.join(FIXTURES, "dit-tiny")) as model:
        model.load_lora_weights(LORA_A, "A")
        model.set_adapters(["A"], [0.5])
        unfused = model.forward(**inputs)
    assert not np.allclose(ours, reference["base"], atol=1e-4), "the merged model equals the base model"
    error = relative_error(ours, unfused)
    assert error < 1e-5, f"merged vs unfused A at 0.5: relative error {error} (bound 1e-5)"


@pytest.mark.parametrize("arguments, fragment", [
    (["lora", "inspect", "/nonexistent/lora.safetensors"], "/nonexistent/lora.safetensors"),
    (["lora", "inspect", "MODEL/diffusion_pytorch_model.safetensors"], "not a LoRA"),
    (["lora", "compare", "A", "/nonexistent/b.safetensors", "--model", "MODEL"], "/nonexistent/b.safetensors"),
    (["lora", "merge", "MODEL", "--lora", "BAD", "--output", "OUT"], "transformer_blocks.0.attn1"),
    (["lora", "merge", "MODEL", "--lora", "A", "--output", "MODEL"], "own folder"),
    (["lora", "frobnicate"], "frobnicate"),
])
def test_lora_bad_input_fails_with_a_message(tmp_path, arguments, fragment):
    misfit = {key: (np.full((4, 48), 0.01, np.float32) if ".lora_A." in key else value)
              for key, value in load_file(LORA_A).items()}
    save_file(misfit, str(tmp_path / "misfit.safetensors"))
    places = {"MODEL": os.path.join(FIXTURES, "dit-tiny"), "A": LORA_A, "BAD": str(tmp_path / "misfit.safetensors"),
              "OUT": str(tmp_path / "out")}
    arguments = [places.get(a, a.replace("MODEL", places["MODEL"])) for a in arguments]
    result = run(*arguments)
    assert result.returncode != 0
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Fatal error" not in result.stderr
    assert not os.path.exists(tmp_path / "out"), "a failed merge wrote its output"


def test_generate_matches_the_pipeline_and_diffusers(tmp_path):
    """`nodus generate` on the tiny pipeline: the Euler-ancestral case of make_pipeline_fixtures.py
    (swapped by class name), latents against diffusers, and PNG files for each image."""
    folder = os.path.join(FIXTURES, "sd-tiny")
    latents = tmp_path / "latents.npy"
    common = [folder, "--prompt", "a chest x-ray", "--negative-prompt", "blurry", "--steps", "8",
              "--guidance", "5.0", "--seed", "42", "--images", "2", "--scheduler", "EulerAncestralDiscreteScheduler"]
    result = run("generate", *common, "--npy", latents)
    assert result.returncode == 0, result.stderr
    expected = load_file(os.path.join(FIXTURES, "sd-tiny-references.safetensors"))["euler_ancestral.latents"]
    assert relative_error(np.load(latents), expected) < 1e-3
    result = run("generate", *common, "--output", tmp_path / "image.png")
    assert result.returncode == 0, result.stderr
    for index in range(2):
        assert (tmp_path / f"image-{index}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate_bad_input(tmp_path):
    folder = os.path.join(FIXTURES, "sd-tiny")
    for arguments, message in [
        (["--prompt", "x", "--size", "20", "--output", tmp_path / "a.png"], "multiples of 8"),
        (["--prompt", "x", "--scheduler", "NoSuchScheduler", "--output", tmp_path / "a.png"], "NoSuchScheduler"),
        (["--prompt", "x", "--lora", tmp_path / "missing.safetensors", "--output", tmp_path / "a.png"], "missing"),
        (["--prompt", "x"], "--output"),
        (["--output", tmp_path / "a.png"], "--prompt"),
    ]:
        result = run("generate", folder, *arguments)
        assert result.returncode != 0 and message in result.stderr, (arguments, result.stderr)


def test_generate_inpainting_from_npy_files(tmp_path):
    """`nodus generate --image --mask --strength`: the 9-channel inpainting case of make_pipeline_fixtures.py."""
    references = load_file(os.path.join(FIXTURES, "sd-tiny-references.safetensors"))
    np.save(tmp_path / "image.npy", references["img2img.image"][0])
    np.save(tmp_path / "mask.npy", references["inpaint.mask"][0])
    latents = tmp_path / "latents.npy"
    result = run("generate", os.path.join(FIXTURES, "sd-tiny-inpaint"), "--prompt", "a chest x-ray", "--steps", "8",
                 "--guidance", "5.0", "--seed", "13", "--images", "2", "--scheduler", "EulerAncestralDiscreteScheduler",
                 "--image", tmp_path / "image.npy", "--mask", tmp_path / "mask.npy", "--strength", "1", "--npy", latents)
    assert result.returncode == 0, result.stderr
    assert relative_error(np.load(latents), references["inpaint9.latents"]) < 1e-3
    result = run("generate", os.path.join(FIXTURES, "sd-tiny"), "--prompt", "x", "--mask", tmp_path / "mask.npy",
                 "--npy", latents)
    assert result.returncode != 0 and "--mask needs --image" in result.stderr
