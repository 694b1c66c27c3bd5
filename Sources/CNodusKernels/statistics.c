#include "nodus_statistics.h"

#include <math.h>

#include "nodus_cpu.h"
#include "simd.h"

int nodus_statistics_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512; }

/* Sum of (values[i] - shift)^power, power 1 or 2, in double: 16 floats per
 * step widened into two 8-lane double accumulators. */
AVX512 static double widened_sum(const float *values, int64_t count, double shift, int square) {
    const __m512d centre = _mm512_set1_pd(shift);
    __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
    for (int64_t i = 0; i < count; i += 16) {
        const __mmask16 mask = lanes(count - i);
        const __m512 x = _mm512_maskz_loadu_ps(mask, values + i);
        /* Masked-off lanes hold 0 - shift: take only the loaded lanes. */
        __m512d a = _mm512_maskz_sub_pd((__mmask8)mask, _mm512_cvtps_pd(_mm512_castps512_ps256(x)), centre);
        const __m256 upper = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
        __m512d b = _mm512_maskz_sub_pd((__mmask8)(mask >> 8), _mm512_cvtps_pd(upper), centre);
        if (square) {
            low = _mm512_fmadd_pd(a, a, low);
            high = _mm512_fmadd_pd(b, b, high);
        } else {
            low = _mm512_add_pd(low, a);
            high = _mm512_add_pd(high, b);
        }
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(low, high));
}

int nodus_moments(const float *values, int64_t count, double eps, float *mean, float *inverse_deviation) {
    if (!nodus_statistics_supported()) return 0;
    const double average = widened_sum(values, count, 0, 0) / (double)count;
    const double variance = widened_sum(values, count, average, 1) / (double)count;
    *mean = (float)average;
    *inverse_deviation = (float)(1 / sqrt(variance + eps));
    return 1;
}
