#!/usr/bin/env python
"""Procedural chest-X-ray-like patches with lung nodules, and their masks.

The training data of the bundled demo model (models/nodule-demo/, trained by
demo/train.py). Everything is numpy, deterministic from a seed, 32x32 pixels,
grayscale, values in [-1, 1] (-1 = black = air, 1 = white = bone / calcium).

    background(rng)                                   -> [32, 32] float32
    nodule(rng, calcified, spiculated, contrast, ...) -> (additive map [32, 32], mask [32, 32], attributes)
    sample(rng, ...)                                  -> (image_with_nodule, mask, background_only, attributes)
    batch(seed, n, ...)                               -> dict of stacked arrays [n, 1, 32, 32]

A patch is a piece of lung field: a dark background with slow density changes,
two or three rib shadows (curved bright bands with brighter cortical edges),
branching vessel-like lines, fine texture and noise. A nodule is a bright blob
added on top of it, with

  * size      body radius 0.5-0.7 of the mask radius (spiculated: 0.38-0.52),
              mask radius 5-8 px;
  * position  the centre lies in [10, 21] in both axes, so the mask stays inside;
  * brightness calcified nodules have a markedly brighter core (+0.5 to +0.7);
  * border    smooth (a soft-edged disk) or spiculated (4-7 radial spikes
              reaching almost to the mask edge, and a lobulated outline);
  * contrast  a number in [0, 1] (or "subtle" = U(0, 0.3), "obvious" = U(0.7, 1)):
              peak amplitude 0.12 + 0.55 * contrast above the local background.

The mask is a disk covering the nodule's region, slightly larger than the
nodule (the nodule's map is exactly 0 outside it), so "background with the mask
region filled" is the same image whether or not the nodule is present.

CLI: write a PNG grid of examples (rows: image, mask, background):

    python demo/generate_patches.py --seed 0 --n 8 --out /tmp/patches.png
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

SIZE = 32
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)

# Base distribution of the training set (and of sample() when an attribute is None).
P_CALCIFIED = 0.2
P_SPICULATED = 0.3


def _smooth_noise(rng: np.random.Generator, scale: float) -> np.ndarray:
    """Gaussian noise low-pass filtered in Fourier space (correlation length ~scale px), unit std."""
    n = rng.standard_normal((SIZE, SIZE))
    fy = np.fft.fftfreq(SIZE)[:, None]
    fx = np.fft.fftfreq(SIZE)[None, :]
    filt = np.exp(-((fx**2 + fy**2) * (2 * np.pi * scale) ** 2) / 2)
    out = np.real(np.fft.ifft2(np.fft.fft2(n) * filt))
    return out / (out.std() + 1e-8)


def _polyline_field(points: np.ndarray, widths: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """max over points of amp * exp(-d^2 / 2 w^2): a soft line through `points` [P, 2] (y, x)."""
    d2 = (_YY[None] - points[:, 0, None, None]) ** 2 + (_XX[None] - points[:, 1, None, None]) ** 2
    return (amps[:, None, None] * np.exp(-d2 / (2 * widths[:, None, None] ** 2))).max(axis=0)


def _ribs(rng: np.random.Generator) -> np.ndarray:
    """Two or three curved bright bands, roughly horizontal, with brighter edges (cortex)."""
    period = rng.uniform(11.0, 15.0)
    phase = rng.uniform(0, period)
    slope = rng.uniform(-0.35, 0.35)
    curv = rng.uniform(-0.012, 0.012)
    half = rng.uniform(2.2, 3.2)  # half width of a rib shadow
    amp = rng.uniform(0.18, 0.30)
    out = np.zeros((SIZE, SIZE))
    centre_line = slope * (_XX - SIZE / 2) + curv * (_XX - SIZE / 2) ** 2
    for k in range(-2, 5):
        y0 = phase + k * period - period
        d = _YY - (y0 + centre_line)  # vertical distance to the rib's centre line
        band = 1.0 / (1.0 + np.exp((np.abs(d) - half) / 0.6))
        edge = np.exp(-((np.abs(d) - half + 0.6) ** 2) / (2 * 0.5**2))
        out += amp * (0.75 * band + 0.35 * edge)
    return out


def _vessels(rng: np.random.Generator) -> np.ndarray:
    """Branching, tapering thin lines: the vascular lung markings."""
    out = np.zeros((SIZE, SIZE))
    for _ in range(int(rng.integers(4, 8))):
        y, x = rng.uniform(-4, SIZE + 4, size=2)
        heading = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(10, 26)
        amp = rng.uniform(0.06, 0.14)
        steps = int(length / 0.7)
        pts = np.empty((steps, 2))
        for i in range(steps):
            heading += rng.normal(0, 0.12)
            y += 0.7 * np.sin(heading)
            x += 0.7 * np.cos(heading)
            pts[i] = (y, x)
        taper = np.linspace(1.0, 0.4, steps)
        out = np.maximum(out, _polyline_field(pts, 0.55 + 0.35 * taper, amp * taper))
    return out


def background(rng: np.random.Generator) -> np.ndarray:
    """A 32x32 lung-field patch without nodule, float32 in [-1, 1]."""
    level = rng.uniform(-0.6, -0.35)
    tilt = rng.uniform(-0.004, 0.004, size=2)
    img = level + tilt[0] * (_YY - 16) * 2 + tilt[1] * (_XX - 16) * 2
    img = img + 0.06 * _smooth_noise(rng, 5.0)  # slow density changes
    img = img + _ribs(rng)
    img = img + _vessels(rng)
    img = img + 0.025 * _smooth_noise(rng, 0.8)  # fine parenchymal texture
    img = img + rng.normal(0, 0.02, size=(SIZE, SIZE))  # quantum noise
    return np.clip(img, -1, 1).astype(np.float32)


def _contrast_value(rng: np.random.Generator, contrast: Any) -> float:
    if contrast is None:
        return float(rng.uniform(0, 1))
    if contrast == "subtle":
        return float(rng.uniform(0, 0.3))
    if contrast == "obvious":
        return float(rng.uniform(0.7, 1.0))
    return float(np.clip(float(contrast), 0.0, 1.0))


def _angle_diff(a: np.ndarray, b: float) -> np.ndarray:
    return np.angle(np.exp(1j * (a - b)))


def nodule(
    rng: np.random.Generator,
    calcified: bool,
    spiculated: bool,
    contrast: Any,
    center: tuple[float, float] | None = None,
    mask_radius: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One nodule: (additive intensity map [32, 32] float32, mask [32, 32] float32 0/1, attributes).

    contrast: a float in [0, 1], "subtle", "obvious", or None (uniform in [0, 1]).
    center (y, x) and mask_radius are drawn when None. The map is 0 outside the mask.
    """
    c = _contrast_value(rng, contrast)
    if center is None:
        center = tuple(rng.uniform(10.0, 21.0, size=2))
    if mask_radius is None:
        mask_radius = float(rng.uniform(5.0, 8.0))
    cy, cx = float(center[0]), float(center[1])
    r = np.hypot(_YY - cy, _XX - cx)
    theta = np.arctan2(_YY - cy, _XX - cx)
    # body radius: spiculated nodules have a smaller body and spikes out to the mask edge
    body = mask_radius * float(rng.uniform(0.38, 0.52) if spiculated else rng.uniform(0.5, 0.7))
    amp = 0.12 + 0.55 * c

    if spiculated:
        # lobulated outline and thin radial spikes reaching close to the mask edge
        lobes = 1 + 0.12 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi)) + 0.08 * np.sin(5 * theta + rng.uniform(0, 2 * np.pi))
        radius = body * lobes
        shape = 1.0 / (1.0 + np.exp((r - radius) / 0.5))
        n_spikes = int(rng.integers(4, 8))
        angles = rng.uniform(0, 2 * np.pi) + np.arange(n_spikes) * 2 * np.pi / n_spikes + rng.normal(0, 0.25, n_spikes)
        spikes = np.zeros_like(r)
        for a in angles:
            reach = float(rng.uniform(mask_radius - 1.5, mask_radius - 0.5))
            width = float(rng.uniform(0.85, 1.05))  # gaussian sigma across the spike, px (coarse: survives the 8x8 latent)
            across = np.abs(_angle_diff(theta, a)) * r  # px distance across the spike
            t = np.clip((r - body * 0.6) / max(reach - body * 0.6, 1e-3), 0, None)
            along = np.clip(1 - 0.4 * t, 0, 1) / (1.0 + np.exp((r - reach) / 0.4))  # dimmer outwards, ends at reach
            spikes = np.maximum(spikes, np.exp(-(across**2) / (2 * width**2)) * along)
        shape = np.maximum(shape, 0.95 * spikes)
    else:
        shape = 1.0 / (1.0 + np.exp((r - body) / 0.7))
        shape = shape * (1 - 0.15 * (r / body) ** 2).clip(0.6, 1)  # dome: brighter in the middle

    texture = 1 + 0.08 * _smooth_noise(rng, 1.0)
    m = amp * shape * texture
    if calcified:
        core_amp = float(rng.uniform(0.5, 0.7))
        core_r = body * float(rng.uniform(0.3, 0.45))
        offset = rng.normal(0, 0.15 * body, size=2)
        rc = np.hypot(_YY - cy - offset[0], _XX - cx - offset[1])
        m = m + core_amp / (1.0 + np.exp((rc - core_r) / 0.45))
    mask = (r <= mask_radius).astype(np.float32)
    m = (m * mask).astype(np.float32)
    attrs = dict(
        calcified=bool(calcified),
        spiculated=bool(spiculated),
        contrast=c,
        center=(cy, cx),
        mask_radius=float(mask_radius),
        body_radius=body,
        amplitude=amp,
    )
    return m, mask, attrs


