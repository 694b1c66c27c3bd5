"""The opt-in bf16 mode (`nodus.load(dtype="bfloat16")`, SPEC section 5; issue 6): Linears and
convolutions with bf16 weights and bf16 products summed in float32, against the float32
diffusers references of the other suites (Tests/Fixtures, made by tests/reference).

Bounds, as a relative max error max|ours - ref| / max|ref|:
  * below 3e-2 against diffusers float32 (SPEC section 5);
  * above 1e-5 against it too, so that the products really are bf16 (float32 gives < 1e-5 here);
  * a fused LoRA comes out nearer its own reference than the base output is to it, on every fusion
    in turn: the bf16 copy of a fused weight is made anew whenever the fused weights change.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import nodus
from references import fixture_path, load_ref, rel_err, run_without_avx512

BF16_BOUND = 3e-2
FLOAT32_FLOOR = 1e-5


def assert_bf16_close(ours, ref, what):
    err = rel_err(ours, ref)
    assert np.isfinite(err) and err < BF16_BOUND, f"{what}: bf16 relative error {err:.3e}, bound {BF16_BOUND:.0e}"
    assert err > FLOAT32_FLOOR, f"{what}: error {err:.3e} is float32's, so the products were not bf16"
    return err


def load(name):
    return nodus.load(str(fixture_path(name)), dtype="bfloat16")


@pytest.mark.parametrize("folder, prefix", [("dit-tiny", ""), ("dit-tiny-cond", "cond_")])
def test_dit_forward(folder, prefix):
    ref = load_ref("dit-tiny-forward.safetensors")
    with load(folder) as model:
        y = model.forward(sample=ref[prefix + "sample"], timestep=ref[prefix + "timestep"],
                          class_labels=ref[prefix + "class_labels"])
    assert_bf16_close(y, ref[prefix + "output"], f"{folder} bf16 forward")


@pytest.mark.parametrize("prefix, folder", [("", "unet-tiny"), ("cond_", "unet-tiny-cond"),
                                            ("inpaint_", "unet-tiny-inpaint"), ("odd_", "unet-tiny")])
def test_unet_forward(prefix, folder):
    ref = load_ref("unet-tiny-forward.safetensors")
    with load(folder) as model:
        y = model.forward(sample=ref[prefix + "sample"], timestep=ref[prefix + "timestep"],
                          encoder_hidden_states=ref[prefix + "encoder_hidden_states"])
    assert_bf16_close(y, ref[prefix + "output"], f"{folder} bf16 forward ({prefix or 'base'})")


def test_vae_decode_and_encode():
    decode_ref = load_ref("vae-tiny-decode.safetensors")
    encode_ref = load_ref("vae-tiny-encode.safetensors")
    with load("vae-tiny") as vae:
        for latent, image in [("latent", "image"), ("latent2", "image2")]:
            assert_bf16_close(vae.decode(decode_ref[latent]), decode_ref[image], f"bf16 VAE decode of {latent}")
        mean, _ = vae.encode(encode_ref["image"])
        assert_bf16_close(mean, encode_ref["mean"], "bf16 VAE encode (latent_dist.mean)")


def test_float32_results_are_unchanged_by_a_bf16_model():
    """Two models of one folder, one per precision, side by side: each keeps its own products."""
    ref = load_ref("dit-tiny-forward.safetensors")
    inputs = dict(sample=ref["sample"], timestep=ref["timestep"], class_labels=ref["class_labels"])
    with nodus.load(str(fixture_path("dit-tiny"))) as fp32, load("dit-tiny") as bf16:
        low = bf16.forward(**inputs)
        assert rel_err(fp32.forward(**inputs), ref["output"]) < 1e-4
        assert np.array_equal(bf16.forward(**inputs), low), "a bf16 forward is not repeatable"


def test_lora_fusions_in_bf16():
    """Fuse, unfuse and fuse again: each fusion's bf16 output is near its own diffusers reference."""
    ref = load_ref("dit-tiny-lora-forward.safetensors")
    inputs = dict(sample=ref["sample"], timestep=ref["timestep"], class_labels=ref["class_labels"])
    with load("dit-tiny") as model:
        base = model.forward(**inputs)
        assert_bf16_close(base, ref["base"], "bf16 base")
        for name, fixture in [("A", "dit-tiny-lora-A.safetensors"), ("B", "dit-tiny-lora-B")]:
            model.load_lora_weights(str(fixture_path(fixture)), adapter_name=name)
        fusions = [(["A"], [1.0], 4.0, "A_x4"), (["A", "B"], [0.7, 0.5], 1.0, "AB_07_05"),
                   (["A"], [-2.0], 1.0, "A_neg"), (["A"], [1.0], 4.0, "A_x4")]
        for names, weights, scale, expected in fusions:
            model.set_adapters(names, [weight * scale for weight in weights])
            assert_bf16_close(model.forward(**inputs), ref[expected], f"bf16 {expected} unfused")
            model.set_adapters(names, weights)
            model.fuse_lora(adapter_names=names, lora_scale=scale)
            fused = model.forward(**inputs)
            err = assert_bf16_close(fused, ref[expected], f"bf16 {expected} fused")
            assert err < rel_err(ref["base"], ref[expected]) / 4, f"bf16 {expected} fused is no nearer than the base"
            model.unfuse_lora()
            model.disable_lora()
            assert np.array_equal(model.forward(**inputs), base), f"bf16 base after unfusing {expected}"
            model.enable_lora()


