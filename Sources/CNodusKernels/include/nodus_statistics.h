/* Reductions on AVX-512 or AVX2. Internal to Nodus (not part of the public ABI in
 * include/nodus.h). */
#ifndef NODUS_STATISTICS_H
#define NODUS_STATISTICS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_STATISTICS_INTERNAL __attribute__((visibility("hidden")))

/* 1 when the level in use runs the functions below (AVX2 and up), else 0. */
NODUS_STATISTICS_INTERNAL int nodus_statistics_supported(void);

/* The mean of `count` floats and 1 / sqrt(variance + eps) (population
 * variance, two passes, accumulated in double), as normalisation layers use
 * them. Returns 1, or 0 below AVX2. */
NODUS_STATISTICS_INTERNAL int nodus_moments(const float *values, int64_t count, double eps, float *mean,
                                            float *inverse_deviation);

#ifdef __cplusplus
}
#endif

#endif
