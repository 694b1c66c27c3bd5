#include "nodus_activation.h"

#include "nodus_cpu.h"
#include "simd.h"
#include "simd_avx2.h"

/* Each function has an AVX-512 form (16 floats a step) and an AVX2 + FMA form
 * (8 floats, the same formulas and constants, so the same results). */
int nodus_activation_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

static int has_avx512(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512; }

/* sigmoid_gate512 (simd.h) over an array: SiLU, quick GELU, GELU's tanh form, or the sigmoid. */
AVX512 static void gated_by_sigmoid(const float *input, float *output, int64_t count, float scale, float cubic,
                                    int plain) {
    for (int64_t i = 0; i < count; i += 16) {
        const __mmask16 mask = lanes(count - i);
        const __m512 x = _mm512_maskz_loadu_ps(mask, input + i);
        _mm512_mask_storeu_ps(output + i, mask, sigmoid_gate512(x, scale, cubic, plain));
    }
}

AVX2 static void gated_by_sigmoid_avx2(const float *input, float *output, int64_t count, float scale, float cubic,
                                       int plain) {
    for (int64_t i = 0; i < count; i += 8) {
        store8(output + i, sigmoid_gate256(load8(input + i, count - i), scale, cubic, plain), count - i);
    }
}

static int gate(const float *input, float *output, int64_t count, float scale, float cubic, int plain) {
    if (has_avx512()) {
        gated_by_sigmoid(input, output, count, scale, cubic, plain);
    } else if (nodus_activation_supported()) {
        gated_by_sigmoid_avx2(input, output, count, scale, cubic, plain);
    } else {
        return 0;
    }
    return 1;
}

int nodus_gelu_tanh(const float *input, float *output, int64_t count) {
    return gate(input, output, count, GELU_TANH_SCALE, GELU_TANH_CUBIC, 0);
}

int nodus_silu(const float *input, float *output, int64_t count) { return gate(input, output, count, 1, 0, 0); }

int nodus_sigmoid(const float *input, float *output, int64_t count) { return gate(input, output, count, 1, 0, 1); }

int nodus_quick_gelu(const float *input, float *output, int64_t count) {
    return gate(input, output, count, QUICK_GELU_SCALE, 0, 0);
}

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF, from the fits of
 * tests/reference/fit_gelu_erf.py: an odd polynomial for |z| <= 1 and
 * erfc(|z|) = Q(t) e^(-z^2) beyond, with z^2 split exactly (hi + lo) so that
 * e^(-z^2) keeps float32 accuracy. Relative error of x Phi(x) about 1e-6 where
 * it exceeds 1e-8, growing to 1e-5 on the tiny values far left (from rounding z). */
static const float small[] = {7.933422603e-05f, -8.034827770e-04f, 5.191216711e-03f, -2.685539797e-02f,
                              1.128362566e-01f, -3.761262894e-01f, 1.128379226e+00f};
static const float large[] = {-6.994822621e-02f, 3.362882435e-01f, -5.897024870e-01f, 3.897075355e-01f,
                              -1.003184617e-01f, 2.332348675e-01f, 2.351637334e-01f, 2.836212218e-01f,
                              2.819794118e-01f, 3.831190497e-06f};

AVX512 static inline __m512 normal_cdf(__m512 x) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
    const __m512 a = _mm512_abs_ps(z);
    const __m512 square = _mm512_mul_ps(z, z);
    __m512 p = _mm512_set1_ps(small[0]);
    for (int i = 1; i < 7; i++) p = _mm512_fmadd_ps(p, square, _mm512_set1_ps(small[i]));
    const __m512 near = _mm512_fmadd_ps(half, _mm512_mul_ps(p, z), half);
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(half, a, one));
    __m512 q = _mm512_set1_ps(large[0]);
    for (int i = 1; i < 10; i++) q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(large[i]));
    const __m512 low = _mm512_fmsub_ps(a, a, square); /* a^2 - square, exactly */
    const __m512 tail = _mm512_mul_ps(_mm512_mul_ps(half, q),
                                      _mm512_mul_ps(exp512(_mm512_sub_ps(_mm512_setzero_ps(), square)),
                                                    _mm512_sub_ps(one, low)));
    const __m512 far = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ), tail,
                                            _mm512_sub_ps(one, tail));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, one, _CMP_LE_OQ), far, near);
}

