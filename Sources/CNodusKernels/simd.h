/* AVX-512 helpers shared by the kernels (internal to the C target). Functions
 * that use them carry AVX512 and run only where nodus_*_supported() says so. */
#ifndef NODUS_SIMD_H
#define NODUS_SIMD_H

#include <immintrin.h>
#include <stdint.h>

#define AVX512 __attribute__((target("avx512f,fma")))

/* e^x, the Cephes scheme of VectorMath.exp: x = n ln2 + r, a degree-6
 * polynomial for e^r, 2^n in the exponent bits; 0 below the float range. */
/* e^x = 2^n e^r for a clamped x: n = round(x / ln 2) (in *shifted, plus 1.5 * 2^23, and in *n)
 * and e^r from Cephes' polynomial on r = x - n ln 2 (ln 2 in two parts). */
AVX512 static inline __m512 exp512_mantissa(__m512 clamped, __m512 *shifted, __m512 *n) {
    const __m512 shifter = _mm512_set1_ps(12582912.0f); /* 1.5 * 2^23 */
    *shifted = _mm512_fmadd_ps(clamped, _mm512_set1_ps(1.44269504f), shifter);
    *n = _mm512_sub_ps(*shifted, shifter);
    __m512 r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(0.693359375f), clamped);
    r = _mm512_fmadd_ps(*n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334520e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665796e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    return _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
}

AVX512 static inline __m512 exp512(__m512 x) {
    const __m512 lower = _mm512_set1_ps(-87.33655f);
    __m512 clamped = _mm512_min_ps(_mm512_max_ps(x, lower), _mm512_set1_ps(88.37626f));
    __m512 shifted, n;
    const __m512 e = exp512_mantissa(clamped, &shifted, &n);
    __m512i bits = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B400000 - 127));
    __m512 result = _mm512_mul_ps(e, _mm512_castsi512_ps(_mm512_slli_epi32(bits, 23)));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lower, _CMP_LT_OQ), result, _mm512_setzero_ps());
}

/* x * sigmoid(scale * x * (1 + cubic * x^2)) = x / (1 + e^(-scale * x * (1 + cubic * x^2))): SiLU
 * (scale 1, cubic 0), quick GELU (1.702, 0) and GELU's tanh form (2 sqrt(2 / pi), 0.044715); with
 * `plain`, the sigmoid alone (1 over the same). */
#define GELU_TANH_SCALE (2 * 0.7978845608028654f)
#define GELU_TANH_CUBIC 0.044715f
#define QUICK_GELU_SCALE 1.702f

AVX512 static inline __m512 sigmoid_gate512(__m512 x, float scale, float cubic, int plain) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 argument = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-scale), x),
                                          _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(cubic), x), x, one));
    return _mm512_div_ps(plain ? one : x, _mm512_add_ps(one, exp512(argument)));
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Lanes [0, count) of a 16-float vector, count clamped to 0...16. */
static inline __mmask16 lanes(int64_t count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? (__mmask16)0 : (__mmask16)((1u << count) - 1);
}

/* In place: row i of the 16 x 16 block becomes its column i. */
AVX512 static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + c], lane L: column 4L + c of rows 4g ..< 4g + 4. */
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    /* Column 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c]. */
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* Interleaves `lines` (at most 16) contiguous runs of `length` floats, line i
 * starting at origin + i * line_stride: target[p * target_stride + i] = line_i[p]
 * for i < width (lines past `lines` give zeros), 16 x 16 blocks at a time. */
AVX512 static inline void interleave_lines(const float *origin, int64_t line_stride, int64_t lines, int64_t length,
                                    float *target, int64_t target_stride, int64_t width) {
    const __mmask16 store = lanes(width);
    for (int64_t p0 = 0; p0 < length; p0 += 16) {
        const int64_t chunk = min64(16, length - p0);
        const __mmask16 load = lanes(chunk);
        __m512 block[16];
        for (int64_t i = 0; i < 16; i++) {
            block[i] = i < lines ? _mm512_maskz_loadu_ps(load, origin + i * line_stride + p0) : _mm512_setzero_ps();
        }
        transpose16(block);
        if (width >= 16) {
            for (int64_t q = 0; q < chunk; q++) _mm512_storeu_ps(target + (p0 + q) * target_stride, block[q]);
        } else {
            for (int64_t q = 0; q < chunk; q++) _mm512_mask_storeu_ps(target + (p0 + q) * target_stride, store, block[q]);
        }
    }
}

#endif
