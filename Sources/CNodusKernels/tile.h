/* The 12 x 32 register tile the float32 and bf16 GEMMs share (internal to the
 * C target): how a kernel's sums, 12 rows of two 16-float vectors, are stored
 * to C with their epilogue. */
#ifndef NODUS_TILE_H
#define NODUS_TILE_H

#include "simd.h"

enum { TILE_ROWS = 12, TILE_COLUMNS = 32 };

/* What a kernel adds to its tile after the products. */
typedef struct tile_epilogue {
    const float *row_bias;    /* per row of the tile, or NULL */
    const float *column_bias; /* per column of the tile, or NULL */
    float scale;              /* multiplies the products */
    int load;                 /* add the tile's old values */
} tile_epilogue;

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
        _mm512_mask_storeu_ps(row, mask_low, v0);
        _mm512_mask_storeu_ps(row + 16, mask_high, v1);
    }
}

#endif
