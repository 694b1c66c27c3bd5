#include "nodus_attention.h"

#include <math.h>
#include <stdlib.h>

#include "nodus_cpu.h"
#include "simd.h"
#include "simd_avx2.h"

/* Query rows per tile and keys per block: a tile's scores (64 x 128 floats,
 * 32 KB) and a transposed key block stay in L1/L2 while they are used. Scores
 * are computed SCORE_ROWS rows by 32 keys at a time (16 accumulators) on
 * AVX-512, 6 rows by 16 keys (12 accumulators) on AVX2. */
enum { QUERY_ROWS = 64, KEY_BLOCK = 128, SCORE_ROWS = 8 };

int nodus_attention_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

int64_t nodus_attention_tile_rows(void) { return QUERY_ROWS; }

int64_t nodus_attention_tile_count(const nodus_attention_shape *shape) {
    int64_t per_head = (shape->query_tokens + QUERY_ROWS - 1) / QUERY_ROWS;
    return shape->batch * shape->heads * per_head;
}

typedef struct tile_scratch {
    float *scores;     /* [QUERY_ROWS][KEY_BLOCK] */
    float *keys;       /* per key block [head_width][KEY_BLOCK]: the head's keys transposed, zero-padded */
    int64_t packed;    /* the (item * heads + head) whose keys `keys` holds, or -1 */
    float *sums;       /* [QUERY_ROWS][head_width] */
    float *maxima;     /* [QUERY_ROWS] */
    float *totals;     /* [QUERY_ROWS] */
    float *peaks;      /* [QUERY_ROWS]: each row's largest score in the current key block */
} tile_scratch;

/* scores[i][j] = scale * q_i . k_j for the tile's rows and a padded key block;
 * peaks[i] = the largest of row i's scores over the block's `keys` real keys
 * (the padding's zero scores left out), so the softmax needs no pass of its own
 * to find it. */