AVX512 static void gelu_erf(const float *input, float *output, int64_t count) {
    for (int64_t i = 0; i < count; i += 16) {
        const __mmask16 mask = lanes(count - i);
        const __m512 x = _mm512_maskz_loadu_ps(mask, input + i);
        _mm512_mask_storeu_ps(output + i, mask, _mm512_mul_ps(x, normal_cdf(x)));
    }
}

/* normal_cdf on 8 lanes, step for step. */
AVX2 static inline __m256 normal_cdf_avx2(__m256 x) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
    const __m256 square = _mm256_mul_ps(z, z);
    __m256 p = _mm256_set1_ps(small[0]);
    for (int i = 1; i < 7; i++) p = _mm256_fmadd_ps(p, square, _mm256_set1_ps(small[i]));
    const __m256 near = _mm256_fmadd_ps(half, _mm256_mul_ps(p, z), half);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(half, a, one));
    __m256 q = _mm256_set1_ps(large[0]);
    for (int i = 1; i < 10; i++) q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(large[i]));
    const __m256 low = _mm256_fmsub_ps(a, a, square); /* a^2 - square, exactly */
    const __m256 tail = _mm256_mul_ps(_mm256_mul_ps(half, q),
                                      _mm256_mul_ps(exp256(_mm256_sub_ps(zero, square)), _mm256_sub_ps(one, low)));
    const __m256 far = _mm256_blendv_ps(tail, _mm256_sub_ps(one, tail), _mm256_cmp_ps(z, zero, _CMP_GT_OQ));
    return _mm256_blendv_ps(far, near, _mm256_cmp_ps(a, one, _CMP_LE_OQ));
}

AVX2 static void gelu_erf_avx2(const float *input, float *output, int64_t count) {
    for (int64_t i = 0; i < count; i += 8) {
        const __m256 x = load8(input + i, count - i);
        store8(output + i, _mm256_mul_ps(x, normal_cdf_avx2(x)), count - i);
    }
}

int nodus_gelu_erf(const float *input, float *output, int64_t count) {
    if (has_avx512()) {
        gelu_erf(input, output, count);
    } else if (nodus_activation_supported()) {
        gelu_erf_avx2(input, output, count);
    } else {
        return 0;
    }
    return 1;
}

AVX512 static void geglu_rows(const float *input, float *output, int64_t rows, int64_t width) {
    for (int64_t r = 0; r < rows; r++) {
        const float *hidden = input + r * 2 * width, *gate = hidden + width;
        float *target = output + r * width;
        for (int64_t i = 0; i < width; i += 16) {
            const __mmask16 mask = lanes(width - i);
            const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
            const __m512 gelu = _mm512_mul_ps(g, normal_cdf(g));
            _mm512_mask_storeu_ps(target + i, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, hidden + i), gelu));
        }
    }
}

AVX2 static void geglu_rows_avx2(const float *input, float *output, int64_t rows, int64_t width) {
    for (int64_t r = 0; r < rows; r++) {
        const float *hidden = input + r * 2 * width, *gate = hidden + width;
        float *target = output + r * width;
        for (int64_t i = 0; i < width; i += 8) {
            const __m256 g = load8(gate + i, width - i);
            const __m256 gelu = _mm256_mul_ps(g, normal_cdf_avx2(g));
            store8(target + i, _mm256_mul_ps(load8(hidden + i, width - i), gelu), width - i);
        }
    }
}

int nodus_geglu(const float *input, float *output, int64_t rows, int64_t width) {
    if (has_avx512()) {
        geglu_rows(input, output, rows, width);
    } else if (nodus_activation_supported()) {
        geglu_rows_avx2(input, output, rows, width);
    } else {
        return 0;
    }
    return 1;
}
