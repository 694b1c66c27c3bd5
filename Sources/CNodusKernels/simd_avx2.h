/* AVX2 + FMA helpers shared by the kernels (internal to the C target), the
 * 8-lane counterparts of simd.h. Functions that use them carry AVX2 and run
 * only where nodus_kernels_level_in_use() is at least NODUS_KERNEL_LEVEL_AVX2. */
#ifndef NODUS_SIMD_AVX2_H
#define NODUS_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#define AVX2 __attribute__((target("avx2,fma")))

/* e^x, the scheme and constants of exp512 (simd.h): the same results lane by lane. */
AVX2 static inline __m256 exp256(__m256 x) {
    const __m256 lower = _mm256_set1_ps(-87.33655f);
    __m256 clamped = _mm256_min_ps(_mm256_max_ps(x, lower), _mm256_set1_ps(88.37626f));
    const __m256 shifter = _mm256_set1_ps(12582912.0f); /* 1.5 * 2^23 */
    __m256 shifted = _mm256_fmadd_ps(clamped, _mm256_set1_ps(1.44269504f), shifter);
    __m256 n = _mm256_sub_ps(shifted, shifter);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), clamped);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334520e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665796e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    __m256 e = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B400000 - 127));
    __m256 result = _mm256_mul_ps(e, _mm256_castsi256_ps(_mm256_slli_epi32(bits, 23)));
    return _mm256_blendv_ps(result, _mm256_setzero_ps(), _mm256_cmp_ps(x, lower, _CMP_LT_OQ));
}

/* sigmoid_gate512 (simd.h) on 8 lanes, step for step. */
AVX2 static inline __m256 sigmoid_gate256(__m256 x, float scale, float cubic, int plain) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 argument = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-scale), x),
                                          _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(cubic), x), x, one));
    return _mm256_div_ps(plain ? one : x, _mm256_add_ps(one, exp256(argument)));
}

/* Lanes [0, count) of an 8-float vector, count clamped to 0...8, as the mask
 * of _mm256_maskload_ps / _mm256_maskstore_ps (which never touch the
 * addresses of masked-off lanes). */
AVX2 static inline __m256i lanes8(int64_t count) {
    const int32_t clamped = count >= 8 ? 8 : count <= 0 ? 0 : (int32_t)count;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(clamped), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lanes [from, to) of an 8-float vector, each clamped to 0...8. */
AVX2 static inline __m256i lane_range8(int64_t from, int64_t to) {
    return _mm256_andnot_si256(lanes8(from), lanes8(to));
}

/* Loads (zeros in masked-off lanes) and stores of the first `count` lanes. */
AVX2 static inline __m256 load8(const float *source, int64_t count) {
    return count >= 8 ? _mm256_loadu_ps(source) : _mm256_maskload_ps(source, lanes8(count));
}

AVX2 static inline void store8(float *target, __m256 value, int64_t count) {
    if (count >= 8) {
        _mm256_storeu_ps(target, value);
    } else if (count > 0) {
        _mm256_maskstore_ps(target, lanes8(count), value);
    }
}

/* Horizontal sum and maximum of the 8 lanes. */
AVX2 static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float max8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* In place: row i of the 8 x 8 block becomes its column i. */
AVX2 static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + c], 128-bit half h: column 4h + c of rows 4g ..< 4g + 4. */
    for (int g = 0; g < 2; g++) {
        u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

#endif
