#include "nodus_attention.h"

#include <math.h>
#include <stdlib.h>

#include "nodus_cpu.h"
#include "simd.h"
#include "simd_avx2.h"
#include "tile.h"

/* Query rows per tile, the unit threads split the work by. */
enum { QUERY_ROWS = 64 };

int nodus_attention_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

int64_t nodus_attention_tile_rows(void) { return QUERY_ROWS; }

int64_t nodus_attention_tile_count(const nodus_attention_shape *shape) {
    int64_t per_head = (shape->query_tokens + QUERY_ROWS - 1) / QUERY_ROWS;
    return shape->batch * shape->heads * per_head;
}

/* AVX-512 puts the queries along the vector lanes: LANE_QUERIES of a tile at a
 * time (the register tile's 32 columns) against blocks of LANE_KEY_BLOCK keys.
 * The scores, transposed ([key][query]), are register tiles of 12 keys by the
 * queries, summed over the head's width; the softmax runs down the keys, one
 * lane per query, with no reductions across lanes; the weighted values,
 * transposed ([column][query]), are register tiles of 12 of the head's
 * columns (10 where the width is a multiple of 10 but not of 12: 40, 80, 160)
 * by the queries, summed over the keys. Both products run at the GEMM's tile,
 * and no lane is idle whatever the head's width (with the head's columns along
 * the lanes, 40 or 72 left a third of them idle). Keys and values are read
 * where they are, but for a head's last, partial panel of keys or columns,
 * copied once with zeros after them. */
enum { LANE_QUERIES = TILE_COLUMNS, LANE_KEY_BLOCK = 12 * TILE_ROWS };

typedef struct lane_scratch {
    float *queries;     /* [width][LANE_QUERIES]: the queries, transposed, zero-padded */
    float *scores;      /* [LANE_KEY_BLOCK][LANE_QUERIES]: a block's scores, then its softmax weights */
    float *sums;        /* [width][LANE_QUERIES]: the weighted values so far */
    float *maxima;      /* [LANE_QUERIES] */
    float *totals;      /* [LANE_QUERIES] */
    float *last_keys;   /* [width][TILE_ROWS]: the head's last, partial panel of keys */
    float *last_values; /* [key_tokens][TILE_ROWS]: the head's last, partial panel of value columns (12 wide) */
    int64_t packed;     /* the (item * heads + head) whose panels these are, or -1 */
} lane_scratch;

static size_t lane_scratch_floats(const nodus_attention_shape *s) {
    const size_t width = (size_t)s->head_width;
    return width * LANE_QUERIES * 2 + (size_t)LANE_KEY_BLOCK * LANE_QUERIES + 2 * LANE_QUERIES
           + width * TILE_ROWS + (size_t)s->key_tokens * TILE_ROWS;
}

static lane_scratch lane_scratch_in(float *memory, const nodus_attention_shape *s) {
    const int64_t width = s->head_width;
    lane_scratch t = {.queries = memory, .packed = -1};
    t.scores = t.queries + width * LANE_QUERIES;
    t.sums = t.scores + LANE_KEY_BLOCK * LANE_QUERIES;
    t.maxima = t.sums + width * LANE_QUERIES;
    t.totals = t.maxima + LANE_QUERIES;
    t.last_keys = t.totals + LANE_QUERIES;
    t.last_values = t.last_keys + width * TILE_ROWS;
    return t;
}

/* Columns of the head per panel of the weighted values: 12 (the register
 * tile's rows), or 10 for widths it divides and 12 does not, so that no panel
 * is partial. */
static int64_t value_panel(int64_t width) { return width % TILE_ROWS != 0 && width % 10 == 0 ? 10 : TILE_ROWS; }

/* The head's last, partial panels, zero-padded: keys [width][TILE_ROWS] (as the
 * register tile reads a panel of A), values [key_tokens][TILE_ROWS]. */
