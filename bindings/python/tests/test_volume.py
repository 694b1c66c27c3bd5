"""3D generation (MedSyn2-style): the native MedSyn2Transformer3DModel and its ONNX exports against
torch and onnxruntime, PEFT LoRA on both, the x-prediction rectified-flow CFG loop (Euler and Heun,
MONAI's voxel-count shift) against a torch loop, and MONAI-style sliding-window decoding and
encoding of a 3D VAE export against monai's SlidingWindowInferer. Fixtures in Tests/Fixtures/volume,
made by tests/reference/make_volume_fixtures.py."""

import json

import numpy as np
import pytest
from safetensors import safe_open

import nodus
from references import assert_close, fixture_path, load_ref

FORWARD_TOL = 1e-4
SAMPLE_TOL = 1e-3
FOLDER = "volume"
EXPORTS = ["medsyn2-tiny-dynamo18", "medsyn2-tiny-torchscript17"]
FORWARD_INPUTS = ("sample", "timestep", "encoder_hidden_states")


def path(name):
    return str(fixture_path(f"{FOLDER}/{name}"))


@pytest.fixture(scope="module")
def native():
    return nodus.load(path("medsyn2-tiny"))


@pytest.fixture(scope="module")
def forward_reference():
    return load_ref(f"{FOLDER}/medsyn2-tiny-forward.safetensors")


def test_native_model_kind_and_signature(native):
    assert native.kind == "dit3d"
    assert native.inputs == [("sample", "float32", (None, 5, None, None, None)), ("timestep", "float32", (None,)),
                             ("encoder_hidden_states", "float32", (None, None, 16))]


@pytest.mark.parametrize("suffix", ["", ".2"])
def test_native_forward_matches_torch(native, forward_reference, suffix):
    inputs = {name: forward_reference[name + suffix] for name in FORWARD_INPUTS}
    assert_close(native.forward(**inputs), forward_reference["sample_out" + suffix], FORWARD_TOL,
                 f"medsyn2-tiny forward, shape {inputs['sample'].shape}")


@pytest.mark.parametrize("export", EXPORTS)
def test_onnx_export_matches_onnxruntime_and_torch(export):
    io = load_ref(f"{FOLDER}/{export}-io.safetensors")
    model = nodus.load(path(f"{export}.onnx"))
    inputs = {name: io[name] for name in FORWARD_INPUTS}
    ours = model.forward(**inputs)
    assert_close(ours, io["sample_out"], FORWARD_TOL, f"{export} against onnxruntime")
    assert_close(ours, io["torch.sample_out"], FORWARD_TOL, f"{export} against torch")
    single = model.forward(**{name: value[:1] for name, value in inputs.items()})
    assert_close(single, io["torch.sample_out"][:1], FORWARD_TOL, f"{export} at batch 1 (dynamic axis)")


@pytest.mark.parametrize("source", ["medsyn2-tiny-rope", "medsyn2-tiny-rope-dynamo18.onnx"])
def test_3d_rope_matches_torch(source):
    reference = load_ref(f"{FOLDER}/medsyn2-tiny-rope-forward.safetensors")
    model = nodus.load(path(source))
    output = model.forward(**{name: reference[name] for name in FORWARD_INPUTS})
    assert_close(output, reference["sample_out"], FORWARD_TOL, f"{source} (3D RoPE) forward")


