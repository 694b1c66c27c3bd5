#!/usr/bin/env python
"""Generate the VAE encoder and tiling fixtures under Tests/Fixtures/.

    python tests/reference/make_vae_fixtures.py [--out DIR]

Needs Tests/Fixtures/vae-tiny/ (written by tests/reference/make_model_fixtures.py;
it holds encoder weights and quant_conv). Deterministic (fixed seeds, one CPU
thread, deterministic torch algorithms, safetensors headers with sorted keys): a
re-run reproduces every file byte for byte with the same torch / diffusers /
numpy / safetensors versions (recorded in each safetensors file's metadata under
"versions" and in GENERATED-vae-fixtures.md).

What it writes (float32):

  vae-tiny-encode.safetensors
      image [1,3,16,16] -> mean, logvar [1,4,8,8] (vae.encode(image).latent_dist);
      image2 [2,3,16,16] -> mean2, logvar2 [2,4,8,8];
      noise [1,4,8,8] = torch.randn(generator=manual_seed(NOISE_SEED)), the draw of
      latent = latent_dist.sample(generator=manual_seed(NOISE_SEED)) * scaling_factor;
      latent_mode = latent_dist.mode() * scaling_factor.
  vae-tiny-tiled.safetensors   (vae.enable_tiling())
      tiled_image [1,3,40,48] -> with tile_sample_min_size 16 (tile_latent_min_size 8):
      tiled_mean, tiled_logvar [1,4,20,24]; with the config's 32 (16):
      tiled32_mean, tiled32_logvar;
      tiled_latent [2,4,20,24] -> vae.decode(...).sample with tile 16: tiled_decoded
      [2,3,40,48]; with 32: tiled32_decoded.
  vae-clamp/                   a very small AutoencoderKL (block_out_channels [8,16,16],
                               3 levels, 2 layers per block, norm_num_groups 4, no
                               quant_conv / post_quant_conv, sample_size 16) whose
                               encoder conv_out biases push two logvar channels across
                               the clamp (above 20 and below -30) for about half of
                               the positions of clamp_image
  vae-clamp.safetensors
      clamp_image [1,3,16,24] -> clamp_mean, clamp_logvar [1,4,4,6] (logvar clamped);
      clamp_latent [1,4,4,6] -> clamp_decoded [1,3,16,24].

References come from the models as reloaded from disk with
`from_pretrained(..., torch_dtype=torch.float32)`. diffusers' tile sizes are two
attributes; the script sets both, tile_latent_min_size = tile_sample_min_size / 2
(as a user who changes the tile size does, and as Nodus' tile size means).

The script checks that the fixtures can make a test fail: perturbations of the
semantics a runtime could get wrong (no logvar clamp, symmetric padding in
Downsample2D, no quant_conv, no tile blending, tiles of the wrong size, sampling
without the noise) must move the reference far beyond the tolerance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_model_fixtures import (  # noqa: E402
    FORWARD_TOL,
    gen,
    make_nonconstant,
    metadata,
    rel_err,
    require_sensitive,
    save_model,
    save_tensors,
    versions,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests" / "Fixtures"
GENERATOR = "tests/reference/make_vae_fixtures.py"
COMMAND = "python tests/reference/make_vae_fixtures.py"

NOISE_SEED = 7100
SMALL_TILE = 16

VAE_CLAMP = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 3,
    up_block_types=["UpDecoderBlock2D"] * 3,
    block_out_channels=[8, 16, 16],
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=16,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
# logvar channels (of 4) pushed across the upper and the lower clamp.
CLAMP_HIGH, CLAMP_LOW = 0, 1


def vae_metadata(description: str, **extra) -> dict:
    return metadata(description, generator=GENERATOR, command=COMMAND, **extra)


def load_vae(folder: Path, dtype=torch.float32) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(str(folder), torch_dtype=dtype).eval()


def image_like(shape, seed: int) -> torch.Tensor:
    """A random image in [-1, 1], the range VAEs take."""
    return torch.rand(*shape, generator=gen(seed)) * 2 - 1


@torch.no_grad()
def posterior(vae: AutoencoderKL, image: torch.Tensor):
    return vae.encode(image).latent_dist


def set_tiling(vae: AutoencoderKL, tile: int | None) -> None:
    """enable_tiling() with tile_sample_min_size = tile (None: off)."""
    if tile is None:
        vae.disable_tiling()
        return
    vae.enable_tiling()
    levels = len(vae.config.block_out_channels)
    vae.tile_sample_min_size = tile
    vae.tile_latent_min_size = tile // 2 ** (levels - 1)


@torch.no_grad()
def tiled(vae: AutoencoderKL, tile: int | None, image=None, latent=None):
    set_tiling(vae, tile)
    try:
        if image is not None:
            dist = vae.encode(image).latent_dist
            return dist.mean.float(), dist.logvar.float()
        return vae.decode(latent).sample.float()
    finally:
        set_tiling(vae, None)


class NoBlend:
    """Replaces blend_v / blend_h with the identity (tiles cut, not blended)."""

    def __init__(self, vae):
        self.vae = vae

    def __enter__(self):
        self.vae.blend_v = lambda a, b, extent: b
        self.vae.blend_h = lambda a, b, extent: b

    def __exit__(self, *exc):
        del self.vae.blend_v, self.vae.blend_h


# ----------------------------------------------------------------- vae-tiny encode


@torch.no_grad()
def make_encode(out: Path) -> None:
    print("vae-tiny encode")
    vae = load_vae(out / "vae-tiny")
    scaling = vae.config.scaling_factor
    image = image_like((1, 3, 16, 16), 7000)
    image2 = image_like((2, 3, 16, 16), 7001)
    dist, dist2 = posterior(vae, image), posterior(vae, image2)
    assert dist.logvar.min() > -30 and dist.logvar.max() < 20, "vae-tiny's logvar should stay inside the clamp"
    noise = torch.randn(dist.mean.shape, generator=gen(NOISE_SEED))
    latent = dist.sample(generator=gen(NOISE_SEED)) * scaling
    assert torch.equal(latent, (dist.mean + dist.std * noise) * scaling), "sample() drew other noise"
    latent_mode = dist.mode() * scaling

    vae64 = load_vae(out / "vae-tiny", torch.float64)
    dist64 = posterior(vae64, image2.double())
    floor = max(rel_err(dist2.mean, dist64.mean), rel_err(dist2.logvar, dist64.logvar))
    print(f"  encode float64 rerun floor {floor:.2e} (tolerance {FORWARD_TOL:.0e})")

    require_sensitive("sample without the noise (mode)", latent, latent_mode, FORWARD_TOL)
    moments = vae.encoder(image)
    mean_no_quant, logvar_no_quant = torch.chunk(moments, 2, dim=1)
    require_sensitive("encode without quant_conv (mean)", dist.mean, mean_no_quant, FORWARD_TOL)
    require_sensitive("encode without quant_conv (logvar)", dist.logvar, logvar_no_quant, FORWARD_TOL)
    for block in vae.encoder.down_blocks:
        for down in block.downsamplers or []:
            down.padding = 1
            down.conv.padding = (1, 1)
    symmetric = posterior(vae, image)
    assert symmetric.mean.shape == dist.mean.shape
    require_sensitive("Downsample2D padded (1,1,1,1) instead of (0,1,0,1) (mean)", dist.mean, symmetric.mean, FORWARD_TOL)

    save_tensors(
        out / "vae-tiny-encode.safetensors",
        dict(image=image, mean=dist.mean, logvar=dist.logvar, image2=image2, mean2=dist2.mean, logvar2=dist2.logvar,
             noise=noise, latent=latent, latent_mode=latent_mode),
        vae_metadata(
            "AutoencoderKL.encode(image).latent_dist of vae-tiny: mean, logvar (clamped to [-30, 20]); "
            "image2 -> mean2, logvar2; latent = latent_dist.sample(generator=manual_seed(noise_seed)) * "
            "scaling_factor, whose draw is noise; latent_mode = latent_dist.mode() * scaling_factor",
            noise_seed=NOISE_SEED, scaling_factor=scaling,
        ),
    )


# ----------------------------------------------------------------- vae-tiny tiling


@torch.no_grad()
def make_tiled(out: Path) -> None:
    print("vae-tiny tiling")
    vae = load_vae(out / "vae-tiny")
    default_tile = vae.config.sample_size
    image = image_like((1, 3, 40, 48), 7200)
    latent = torch.randn(2, 4, 20, 24, generator=gen(7201))

    mean, logvar = tiled(vae, SMALL_TILE, image=image)
    mean32, logvar32 = tiled(vae, default_tile, image=image)
    decoded = tiled(vae, SMALL_TILE, latent=latent)
    decoded32 = tiled(vae, default_tile, latent=latent)
    whole = posterior(vae, image)
    whole_decoded = vae.decode(latent).sample

    require_sensitive("tiled (16) vs whole encode (mean)", whole.mean, mean, FORWARD_TOL)
    require_sensitive("tiled (32) vs whole encode (mean)", whole.mean, mean32, FORWARD_TOL)
    require_sensitive("tiled (16) vs tiled (32) encode (mean)", mean32, mean, FORWARD_TOL)
    require_sensitive("tiled (16) vs whole decode", whole_decoded, decoded, FORWARD_TOL)
    require_sensitive("tiled (32) vs whole decode", whole_decoded, decoded32, FORWARD_TOL)
    with NoBlend(vae):
        unblended_mean, unblended_logvar = tiled(vae, SMALL_TILE, image=image)
        unblended_decoded = tiled(vae, SMALL_TILE, latent=latent)
    require_sensitive("tiled encode without blending (mean)", mean, unblended_mean, FORWARD_TOL)
    require_sensitive("tiled encode without blending (logvar)", logvar, unblended_logvar, FORWARD_TOL)
    require_sensitive("tiled decode without blending", decoded, unblended_decoded, FORWARD_TOL)

    vae64 = load_vae(out / "vae-tiny", torch.float64)
    mean64, _ = tiled(vae64, SMALL_TILE, image=image.double())
    floor = max(rel_err(mean, mean64), rel_err(decoded, tiled(vae64, SMALL_TILE, latent=latent.double())))
    print(f"  tiled float64 rerun floor {floor:.2e} (tolerance {FORWARD_TOL:.0e})")

    save_tensors(
        out / "vae-tiny-tiled.safetensors",
        dict(tiled_image=image, tiled_mean=mean, tiled_logvar=logvar, tiled32_mean=mean32, tiled32_logvar=logvar32,
             tiled_latent=latent, tiled_decoded=decoded, tiled32_decoded=decoded32),
        vae_metadata(
            "vae-tiny with enable_tiling(): tiled_image encoded with tile_sample_min_size 16 / "
            "tile_latent_min_size 8 (tiled_mean, tiled_logvar) and with the config's 32 / 16 "
            "(tiled32_mean, tiled32_logvar); tiled_latent decoded with 16 / 8 (tiled_decoded) and "
            "32 / 16 (tiled32_decoded); tile_overlap_factor 0.25",
            small_tile=SMALL_TILE, default_tile=default_tile,
        ),
    )


# ----------------------------------------------------------------- vae-clamp


@torch.no_grad()
def make_clamp(out: Path) -> None:
    print("vae-clamp")
    torch.manual_seed(7300)
    vae = AutoencoderKL(**VAE_CLAMP).eval()
    make_nonconstant(vae, 7301)
    image = image_like((1, 3, 16, 24), 7302)
    channels = VAE_CLAMP["latent_channels"]
    raw = vae.encoder(image)[:, channels:]
    bias = vae.encoder.conv_out.bias
    # Centre one logvar channel on each clamp limit: about half its positions cross it.
    bias[channels + CLAMP_HIGH] += 20 - raw[:, CLAMP_HIGH].median()
    bias[channels + CLAMP_LOW] += -30 - raw[:, CLAMP_LOW].median()
    save_model(vae, out / "vae-clamp")
    vae = load_vae(out / "vae-clamp")

    dist = posterior(vae, image)
    unclamped = vae.encoder(image)[:, channels:]
    for channel, limit in ((CLAMP_HIGH, 20.0), (CLAMP_LOW, -30.0)):
        hits = int((dist.logvar[:, channel] == limit).sum())
        total = dist.logvar[:, channel].numel()
        print(f"  logvar channel {channel}: {hits} of {total} positions at the clamp {limit}")
        assert 0 < hits < total, f"channel {channel} should be clamped at some positions only"
    require_sensitive("logvar without the clamp", dist.logvar, unclamped, FORWARD_TOL)

    latent = torch.randn(1, channels, 4, 6, generator=gen(7303))
    decoded = vae.decode(latent).sample.float()
    save_tensors(
        out / "vae-clamp.safetensors",
        dict(clamp_image=image, clamp_mean=dist.mean, clamp_logvar=dist.logvar, clamp_latent=latent,
             clamp_decoded=decoded),
        vae_metadata(
            "vae-clamp (3 levels, norm_num_groups 4, no quant_conv / post_quant_conv): "
            "encode(clamp_image).latent_dist -> clamp_mean, clamp_logvar (channel 0 partly clamped at 20, "
            "channel 1 at -30); decode(clamp_latent).sample -> clamp_decoded",
            clamped_channels={"20": CLAMP_HIGH, "-30": CLAMP_LOW},
        ),
    )


def write_readme(out: Path) -> None:
    v = versions()
    text = f"""# VAE encoder and tiling fixtures (generated)

