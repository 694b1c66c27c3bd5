/* W' = W + sum_t f_t B_t A_t in one pass over W (see nodus_kernels.h).
 *
 * The AVX-512 kernel works on tiles of MERGE_ROWS rows x MERGE_VECTORS * 16
 * columns: for each term it accumulates sum_r B[i, r] A[r, j] in registers
 * (each row of A's tile is loaded once and used for every row of the tile,
 * B's entries are broadcast), adds factor * sum onto the tile of W, and writes
 * the tile of W' once, with non-temporal stores when the target is aligned: a
 * fused weight is not read again soon, and streaming stores skip reading the
 * target's cache lines before writing them.
 *
 * Measured on the 112 DiT-XL/2 weights (1152 x 1152, rank 32) on 2 Zen 5
 * cores, weights and targets already mapped: 8 x 2 vectors with streaming
 * stores 24-27 ms; 4 x 4, 6 x 3, 4 x 2 and 16 x 1 vectors 28-35 ms; 8 x 4
 * (sums spill) 39 ms; 8 x 2 with ordinary stores 42 ms. The 9.5 GFLOP take at
 * least 22 ms at this CPU's fused multiply-add rate, so the pass is bound by
 * arithmetic, with the memory traffic hidden under it.
 *
 * The AVX2 form (merge_rows_avx2, at the AVX2 level) is the same pass on
 * 4 x 2 tiles of 8-float vectors, within the 16 ymm registers. */
#include "nodus_cpu.h"
#include "nodus_kernels.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define MERGE_ROWS 8
#define MERGE_VECTORS 2

#define AVX512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

/* One tile: `rows` x `vectors` vectors of 16 floats at (row, column); the last
 * vector is limited to `last_mask`. `rows` and `vectors` are constants at every
 * call, so the loops unroll and the sums live in registers. */
INLINE AVX512 void merge_tile(const float *weight, float *target, int64_t columns,
                              const nodus_low_rank_term *terms, int64_t term_count, int64_t row,
                              int64_t column, int rows, int vectors, __mmask16 last_mask, int stream) {
    __m512 out[MERGE_ROWS][MERGE_VECTORS];
    for (int m = 0; m < rows; m++) {
        for (int v = 0; v < vectors; v++) {
            const float *source = weight + (row + m) * columns + column + 16 * v;
            out[m][v] = v == vectors - 1 ? _mm512_maskz_loadu_ps(last_mask, source) : _mm512_loadu_ps(source);
        }
    }
    for (int64_t t = 0; t < term_count; t++) {
        const float *down = terms[t].down + column;
        const float *up = terms[t].up + row * terms[t].rank;
        const int64_t rank = terms[t].rank;
        __m512 sum[MERGE_ROWS][MERGE_VECTORS];
        for (int m = 0; m < rows; m++) {
            for (int v = 0; v < vectors; v++) sum[m][v] = _mm512_setzero_ps();
        }
        for (int64_t r = 0; r < rank; r++) {
            __m512 a[MERGE_VECTORS];
            for (int v = 0; v < vectors; v++) {
                const float *source = down + r * columns + 16 * v;
                a[v] = v == vectors - 1 ? _mm512_maskz_loadu_ps(last_mask, source) : _mm512_loadu_ps(source);
            }
            for (int m = 0; m < rows; m++) {
                const __m512 b = _mm512_set1_ps(up[m * rank + r]);
                for (int v = 0; v < vectors; v++) sum[m][v] = _mm512_fmadd_ps(b, a[v], sum[m][v]);
            }
        }
        const __m512 factor = _mm512_set1_ps(terms[t].factor);
        for (int m = 0; m < rows; m++) {
            for (int v = 0; v < vectors; v++) out[m][v] = _mm512_fmadd_ps(factor, sum[m][v], out[m][v]);
        }
    }
    for (int m = 0; m < rows; m++) {
        for (int v = 0; v < vectors; v++) {
            float *destination = target + (row + m) * columns + column + 16 * v;
            if (v == vectors - 1 && last_mask != 0xFFFF) {
                _mm512_mask_storeu_ps(destination, last_mask, out[m][v]);
            } else if (stream) {
                _mm512_stream_ps(destination, out[m][v]);
            } else {
                _mm512_storeu_ps(destination, out[m][v]);
            }
        }
    }
}

/* Every column of `rows` rows from `row`, `rows` a constant at each call. */
INLINE AVX512 void merge_row_block(const float *weight, float *target, int64_t columns,
                                   const nodus_low_rank_term *terms, int64_t term_count, int64_t row,
                                   int rows, int stream) {
    int64_t column = 0;
    for (; column + 16 * MERGE_VECTORS <= columns; column += 16 * MERGE_VECTORS) {
        merge_tile(weight, target, columns, terms, term_count, row, column, rows, MERGE_VECTORS, 0xFFFF, stream);
    }
    for (; column + 16 <= columns; column += 16) {
        merge_tile(weight, target, columns, terms, term_count, row, column, rows, 1, 0xFFFF, stream);
    }
    if (column < columns) {
        const __mmask16 mask = (__mmask16)((1u << (columns - column)) - 1);
        merge_tile(weight, target, columns, terms, term_count, row, column, rows, 1, mask, stream);
    }
}