def sample(
    rng: np.random.Generator,
    calcified: bool | None = None,
    spiculated: bool | None = None,
    contrast: Any = None,
    center: tuple[float, float] | None = None,
    mask_radius: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(image_with_nodule, mask, background_only, attributes), arrays [32, 32] float32.

    Attributes left None are drawn from the base distribution: calcified with
    probability P_CALCIFIED, spiculated with P_SPICULATED, contrast uniform in [0, 1].
    """
    if calcified is None:
        calcified = bool(rng.random() < P_CALCIFIED)
    if spiculated is None:
        spiculated = bool(rng.random() < P_SPICULATED)
    bg = background(rng)
    m, mask, attrs = nodule(rng, calcified, spiculated, contrast, center=center, mask_radius=mask_radius)
    img = np.clip(bg + m, -1, 1).astype(np.float32)
    return img, mask, bg, attrs


def masked_image(image: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """The inpainting condition image: `image` with the mask region set to `fill` (0 = mid gray)."""
    return (image * (1 - mask) + fill * mask).astype(np.float32)


def batch(seed: int, n: int, **kwargs) -> dict:
    """n samples from one seed, stacked: image, mask, background [n, 1, 32, 32] float32,
    calcified, spiculated (bool [n]), contrast (float32 [n])."""
    rng = np.random.default_rng(seed)
    imgs, masks, bgs, attrs = [], [], [], []
    for _ in range(n):
        img, mask, bg, a = sample(rng, **kwargs)
        imgs.append(img)
        masks.append(mask)
        bgs.append(bg)
        attrs.append(a)
    return dict(
        image=np.stack(imgs)[:, None],
        mask=np.stack(masks)[:, None],
        background=np.stack(bgs)[:, None],
        calcified=np.array([a["calcified"] for a in attrs]),
        spiculated=np.array([a["spiculated"] for a in attrs]),
        contrast=np.array([a["contrast"] for a in attrs], dtype=np.float32),
    )


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 255], as (x / 2 + 0.5).clamp(0, 1)."""
    return (np.clip(img / 2 + 0.5, 0, 1) * 255 + 0.5).astype(np.uint8)


def grid(rows: list[list[np.ndarray]], zoom: int = 4, pad: int = 2) -> np.ndarray:
    """Tile [32, 32] images (in [-1, 1]) into a uint8 grid, each zoomed `zoom` times (nearest)."""
    h = SIZE * zoom
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    out = np.full((n_rows * (h + pad) + pad, n_cols * (h + pad) + pad), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            tile = np.kron(to_uint8(np.asarray(img).reshape(SIZE, SIZE)), np.ones((zoom, zoom), np.uint8))
            y, x = pad + i * (h + pad), pad + j * (h + pad)
            out[y : y + h, x : x + h] = tile
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--calcified", choices=["yes", "no"], default=None)
    ap.add_argument("--spiculated", choices=["yes", "no"], default=None)
    ap.add_argument("--contrast", default=None, help='a number in [0, 1], "subtle" or "obvious"')
    ap.add_argument("--out", default="/tmp/nodule-patches.png", help="PNG grid: rows image / mask / background")
    args = ap.parse_args()
    kw: dict = {}
    if args.calcified:
        kw["calcified"] = args.calcified == "yes"
    if args.spiculated:
        kw["spiculated"] = args.spiculated == "yes"
    if args.contrast is not None:
        kw["contrast"] = args.contrast if args.contrast in ("subtle", "obvious") else float(args.contrast)
    b = batch(args.seed, args.n, **kw)
    rows = [list(b["image"][:, 0]), [m * 2 - 1 for m in b["mask"][:, 0]], list(b["background"][:, 0])]
    from PIL import Image

    Image.fromarray(grid(rows)).save(args.out)
    for i in range(args.n):
        print(f"{i}: calcified={b['calcified'][i]} spiculated={b['spiculated'][i]} contrast={b['contrast'][i]:.2f}")
    print(args.out)


if __name__ == "__main__":
    main()