AVX512 static void tile_scores(const float *const *rows, const float *keys, float *scores, float *peaks,
                               int64_t width, int64_t count, int64_t padded, float scale) {
    const __m512 factor = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < QUERY_ROWS; i += SCORE_ROWS) {
        __m512 peak[SCORE_ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < SCORE_ROWS; r++) peak[r] = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < padded; j += 32) {
            __m512 acc[SCORE_ROWS][2];
#pragma GCC unroll 8
            for (int r = 0; r < SCORE_ROWS; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            for (int64_t d = 0; d < width; d++) {
                __m512 k0 = _mm512_loadu_ps(keys + d * KEY_BLOCK + j);
                __m512 k1 = _mm512_loadu_ps(keys + d * KEY_BLOCK + j + 16);
#pragma GCC unroll 8
                for (int r = 0; r < SCORE_ROWS; r++) {
                    __m512 q = _mm512_set1_ps(rows[i + r][d]);
                    acc[r][0] = _mm512_fmadd_ps(q, k0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(q, k1, acc[r][1]);
                }
            }
            const __mmask16 low = lanes(count - j), high = lanes(count - j - 16);
#pragma GCC unroll 8
            for (int r = 0; r < SCORE_ROWS; r++) {
                const __m512 first = _mm512_mul_ps(acc[r][0], factor), second = _mm512_mul_ps(acc[r][1], factor);
                _mm512_storeu_ps(scores + (i + r) * KEY_BLOCK + j, first);
                _mm512_storeu_ps(scores + (i + r) * KEY_BLOCK + j + 16, second);
                peak[r] = _mm512_mask_max_ps(_mm512_mask_max_ps(peak[r], low, peak[r], first), high, peak[r], second);
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < SCORE_ROWS; r++) peaks[i + r] = _mm512_reduce_max_ps(peak[r]);
    }
}

/* e^x for the softmax's x <= 0: exp512's reduction and polynomial, scaled by 2^n
 * with vscalefps, which also gives 0 (and denormals) below e^-87 without the
 * clamp-and-blend exp512 needs for its exponent arithmetic. */
AVX512 static inline __m512 softmax_exp512(__m512 x) {
    const __m512 clamped = _mm512_max_ps(x, _mm512_set1_ps(-104.0f)); /* e^-104 is 0 in float; -inf too */
    __m512 shifted, n;
    const __m512 e = exp512_mantissa(clamped, &shifted, &n);
    return _mm512_scalef_ps(e, n);
}

/* The online softmax step: scores become e^(s - new max); running sums and
 * accumulated outputs are rescaled to the new maximum. `peaks` holds each
 * row's largest score in the block, or is NULL to find it here. */
AVX512 static void tile_softmax(tile_scratch *t, const float *peaks, int64_t keys, int64_t width) {
    for (int64_t i = 0; i < QUERY_ROWS; i++) {
        float *row = t->scores + i * KEY_BLOCK;
        float block_max;
        if (peaks) {
            block_max = peaks[i];
        } else {
            __m512 peak = _mm512_set1_ps(-INFINITY);
            for (int64_t j = 0; j < keys; j += 16) {
                peak = _mm512_mask_max_ps(peak, lanes(keys - j), peak, _mm512_loadu_ps(row + j));
            }
            block_max = _mm512_reduce_max_ps(peak);
        }
        float old_max = t->maxima[i];
        float new_max = fmaxf(old_max, block_max);
        float correction = old_max == -INFINITY ? 0.0f : expf(old_max - new_max);
        __m512 shift = _mm512_set1_ps(new_max), sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < keys; j += 16) {
            __mmask16 mask = lanes(keys - j);
            __m512 e = softmax_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + j), shift));
            _mm512_mask_storeu_ps(row + j, mask, e);
            sum = _mm512_mask_add_ps(sum, mask, sum, e);
        }
        t->totals[i] = t->totals[i] * correction + _mm512_reduce_add_ps(sum);
        t->maxima[i] = new_max;
        if (correction != 1.0f) {
            float *out = t->sums + i * width;
            for (int64_t d = 0; d < width; d++) out[d] *= correction;
        }
    }
}

/* sums[i] += sum_j p[i][j] v_j for ROWS rows from `first` and VECTORS x 16
 * output columns from `column` (masked at the head's width), all in registers
 * through the block's keys. Inlined with constant ROWS and VECTORS. */
AVX512 static inline __attribute__((always_inline)) void values_block(tile_scratch *t, const float *value,
                                                                     int64_t value_stride, int64_t keys,
                                                                     int64_t width, int64_t first, int64_t column,
                                                                     const int ROWS, const int VECTORS) {
    __mmask16 mask[4];
    __m512 acc[16][4];
    for (int c = 0; c < VECTORS; c++) mask[c] = lanes(width - column - 16 * c);
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < VECTORS; c++) {
            acc[r][c] = _mm512_maskz_loadu_ps(mask[c], t->sums + (first + r) * width + column + 16 * c);
        }
    }
    for (int64_t j = 0; j < keys; j++) {
        const float *v = value + j * value_stride + column;
        __m512 vv[4];
        for (int c = 0; c < VECTORS; c++) vv[c] = _mm512_maskz_loadu_ps(mask[c], v + 16 * c);
        for (int r = 0; r < ROWS; r++) {
            __m512 p = _mm512_set1_ps(t->scores[(first + r) * KEY_BLOCK + j]);
            for (int c = 0; c < VECTORS; c++) acc[r][c] = _mm512_fmadd_ps(p, vv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < VECTORS; c++) {
            _mm512_mask_storeu_ps(t->sums + (first + r) * width + column + 16 * c, mask[c], acc[r][c]);
        }
    }
}

/* sums[i] += sum_j p[i][j] v_j over the block's keys: the head's columns in
 * runs of at most 64, each run with as many rows in registers as fit (about
 * 16 to 24 accumulators), so narrow heads (40, 80) waste few lanes. */
