/* Single-precision matrix products on AVX-512 or AVX2 + FMA (the level in use,
 * nodus_cpu.h; packed operands are laid out for that level's tile): C = A B (+ bias, + C), with A
 * and B read through strides (so either may be transposed) or, for B, straight
 * from an NCHW image as the im2col matrix of a convolution, without building
 * that matrix. Internal to Nodus (not part of the public ABI in include/nodus.h). */
#ifndef NODUS_GEMM_H
#define NODUS_GEMM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_GEMM_INTERNAL __attribute__((visibility("hidden")))

/* A matrix read through strides: element (i, j) is data[i * row_stride + j * column_stride]. */
typedef struct nodus_gemm_matrix {
    const float *data;
    int64_t row_stride, column_stride;
} nodus_gemm_matrix;

/* One image of a convolution's input, [channels, height, width], read as the
 * im2col matrix B [channels * kernel_height * kernel_width, out_height * out_width]:
 * B[(c * kh + dy) * kw + dx, oy * out_width + ox] =
 *   image[c, oy * stride + dy - pad_top, ox * stride + dx - pad_left], 0 outside. */
typedef struct nodus_gemm_image {
    const float *data;
    int64_t channels, height, width;
    int64_t kernel_height, kernel_width, stride, pad_top, pad_left;
    int64_t out_height, out_width;
} nodus_gemm_image;

/* What is applied to each element of C once its sum is complete (after biases
 * and the old C): the activation a Linear's reader would apply, fused. */
typedef enum nodus_gemm_activation {
    NODUS_GEMM_ACTIVATION_NONE = 0,
    NODUS_GEMM_ACTIVATION_GELU_TANH, /* GELU(approximate="tanh") */
    NODUS_GEMM_ACTIVATION_SILU,
    NODUS_GEMM_ACTIVATION_QUICK_GELU /* x sigmoid(1.702 x) */
} nodus_gemm_activation;

/* C [m, n] (row stride ldc) = activation(scale * A [m, k] B [k, n], plus row_bias[i] on
 * row i and column_bias[j] on column j when given, plus the old C when
 * accumulate is 1). A is read from packed_a when set (packed by
 * nodus_gemm_pack_a for this m and k), else from `a`; B from packed_b when set
 * (nodus_gemm_pack_b for this k and n), else from `image` when image.data is
 * set, else from `b`. */
typedef struct nodus_gemm_problem {
    int64_t m, n, k;
    nodus_gemm_matrix a, b;
    nodus_gemm_image image;
    const float *packed_a, *packed_b;
    float *c;
    int64_t ldc;
    const float *row_bias, *column_bias;
    float scale;
    int accumulate;
    nodus_gemm_activation activation;
} nodus_gemm_problem;

/* 1 when the level in use runs nodus_gemm_block (AVX2 + FMA or AVX-512F), else 0. */
NODUS_GEMM_INTERNAL int nodus_gemm_supported(void);

/* The register tile of the level in use: rows and columns of C one kernel call
 * computes (12 x 32 at AVX-512, 6 x 16 at AVX2), and the panel widths of packed
 * A and B. Thread splits should fall on multiples of these. */
NODUS_GEMM_INTERNAL int64_t nodus_gemm_tile_rows(void);
NODUS_GEMM_INTERNAL int64_t nodus_gemm_tile_columns(void);

/* Floats an A [m, k] or a B [k, n] takes packed: the panels the product
 * reads, so that a constant operand (a weight) is packed once, not per call. */
NODUS_GEMM_INTERNAL int64_t nodus_gemm_packed_a_count(int64_t m, int64_t k);
NODUS_GEMM_INTERNAL int64_t nodus_gemm_packed_b_count(int64_t k, int64_t n);

/* Packs rows [row_begin, row_end) of A [m, k], or columns [column_begin,
 * column_end) of B [k, n], into `target` (the whole packed operand). Ranges
 * start on a multiple of the tile rows (columns); threads may pack disjoint
 * ranges. Return 1, or 0 without touching `target` below the AVX2 level. */
NODUS_GEMM_INTERNAL int nodus_gemm_pack_a(const nodus_gemm_matrix *a, int64_t m, int64_t k, int64_t row_begin,
                                          int64_t row_end, float *target);
NODUS_GEMM_INTERNAL int nodus_gemm_pack_b(const nodus_gemm_matrix *b, int64_t k, int64_t n, int64_t column_begin,
                                          int64_t column_end, float *target);

/* Computes C[row_begin..<row_end, column_begin..<column_end]. Threads may call
 * it on disjoint blocks of one problem; blocks start on multiples of the tile
 * rows and columns. Returns 1, or 0 without touching C
 * below the AVX2 level. (Without memory for its packing buffers it
 * still finishes, element by element.) */
NODUS_GEMM_INTERNAL int nodus_gemm_block(const nodus_gemm_problem *problem, int64_t row_begin, int64_t row_end,
                                         int64_t column_begin, int64_t column_end);

#ifdef __cplusplus
}
#endif

#endif
