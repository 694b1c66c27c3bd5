#include "nodus_layout.h"

#include "nodus_cpu.h"
#include "simd.h"
#include "simd_avx2.h"

int nodus_layout_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

AVX512 static void transpose_rows(const float *input, float *output, int64_t rows, int64_t columns, int64_t row_begin,
                                  int64_t row_end) {
    for (int64_t r0 = row_begin; r0 < row_end; r0 += 16) {
        const int64_t height = min64(16, row_end - r0);
        interleave_lines(input + r0 * columns, columns, height, columns, output + r0, rows, height);
    }
}

/* transpose_rows on AVX2, 8 x 8 blocks. */
AVX2 static void transpose_rows_avx2(const float *input, float *output, int64_t rows, int64_t columns,
                                     int64_t row_begin, int64_t row_end) {
    for (int64_t r0 = row_begin; r0 < row_end; r0 += 8) {
        const int64_t height = min64(8, row_end - r0);
        for (int64_t c0 = 0; c0 < columns; c0 += 8) {
            const int64_t width = min64(8, columns - c0);
            __m256 block[8];
            for (int64_t i = 0; i < 8; i++) {
                block[i] = i < height ? load8(input + (r0 + i) * columns + c0, width) : _mm256_setzero_ps();
            }
            transpose8(block);
            for (int64_t j = 0; j < width; j++) store8(output + (c0 + j) * rows + r0, block[j], height);
        }
    }
}

int nodus_transpose_rows(const float *input, float *output, int64_t rows, int64_t columns, int64_t row_begin,
                         int64_t row_end) {
    if (nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512) {
        transpose_rows(input, output, rows, columns, row_begin, row_end);
    } else if (nodus_layout_supported()) {
        transpose_rows_avx2(input, output, rows, columns, row_begin, row_end);
    } else {
        return 0;
    }
    return 1;
}
