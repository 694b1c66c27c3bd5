/* Element-wise activations on AVX-512 or AVX2 + FMA (16 or 8 floats at a time,
 * exp in registers; the same formulas at both levels).
 * Internal to Nodus (not part of the public ABI in include/nodus.h). */
#ifndef NODUS_ACTIVATION_H
#define NODUS_ACTIVATION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_ACTIVATION_INTERNAL __attribute__((visibility("hidden")))

/* 1 when the level in use runs the functions below (AVX2 + FMA and up), else 0. */
NODUS_ACTIVATION_INTERNAL int nodus_activation_supported(void);

/* GELU with the tanh approximation, as x * sigmoid(2 u) with
 * u = sqrt(2 / pi) (x + 0.044715 x^3): 0.5 x (1 + tanh u) without its
 * cancellation. `output` may be `input`. Returns 1, or 0 below AVX2. */
NODUS_ACTIVATION_INTERNAL int nodus_gelu_tanh(const float *input, float *output, int64_t count);

/* SiLU, x * sigmoid(x). `output` may be `input`. Returns 1, or 0 below AVX2. */
NODUS_ACTIVATION_INTERNAL int nodus_silu(const float *input, float *output, int64_t count);
/* sigmoid(x) = 1 / (1 + e^-x) (a gate, as gated attention's). */
NODUS_ACTIVATION_INTERNAL int nodus_sigmoid(const float *input, float *output, int64_t count);

/* transformers' quick_gelu, x * sigmoid(1.702 x). `output` may be `input`. Returns 1, or 0 below AVX2. */
NODUS_ACTIVATION_INTERNAL int nodus_quick_gelu(const float *input, float *output, int64_t count);

/* The exact GELU (nn.GELU()), x * Phi(x) with Phi the standard normal CDF.
 * `output` may be `input`. Returns 1, or 0 below AVX2. */
NODUS_ACTIVATION_INTERNAL int nodus_gelu_erf(const float *input, float *output, int64_t count);

/* GEGLU (diffusers' GEGLU after its projection): each input row [2 width] is
 * (hidden, gate); output row = hidden * gate * Phi(gate), the exact (erf)
 * GELU. `output` must not overlap `input`. Returns 1, or 0 below AVX2. */
NODUS_ACTIVATION_INTERNAL int nodus_geglu(const float *input, float *output, int64_t rows, int64_t width);

#ifdef __cplusplus
}
#endif

#endif
