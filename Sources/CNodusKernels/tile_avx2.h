/* The 6 x 16 register tile of the AVX2 GEMM (internal to the C target), the
 * 16-register counterpart of tile.h's 12 x 32: how a kernel's sums, 6 rows of
 * two 8-float vectors, are stored to C with the same epilogue. */
#ifndef NODUS_TILE_AVX2_H
#define NODUS_TILE_AVX2_H

#include "simd_avx2.h"
#include "tile.h"

enum { TILE_AVX2_ROWS = 6, TILE_AVX2_COLUMNS = 16 };

/* The tile's rows of C arrive from memory while the products run. */
AVX2 static inline __attribute__((always_inline)) void prefetch_tile_avx2(float *c, int64_t ldc, int64_t rows,
                                                                           tile_epilogue epilogue) {
    if (!epilogue.load) return;
#pragma GCC unroll 6
    for (int i = 0; i < TILE_AVX2_ROWS; i++) {
        if (i < rows) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    }
}

/* Stores the sums (columns 0..7 in low, 8..15 in high) with the epilogue;
 * edge tiles masked. */
AVX2 static inline __attribute__((always_inline)) void store_tile_avx2(__m256 *low, __m256 *high, float *c,
                                                                        int64_t ldc, int64_t rows, int64_t columns,
                                                                        tile_epilogue epilogue) {
    if (epilogue.scale != 1.0f) {
        const __m256 scale = _mm256_set1_ps(epilogue.scale);
#pragma GCC unroll 6
        for (int i = 0; i < TILE_AVX2_ROWS; i++) {
            low[i] = _mm256_mul_ps(low[i], scale);
            high[i] = _mm256_mul_ps(high[i], scale);
        }
    }
    __m256 bias_low = _mm256_setzero_ps(), bias_high = _mm256_setzero_ps();
    if (epilogue.column_bias) {
        bias_low = load8(epilogue.column_bias, columns);
        bias_high = load8(epilogue.column_bias + 8, columns - 8);
    }
    const int full = columns >= TILE_AVX2_COLUMNS;
#pragma GCC unroll 6
    for (int i = 0; i < TILE_AVX2_ROWS; i++) {
        if (i >= rows) break;
        float *row = c + i * ldc;
        __m256 v0 = _mm256_add_ps(low[i], bias_low), v1 = _mm256_add_ps(high[i], bias_high);
        if (epilogue.row_bias) {
            const __m256 r = _mm256_set1_ps(epilogue.row_bias[i]);
            v0 = _mm256_add_ps(v0, r);
            v1 = _mm256_add_ps(v1, r);
        }
        if (epilogue.load) {
            v0 = _mm256_add_ps(v0, full ? _mm256_loadu_ps(row) : load8(row, columns));
            v1 = _mm256_add_ps(v1, full ? _mm256_loadu_ps(row + 8) : load8(row + 8, columns - 8));
        }
        if (epilogue.gate_scale != 0) {
            v0 = sigmoid_gate256(v0, epilogue.gate_scale, epilogue.gate_cubic, 0);
            v1 = sigmoid_gate256(v1, epilogue.gate_scale, epilogue.gate_cubic, 0);
        }
        if (full) {
            _mm256_storeu_ps(row, v0);
            _mm256_storeu_ps(row + 8, v1);
        } else {
            store8(row, v0, columns);
            store8(row + 8, v1, columns - 8);
        }
    }
}

#endif
