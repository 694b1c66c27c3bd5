#include "nodus_activation.h"

#include "simd.h"

int nodus_activation_supported(void) { return __builtin_cpu_supports("avx512f") ? 1 : 0; }

/* x * sigmoid(scale * x * (1 + cubic * x^2)) = x / (1 + e^(-scale * x * (1 + cubic * x^2))). */
AVX512 static void gated_by_sigmoid(const float *input, float *output, int64_t count, float scale, float cubic) {
    const __m512 one = _mm512_set1_ps(1.0f), negative_scale = _mm512_set1_ps(-scale), c = _mm512_set1_ps(cubic);
    for (int64_t i = 0; i < count; i += 16) {
        const __mmask16 mask = lanes(count - i);
        const __m512 x = _mm512_maskz_loadu_ps(mask, input + i);
        const __m512 argument = _mm512_mul_ps(_mm512_mul_ps(negative_scale, x),
                                              _mm512_fmadd_ps(_mm512_mul_ps(c, x), x, one));
        _mm512_mask_storeu_ps(output + i, mask, _mm512_div_ps(x, _mm512_add_ps(one, exp512(argument))));
    }
}

int nodus_gelu_tanh(const float *input, float *output, int64_t count) {
    if (!nodus_activation_supported()) return 0;
    gated_by_sigmoid(input, output, count, 2 * 0.7978845608028654f, 0.044715f);
    return 1;
}

int nodus_silu(const float *input, float *output, int64_t count) {
    if (!nodus_activation_supported()) return 0;
    gated_by_sigmoid(input, output, count, 1, 0);
    return 1;
}
