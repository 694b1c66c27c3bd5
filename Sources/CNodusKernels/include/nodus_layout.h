/* Data layout changes on AVX-512 or AVX2. Internal to Nodus (not part of the public
 * ABI in include/nodus.h). */
#ifndef NODUS_LAYOUT_H
#define NODUS_LAYOUT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_LAYOUT_INTERNAL __attribute__((visibility("hidden")))

/* 1 when the level in use runs the functions below (AVX2 and up), else 0. */
NODUS_LAYOUT_INTERNAL int nodus_layout_supported(void);

/* output[c * rows + r] = input[r * columns + c] for rows [row_begin, row_end)
 * of one [rows, columns] matrix, 16 x 16 blocks in registers. Threads may take
 * disjoint row ranges. Returns 1, or 0 below AVX2. */
NODUS_LAYOUT_INTERNAL int nodus_transpose_rows(const float *input, float *output, int64_t rows, int64_t columns,
                                               int64_t row_begin, int64_t row_end);

#ifdef __cplusplus
}
#endif

#endif
