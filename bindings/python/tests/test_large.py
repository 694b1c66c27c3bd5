"""Opt-in real-size parity: DiT-XL/2 and SD-1.5 UNet forwards (with LoRA), SD VAE decode, encode and tiling
(random weights).

Make the references (a few minutes, ~3.3 GB, never committed):

    python tests/reference/make_large_references.py /tmp/nodus-large
    NODUS_LARGE_REFERENCES=/tmp/nodus-large pytest bindings/python/tests/test_large.py

Bound (SPEC section 5): relative max error max|ours - ref| / max|ref| < 1e-4; the bf16 mode < 3e-2.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

LARGE = os.environ.get("NODUS_LARGE_REFERENCES")

pytestmark = pytest.mark.skipif(
    not LARGE, reason="set NODUS_LARGE_REFERENCES to the folder written by tests/reference/make_large_references.py"
)

FORWARD_BOUND = 1e-4


def rel_err(ours, ref) -> float:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} differs from the reference shape {ref.shape}"
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def reference(name: str) -> Path:
    path = Path(LARGE) / name
    if not path.exists():
        pytest.skip(f"{path} not generated (make_large_references.py --only may have skipped it)")
    return path


def test_dit_xl2_forward():
    import nodus
    from safetensors.numpy import load_file

    ref = load_file(str(reference("dit-xl-2-forward.safetensors")))
    m = nodus.load(str(reference("dit-xl-2")))
    assert m.kind == "dit", f"kind {m.kind!r}, expected 'dit'"
    assert m.config["num_layers"] == 28, f"num_layers {m.config['num_layers']}, expected 28"
    assert m.config["out_channels"] == 8
    y = m.forward(sample=ref["sample"], timestep=ref["timestep"], class_labels=ref["class_labels"])
    assert y.dtype == np.float32, f"expected float32 output, got {y.dtype}"
    err = rel_err(y, ref["output"])
    assert np.isfinite(err) and err < FORWARD_BOUND, (
        f"DiT-XL/2 forward (batch [cond, null], 4x32x32): relative max error {err:.3e}, bound {FORWARD_BOUND:.0e}"
    )


def test_dit_xl2_lora_forward():
    """DiT-XL/2 with a rank-32 LoRA on q/k/v/out at weight 0.7, against diffusers + PEFT."""
    import nodus
    from safetensors.numpy import load_file

    ref = load_file(str(reference("dit-xl-2-forward.safetensors")))
    expected = load_file(str(reference("dit-xl-2-lora-forward.safetensors")))["output"]
    m = nodus.load(str(reference("dit-xl-2")))
    report = m.load_lora_weights(str(reference("dit-xl-2-lora-A.safetensors")), adapter_name="A")
    assert len(report["matched"]) == 112 and not report["unmatched"], report
    m.set_adapters(["A"], [0.7])
    y = m.forward(sample=ref["sample"], timestep=ref["timestep"], class_labels=ref["class_labels"])
    err = rel_err(y, expected)
    assert np.isfinite(err) and err < FORWARD_BOUND, (
        f"DiT-XL/2 + rank-32 LoRA at 0.7: relative max error {err:.3e}, bound {FORWARD_BOUND:.0e}"
    )
    m.fuse_lora()
    fused = m.forward(sample=ref["sample"], timestep=ref["timestep"], class_labels=ref["class_labels"])
    assert rel_err(fused, y) < 1e-5, f"fused vs unfused: {rel_err(fused, y):.3e}"


def test_sd_vae_decode():
    import nodus
    from safetensors.numpy import load_file

    ref = load_file(str(reference("sd-vae-decode.safetensors")))
    m = nodus.load(str(reference("sd-vae")))
    assert m.kind == "vae", f"kind {m.kind!r}, expected 'vae'"
    assert m.config["block_out_channels"] == [128, 256, 512, 512]
    img = m.decode(ref["latent"])
    assert img.dtype == np.float32, f"expected float32 output, got {img.dtype}"
    err = rel_err(img, ref["image"])
    assert np.isfinite(err) and err < FORWARD_BOUND, (
        f"SD VAE decode (1x4x64x64 -> 1x3x512x512): relative max error {err:.3e}, bound {FORWARD_BOUND:.0e}"
    )


def sd_unet_inputs():
    from safetensors.numpy import load_file

    ref = load_file(str(reference("unet-forward.safetensors")))
    return ref, dict(sample=ref["sample"], timestep=ref["timestep"], encoder_hidden_states=ref["encoder_hidden_states"])


def test_sd15_unet_forward():
    """The SD-1.5 UNet (random weights), batch 2, 4x64x64, context 77x768, against diffusers."""
    import nodus

    ref, inputs = sd_unet_inputs()
    m = nodus.load(str(reference("sd-unet")))
    assert m.kind == "unet" and m.config["block_out_channels"] == [320, 640, 1280, 1280]
    err = rel_err(m.forward(**inputs), ref["output"])
    assert np.isfinite(err) and err < FORWARD_BOUND, f"SD-1.5 UNet forward: relative max error {err:.3e}"


def test_sd15_unet_lora_forward():
    """The SD-1.5 UNet with a rank-8 LoRA on the attention projections at 0.7, against diffusers + PEFT."""
    import nodus
    from safetensors.numpy import load_file

    _, inputs = sd_unet_inputs()
    expected = load_file(str(reference("unet-lora-forward.safetensors")))["output"]
    m = nodus.load(str(reference("sd-unet")))
    m.load_lora_weights(str(reference("sd-unet-lora-A.safetensors")), adapter_name="A")
    m.set_adapters(["A"], [0.7])
    err = rel_err(m.forward(**inputs), expected)
    assert np.isfinite(err) and err < FORWARD_BOUND, f"SD-1.5 UNet + LoRA forward: relative max error {err:.3e}"

def test_sd_vae_encode():
    import nodus
    from safetensors.numpy import load_file

    ref = load_file(str(reference("sd-vae-encode.safetensors")))
    m = nodus.load(str(reference("sd-vae")))
    mean, logvar = m.encode(ref["image"])
    for name, ours in (("mean", mean), ("logvar", logvar)):
        err = rel_err(ours, ref[name])
        assert np.isfinite(err) and err < FORWARD_BOUND, (
            f"SD VAE encode (1x3x512x512 -> {name} 1x4x64x64): relative max error {err:.3e}, bound {FORWARD_BOUND:.0e}"
        )


def test_sd_vae_tiled_1024():
    """enable_tiling() at the config's 512 / 64: 3x3 tiles each way for a 1024x1024 image."""
    import nodus
    from safetensors.numpy import load_file

    ref = load_file(str(reference("sd-vae-tiled.safetensors")))
    m = nodus.load(str(reference("sd-vae")))
    m.enable_tiling()
    results = dict(zip(("tiled_mean", "tiled_logvar"), m.encode(ref["tiled_image"])))
    results["tiled_decoded"] = m.decode(ref["tiled_latent"])
    for name, ours in results.items():
        err = rel_err(ours, ref[name])
        assert np.isfinite(err) and err < FORWARD_BOUND, (
            f"SD VAE tiled 1024x1024 ({name}): relative max error {err:.3e}, bound {FORWARD_BOUND:.0e}"
        )