AVX512 static void pack_last_panels(const nodus_attention_shape *s, const float *keys, const float *values,
                                    lane_scratch *t) {
    const int64_t width = s->head_width;
    const int64_t full_keys = s->key_tokens / TILE_ROWS * TILE_ROWS;
    if (full_keys < s->key_tokens) {
        interleave_lines(keys + full_keys * s->key_stride, s->key_stride, s->key_tokens - full_keys, width,
                         t->last_keys, TILE_ROWS, TILE_ROWS);
    }
    const int64_t full_columns = width / value_panel(width) * value_panel(width);
    if (full_columns < width) {
        const __mmask16 kept = lanes(width - full_columns), panel = lanes(TILE_ROWS);
        for (int64_t j = 0; j < s->key_tokens; j++) {
            const __m512 v = _mm512_maskz_loadu_ps(kept, values + j * s->value_stride + full_columns);
            _mm512_mask_storeu_ps(t->last_values + j * TILE_ROWS, panel, v);
        }
    }
}

/* scores[j][i] = k_(start + j) . q_i (the queries scaled) for the block's
 * keys, 12 at a time (rows past `count` are computed and never read). */
AVX512 static void lane_scores(const nodus_attention_shape *s, const float *keys, int64_t start, int64_t count,
                               lane_scratch *t) {
    const int64_t width = s->head_width, full_keys = s->key_tokens / TILE_ROWS * TILE_ROWS;
    const tile_epilogue epilogue = {.scale = 1.0f};
    for (int64_t j = 0; j < count; j += TILE_ROWS) {
        float *target = t->scores + j * LANE_QUERIES;
        if (start + j < full_keys) {
            tile_products(width, keys + (start + j) * s->key_stride, s->key_stride, 1, t->queries, target,
                          LANE_QUERIES, TILE_ROWS, LANE_QUERIES, epilogue);
        } else {
            tile_products(width, t->last_keys, 1, TILE_ROWS, t->queries, target, LANE_QUERIES, TILE_ROWS,
                          LANE_QUERIES, epilogue);
        }
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

/* The online softmax step down a block's `count` keys, per query lane: the
 * scores become e^(s - new max), 0 for keys after the lane's `seen` (its last
 * visible key) when CAUSAL; totals and the sums so far are rescaled to the new
 * maximum. Inlined with and without the mask. */
AVX512 static inline __attribute__((always_inline)) void lane_softmax_of(lane_scratch *t, int64_t start,
                                                                        int64_t count, int64_t width,
                                                                        const __m512i *seen, const int CAUSAL) {
    for (int v = 0; v < LANE_QUERIES / 16; v++) {
        float *lane = t->scores + 16 * v;
        __mmask16 visible = 0xFFFF;
        __m512 peak = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < count; j++) {
            if (CAUSAL) visible = _mm512_cmple_epi32_mask(_mm512_set1_epi32((int32_t)(start + j)), seen[v]);
            peak = _mm512_mask_max_ps(peak, visible, peak, _mm512_loadu_ps(lane + j * LANE_QUERIES));
        }
        const __m512 old_max = _mm512_loadu_ps(t->maxima + 16 * v), new_max = _mm512_max_ps(old_max, peak);
        /* Lanes with no weights yet have nothing to rescale (and -inf - -inf is NaN). */
        const __mmask16 weighed = _mm512_cmp_ps_mask(old_max, _mm512_set1_ps(-INFINITY), _CMP_NEQ_OQ);
        const __m512 correction = _mm512_maskz_mov_ps(weighed, softmax_exp512(_mm512_sub_ps(old_max, new_max)));
        __m512 total = _mm512_mul_ps(_mm512_loadu_ps(t->totals + 16 * v), correction);
        for (int64_t j = 0; j < count; j++) {
            if (CAUSAL) visible = _mm512_cmple_epi32_mask(_mm512_set1_epi32((int32_t)(start + j)), seen[v]);
            float *score = lane + j * LANE_QUERIES;
            const __m512 e = softmax_exp512(_mm512_sub_ps(_mm512_loadu_ps(score), new_max));
            _mm512_storeu_ps(score, _mm512_maskz_mov_ps(visible, e));
            total = _mm512_mask_add_ps(total, visible, total, e);
        }
        _mm512_storeu_ps(t->totals + 16 * v, total);
        _mm512_storeu_ps(t->maxima + 16 * v, new_max);
        for (int64_t d = 0; d < width; d++) {
            float *sum = t->sums + d * LANE_QUERIES + 16 * v;
            _mm512_storeu_ps(sum, _mm512_mul_ps(_mm512_loadu_ps(sum), correction));
        }
    }
}

AVX512 static void lane_softmax(lane_scratch *t, int64_t start, int64_t count, int64_t width, const __m512i *seen,
                                int causal) {
    if (causal) {
        lane_softmax_of(t, start, count, width, seen, 1);
    } else {
        lane_softmax_of(t, start, count, width, seen, 0);
    }
}

/* sums[d][i] += sum_j p[j][i] v_(start + j)[d] over the block's keys, PANEL
 * of the head's columns at a time. */
AVX512 static inline __attribute__((always_inline)) void lane_values_of(const nodus_attention_shape *s,
                                                                       const float *values, int64_t start,
                                                                       int64_t count, lane_scratch *t,
                                                                       const int PANEL) {
    const int64_t width = s->head_width, full_columns = width / PANEL * PANEL;
    const tile_epilogue epilogue = {.scale = 1.0f, .load = 1};
    for (int64_t d = 0; d < width; d += PANEL) {
        float *target = t->sums + d * LANE_QUERIES;
        if (d < full_columns) {
            tile_products_of(PANEL, count, values + start * s->value_stride + d, 1, s->value_stride, t->scores,
                             target, LANE_QUERIES, PANEL, LANE_QUERIES, epilogue);
        } else {
            tile_products_of(PANEL, count, t->last_values + start * TILE_ROWS, 1, TILE_ROWS, t->scores, target,
                             LANE_QUERIES, width - d, LANE_QUERIES, epilogue);
        }
    }
}

AVX512 static void lane_values(const nodus_attention_shape *s, const float *values, int64_t start, int64_t count,
                               lane_scratch *t) {
    if (value_panel(s->head_width) == 10) {
        lane_values_of(s, values, start, count, t, 10);
    } else {
        lane_values_of(s, values, start, count, t, TILE_ROWS);
    }
}

/* Queries [first, first + rows) (rows <= LANE_QUERIES) of one head against all
 * its keys (or, causal, those up to each query). */
AVX512 static void run_lanes(const nodus_attention_shape *s, const float *queries, const float *keys,
                             const float *values, float *output, float scale, int64_t first, int64_t rows,
                             lane_scratch *t) {
    const int64_t width = s->head_width;
    const int64_t upper = rows > 16 ? rows - 16 : 0;
    interleave_lines(queries, s->query_stride, rows - upper, width, t->queries, LANE_QUERIES, 16);
    interleave_lines(upper ? queries + 16 * s->query_stride : queries, s->query_stride, upper, width,
                     t->queries + 16, LANE_QUERIES, 16);
    for (int64_t index = 0; index < width * LANE_QUERIES; index += 16) {
        _mm512_storeu_ps(t->queries + index, _mm512_mul_ps(_mm512_loadu_ps(t->queries + index), _mm512_set1_ps(scale)));
    }
    __m512i seen[LANE_QUERIES / 16];
    for (int v = 0; v < LANE_QUERIES / 16; v++) {
        /* Causal: query i sees keys 0 ... i; lanes past `rows` repeat the last row. */
        const __m512i lane = _mm512_add_epi32(_mm512_set1_epi32(16 * v), _mm512_set_epi32(15, 14, 13, 12, 11, 10,
                                              9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
        const __m512i row = _mm512_min_epi32(lane, _mm512_set1_epi32((int32_t)(rows - 1)));
        seen[v] = s->causal ? _mm512_add_epi32(row, _mm512_set1_epi32((int32_t)first)) : _mm512_set1_epi32(INT32_MAX);
        _mm512_storeu_ps(t->maxima + 16 * v, _mm512_set1_ps(-INFINITY));
        _mm512_storeu_ps(t->totals + 16 * v, _mm512_setzero_ps());
    }
    for (int64_t index = 0; index < width * LANE_QUERIES; index += 16) {
        _mm512_storeu_ps(t->sums + index, _mm512_setzero_ps());
    }

    const int64_t key_end = s->causal ? min64(s->key_tokens, first + rows) : s->key_tokens;
    for (int64_t start = 0; start < key_end; start += LANE_KEY_BLOCK) {
        const int64_t count = min64(LANE_KEY_BLOCK, key_end - start);
        lane_scores(s, keys, start, count, t);
        lane_softmax(t, start, count, width, seen, s->causal != 0);
        lane_values(s, values, start, count, t);
    }
    for (int v = 0; v < LANE_QUERIES / 16; v++) {
        const __m512 inverse = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_loadu_ps(t->totals + 16 * v));
        for (int64_t d = 0; d < width; d++) {
            float *sum = t->sums + d * LANE_QUERIES + 16 * v;
            _mm512_storeu_ps(sum, _mm512_mul_ps(_mm512_loadu_ps(sum), inverse));
        }
    }
    for (int64_t d = 0; d < width; d += 16) {
        interleave_lines(t->sums + d * LANE_QUERIES, LANE_QUERIES, min64(16, width - d), rows, output + d,
                         s->output_stride, min64(16, width - d));
    }
}

/* A tile of QUERY_ROWS queries, LANE_QUERIES at a time. Consecutive tiles of
 * one head share its packed last panels. */
AVX512 static void run_tile_lanes(const nodus_attention_shape *s, const float *query, const float *key,
                                  const float *value, float *output, float scale, int64_t tile, lane_scratch *t) {
    const int64_t per_head = (s->query_tokens + QUERY_ROWS - 1) / QUERY_ROWS;
    const int64_t item = tile / (per_head * s->heads), head = (tile / per_head) % s->heads;
    const int64_t column = head * s->head_width;
    const float *keys = key + item * s->key_tokens * s->key_stride + column;
    const float *values = value + item * s->key_tokens * s->value_stride + column;
    if (t->packed != item * s->heads + head) {
        pack_last_panels(s, keys, values, t);
        t->packed = item * s->heads + head;
    }
    const int64_t tile_first = (tile % per_head) * QUERY_ROWS;
    const int64_t tile_end = min64(s->query_tokens, tile_first + QUERY_ROWS);
    for (int64_t first = tile_first; first < tile_end; first += LANE_QUERIES) {
        const int64_t rows = min64(LANE_QUERIES, tile_end - first);
        run_lanes(s, query + (item * s->query_tokens + first) * s->query_stride + column, keys, values,
                  output + (item * s->query_tokens + first) * s->output_stride + column, scale, first, rows, t);
    }
}

/* AVX2 keeps the head's columns along the lanes (8 floats): a tile's scores
 * (QUERY_ROWS x KEY_BLOCK floats, 32 KB) and a transposed key block stay in
 * L1/L2 while they are used; scores are computed 6 rows by 16 keys at a time
 * (12 accumulators). */
enum { KEY_BLOCK = 128 };

typedef struct row_scratch {
    float *scores;     /* [QUERY_ROWS][KEY_BLOCK] */
    float *keys;       /* per key block [head_width][KEY_BLOCK]: the head's keys transposed, zero-padded */
    int64_t packed;    /* the (item * heads + head) whose keys `keys` holds, or -1 */
    float *sums;       /* [QUERY_ROWS][head_width] */
    float *maxima;     /* [QUERY_ROWS] */
    float *totals;     /* [QUERY_ROWS] */
} row_scratch;

static size_t row_scratch_floats(const nodus_attention_shape *s) {
    const size_t key_floats = (size_t)((s->key_tokens + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK * s->head_width);
    return (size_t)QUERY_ROWS * KEY_BLOCK + key_floats + (size_t)QUERY_ROWS * s->head_width + 2 * QUERY_ROWS;
}

static row_scratch row_scratch_in(float *memory, const nodus_attention_shape *s) {
    const int64_t key_floats = (s->key_tokens + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK * s->head_width;
    row_scratch t = {.scores = memory, .keys = memory + QUERY_ROWS * KEY_BLOCK, .packed = -1};
    t.sums = t.keys + key_floats;
    t.maxima = t.sums + QUERY_ROWS * s->head_width;
    t.totals = t.maxima + QUERY_ROWS;
    return t;
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

/* scores[i][j] = scale * q_i . k_j for the tile's rows and a padded key block:
 * 6 rows by 16 keys at a time (12 accumulators, 2 key vectors and a broadcast:
 * 15 of the 16 registers), the last 4 rows apart. */
AVX2 static void tile_scores_avx2(const float *const *rows, const float *keys, float *scores, int64_t width,
                                  int64_t padded, float scale) {
    const __m256 factor = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 6 <= QUERY_ROWS; i += 6) score_rows_avx2(rows, keys, scores, width, padded, factor, i, 6);
    for (; i < QUERY_ROWS; i += 4) score_rows_avx2(rows, keys, scores, width, padded, factor, i, 4);
}

/* The online softmax step: scores become e^(s - new max); running sums and
 * accumulated outputs are rescaled to the new maximum. */
AVX2 static void tile_softmax_avx2(row_scratch *t, int64_t keys, int64_t width) {
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

/* sums[i] += sum_j p[i][j] v_j for ROWS rows from `first` and VECTORS x 8
 * columns from `column`, all in registers through the block's keys; FULL when
 * every vector lies inside the head (plain loads), else masked at its width. */
AVX2 static inline __attribute__((always_inline)) void values_block_avx2(row_scratch *t, const float *value,
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

/* sums[i] += sum_j p[i][j] v_j over the block's keys: the head's columns in runs of 16, 6 rows at a time (12
 * accumulators; the last 4 rows apart), a last run of 8 or fewer 8 rows at a
 * time; masked where a run ends inside the head. */
AVX2 static void tile_values_avx2(row_scratch *t, const float *value, int64_t value_stride, int64_t keys,
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

AVX2 static void run_tile_rows(const nodus_attention_shape *s, const float *query, const float *key,
                               const float *value, float *output, float scale, int64_t tile, row_scratch *t) {
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
        pack_keys(key + item * s->key_tokens * s->key_stride + column, s->key_stride, s->key_tokens, width, t->keys);
        t->packed = item * s->heads + head;
    }
    /* Causal: key blocks after the tile's last row are never seen. */
    const int64_t key_end = s->causal ? min64(s->key_tokens, first + rows) : s->key_tokens;
    for (int64_t start = 0; start < key_end; start += KEY_BLOCK) {
        const int64_t keys = key_end - start < KEY_BLOCK ? key_end - start : KEY_BLOCK;
        const int64_t padded = (keys + 31) / 32 * 32;
        tile_scores_avx2(row_pointers, t->keys + start * width, t->scores, width, padded, scale);
        const int masked = s->causal && start + keys - 1 > first;
        if (masked) hide_future_keys(t->scores, first - start, rows, keys, -INFINITY);
        tile_softmax_avx2(t, keys, width);
        if (masked) hide_future_keys(t->scores, first - start, rows, keys, 0.0f);
        tile_values_avx2(t, value + (item * s->key_tokens + start) * s->value_stride + column, s->value_stride, keys,
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
    const int lanes_form = nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512;
    const size_t floats = lanes_form ? lane_scratch_floats(shape) : row_scratch_floats(shape);
    float *memory = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
    if (!memory) return 0;
    if (lanes_form) {
        lane_scratch t = lane_scratch_in(memory, shape);
        for (int64_t tile = tile_begin; tile < tile_end; tile++) {
            run_tile_lanes(shape, query, key, value, output, scale, tile, &t);
        }
    } else {
        row_scratch t = row_scratch_in(memory, shape);
        for (int64_t tile = tile_begin; tile < tile_end; tile++) {
            run_tile_rows(shape, query, key, value, output, scale, tile, &t);
        }
    }
    free(memory);
    return 1;
}