static AVX512 void merge_rows_avx512(const float *weight, float *target, int64_t columns,
                                     const nodus_low_rank_term *terms, int64_t term_count, int64_t row_begin,
                                     int64_t row_end) {
    /* Streaming stores need every full vector 64-byte aligned. */
    const int stream = weight != target && (uintptr_t)target % 64 == 0 && columns % 16 == 0;
    int64_t row = row_begin;
    for (; row + MERGE_ROWS <= row_end; row += MERGE_ROWS) {
        merge_row_block(weight, target, columns, terms, term_count, row, MERGE_ROWS, stream);
    }
    if (MERGE_ROWS > 4 && row + 4 <= row_end) {
        merge_row_block(weight, target, columns, terms, term_count, row, 4, stream);
        row += 4;
    }
    for (; row < row_end; row++) merge_row_block(weight, target, columns, terms, term_count, row, 1, stream);
    if (stream) _mm_sfence();
}

/* The AVX2 form: tiles of MERGE_ROWS_AVX2 rows x 2 vectors of 8 (8 sums, 2
 * vectors of A and a broadcast of B in registers; the tile of W waits on the
 * stack while a term's sums run), the same order of operations. */
#define MERGE_ROWS_AVX2 4
#define AVX2 __attribute__((target("avx2,fma")))

INLINE AVX2 __m256i lanes_avx2(int64_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* `vectors` vectors (1 or 2) at (row, column); the last masked to `last` lanes (1 ... 8). */
INLINE AVX2 void merge_tile_avx2(const float *weight, float *target, int64_t columns,
                                 const nodus_low_rank_term *terms, int64_t term_count, int64_t row, int64_t column,
                                 int rows, int vectors, int64_t last, int stream) {
    const __m256i last_mask = lanes_avx2(last);
    __m256 out[MERGE_ROWS_AVX2][2];
    for (int m = 0; m < rows; m++) {
        for (int v = 0; v < vectors; v++) {
            const float *source = weight + (row + m) * columns + column + 8 * v;
            out[m][v] = v == vectors - 1 && last < 8 ? _mm256_maskload_ps(source, last_mask) : _mm256_loadu_ps(source);
        }
    }
    for (int64_t t = 0; t < term_count; t++) {
        const float *down = terms[t].down + column;
        const float *up = terms[t].up + row * terms[t].rank;
        const int64_t rank = terms[t].rank;
        __m256 sum[MERGE_ROWS_AVX2][2];
        for (int m = 0; m < rows; m++) {
            for (int v = 0; v < vectors; v++) sum[m][v] = _mm256_setzero_ps();
        }
        for (int64_t r = 0; r < rank; r++) {
            __m256 a[2];
            for (int v = 0; v < vectors; v++) {
                const float *source = down + r * columns + 8 * v;
                a[v] = v == vectors - 1 && last < 8 ? _mm256_maskload_ps(source, last_mask) : _mm256_loadu_ps(source);
            }
            for (int m = 0; m < rows; m++) {
                const __m256 b = _mm256_broadcast_ss(up + m * rank + r);
                for (int v = 0; v < vectors; v++) sum[m][v] = _mm256_fmadd_ps(b, a[v], sum[m][v]);
            }
        }
        const __m256 factor = _mm256_set1_ps(terms[t].factor);
        for (int m = 0; m < rows; m++) {
            for (int v = 0; v < vectors; v++) out[m][v] = _mm256_fmadd_ps(factor, sum[m][v], out[m][v]);
        }
    }
    for (int m = 0; m < rows; m++) {
        for (int v = 0; v < vectors; v++) {
            float *destination = target + (row + m) * columns + column + 8 * v;
            if (v == vectors - 1 && last < 8) {
                _mm256_maskstore_ps(destination, last_mask, out[m][v]);
            } else if (stream) {
                _mm256_stream_ps(destination, out[m][v]);
            } else {
                _mm256_storeu_ps(destination, out[m][v]);
            }
        }
    }
}

INLINE AVX2 void merge_row_block_avx2(const float *weight, float *target, int64_t columns,
                                      const nodus_low_rank_term *terms, int64_t term_count, int64_t row, int rows,
                                      int stream) {
    int64_t column = 0;
    for (; column + 16 <= columns; column += 16) {
        merge_tile_avx2(weight, target, columns, terms, term_count, row, column, rows, 2, 8, stream);
    }
    for (; column + 8 <= columns; column += 8) {
        merge_tile_avx2(weight, target, columns, terms, term_count, row, column, rows, 1, 8, stream);
    }
    if (column < columns) {
        merge_tile_avx2(weight, target, columns, terms, term_count, row, column, rows, 1, columns - column, stream);
    }
}

static AVX2 void merge_rows_avx2(const float *weight, float *target, int64_t columns,
                                 const nodus_low_rank_term *terms, int64_t term_count, int64_t row_begin,
                                 int64_t row_end) {
    /* Streaming stores need every full vector 32-byte aligned. */
    const int stream = weight != target && (uintptr_t)target % 32 == 0 && columns % 8 == 0;
    int64_t row = row_begin;
    for (; row + MERGE_ROWS_AVX2 <= row_end; row += MERGE_ROWS_AVX2) {
        merge_row_block_avx2(weight, target, columns, terms, term_count, row, MERGE_ROWS_AVX2, stream);
    }
    for (; row < row_end; row++) merge_row_block_avx2(weight, target, columns, terms, term_count, row, 1, stream);
    if (stream) _mm_sfence();
}

int nodus_low_rank_merge_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

int nodus_low_rank_merge_rows(const float *weight, float *target, int64_t columns,
                              const nodus_low_rank_term *terms, int64_t term_count, int64_t row_begin,
                              int64_t row_end) {
    if (nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512) {
        merge_rows_avx512(weight, target, columns, terms, term_count, row_begin, row_end);
    } else if (nodus_low_rank_merge_supported()) {
        merge_rows_avx2(weight, target, columns, terms, term_count, row_begin, row_end);
    } else {
        return 0;
    }
    return 1;
}