AVX512 static void tile_values(tile_scratch *t, const float *value, int64_t value_stride, int64_t keys,
                               int64_t width) {
    for (int64_t column = 0; column < width; column += 64) {
        const int64_t vectors = min64(4, (width - column + 15) / 16);
        for (int64_t first = 0; first < QUERY_ROWS;) {
            switch (vectors) {
            case 1: values_block(t, value, value_stride, keys, width, first, column, 16, 1); first += 16; break;
            case 2: values_block(t, value, value_stride, keys, width, first, column, 8, 2); first += 8; break;
            case 3: values_block(t, value, value_stride, keys, width, first, column, 8, 3); first += 8; break;
            default: values_block(t, value, value_stride, keys, width, first, column, 4, 4); first += 4; break;
            }
        }
    }
}

/* ROWS rows of tile_scores on AVX2, 16 keys at a time (2 ROWS accumulators). */
AVX2 static inline __attribute__((always_inline)) void score_rows_avx2(const float *const *rows, const float *keys,
                                                                      float *scores, int64_t width, int64_t padded,
                                                                      __m256 factor, int64_t i, const int ROWS) {
    for (int64_t j = 0; j < padded; j += 16) {
        __m256 acc[6][2];
        for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int64_t d = 0; d < width; d++) {
            __m256 k0 = _mm256_loadu_ps(keys + d * KEY_BLOCK + j);
            __m256 k1 = _mm256_loadu_ps(keys + d * KEY_BLOCK + j + 8);
            for (int r = 0; r < ROWS; r++) {
                __m256 q = _mm256_broadcast_ss(rows[i + r] + d);
                acc[r][0] = _mm256_fmadd_ps(q, k0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(q, k1, acc[r][1]);
            }
        }
        for (int r = 0; r < ROWS; r++) {
            _mm256_storeu_ps(scores + (i + r) * KEY_BLOCK + j, _mm256_mul_ps(acc[r][0], factor));
            _mm256_storeu_ps(scores + (i + r) * KEY_BLOCK + j + 8, _mm256_mul_ps(acc[r][1], factor));
        }
    }
}

/* tile_scores on AVX2: 6 rows by 16 keys at a time (12 accumulators, 2 key
 * vectors and a broadcast: 15 of the 16 registers), the last 4 rows apart. No
 * registers are left for the rows' peaks: the softmax finds them. */
AVX2 static void tile_scores_avx2(const float *const *rows, const float *keys, float *scores, float *peaks,
                                  int64_t width, int64_t count, int64_t padded, float scale) {
    (void)peaks;
    (void)count;
    const __m256 factor = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 6 <= QUERY_ROWS; i += 6) score_rows_avx2(rows, keys, scores, width, padded, factor, i, 6);
    for (; i < QUERY_ROWS; i += 4) score_rows_avx2(rows, keys, scores, width, padded, factor, i, 4);
}

/* tile_softmax on AVX2 (it always finds the rows' peaks itself). */
AVX2 static void tile_softmax_avx2(tile_scratch *t, const float *peaks, int64_t keys, int64_t width) {
    (void)peaks;
    const __m256 lowest = _mm256_set1_ps(-INFINITY);
    for (int64_t i = 0; i < QUERY_ROWS; i++) {
        float *row = t->scores + i * KEY_BLOCK;
        __m256 peak = lowest;
        for (int64_t j = 0; j < keys; j += 8) {
            const __m256i mask = lanes8(keys - j);
            const __m256 v = _mm256_blendv_ps(lowest, _mm256_maskload_ps(row + j, mask), _mm256_castsi256_ps(mask));
            peak = _mm256_max_ps(peak, v);
        }
        float old_max = t->maxima[i];
        float new_max = fmaxf(old_max, max8(peak));
        float correction = old_max == -INFINITY ? 0.0f : expf(old_max - new_max);
        __m256 shift = _mm256_set1_ps(new_max), sum = _mm256_setzero_ps();
        for (int64_t j = 0; j < keys; j += 8) {
            const __m256i mask = lanes8(keys - j);
            __m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(row + j, mask), shift));
            e = _mm256_and_ps(e, _mm256_castsi256_ps(mask));
            store8(row + j, e, keys - j);
            sum = _mm256_add_ps(sum, e);
        }
        t->totals[i] = t->totals[i] * correction + sum8(sum);
        t->maxima[i] = new_max;
        if (correction != 1.0f) {
            float *out = t->sums + i * width;
            for (int64_t d = 0; d < width; d++) out[d] *= correction;
        }
    }
}

