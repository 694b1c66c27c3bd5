/* Kernels written in C so they can carry per-function target attributes
 * (AVX-512, AVX2) and be chosen at run time: a Swift release build targets baseline
 * x86-64. Internal to Nodus (not part of the public ABI in include/nodus.h). */
#ifndef NODUS_KERNELS_H
#define NODUS_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Linked into libnodus.so but not exported from it. */
#define NODUS_KERNEL __attribute__((visibility("hidden")))

/* One low-rank update `factor * up @ down`: up [rows, rank] and down
 * [rank, columns], row-major float32 (a LoRA's B and A). */
typedef struct nodus_low_rank_term {
    const float *down;
    const float *up;
    int64_t rank;
    float factor;
} nodus_low_rank_term;

/* 1 when the level in use runs nodus_low_rank_merge_rows (AVX2 + FMA and up), else 0. */
NODUS_KERNEL int nodus_low_rank_merge_supported(void);

/* For rows [row_begin, row_end):
 *   target[i, :] = weight[i, :] + sum_t factor_t * (up_t[i, :] @ down_t)
 * reading each weight element once and writing each target element once; the
 * terms are added in order, each with one rounding (a fused multiply-add of its
 * factor onto the running sum). `weight` and `target` are [rows, columns] and
 * may be the same buffer (in place), else must not overlap. Rank-0 terms and
 * term_count 0 are allowed (a copy). Threads may call it on disjoint row
 * ranges of the same matrices. Returns 1, or 0 without touching anything when
 * below the AVX2 level (callers then use copy + GEMM). */
NODUS_KERNEL int nodus_low_rank_merge_rows(const float *weight, float *target, int64_t columns,
                                           const nodus_low_rank_term *terms, int64_t term_count,
                                           int64_t row_begin, int64_t row_end);

#ifdef __cplusplus
}
#endif

#endif
