/* The CPU level the kernels run at: chosen once per process from what the CPU
 * supports, and lowered (never raised) by the NODUS_CPU environment variable.
 * Every kernel with instruction-set variants asks nodus_kernels_level_in_use(). */
#ifndef NODUS_CPU_H
#define NODUS_CPU_H

#include "nodus_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Lowest first; the values are the public header's NODUS_ISA_* values. */
typedef enum nodus_kernel_level {
    NODUS_KERNEL_LEVEL_BASELINE = 0,    /* any x86-64: Swift SIMD loops and OpenBLAS */
    NODUS_KERNEL_LEVEL_AVX2 = 1,        /* AVX2 + FMA */
    NODUS_KERNEL_LEVEL_AVX512 = 2,      /* AVX-512F + FMA */
    NODUS_KERNEL_LEVEL_AVX512_BF16 = 3  /* and the avx512_bf16 dot products */
} nodus_kernel_level;

/* The highest level this CPU (and its operating system) supports. */
NODUS_KERNEL nodus_kernel_level nodus_kernels_level_supported(void);

/* The level in use: the supported level, or NODUS_CPU's when that is lower.
 * Decided at the first call and fixed for the life of the process. */
NODUS_KERNEL nodus_kernel_level nodus_kernels_level_in_use(void);

/* Why NODUS_CPU was not honoured as written (an unknown name, or a level the
 * CPU lacks), or NULL when it was honoured or is unset. A static string. */
NODUS_KERNEL const char *nodus_kernels_level_problem(void);

/* "baseline", "avx2", "avx512", "avx512_bf16"; NULL for other values. */
NODUS_KERNEL const char *nodus_kernels_level_label(int level);

#ifdef __cplusplus
}
#endif

#endif
