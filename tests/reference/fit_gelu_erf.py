"""Fits the polynomials of the AVX-512 exact GELU (Sources/CNodusKernels/activation.c).

GELU(x) = x * Phi(x), Phi(x) = (1 + erf(z)) / 2 with z = x / sqrt(2):
  |z| <= 1: erf(z) = z * P(z^2), P of degree 6;
  |z| > 1:  erfc(|z|) = Q(t) * exp(-z^2), t = 1 / (1 + |z| / 2), Q of degree 9
            (fitted on [1, 9.4]; below that erfc(|z|) < 1e-39 and exp gives 0).
Prints the float32 coefficients (highest degree first) and the error of the
whole GELU evaluated in float32 as the kernel evaluates it. Needs numpy only.
"""
import math

import numpy as np

F32 = np.float32


def fits():
    nodes = np.cos(np.linspace(0, np.pi, 4000)) * 0.5 + 0.5  # dense near the ends of [0, 1]
    ratio = np.array([math.erf(z) / z if z > 0 else 2 / math.sqrt(math.pi) for z in nodes])
    small = np.polyfit(nodes**2, ratio, 6).astype(F32)
    zs = np.linspace(1, 9.4, 8000)
    scaled = np.array([math.erfc(z) * math.exp(z * z) for z in zs])
    large = np.polyfit(1 / (1 + 0.5 * zs), scaled, 9).astype(F32)
    return small, large


def horner(coefficients, x):
    result = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        result = (result * x + c).astype(F32)
    return result


def gelu_float32(x, small, large):
    z = (x * F32(0.70710678118654752)).astype(F32)
    a = np.abs(z)
    phi_small = (F32(0.5) + F32(0.5) * (horner(small, (z * z).astype(F32)) * z)).astype(F32)
    t = (F32(1) / (F32(1) + F32(0.5) * a)).astype(F32)
    square = (a * a).astype(F32)
    low = (a.astype(np.float64) ** 2 - square).astype(F32)  # what fma(a, a, -square) gives
    erfc = (horner(large, t) * np.exp(-square).astype(F32) * (F32(1) - low)).astype(F32)
    phi_large = np.where(z > 0, F32(1) - F32(0.5) * erfc, F32(0.5) * erfc).astype(F32)
    return (x * np.where(a <= 1, phi_small, phi_large)).astype(F32)


def main():
    small, large = fits()
    x = np.concatenate([np.linspace(-14, 14, 200001), np.linspace(-1e-3, 1e-3, 2001)]).astype(F32)
    ours = gelu_float32(x, small, large)
    exact = np.array([0.5 * float(v) * math.erfc(-float(v) / math.sqrt(2)) for v in x])
    relevant = np.abs(exact) > 1e-30
    relative = np.abs(ours - exact)[relevant] / np.abs(exact)[relevant]
    print("P (erf(z) / z in z^2):", ", ".join(f"{c:.9e}f" for c in small))
    print("Q (erfc(z) e^(z^2) in t):", ", ".join(f"{c:.9e}f" for c in large))
    print(f"GELU in float32: max relative error {relative.max():.2e}, max absolute {np.abs(ours - exact).max():.2e}")


if __name__ == "__main__":
    main()
