/* The 12 x 32 register tile the float32 and bf16 GEMMs and attention share
 * (internal to the C target): the float32 products of a tile, and how a
 * kernel's sums, 12 rows of two 16-float vectors, are stored to C with their
 * epilogue. */
#ifndef NODUS_TILE_H
#define NODUS_TILE_H

#include <math.h>

#include "nodus_gemm.h"
#include "simd.h"

enum { TILE_ROWS = 12, TILE_COLUMNS = 32 };

/* What a kernel adds to its tile after the products. */
typedef struct tile_epilogue {
    const float *row_bias;    /* per row of the tile, or NULL */
    const float *column_bias; /* per column of the tile, or NULL */
    float scale;              /* multiplies the products */
    int load;                 /* add the tile's old values */
    float gate_scale;         /* when not 0, the stored values become sigmoid_gate512 of them */
    float gate_cubic;         /* with this cubic term */
} tile_epilogue;

/* The epilogue applying `activation` as it stores (the last store of a tile). */
static inline tile_epilogue activating(tile_epilogue epilogue, nodus_gemm_activation activation) {
    switch (activation) {
    case NODUS_GEMM_ACTIVATION_GELU_TANH:
        epilogue.gate_scale = GELU_TANH_SCALE;
        epilogue.gate_cubic = GELU_TANH_CUBIC;
        break;
    case NODUS_GEMM_ACTIVATION_SILU: epilogue.gate_scale = 1; break;
    case NODUS_GEMM_ACTIVATION_QUICK_GELU: epilogue.gate_scale = QUICK_GELU_SCALE; break;
    case NODUS_GEMM_ACTIVATION_NONE: break;
    }
    return epilogue;
}

/* The epilogue's gate on one float, for code without vectors: the formula of sigmoid_gate512. */
static inline float gated(float x, tile_epilogue epilogue) {
    if (epilogue.gate_scale == 0) return x;
    return x / (1.0f + expf(-epilogue.gate_scale * x * (1.0f + epilogue.gate_cubic * x * x)));
}

/* The tile's rows of C arrive from memory while the products run. */
AVX512 static inline __attribute__((always_inline)) void prefetch_tile(float *c, int64_t ldc, int64_t rows,
                                                                        tile_epilogue epilogue) {
    if (!epilogue.load) return;
#pragma GCC unroll 12
    for (int i = 0; i < TILE_ROWS; i++) {
        if (i < rows) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
        }
    }
}

/* Stores the sums (columns 0..15 in low, 16..31 in high) with the epilogue;
 * edge tiles masked. */
AVX512 static inline __attribute__((always_inline)) void store_tile(__m512 *low, __m512 *high, float *c, int64_t ldc,
                                                                     int64_t rows, int64_t columns,
                                                                     tile_epilogue epilogue) {
    if (epilogue.scale != 1.0f) {
        const __m512 scale = _mm512_set1_ps(epilogue.scale);
#pragma GCC unroll 12
        for (int i = 0; i < TILE_ROWS; i++) {
            low[i] = _mm512_mul_ps(low[i], scale);
            high[i] = _mm512_mul_ps(high[i], scale);
        }
    }
    const __mmask16 mask_low = lanes(columns), mask_high = lanes(columns - 16);
    __m512 bias_low = _mm512_setzero_ps(), bias_high = _mm512_setzero_ps();
    if (epilogue.column_bias) {
        bias_low = _mm512_maskz_loadu_ps(mask_low, epilogue.column_bias);
        bias_high = _mm512_maskz_loadu_ps(mask_high, epilogue.column_bias + 16);
    }
#pragma GCC unroll 12
    for (int i = 0; i < TILE_ROWS; i++) {
        if (i >= rows) break;
        float *row = c + i * ldc;
        __m512 v0 = _mm512_add_ps(low[i], bias_low), v1 = _mm512_add_ps(high[i], bias_high);
        if (epilogue.row_bias) {
            const __m512 r = _mm512_set1_ps(epilogue.row_bias[i]);
            v0 = _mm512_add_ps(v0, r);
            v1 = _mm512_add_ps(v1, r);
        }
        if (epilogue.load) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(mask_low, row));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(mask_high, row + 16));
        }
        if (epilogue.gate_scale != 0) {
            v0 = sigmoid_gate512(v0, epilogue.gate_scale, epilogue.gate_cubic, 0);
            v1 = sigmoid_gate512(v1, epilogue.gate_scale, epilogue.gate_cubic, 0);
        }
        _mm512_mask_storeu_ps(row, mask_low, v0);
        _mm512_mask_storeu_ps(row + 16, mask_high, v1);
    }
}

/* The float32 tile [rows x columns] (at most ROWS x TILE_COLUMNS, ROWS at most
 * TILE_ROWS) = A x a B panel ([depth][TILE_COLUMNS]) over depth, then the
 * epilogue: element (i, p) of A at a[i * row_step + p * depth_step]. Inlined
 * with constant ROWS and steps into the GEMM's kernels and attention's. Edge
 * tiles are stored masked. */
AVX512 static inline __attribute__((always_inline)) void tile_products_of(
    const int ROWS, int64_t depth, const float *a, int64_t row_step, int64_t depth_step, const float *b, float *c,
    int64_t ldc, int64_t rows, int64_t columns, tile_epilogue epilogue) {
    prefetch_tile(c, ldc, rows, epilogue);
    __m512 low[TILE_ROWS], high[TILE_ROWS];
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; i++) low[i] = high[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < depth; p++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < ROWS; i++) {
            __m512 ai = _mm512_set1_ps(a[i * row_step]);
            low[i] = _mm512_fmadd_ps(ai, b0, low[i]);
            high[i] = _mm512_fmadd_ps(ai, b1, high[i]);
        }
        a += depth_step;
        b += TILE_COLUMNS;
    }
    store_tile(low, high, c, ldc, rows < ROWS ? rows : ROWS, columns, epilogue);
}

/* tile_products_of a whole register tile. */
AVX512 static inline __attribute__((always_inline)) void tile_products(
    int64_t depth, const float *a, int64_t row_step, int64_t depth_step, const float *b, float *c, int64_t ldc,
    int64_t rows, int64_t columns, tile_epilogue epilogue) {
    tile_products_of(TILE_ROWS, depth, a, row_step, depth_step, b, c, ldc, rows, columns, epilogue);
}

#endif