Generated by `tests/reference/make_vae_fixtures.py`; do not edit by hand.
Needs `vae-tiny/` from `tests/reference/make_model_fixtures.py`.

Regenerate (deterministic, byte-identical with the same versions, a few seconds):

    {COMMAND}

Versions: torch {v['torch']}, diffusers {v['diffusers']}, numpy {v['numpy']},
safetensors {v['safetensors']}, python {v['python']}.
Every `.safetensors` file written by the script also records them in its
metadata (`versions`), with a `description` and the `command`.

| file | tensors |
|---|---|
| `vae-tiny-encode.safetensors` | `image` [1,3,16,16] -> `mean`, `logvar` [1,4,8,8]; `image2` [2,3,16,16] -> `mean2`, `logvar2`; `noise` [1,4,8,8] (torch.randn, seed {NOISE_SEED}) and `latent` = `latent_dist.sample(generator)` * scaling_factor; `latent_mode` = mean * scaling_factor |
| `vae-tiny-tiled.safetensors` | `tiled_image` [1,3,40,48] encoded with tiling at tile 16 (`tiled_mean`, `tiled_logvar` [1,4,20,24]) and 32 (`tiled32_*`); `tiled_latent` [2,4,20,24] decoded at tile 16 (`tiled_decoded` [2,3,40,48]) and 32 (`tiled32_decoded`) |
| `vae-clamp/` | AutoencoderKL, block_out_channels [8, 16, 16], 2 layers per block, norm_num_groups 4, no quant_conv / post_quant_conv, sample_size 16; encoder conv_out biases of logvar channels 0 and 1 moved onto the clamp limits 20 and -30 |
| `vae-clamp.safetensors` | `clamp_image` [1,3,16,24] -> `clamp_mean`, `clamp_logvar` [1,4,4,6] (partly clamped); `clamp_latent` [1,4,4,6] -> `clamp_decoded` [1,3,16,24] |

Tiling: `vae.enable_tiling()` with `tile_sample_min_size` = tile and
`tile_latent_min_size` = tile / 2 (vae-tiny has two levels); diffusers keeps
`tile_overlap_factor` 0.25. Tile 16 on a 40x48 image gives 4x4 tiles (the last
row 4 pixels high), tile 32 gives 2x2, so edge tiles of every size blend.
"""
    (out / "GENERATED-vae-fixtures.md").write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"fixture folder (default {DEFAULT_OUT})")
    args = ap.parse_args()
    out: Path = args.out
    if not (out / "vae-tiny" / "config.json").exists():
        raise SystemExit(f"{out / 'vae-tiny'} is missing: run tests/reference/make_model_fixtures.py first")

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"versions: {versions()}")
    make_encode(out)
    make_tiled(out)
    make_clamp(out)
    write_readme(out)
    print("done")


if __name__ == "__main__":
    sys.exit(main())
