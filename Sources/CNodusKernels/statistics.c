#include "nodus_statistics.h"

#include <math.h>

#include "nodus_cpu.h"
#include "simd.h"
#include "simd_avx2.h"

int nodus_statistics_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

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

/* widened_sum on AVX2: 8 floats per step into two 4-lane double accumulators,
 * the last count % 8 values one by one. */
AVX2 static double widened_sum_avx2(const float *values, int64_t count, double shift, int square) {
    const __m256d centre = _mm256_set1_pd(shift);
    __m256d low = _mm256_setzero_pd(), high = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256 x = _mm256_loadu_ps(values + i);
        const __m256d a = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), centre);
        const __m256d b = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), centre);
        if (square) {
            low = _mm256_fmadd_pd(a, a, low);
            high = _mm256_fmadd_pd(b, b, high);
        } else {
            low = _mm256_add_pd(low, a);
            high = _mm256_add_pd(high, b);
        }
    }
    const __m256d both = _mm256_add_pd(low, high);
    __m128d pair = _mm_add_pd(_mm256_castpd256_pd128(both), _mm256_extractf128_pd(both, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)));
    for (; i < count; i++) {
        const double a = (double)values[i] - shift;
        sum += square ? a * a : a;
    }
    return sum;
}

int nodus_moments(const float *values, int64_t count, double eps, float *mean, float *inverse_deviation) {
    if (!nodus_statistics_supported()) return 0;
    double (*sum)(const float *, int64_t, double, int) =
        nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512 ? widened_sum : widened_sum_avx2;
    const double average = sum(values, count, 0, 0) / (double)count;
    const double variance = sum(values, count, average, 1) / (double)count;
    *mean = (float)average;
    *inverse_deviation = (float)(1 / sqrt(variance + eps));
    return 1;
}