def test_clip_l_text_encoder():
    """CLIP ViT-L/14's text encoder (SD-1.5's; random weights), 2 x 77 tokens, against transformers."""
    import nodus
    from safetensors.numpy import load_file

    ref = load_file(str(reference("clip-l-forward.safetensors")))
    m = nodus.load(str(reference("clip-l")))
    assert m.kind == "clip_text" and m.config["hidden_size"] == 768
    outputs = m.forward_all(input_ids=ref["input_ids"])
    outputs["clip_skip_1"] = m.forward(input_ids=ref["input_ids"], clip_skip=1)
    for key, value in outputs.items():
        err = rel_err(value, ref[key])
        assert np.isfinite(err) and err < FORWARD_BOUND, f"CLIP ViT-L/14 {key}: relative max error {err:.3e}"


BF16_BOUND = 3e-2


@pytest.mark.parametrize("name", ["dit", "dit-lora-fused", "unet", "vae", "clip"])
def test_bf16(name):
    """The opt-in bf16 mode on the real sizes, against the same float32 diffusers references (SPEC section 5:
    below 3e-2)."""
    import nodus
    from safetensors.numpy import load_file

    if name.startswith("dit"):
        ref = load_file(str(reference("dit-xl-2-forward.safetensors")))
        inputs = dict(sample=ref["sample"], timestep=ref["timestep"], class_labels=ref["class_labels"])
        m = nodus.load(str(reference("dit-xl-2")), dtype="bfloat16")
        expected = ref["output"]
        if name == "dit-lora-fused":
            m.load_lora_weights(str(reference("dit-xl-2-lora-A.safetensors")), adapter_name="A")
            m.set_adapters(["A"], [0.7])
            m.fuse_lora()
            expected = load_file(str(reference("dit-xl-2-lora-forward.safetensors")))["output"]
        y = m.forward(**inputs)
    elif name == "clip":
        ref = load_file(str(reference("clip-l-forward.safetensors")))
        model = nodus.load(str(reference("clip-l")), dtype="bfloat16")
        y, expected = model.forward(input_ids=ref["input_ids"]), ref["last_hidden_state"]
    elif name == "unet":
        ref, inputs = sd_unet_inputs()
        y, expected = nodus.load(str(reference("sd-unet")), dtype="bfloat16").forward(**inputs), ref["output"]
    else:
        ref = load_file(str(reference("sd-vae-decode.safetensors")))
        y, expected = nodus.load(str(reference("sd-vae")), dtype="bfloat16").decode(ref["latent"]), ref["image"]
    err = rel_err(y, expected)
    assert np.isfinite(err) and err < BF16_BOUND, f"{name} in bf16: relative max error {err:.3e}, bound {BF16_BOUND:.0e}"
    assert err > 1e-5, f"{name} in bf16: error {err:.3e} is float32's, so the products were not bf16"