def test_rope_export_runs_every_attention_on_the_streaming_kernel():
    """q and k rotated in their head layout are moved back to tokens: no N x N score matrix."""
    import subprocess

    from conftest import REPOSITORY
    cli = f"{REPOSITORY}/.build/release/nodus"
    info = json.loads(subprocess.run([cli, "info", "--json", path("medsyn2-tiny-rope-dynamo18.onnx")], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["fused"]["attention"] == 4, info["fused"]
    assert "mat_mul" not in info["planned_ops"], info["planned_ops"]


@pytest.mark.parametrize("source", ["medsyn2-tiny", "medsyn2-tiny-dynamo18.onnx", "medsyn2-tiny-torchscript17.onnx"])
def test_peft_lora_unfused_and_fused(source):
    reference = load_ref(f"{FOLDER}/medsyn2-tiny-lora-forward.safetensors")
    inputs = {name: reference[name] for name in FORWARD_INPUTS}
    model = nodus.load(path(source))
    plain = model.forward(**inputs)
    report = model.load_lora_weights(path("medsyn2-tiny-lora.safetensors"), adapter_name="A")
    assert (len(report["matched"]), report["unmatched"]) == (22, []), report
    model.set_adapters(["A"], [1.0])
    assert_close(model.forward(**inputs), reference["lora_output"], FORWARD_TOL, f"{source} with LoRA A, unfused")
    model.fuse_lora()
    assert_close(model.forward(**inputs), reference["lora_output"], FORWARD_TOL, f"{source} with LoRA A, fused")
    model.unfuse_lora()
    model.disable_lora()
    assert_close(model.forward(**inputs), plain, 1e-6, f"{source} after unfuse and disable")


def run_sample(model, solver, reference, **overrides):
    scheduler = nodus.Scheduler.from_config(path(f"medsyn2-scheduler-{solver}"))
    null = np.broadcast_to(reference["null_text"], reference["encoder_hidden_states"].shape)
    mask = reference["mask_latent"]
    arguments = dict(steps=10, guidance_scale=3.0, init_noise=reference["init_noise"],
                     encoder_hidden_states=(null, reference["encoder_hidden_states"]),
                     conditioning=np.concatenate([np.zeros_like(mask), mask]), return_trajectory=True)
    arguments.update(overrides)
    return nodus.sample(model, scheduler, **arguments)


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("source", ["medsyn2-tiny", "medsyn2-tiny-dynamo18.onnx"])
def test_x_prediction_flow_cfg_matches_torch_loop(solver, source):
    reference = load_ref(f"{FOLDER}/medsyn2-tiny-sample-{solver}.safetensors")
    final, trajectory = run_sample(nodus.load(path(source)), solver, reference)
    assert trajectory.shape == reference["trajectory"].shape
    assert_close(trajectory, reference["trajectory"], SAMPLE_TOL, f"{source} {solver} trajectory")
    assert_close(final, reference["final"], SAMPLE_TOL, f"{source} {solver} final latent")


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_voxel_count_shift_gives_the_reference_timesteps(solver):
    reference = load_ref(f"{FOLDER}/medsyn2-tiny-sample-{solver}.safetensors")
    scheduler = nodus.Scheduler.from_config(path(f"medsyn2-scheduler-{solver}"))
    scheduler.set_timesteps(10, input_img_size_numel=4 * 6 * 8)
    np.testing.assert_array_equal(scheduler.timesteps, reference["timesteps"])
    assert scheduler.order == (2 if solver == "heun" else 1)
    with pytest.raises(nodus.NodusError, match="input_img_size_numel"):
        scheduler.set_timesteps(10)
    # A larger volume spends more of the schedule at high noise.
    scheduler.set_timesteps(10, input_img_size_numel=8 * 4 * 6 * 8)
    assert scheduler.timesteps[1] > reference["timesteps"][1]


def test_sample_refuses_bad_volume_inputs(native):
    reference = load_ref(f"{FOLDER}/medsyn2-tiny-sample-euler.safetensors")
    with pytest.raises((ValueError, nodus.NodusError), match="conditioning"):
        run_sample(native, "euler", reference, conditioning=reference["mask_latent"][:, :, :2])
    noise = reference["init_noise"].copy()
    noise[0, 0, 0, 0, 0] = np.nan
    with pytest.raises((ValueError, nodus.NodusError), match="NaN|finite"):
        run_sample(native, "euler", reference, init_noise=noise)
    with pytest.raises((ValueError, nodus.NodusError), match="init_noise"):
        run_sample(native, "euler", reference, init_noise=reference["init_noise"][0])


def sliding_window_settings():
    with safe_open(str(fixture_path(f"{FOLDER}/monai-vae3d-sliding-window.safetensors")), "np") as file:
        return json.loads(file.metadata()["settings"])


@pytest.mark.parametrize("name", ["decoded_overlap25", "decoded_overlap50"])
def test_sliding_window_decode_matches_monai(name):
    reference = load_ref(f"{FOLDER}/monai-vae3d-sliding-window.safetensors")
    settings = sliding_window_settings()[name]
    decoder = nodus.load(path("monai-vae3d-tiny-decoder-dynamo18.onnx"))
    windows = []
    decoded = decoder.forward_windowed(reference["latent"], settings["roi_size"], overlap=settings["overlap"],
                                       callback=lambda done, total: windows.append((done, total)))
    assert_close(decoded, reference[name], FORWARD_TOL, f"sliding-window decode, {settings}")
    assert windows[-1][0] == windows[-1][1] > 1


def test_sliding_window_encode_matches_monai():
    reference = load_ref(f"{FOLDER}/monai-vae3d-sliding-window.safetensors")
    settings = sliding_window_settings()["encoded_mean"]
    encoder = nodus.load(path("monai-vae3d-tiny-encoder-dynamo18.onnx"))
    mean = encoder.forward_windowed(reference["image"], settings["roi_size"], overlap=settings["overlap"], output="z_mu")
    assert_close(mean, reference["encoded_mean"], FORWARD_TOL, "sliding-window encode (z_mu)")


def test_sliding_window_clamps_a_window_larger_than_the_volume():
    decoder = nodus.load(path("monai-vae3d-tiny-decoder-dynamo18.onnx"))
    latent = load_ref(f"{FOLDER}/monai-vae3d-sliding-window.safetensors")["latent"][:, :, :4, :4, :4]
    whole = decoder.forward(latent_sample=latent)
    assert_close(decoder.forward_windowed(latent, (16, 16, 16)), whole, 1e-6, "one window spanning the volume")


def test_sliding_window_bad_input_is_a_clear_error():
    decoder = nodus.load(path("monai-vae3d-tiny-decoder-dynamo18.onnx"))
    latent = load_ref(f"{FOLDER}/monai-vae3d-sliding-window.safetensors")["latent"]
    with pytest.raises(nodus.NodusError, match="overlap"):
        decoder.forward_windowed(latent, (4, 4, 4), overlap=1.0)
    with pytest.raises(nodus.NodusError, match="spatial"):
        decoder.forward_windowed(latent, (4, 4))
    with pytest.raises(nodus.NodusError, match="cancelled"):
        decoder.forward_windowed(latent, (4, 4, 4), callback=lambda done, total: False)
    with pytest.raises(nodus.NodusError, match="no output 'z_sigma'"):
        decoder.forward_windowed(latent, (4, 4, 4), output="z_sigma")
    bad = latent.copy()
    bad[0, 0, 0, 0, 0] = np.inf
    with pytest.raises(nodus.NodusError, match="finite|NaN|infinit"):
        decoder.forward_windowed(bad, (4, 4, 4))
    native = nodus.load(path("medsyn2-tiny"))
    with pytest.raises(nodus.NodusError, match="one input"):
        native.forward_windowed(latent, (4, 4, 4))


# -- nodus generate-volume ------------------------------------------------------------------

def run_cli(*arguments):
    import os
    import subprocess

    from conftest import REPOSITORY
    return subprocess.run([os.path.join(REPOSITORY, ".build", "release", "nodus"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def cli_inputs(folder):
    from safetensors.numpy import save_file
    reference = load_ref(f"{FOLDER}/medsyn2-tiny-sample-heun.safetensors")
    text = folder / "text.safetensors"
    save_file({"cond": reference["encoder_hidden_states"][:1].copy(), "uncond": reference["null_text"].copy()}, str(text))
    mask = folder / "mask.npy"
    np.save(mask, reference["mask_latent"][:1])
    return reference, text, mask


def test_generate_volume_equals_the_python_loop_and_writes_nifti(tmp_path):
    reference, text, mask = cli_inputs(tmp_path)
    latent_path, volume_path = tmp_path / "latent.npy", tmp_path / "ct.nii.gz"
    result = run_cli("generate-volume", path("medsyn2-tiny"), "--scheduler", path("medsyn2-scheduler-heun"),
                     "--text", text, "--mask-latent", mask, "--steps", 6, "--guidance", 3, "--seed", 5,
                     "--latents-mean", "0.1,0,0,-0.1", "--latents-std", "2,1,1,0.5",
                     "--decoder", path("monai-vae3d-tiny-decoder-dynamo18.onnx"), "--decode-window", "4,4,4",
                     "--output", volume_path, "--npy", latent_path, "--previews", tmp_path / "ct", "--spacing", "1.5,1.5,2")
    assert result.returncode == 0, result.stderr
    assert "ETA" in result.stderr or "100%" in result.stderr
    # The same run through the Python API: noise torch.randn(seed 5), [uncond, cond] halves, the
    # mask latent on the conditional half only, then latent * std + mean.
    noise = nodus.randn((1, 4, 4, 6, 8), 5)
    scheduler = nodus.Scheduler.from_config(path("medsyn2-scheduler-heun"))
    final = nodus.sample(nodus.load(path("medsyn2-tiny")), scheduler, steps=6, guidance_scale=3.0, init_noise=noise,
                         encoder_hidden_states=(reference["null_text"], reference["encoder_hidden_states"][:1]),
                         conditioning=np.concatenate([np.zeros_like(reference["mask_latent"][:1]),
                                                      reference["mask_latent"][:1]]))
    expected = final * np.array([2, 1, 1, 0.5], np.float32)[None, :, None, None, None] \
        + np.array([0.1, 0, 0, -0.1], np.float32)[None, :, None, None, None]
    assert_close(np.load(latent_path), expected, 1e-6, "generate-volume latent against nodus.sample")
    decoder = nodus.load(path("monai-vae3d-tiny-decoder-dynamo18.onnx"))
    decoded = decoder.forward_windowed(expected, (4, 4, 4))
    hounsfield = np.clip(decoded, 0, 1) * 2000 - 1000
    nibabel = pytest.importorskip("nibabel")
    image = nibabel.load(str(volume_path))
    assert image.header.get_zooms() == (1.5, 1.5, 2.0)
    # NIfTI axes are (x, y, z) = (width, height, depth); int16 rounds the HU values.
    stored = np.transpose(np.asarray(image.dataobj), (2, 1, 0))
    assert stored.shape == decoded.shape[2:]
    assert np.abs(stored - hounsfield[0, 0]).max() <= 0.5 + 1e-3
    for plane in ("axial", "coronal", "sagittal"):
        assert (tmp_path / f"ct-{plane}.png").stat().st_size > 0


def test_generate_volume_bad_input_is_a_clear_error(tmp_path):
    _, text, mask = cli_inputs(tmp_path)
    base = ["generate-volume", path("medsyn2-tiny"), "--scheduler", path("medsyn2-scheduler-euler"), "--text", text]
    result = run_cli(*base, "--output", tmp_path / "missing" / "ct.nii.gz", "--decoder", "x.onnx")
    assert result.returncode != 0 and "does not exist" in result.stderr
    np.save(tmp_path / "small.npy", np.zeros((1, 1, 2, 6, 8), np.float32))
    result = run_cli(*base, "--mask-latent", tmp_path / "small.npy", "--npy", tmp_path / "l.npy")
    assert result.returncode != 0 and "fit the latent grid" in result.stderr
    result = run_cli(*base, "--output", tmp_path / "ct.nii.gz")
    assert result.returncode != 0 and "--decoder" in result.stderr
    result = run_cli("generate-volume", path("monai-vae3d-tiny-decoder-dynamo18.onnx"), "--scheduler",
                     path("medsyn2-scheduler-euler"), "--text", text, "--npy", tmp_path / "l.npy")
    assert result.returncode != 0 and "3D denoiser" in result.stderr
    assert not (tmp_path / "l.npy").exists() and not (tmp_path / "ct.nii.gz").exists()
