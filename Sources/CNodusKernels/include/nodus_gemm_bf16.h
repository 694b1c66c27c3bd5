/* Matrix products with a bfloat16 weight: C (float32) = A B (+ bias, + C),
 * one operand a weight packed once into bf16 panels, the other float32
 * activations rounded to bf16 as they are packed; bf16 x bf16 products summed
 * in float32 (as torch's bf16 autocast computes its matmuls and convolutions).
 * Internal to Nodus (not part of the public ABI in include/nodus.h). */
#ifndef NODUS_GEMM_BF16_H
#define NODUS_GEMM_BF16_H

#include <stdint.h>

#include "nodus_gemm.h" /* nodus_gemm_matrix, nodus_gemm_image: the float32 operands read the same way */

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_GEMM_BF16_INTERNAL __attribute__((visibility("hidden")))

/* Which operand a weight [rows, depth] (row-major float32) becomes. */
typedef enum nodus_gemm_bf16_role {
    /* A Linear weight W [n, k]: B[k, n] = W[n, k]; A is the activations. */
    NODUS_GEMM_BF16_LINEAR = 0,
    /* A convolution weight [out, in * kh * kw]: A; B is the image's patches (or a matrix). */
    NODUS_GEMM_BF16_CONVOLUTION = 1,
} nodus_gemm_bf16_role;

/* The code that runs a product. Every path gives the same bf16 operands; the
 * fallbacks sum the (exact) bf16 products with float32 fused multiply-adds in
 * the order vdpbf16ps specifies, so they agree with it to float32 rounding. */
typedef enum nodus_gemm_bf16_path {
    NODUS_GEMM_BF16_AUTOMATIC = 0,   /* the fastest this CPU has */
    NODUS_GEMM_BF16_DOT_PRODUCT = 1, /* avx512_bf16 vdpbf16ps */
    NODUS_GEMM_BF16_AVX512 = 2,      /* AVX-512F fused multiply-adds */
    NODUS_GEMM_BF16_PORTABLE = 3,    /* plain C */
    NODUS_GEMM_BF16_AVX2 = 4,        /* AVX2 fused multiply-adds: the AVX512 path's sums, bit for bit */
} nodus_gemm_bf16_path;

/* C [m, n] (row stride ldc) = A [m, k] B [k, n], plus row_bias[i] on row i and
 * column_bias[j] on column j when given, plus the old C when accumulate is 1.
 * For NODUS_GEMM_BF16_LINEAR, `weight` is W [n, k] packed and A is `input`;
 * for NODUS_GEMM_BF16_CONVOLUTION, `weight` is A [m, k] packed and B is
 * `image` when image.data is set, else `input`. */
typedef struct nodus_gemm_bf16_problem {
    int64_t m, n, k;
    nodus_gemm_bf16_role role;
    const uint16_t *weight;
    nodus_gemm_matrix input;
    nodus_gemm_image image;
    float *c;
    int64_t ldc;
    const float *row_bias, *column_bias;
    int accumulate;
    nodus_gemm_bf16_path path;
    nodus_gemm_activation activation; /* as nodus_gemm_problem's */
} nodus_gemm_bf16_problem;

/* 1 when this CPU runs `path`, else 0 (AUTOMATIC and PORTABLE: always). */
NODUS_GEMM_BF16_INTERNAL int nodus_gemm_bf16_path_supported(nodus_gemm_bf16_path path);

/* The register tile: rows and columns of C one kernel call computes. Blocks
 * start on multiples of these. */
NODUS_GEMM_BF16_INTERNAL int64_t nodus_gemm_bf16_tile_rows(void);
NODUS_GEMM_BF16_INTERNAL int64_t nodus_gemm_bf16_tile_columns(void);

/* Weight rows per packed panel for `role` (the tile's columns for a Linear,
 * its rows for a convolution): a weight of `rows` rows has
 * ceil(rows / width) panels. */
NODUS_GEMM_BF16_INTERNAL int64_t nodus_gemm_bf16_panel_width(nodus_gemm_bf16_role role);

/* Elements (uint16) of a packed weight [rows, depth]; the buffer must be
 * 64-byte aligned (the kernels read it with aligned loads). Depth is padded to
 * even (k runs in pairs), rows to whole panels. */
NODUS_GEMM_BF16_INTERNAL int64_t nodus_gemm_bf16_packed_size(nodus_gemm_bf16_role role, int64_t rows, int64_t depth);

/* Packs panels [panel_begin, panel_end) of the row-major float32 weight
 * [rows, depth] into `packed`, rounding to bf16 to nearest even (as torch's
 * `.to(torch.bfloat16)`); the padding is zero. Threads may pack disjoint
 * panel ranges of one weight. */
NODUS_GEMM_BF16_INTERNAL void nodus_gemm_bf16_pack(nodus_gemm_bf16_role role, const float *weight, int64_t rows,
                                                   int64_t depth, uint16_t *packed, int64_t panel_begin,
                                                   int64_t panel_end);

/* Computes C[row_begin..<row_end, column_begin..<column_end]; row_begin and
 * column_begin multiples of the tile. Threads may call it on disjoint blocks
 * of one problem. Returns 1, or 0 without touching C when the CPU lacks the
 * requested path or a block start is off the tile grid. (Without memory for
 * its packing buffers it still finishes, element by element.) */
NODUS_GEMM_BF16_INTERNAL int nodus_gemm_bf16_block(const nodus_gemm_bf16_problem *problem, int64_t row_begin,
                                                   int64_t row_end, int64_t column_begin, int64_t column_end);

#ifdef __cplusplus
}
#endif

#endif