/* values_block on AVX2: ROWS rows by VECTORS x 8 columns; FULL when every
 * vector lies inside the head (plain loads), else masked at the head's width. */
AVX2 static inline __attribute__((always_inline)) void values_block_avx2(tile_scratch *t, const float *value,
                                                                        int64_t value_stride, int64_t keys,
                                                                        int64_t width, int64_t first, int64_t column,
                                                                        const int ROWS, const int VECTORS,
                                                                        const int FULL) {
    __m256i mask[2];
    __m256 acc[8][2];
    for (int c = 0; c < VECTORS; c++) mask[c] = lanes8(width - column - 8 * c);
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < VECTORS; c++) {
            const float *source = t->sums + (first + r) * width + column + 8 * c;
            acc[r][c] = FULL ? _mm256_loadu_ps(source) : _mm256_maskload_ps(source, mask[c]);
        }
    }
    for (int64_t j = 0; j < keys; j++) {
        const float *v = value + j * value_stride + column;
        __m256 vv[2];
        for (int c = 0; c < VECTORS; c++) {
            vv[c] = FULL ? _mm256_loadu_ps(v + 8 * c) : _mm256_maskload_ps(v + 8 * c, mask[c]);
        }
        for (int r = 0; r < ROWS; r++) {
            __m256 p = _mm256_broadcast_ss(t->scores + (first + r) * KEY_BLOCK + j);
            for (int c = 0; c < VECTORS; c++) acc[r][c] = _mm256_fmadd_ps(p, vv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < VECTORS; c++) {
            float *target = t->sums + (first + r) * width + column + 8 * c;
            if (FULL) {
                _mm256_storeu_ps(target, acc[r][c]);
            } else {
                _mm256_maskstore_ps(target, mask[c], acc[r][c]);
            }
        }
    }
}

/* tile_values on AVX2: the head's columns in runs of 16, 6 rows at a time (12
 * accumulators; the last 4 rows apart), a last run of 8 or fewer 8 rows at a
 * time; masked where a run ends inside the head. */
AVX2 static void tile_values_avx2(tile_scratch *t, const float *value, int64_t value_stride, int64_t keys,
                                  int64_t width) {
    for (int64_t column = 0; column < width; column += 16) {
        const int64_t remaining = width - column;
        if (remaining >= 16) {
            int64_t first = 0;
            for (; first + 6 <= QUERY_ROWS; first += 6) {
                values_block_avx2(t, value, value_stride, keys, width, first, column, 6, 2, 1);
            }
            for (; first < QUERY_ROWS; first += 4) {
                values_block_avx2(t, value, value_stride, keys, width, first, column, 4, 2, 1);
            }
        } else if (remaining > 8) {
            int64_t first = 0;
            for (; first + 6 <= QUERY_ROWS; first += 6) {
                values_block_avx2(t, value, value_stride, keys, width, first, column, 6, 2, 0);
            }
            for (; first < QUERY_ROWS; first += 4) {
                values_block_avx2(t, value, value_stride, keys, width, first, column, 4, 2, 0);
            }
        } else if (remaining == 8) {
            for (int64_t first = 0; first < QUERY_ROWS; first += 8) {
                values_block_avx2(t, value, value_stride, keys, width, first, column, 8, 1, 1);
            }
        } else {
            for (int64_t first = 0; first < QUERY_ROWS; first += 8) {
                values_block_avx2(t, value, value_stride, keys, width, first, column, 8, 1, 0);
            }
        }
    }
}