def test_other_dtypes_are_refused():
    for dtype in ("float16", "int64"):
        with pytest.raises(nodus.NodusError, match="compute precision"):
            nodus.load(str(fixture_path("dit-tiny")), dtype=dtype)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_bf16_on_a_cpu_without_avx512(tmp_path):
    """Without avx512_bf16 (valgrind's virtual CPU has AVX2 but no AVX-512 at all) the bf16
    products are summed by float32 fused multiply-adds (the AVX2 path): the same bf16 operands, so
    the same outputs to float32 rounding, for the DiT's Linears and the UNet's convolutions."""
    dit_ref = load_ref("dit-tiny-forward.safetensors")
    unet_ref = load_ref("unet-tiny-forward.safetensors")
    dit_inputs = dict(sample=dit_ref["sample"], timestep=dit_ref["timestep"], class_labels=dit_ref["class_labels"])
    unet_inputs = dict(sample=unet_ref["sample"], timestep=unet_ref["timestep"],
                       encoder_hidden_states=unet_ref["encoder_hidden_states"])
    out = run_without_avx512(f"""
        dit_ref = load_file({str(fixture_path("dit-tiny-forward.safetensors"))!r})
        unet_ref = load_file({str(fixture_path("unet-tiny-forward.safetensors"))!r})
        dit = nodus.load({str(fixture_path("dit-tiny"))!r}, dtype="bfloat16")
        unet = nodus.load({str(fixture_path("unet-tiny"))!r}, dtype="bfloat16")
        save(dit=dit.forward(sample=dit_ref["sample"], timestep=dit_ref["timestep"],
                             class_labels=dit_ref["class_labels"]),
             unet=unet.forward(sample=unet_ref["sample"], timestep=unet_ref["timestep"],
                               encoder_hidden_states=unet_ref["encoder_hidden_states"]))
    """, tmp_path)
    with load("dit-tiny") as dit, load("unet-tiny") as unet:
        native = {"dit": dit.forward(**dit_inputs), "unet": unet.forward(**unet_inputs)}
    for name, output in native.items():
        err = rel_err(out[name], output)
        assert err < 1e-5, f"{name} bf16 without AVX-512 vs with it: relative error {err:.1e}"
    assert_bf16_close(out["dit"], dit_ref["output"], "dit-tiny bf16 without AVX-512")
