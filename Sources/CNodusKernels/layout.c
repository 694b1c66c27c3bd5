#include "nodus_layout.h"

#include "nodus_cpu.h"
#include "simd.h"

int nodus_layout_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512; }

AVX512 static void transpose_rows(const float *input, float *output, int64_t rows, int64_t columns, int64_t row_begin,
                                  int64_t row_end) {
    for (int64_t r0 = row_begin; r0 < row_end; r0 += 16) {
        const int64_t height = min64(16, row_end - r0);
        const __mmask16 store = lanes(height);
        for (int64_t c0 = 0; c0 < columns; c0 += 16) {
            const int64_t width = min64(16, columns - c0);
            const __mmask16 load = lanes(width);
            __m512 block[16];
            for (int64_t i = 0; i < 16; i++) {
                block[i] = i < height ? _mm512_maskz_loadu_ps(load, input + (r0 + i) * columns + c0)
                                      : _mm512_setzero_ps();
            }
            transpose16(block);
            for (int64_t j = 0; j < width; j++) _mm512_mask_storeu_ps(output + (c0 + j) * rows + r0, store, block[j]);
        }
    }
}

int nodus_transpose_rows(const float *input, float *output, int64_t rows, int64_t columns, int64_t row_begin,
                         int64_t row_end) {
    if (!nodus_layout_supported()) return 0;
    transpose_rows(input, output, rows, columns, row_begin, row_end);
    return 1;
}