/* A head's keys (`count` rows `stride` apart, `width` each) as key blocks of
 * [width][KEY_BLOCK], transposed, the last block zero-padded. */
static void pack_keys(const float *keys, int64_t stride, int64_t count, int64_t width, float *target) {
    for (int64_t start = 0; start < count; start += KEY_BLOCK) {
        float *block = target + start * width;
        for (int64_t j = 0; j < KEY_BLOCK; j++) {
            for (int64_t d = 0; d < width; d++) {
                block[d * KEY_BLOCK + j] = start + j < count ? keys[(start + j) * stride + d] : 0.0f;
            }
        }
    }
}

/* pack_keys in 16 x 16 transposes. */
AVX512 static void pack_keys_avx512(const float *keys, int64_t stride, int64_t count, int64_t width, float *target) {
    for (int64_t start = 0; start < count; start += KEY_BLOCK) {
        float *block = target + start * width;
        for (int64_t j0 = 0; j0 < KEY_BLOCK; j0 += 16) {
            for (int64_t d0 = 0; d0 < width; d0 += 16) {
                const __mmask16 columns = lanes(width - d0);
                __m512 rows[16];
                for (int64_t j = 0; j < 16; j++) {
                    const int64_t token = start + j0 + j;
                    rows[j] = token < count ? _mm512_maskz_loadu_ps(columns, keys + token * stride + d0)
                                            : _mm512_setzero_ps();
                }
                transpose16(rows);
                for (int64_t d = 0; d < 16 && d0 + d < width; d++) {
                    _mm512_storeu_ps(block + (d0 + d) * KEY_BLOCK + j0, rows[d]);
                }
            }
        }
    }
}

/* The code of one level: the three steps of a key block. `scores` writes each
 * row's peak to its `peaks` when `finds_peaks`; `softmax` takes them, or NULL. */
typedef struct attention_form {
    void (*scores)(const float *const *rows, const float *keys, float *scores, float *peaks, int64_t width,
                   int64_t count, int64_t padded, float scale);
    void (*softmax)(tile_scratch *t, const float *peaks, int64_t keys, int64_t width);
    void (*values)(tile_scratch *t, const float *value, int64_t value_stride, int64_t keys, int64_t width);
    int finds_peaks;
    void (*pack_keys)(const float *keys, int64_t stride, int64_t count, int64_t width, float *target);
} attention_form;

static const attention_form form_avx512 = {tile_scores, tile_softmax, tile_values, 1, pack_keys_avx512};
static const attention_form form_avx2 = {tile_scores_avx2, tile_softmax_avx2, tile_values_avx2, 0, pack_keys};

/* Sets the scores of keys after each row's own token to `fill`: -inf before
 * the softmax, then 0 after it (the clamped exp of -inf is 1e-38, not 0).
 * `offset` is the tile's first row minus the block's first key; rows past the
 * tile's `rows` repeat its last row. */
static void hide_future_keys(float *scores, int64_t offset, int64_t rows, int64_t keys, float fill) {
    for (int64_t i = 0; i < QUERY_ROWS; i++) {
        const int64_t last_seen = offset + (i < rows ? i : rows - 1);
        for (int64_t j = last_seen + 1 > 0 ? last_seen + 1 : 0; j < keys; j++) scores[i * KEY_BLOCK + j] = fill;
    }
}

