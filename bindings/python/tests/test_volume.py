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