static void run_tile(const nodus_attention_shape *s, const float *query, const float *key, const float *value,
                     float *output, float scale, int64_t tile, tile_scratch *t, const attention_form *form) {
    const int64_t per_head = (s->query_tokens + QUERY_ROWS - 1) / QUERY_ROWS;
    const int64_t item = tile / (per_head * s->heads), head = (tile / per_head) % s->heads;
    const int64_t first = (tile % per_head) * QUERY_ROWS;
    const int64_t rows = min64(QUERY_ROWS, s->query_tokens - first);
    const int64_t width = s->head_width, column = head * width;
    const float *row_pointers[QUERY_ROWS];
    for (int64_t i = 0; i < QUERY_ROWS; i++) {
        /* Rows past the end repeat the last one; their results are never written. */
        int64_t row = first + (i < rows ? i : rows - 1);
        row_pointers[i] = query + (item * s->query_tokens + row) * s->query_stride + column;
    }
    for (int64_t i = 0; i < QUERY_ROWS; i++) {
        t->maxima[i] = -INFINITY;
        t->totals[i] = 0.0f;
    }
    for (int64_t index = 0; index < QUERY_ROWS * width; index++) t->sums[index] = 0.0f;

    /* Consecutive tiles of one head share its transposed keys. */
    if (t->packed != item * s->heads + head) {
        form->pack_keys(key + item * s->key_tokens * s->key_stride + column, s->key_stride, s->key_tokens, width,
                        t->keys);
        t->packed = item * s->heads + head;
    }
    /* Causal: key blocks after the tile's last row are never seen. */
    const int64_t key_end = s->causal ? min64(s->key_tokens, first + rows) : s->key_tokens;
    for (int64_t start = 0; start < key_end; start += KEY_BLOCK) {
        const int64_t keys = key_end - start < KEY_BLOCK ? key_end - start : KEY_BLOCK;
        const int64_t padded = (keys + 31) / 32 * 32;
        form->scores(row_pointers, t->keys + start * width, t->scores, t->peaks, width, keys, padded, scale);
        const int masked = s->causal && start + keys - 1 > first;
        if (masked) hide_future_keys(t->scores, first - start, rows, keys, -INFINITY);
        form->softmax(t, form->finds_peaks && !masked ? t->peaks : NULL, keys, width);
        if (masked) hide_future_keys(t->scores, first - start, rows, keys, 0.0f);
        form->values(t, value + (item * s->key_tokens + start) * s->value_stride + column, s->value_stride, keys,
                     width);
    }
    for (int64_t i = 0; i < rows; i++) {
        float *out = output + (item * s->query_tokens + first + i) * s->output_stride + column;
        const float inverse = 1.0f / t->totals[i];
        for (int64_t d = 0; d < width; d++) out[d] = t->sums[i * width + d] * inverse;
    }
}

int nodus_attention_tiles(const nodus_attention_shape *shape, const float *query, const float *key,
                          const float *value, float *output, float scale, int64_t tile_begin, int64_t tile_end) {
    if (!nodus_attention_supported() || shape->head_width <= 0 || shape->key_tokens <= 0) return 0;
    const int64_t width = shape->head_width;
    const int64_t key_floats = (shape->key_tokens + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK * width;
    const size_t floats = (size_t)QUERY_ROWS * KEY_BLOCK + (size_t)key_floats + (size_t)QUERY_ROWS * width
                          + 3 * QUERY_ROWS;
    float *memory = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!memory) return 0;
    tile_scratch t = {
        .scores = memory,
        .keys = memory + QUERY_ROWS * KEY_BLOCK,
        .packed = -1,
        .sums = memory + QUERY_ROWS * KEY_BLOCK + key_floats,
        .maxima = memory + QUERY_ROWS * KEY_BLOCK + key_floats + QUERY_ROWS * width,
    };
    t.totals = t.maxima + QUERY_ROWS;
    t.peaks = t.totals + QUERY_ROWS;
    const attention_form *form =
        nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512 ? &form_avx512 : &form_avx2;
    for (int64_t tile = tile_begin; tile < tile_end; tile++) {
        run_tile(shape, query, key, value, output, scale, tile, &t, form);
    }
    free(memory);
    return 1;
}
