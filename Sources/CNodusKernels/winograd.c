/* Winograd F(4x4, 3x3) convolution (see nodus_winograd.h).
 *
 * For a 6x6 input tile d and a 3x3 filter g, the 4x4 output tile is
 * A^T [(G g G^T) . (B^T d B)] A, the product element by element over the 36
 * points. Summed over input channels, each point is a matrix product:
 * M[xi] (out x tiles) = U[xi] (out x in) V[xi] (in x tiles), U the transformed
 * weights and V the transformed input tiles.
 *
 * Interpolation points 0, 1, -1, 1/2, -2 (and infinity). Measured in float32
 * on random data, 128 and 512 channels: 2e-6 relative max error, against 6e-6
 * for Lavin's 0, 1, -1, 2, -2 (the direct convolution: 1e-6).
 *
 * A block of tiles runs in three passes over buffers the caller gives:
 * 1. input transform: V[xi] for the block, vectors of 16 tiles side by side;
 * 2. products, point by point: V[xi] (in x block tiles: 128 KB at 128 channels
 *    and 64 tiles, 512 KB at 512 channels and 256 tiles) stays in L2 while
 *    U[xi] streams through it in panels of 12 output channels, 12 x 32
 *    register tiles as in gemm.c;
 * 3. output transform: A^T M A + bias, written to the image.
 * The transformed weights are packed so that every product reads them in
 * order, and the transformed input is written straight in the layout the
 * register tile reads: there is no packing step. On one Zen 5 core, 512
 * channels at 64 x 64 in blocks of 256 tiles: input transform 3.0 Mcycles
 * (TSC, 2.6 GHz), products 62 (78 flops per cycle), output transform 7.1;
 * transforming the weights takes 3.2 ms more. */
#include "nodus_winograd.h"

#include <stdlib.h>
#include <string.h>

#include "nodus_cpu.h"
#include "simd.h"
#include "simd_avx2.h"

/* MR x NR register tile (output channels x tiles); the weights are packed in
 * runs of KB input channels; sums run in chunks of CHUNK input channels;
 * LANES tiles share one vector in the transforms. AVX-512: 12 x 32 tiles, runs
 * of 16, 16 lanes; AVX2 (the *2 values): 6 x 16 tiles (12 ymm accumulators),
 * runs of 8, 8 lanes. The level in use picks the form (winograd_form, below);
 * everything sized by these constants asks it. */
enum { POINTS = 36, CHUNK = 128, MAX_LANES = 16 };
enum { MR = 12, NR = 32, KB = 16, LANES = 16 };
enum { MR2 = 6, NR2 = 16, KB2 = 8, LANES2 = 8 };

typedef struct winograd_form winograd_form;
static const winograd_form *form_in_use(void);

int nodus_winograd_supported(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

/* Floats between the 36 points' planes of a transformed input or products
 * buffer holding `floats` per point: rounded to 4 KB and then 256 bytes more,
 * so that the planes, which a transform touches all at once, do not map to the
 * same cache sets (at 4 KB multiples the output transform took 11.4 instead of
 * 7.1 Mcycles for 512 channels at 64 x 64). The transformed weights' planes are
 * read one at a time and are not padded (padded, the products ran 8% slower at
 * 128 channels). */
static inline int64_t point_stride(int64_t floats) { return (floats + 1023) / 1024 * 1024 + 64; }

/* Tiles one segment of a vector covers, and the output transform's stores (4
 * per output row, each of `lanes` pixels: lanes / 4 tiles). */
typedef struct segment {
    int64_t first_lane, end_lane, image, tile_y, tile_x;
    /* Bit p of stores[q]: pixel p of store q lies in one of the segment's tiles
     * and inside the image. */
    uint32_t stores[4];
} segment;

struct winograd_form {
    int64_t mr, nr, kb, lanes;
    /* One output channel's run of kb input channels (`present` of them, none
     * when source is NULL), transformed: point xi to target + xi * stride. */
    void (*weight_run)(const float *source, int64_t present, float *target, int64_t stride);
    void (*input_segment)(const nodus_winograd_shape *shape, const float *input, const segment *seg,
                          int64_t channel_begin, int64_t channel_end, float *v, int64_t stride, int stream);
    void (*output)(const nodus_winograd_shape *shape, const float *m, int64_t stride, float bias, const segment *segs,
                   int count, float *output, int64_t channel);
    void (*product)(int64_t depth, const float *a, const float *b, float *c, int64_t ldc);
};

int64_t nodus_winograd_tile_columns(void) { return form_in_use() ? form_in_use()->nr : NR; }

/* Sizes every pass agrees on. */
typedef struct geometry {
    int64_t mr, nr, kb, lanes; /* the form's */
    int64_t depth;         /* input channels rounded up to kb (the products' k) */
    int64_t panels;        /* output channels in panels of mr */
    int64_t tiles_x, tiles_per_image, tiles;
} geometry;

static geometry geometry_of(const nodus_winograd_shape *s) {
    const winograd_form *form = form_in_use();
    geometry g;
    g.mr = form ? form->mr : MR;
    g.nr = form ? form->nr : NR;
    g.kb = form ? form->kb : KB;
    g.lanes = form ? form->lanes : LANES;
    g.depth = (s->in_channels + g.kb - 1) / g.kb * g.kb;
    g.panels = (s->out_channels + g.mr - 1) / g.mr;
    g.tiles_x = (s->width + 3) / 4;
    g.tiles_per_image = g.tiles_x * ((s->height + 3) / 4);
    g.tiles = s->batch * g.tiles_per_image;
    return g;
}

int64_t nodus_winograd_panel_channels(void) { return form_in_use() ? form_in_use()->mr : MR; }

int64_t nodus_winograd_panel_count(const nodus_winograd_shape *shape) { return geometry_of(shape).panels; }

int64_t nodus_winograd_weight_count(const nodus_winograd_shape *shape) {
    geometry g = geometry_of(shape);
    return POINTS * g.panels * g.mr * g.depth;
}

int64_t nodus_winograd_block_count(const nodus_winograd_shape *shape) {
    return (geometry_of(shape).tiles + shape->block_tiles - 1) / shape->block_tiles;
}

/* ---- the three transforms, on 6 (or 3) vectors of 16 independent lanes ---- */

/* G g: a filter line of 3 values to 6. */
AVX512 static inline void weight_line(__m512 g0, __m512 g1, __m512 g2, __m512 u[6]) {
    const __m512 third = _mm512_set1_ps(1.0f / 3.0f), fifteenth = _mm512_set1_ps(1.0f / 15.0f);
    __m512 outer = _mm512_add_ps(g0, g2);
    u[0] = g0;
    u[1] = _mm512_mul_ps(_mm512_add_ps(outer, g1), third);
    u[2] = _mm512_mul_ps(_mm512_sub_ps(g1, outer), third);
    __m512 g3 = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), g1, _mm512_fmadd_ps(_mm512_set1_ps(4.0f), g0, g2));
    u[3] = _mm512_mul_ps(g3, _mm512_set1_ps(-4.0f / 15.0f)); /* -(16 g0 + 8 g1 + 4 g2) / 15 */
    u[4] = _mm512_mul_ps(_mm512_fmadd_ps(_mm512_set1_ps(-2.0f), g1, _mm512_fmadd_ps(_mm512_set1_ps(4.0f), g2, g0)),
                         fifteenth);
    u[5] = g2;
}

/* B^T d: an input line of 6 values to 6. */
AVX512 static inline void input_line(const __m512 d[6], __m512 v[6]) {
    const __m512 half = _mm512_set1_ps(0.5f), three_halves = _mm512_set1_ps(1.5f);
    const __m512 two = _mm512_set1_ps(2.0f), five_halves = _mm512_set1_ps(2.5f);
    __m512 t = _mm512_sub_ps(d[3], d[1]), s = _mm512_sub_ps(d[4], d[2]);
    v[0] = _mm512_fnmadd_ps(two, d[2], _mm512_fmadd_ps(three_halves, t, _mm512_add_ps(d[0], d[4])));
    v[1] = _mm512_fmadd_ps(five_halves, d[3], _mm512_fmadd_ps(half, d[2], _mm512_sub_ps(d[4], d[1])));
    v[2] = _mm512_fmadd_ps(half, d[3], _mm512_fnmadd_ps(five_halves, d[2], _mm512_add_ps(d[4], d[1])));
    v[3] = _mm512_fmadd_ps(two, t, s);
    v[4] = _mm512_fnmadd_ps(half, t, s);
    v[5] = _mm512_fnmadd_ps(two, d[3], _mm512_fmadd_ps(three_halves, s, _mm512_add_ps(d[1], d[5])));
}

/* A^T m: a line of 6 transformed values to 4 outputs. */
AVX512 static inline void output_line(const __m512 m[6], __m512 y[4]) {
    __m512 sum = _mm512_add_ps(m[1], m[2]), difference = _mm512_sub_ps(m[1], m[2]);
    y[0] = _mm512_add_ps(_mm512_add_ps(m[0], sum), _mm512_add_ps(m[3], m[4]));
    y[1] = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), m[4], _mm512_fmadd_ps(_mm512_set1_ps(0.5f), m[3], difference));
    y[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), m[4], _mm512_fmadd_ps(_mm512_set1_ps(0.25f), m[3], sum));
    y[3] = _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), m[4],
                            _mm512_fmadd_ps(_mm512_set1_ps(0.125f), m[3], _mm512_add_ps(difference, m[5])));
}

/* ---- weights ---- */

/* Packed: [point][panel][depth / KB][MR][KB], so the products read a panel's
 * weights in order, KB input channels of one output channel per vector; rows
 * past the output channels and columns past the input channels are zero.
 * Streaming stores: the transformed weights (4x the weights: 38 MB at 512 x 512
 * channels) do not stay in cache anyway, and stores that skip reading the
 * target lines first took 3.2 instead of 3.75 ms there, on one core; they also
 * leave no dirty lines for the input transform to write back (which ran 2x
 * faster after them). */
AVX512 static void weight_run(const float *source, int64_t present, float *target, int64_t stride) {
    if (!source) {
        for (int xi = 0; xi < POINTS; xi++) _mm512_stream_ps(target + xi * stride, _mm512_setzero_ps());
        return;
    }
    const __m512i taps = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32(9));
    /* filter[a][b]: tap (a, b) of KB input channels, 0 past the last. */
    const __mmask16 mask = lanes(present);
    __m512 filter[9];
    for (int tap = 0; tap < 9; tap++) {
        filter[tap] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, taps, source + tap, 4);
    }
    /* rows[a][kc] = (g G^T)[a][kc], then U = G (g G^T) column by column. */
    __m512 rows[3][6];
    for (int a = 0; a < 3; a++) weight_line(filter[3 * a], filter[3 * a + 1], filter[3 * a + 2], rows[a]);
    for (int kc = 0; kc < 6; kc++) {
        __m512 column[6];
        weight_line(rows[0][kc], rows[1][kc], rows[2][kc], column);
        for (int kr = 0; kr < 6; kr++) _mm512_stream_ps(target + (kr * 6 + kc) * stride, column[kr]);
    }
}

int nodus_winograd_transform_weights(const nodus_winograd_shape *shape, const float *weight, float *transformed,
                                     int64_t panel_begin, int64_t panel_end) {
    const winograd_form *form = form_in_use();
    if (!form) return 0;
    const geometry g = geometry_of(shape);
    const int64_t in = shape->in_channels, runs = g.depth / g.kb;
    const int64_t stride = g.panels * runs * g.mr * g.kb;
    for (int64_t panel = panel_begin; panel < panel_end; panel++) {
        for (int64_t row = 0; row < g.mr; row++) {
            const int64_t out = panel * g.mr + row;
            for (int64_t run = 0; run < runs; run++) {
                float *target = transformed + ((panel * runs + run) * g.mr + row) * g.kb;
                const float *source = out < shape->out_channels ? weight + (out * in + run * g.kb) * 9 : NULL;
                form->weight_run(source, in - run * g.kb, target, stride);
            }
        }
    }
    _mm_sfence();
    return 1;
}

/* ---- tiles ---- */

/* Lanes [first_lane, end_lane) of a vector of tiles: tiles tile_x + (lane -
 * first_lane) of one row of tiles of one image. A run of g->lanes consecutive
 * tiles splits into such segments where it crosses rows or images. */

/* Bits [0, count) of a store mask, count clamped to 0...bits. */
static inline uint32_t low_bits(int64_t count, int64_t bits) {
    return count >= bits ? (uint32_t)((1ull << bits) - 1) : count <= 0 ? 0u : (uint32_t)((1u << count) - 1);
}

/* The segments of tiles [first, first + count), count <= g->lanes; returns how many. */
static int segments_of(const geometry *g, int64_t width, int64_t first, int64_t count, segment *out) {
    int n = 0;
    for (int64_t tile = first; tile < first + count;) {
        const int64_t image = tile / g->tiles_per_image, in_image = tile % g->tiles_per_image;
        const int64_t tile_y = in_image / g->tiles_x, tile_x = in_image % g->tiles_x;
        const int64_t run = min64(g->tiles_x - tile_x, first + count - tile);
        segment seg = {tile - first, tile - first + run, image, tile_y, tile_x, {0, 0, 0, 0}};
        const int64_t x0 = 4 * (seg.tile_x - seg.first_lane), per_store = g->lanes / 4;
        for (int q = 0; q < 4; q++) {
            uint32_t bits = 0;
            for (int l = 0; l < per_store; l++) {
                const int64_t lane = per_store * q + l;
                if (lane >= seg.first_lane && lane < seg.end_lane) bits |= 0xFu << (4 * l);
            }
            seg.stores[q] = bits & low_bits(width - (x0 + g->lanes * q), g->lanes);
        }
        out[n++] = seg;
        tile += run;
    }
    return n;
}

/* Loads floats x0 ..< x0 + 16 of `line` (width floats), zero outside. Masked
 * loads never touch masked-off addresses. */
AVX512 static inline __m512 load_padded(const float *line, int64_t x0, int64_t width) {
    __mmask16 inside = lanes(width - x0) & (__mmask16)~lanes(-x0);
    return _mm512_maskz_loadu_ps(inside, (const float *)((intptr_t)line + x0 * (int64_t)sizeof(float)));
}

/* d[s] lane l = line[x0 + 4 l + s], s = 0...5: the six columns of 16 tiles
 * side by side, from five loads and a deinterleave. */
AVX512 static inline void load_tile_columns(const float *line, int64_t x0, int64_t width, __m512 d[6]) {
    __m512 w[5];
    for (int i = 0; i < 5; i++) w[i] = load_padded(line, x0 + 16 * i, width);
    /* Lanes 0-7: phase p of tiles 0-7 (or 8-15), lanes 8-15: phase p + 1. */
    const __m512i phases01 = _mm512_set_epi32(29, 25, 21, 17, 13, 9, 5, 1, 28, 24, 20, 16, 12, 8, 4, 0);
    const __m512i phases23 = _mm512_set_epi32(31, 27, 23, 19, 15, 11, 7, 3, 30, 26, 22, 18, 14, 10, 6, 2);
    const __m512i next = _mm512_set_epi32(16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m512i next1 = _mm512_set_epi32(17, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1);
    __m512 low01 = _mm512_permutex2var_ps(w[0], phases01, w[1]), high01 = _mm512_permutex2var_ps(w[2], phases01, w[3]);
    __m512 low23 = _mm512_permutex2var_ps(w[0], phases23, w[1]), high23 = _mm512_permutex2var_ps(w[2], phases23, w[3]);
    d[0] = _mm512_shuffle_f32x4(low01, high01, _MM_SHUFFLE(1, 0, 1, 0));
    d[1] = _mm512_shuffle_f32x4(low01, high01, _MM_SHUFFLE(3, 2, 3, 2));
    d[2] = _mm512_shuffle_f32x4(low23, high23, _MM_SHUFFLE(1, 0, 1, 0));
    d[3] = _mm512_shuffle_f32x4(low23, high23, _MM_SHUFFLE(3, 2, 3, 2));
    /* Columns 4 and 5 of tile l are columns 0 and 1 of tile l + 1. */
    d[4] = _mm512_permutex2var_ps(d[0], next, w[4]);
    d[5] = _mm512_permutex2var_ps(d[1], next1, w[4]);
}

/* Prefetches the rows of `plane` that load_tile_columns will read for a
 * segment, while the previous channel is transformed. */
static inline void prefetch_tile_rows(const float *plane, int64_t x0, int64_t y0, int64_t height, int64_t width) {
    const int64_t x = x0 < 0 ? 0 : x0;
    for (int64_t y = y0 < 0 ? 0 : y0; y < y0 + 6 && y < height; y++) {
        const intptr_t line = (intptr_t)plane + (y * width + x) * (int64_t)sizeof(float);
        for (int i = 0; i < 5; i++) _mm_prefetch((const char *)(line + 64 * i), _MM_HINT_T0);
    }
}

/* V for one segment of a vector of tiles, input channels [channel_begin,
 * channel_end): stored to v + xi * stride + channel * NR, the segment's lanes
 * only. With `stream`, whole vectors are streamed to memory (for a V larger
 * than L2, which ordinary stores would first read from memory). */
AVX512 static void transform_input_segment(const nodus_winograd_shape *shape, const float *input, const segment *seg,
                                           int64_t channel_begin, int64_t channel_end, float *v, int64_t stride,
                                           int stream) {
    const int64_t height = shape->height, width = shape->width, plane_size = height * width;
    const __mmask16 mine = lanes(seg->end_lane) & (__mmask16)~lanes(seg->first_lane);
    const int64_t x0 = 4 * (seg->tile_x - seg->first_lane) - 1, y0 = 4 * seg->tile_y - 1;
    const float *planes = input + seg->image * shape->in_channels * plane_size;
    for (int64_t channel = channel_begin; channel < channel_end; channel++) {
        const float *plane = planes + channel * plane_size;
        if (channel + 1 < channel_end) prefetch_tile_rows(plane + plane_size, x0, y0, height, width);
        __m512 rows[6][6]; /* rows[r] = B^T applied along row r of the tiles */
        for (int r = 0; r < 6; r++) {
            const int64_t y = y0 + r;
            if (y < 0 || y >= height) {
                for (int k = 0; k < 6; k++) rows[r][k] = _mm512_setzero_ps();
                continue;
            }
            __m512 d[6];
            load_tile_columns(plane + y * width, x0, width, d);
            input_line(d, rows[r]);
        }
        for (int kc = 0; kc < 6; kc++) {
            __m512 column[6] = {rows[0][kc], rows[1][kc], rows[2][kc], rows[3][kc], rows[4][kc], rows[5][kc]};
            __m512 transformed[6];
            input_line(column, transformed);
            for (int kr = 0; kr < 6; kr++) {
                float *target = v + (kr * 6 + kc) * stride + channel * NR;
                if (stream && mine == 0xFFFF) {
                    _mm512_stream_ps(target, transformed[kr]);
                } else {
                    _mm512_mask_storeu_ps(target, mine, transformed[kr]);
                }
            }
        }
    }
}

/* Y = A^T M A + bias for one output channel and a vector of tiles, written to
 * the image segment by segment. m points at M[0][channel][first tile]. */
AVX512 static void transform_output(const nodus_winograd_shape *shape, const float *m, int64_t stride,
                                    float bias, const segment *segs, int count, float *output, int64_t channel) {
    __m512 rows[6][4]; /* rows[kr] = A^T applied along row kr of M */
    for (int kr = 0; kr < 6; kr++) {
        __m512 line[6];
        for (int kc = 0; kc < 6; kc++) line[kc] = _mm512_loadu_ps(m + (kr * 6 + kc) * stride);
        output_line(line, rows[kr]);
    }
    __m512 y[4][4]; /* y[j][i]: output row i, column j of each tile */
    const __m512 offset = _mm512_set1_ps(bias);
    for (int j = 0; j < 4; j++) {
        __m512 column[6] = {rows[0][j], rows[1][j], rows[2][j], rows[3][j], rows[4][j], rows[5][j]};
        output_line(column, y[j]);
        for (int i = 0; i < 4; i++) y[j][i] = _mm512_add_ps(y[j][i], offset);
    }
    /* Interleave columns: out[i][q] holds tiles 4q ..< 4q + 4 of output row i, 4 pixels each. */
    const __m512i pairs_low = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i pairs_high = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512i quads_low = _mm512_set_epi32(23, 22, 7, 6, 21, 20, 5, 4, 19, 18, 3, 2, 17, 16, 1, 0);
    const __m512i quads_high = _mm512_set_epi32(31, 30, 15, 14, 29, 28, 13, 12, 27, 26, 11, 10, 25, 24, 9, 8);
    __m512 out[4][4];
    for (int i = 0; i < 4; i++) {
        __m512 ab_low = _mm512_permutex2var_ps(y[0][i], pairs_low, y[1][i]);
        __m512 ab_high = _mm512_permutex2var_ps(y[0][i], pairs_high, y[1][i]);
        __m512 cd_low = _mm512_permutex2var_ps(y[2][i], pairs_low, y[3][i]);
        __m512 cd_high = _mm512_permutex2var_ps(y[2][i], pairs_high, y[3][i]);
        out[i][0] = _mm512_permutex2var_ps(ab_low, quads_low, cd_low);
        out[i][1] = _mm512_permutex2var_ps(ab_low, quads_high, cd_low);
        out[i][2] = _mm512_permutex2var_ps(ab_high, quads_low, cd_high);
        out[i][3] = _mm512_permutex2var_ps(ab_high, quads_high, cd_high);
    }
    const int64_t height = shape->height, width = shape->width;
    for (int n = 0; n < count; n++) {
        const segment *seg = &segs[n];
        const int64_t x0 = 4 * (seg->tile_x - seg->first_lane);
        float *plane = output + seg->image * shape->output_image_stride + channel * height * width;
        for (int i = 0; i < 4; i++) {
            const int64_t row = 4 * seg->tile_y + i;
            if (row >= height) break;
            const intptr_t line = (intptr_t)(plane + row * width);
            for (int q = 0; q < 4; q++) {
                if (!seg->stores[q]) continue;
                _mm512_mask_storeu_ps((float *)(line + (x0 + 16 * q) * (int64_t)sizeof(float)),
                                      (__mmask16)seg->stores[q], out[i][q]);
            }
        }
    }
}

/* ---- products ---- */

/* C [MR x NR] (row stride ldc) = packed weights [depth / KB][MR][KB] x
 * transformed input [depth][NR]. The sum runs in chunks of CHUNK input
 * channels, each from zero in registers and then added to C: rounding errors
 * grow with the length of a running sum, and the output transform amplifies
 * them. Measured relative max error per convolution at 1280 and 2560 input
 * channels: one running sum 1.1e-5 and 1.3e-5, chunks of 128 3.0e-6 and
 * 2.9e-6 (chunks of 64: 2e-6 but 3% slower; 128 costs nothing measurable). */
AVX512 static void product_tile(int64_t depth, const float *a, const float *b, float *c, int64_t ldc) {
    for (int64_t start = 0; start < depth; start += CHUNK) {
        __m512 low[MR], high[MR];
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) low[i] = high[i] = _mm512_setzero_ps();
        for (int64_t run = start; run < depth && run < start + CHUNK; run += KB) {
#pragma GCC unroll 16
            for (int p = 0; p < KB; p++) {
                __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
                for (int i = 0; i < MR; i++) {
                    __m512 ai = _mm512_set1_ps(a[i * KB + p]);
                    low[i] = _mm512_fmadd_ps(ai, b0, low[i]);
                    high[i] = _mm512_fmadd_ps(ai, b1, high[i]);
                }
                b += NR;
            }
            a += MR * KB;
        }
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            if (start > 0) {
                low[i] = _mm512_add_ps(low[i], _mm512_loadu_ps(c + i * ldc));
                high[i] = _mm512_add_ps(high[i], _mm512_loadu_ps(c + i * ldc + 16));
            }
            _mm512_storeu_ps(c + i * ldc, low[i]);
            _mm512_storeu_ps(c + i * ldc + 16, high[i]);
        }
    }
}

/* ---- the AVX2 form: the same steps on 8 lanes ---- */

AVX2 static inline void weight_line_avx2(__m256 g0, __m256 g1, __m256 g2, __m256 u[6]) {
    const __m256 third = _mm256_set1_ps(1.0f / 3.0f), fifteenth = _mm256_set1_ps(1.0f / 15.0f);
    __m256 outer = _mm256_add_ps(g0, g2);
    u[0] = g0;
    u[1] = _mm256_mul_ps(_mm256_add_ps(outer, g1), third);
    u[2] = _mm256_mul_ps(_mm256_sub_ps(g1, outer), third);
    __m256 g3 = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), g1, _mm256_fmadd_ps(_mm256_set1_ps(4.0f), g0, g2));
    u[3] = _mm256_mul_ps(g3, _mm256_set1_ps(-4.0f / 15.0f));
    u[4] = _mm256_mul_ps(_mm256_fmadd_ps(_mm256_set1_ps(-2.0f), g1, _mm256_fmadd_ps(_mm256_set1_ps(4.0f), g2, g0)),
                         fifteenth);
    u[5] = g2;
}

AVX2 static inline void input_line_avx2(const __m256 d[6], __m256 v[6]) {
    const __m256 half = _mm256_set1_ps(0.5f), three_halves = _mm256_set1_ps(1.5f);
    const __m256 two = _mm256_set1_ps(2.0f), five_halves = _mm256_set1_ps(2.5f);
    __m256 t = _mm256_sub_ps(d[3], d[1]), s = _mm256_sub_ps(d[4], d[2]);
    v[0] = _mm256_fnmadd_ps(two, d[2], _mm256_fmadd_ps(three_halves, t, _mm256_add_ps(d[0], d[4])));
    v[1] = _mm256_fmadd_ps(five_halves, d[3], _mm256_fmadd_ps(half, d[2], _mm256_sub_ps(d[4], d[1])));
    v[2] = _mm256_fmadd_ps(half, d[3], _mm256_fnmadd_ps(five_halves, d[2], _mm256_add_ps(d[4], d[1])));
    v[3] = _mm256_fmadd_ps(two, t, s);
    v[4] = _mm256_fnmadd_ps(half, t, s);
    v[5] = _mm256_fnmadd_ps(two, d[3], _mm256_fmadd_ps(three_halves, s, _mm256_add_ps(d[1], d[5])));
}

AVX2 static inline void output_line_avx2(const __m256 m[6], __m256 y[4]) {
    __m256 sum = _mm256_add_ps(m[1], m[2]), difference = _mm256_sub_ps(m[1], m[2]);
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], sum), _mm256_add_ps(m[3], m[4]));
    y[1] = _mm256_fnmadd_ps(_mm256_set1_ps(2.0f), m[4], _mm256_fmadd_ps(_mm256_set1_ps(0.5f), m[3], difference));
    y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), m[4], _mm256_fmadd_ps(_mm256_set1_ps(0.25f), m[3], sum));
    y[3] = _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), m[4],
                            _mm256_fmadd_ps(_mm256_set1_ps(0.125f), m[3], _mm256_add_ps(difference, m[5])));
}

AVX2 static void weight_run_avx2(const float *source, int64_t present, float *target, int64_t stride) {
    if (!source) {
        for (int xi = 0; xi < POINTS; xi++) _mm256_stream_ps(target + xi * stride, _mm256_setzero_ps());
        return;
    }
    const __m256i taps = _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63);
    const __m256 mask = _mm256_castsi256_ps(lanes8(present));
    __m256 filter[9];
    for (int tap = 0; tap < 9; tap++) {
        filter[tap] = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), source + tap, taps, mask, 4);
    }
    __m256 rows[3][6];
    for (int a = 0; a < 3; a++) weight_line_avx2(filter[3 * a], filter[3 * a + 1], filter[3 * a + 2], rows[a]);
    for (int kc = 0; kc < 6; kc++) {
        __m256 column[6];
        weight_line_avx2(rows[0][kc], rows[1][kc], rows[2][kc], column);
        for (int kr = 0; kr < 6; kr++) _mm256_stream_ps(target + (kr * 6 + kc) * stride, column[kr]);
    }
}

/* A store mask of 8 pixels from its bits. */
AVX2 static inline __m256i mask_of_bits(uint32_t bits) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), bit), bit);
}

AVX2 static inline __m256 load_padded_avx2(const float *line, int64_t x0, int64_t width) {
    return _mm256_maskload_ps((const float *)((intptr_t)line + x0 * (int64_t)sizeof(float)),
                              lane_range8(-x0, width - x0));
}

/* d[s] lane l = line[x0 + 4 l + s], s = 0...5, for 8 tiles: five loads, a 4 x 8
 * transpose (lanes in the order 0 2 4 6 | 1 3 5 7, then put in order), and
 * columns 4 and 5 as columns 0 and 1 of the next tile. */
AVX2 static inline void load_tile_columns_avx2(const float *line, int64_t x0, int64_t width, __m256 d[6]) {
    __m256 w[5];
    for (int i = 0; i < 5; i++) w[i] = load_padded_avx2(line, x0 + 8 * i, width);
    const __m256 t0 = _mm256_unpacklo_ps(w[0], w[1]), t1 = _mm256_unpackhi_ps(w[0], w[1]);
    const __m256 t2 = _mm256_unpacklo_ps(w[2], w[3]), t3 = _mm256_unpackhi_ps(w[2], w[3]);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    d[0] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0x44), order);
    d[1] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0xEE), order);
    d[2] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0x44), order);
    d[3] = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0xEE), order);
    const __m256i next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
    d[4] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[0], next), _mm256_permutevar8x32_ps(w[4], _mm256_set1_epi32(0)),
                           0x80);
    d[5] = _mm256_blend_ps(_mm256_permutevar8x32_ps(d[1], next), _mm256_permutevar8x32_ps(w[4], _mm256_set1_epi32(1)),
                           0x80);
}

AVX2 static void transform_input_segment_avx2(const nodus_winograd_shape *shape, const float *input,
                                              const segment *seg, int64_t channel_begin, int64_t channel_end,
                                              float *v, int64_t stride, int stream) {
    const int64_t height = shape->height, width = shape->width, plane_size = height * width;
    const __m256i mine = lane_range8(seg->first_lane, seg->end_lane);
    const int whole = seg->first_lane == 0 && seg->end_lane == LANES2;
    const int64_t x0 = 4 * (seg->tile_x - seg->first_lane) - 1, y0 = 4 * seg->tile_y - 1;
    const float *planes = input + seg->image * shape->in_channels * plane_size;
    for (int64_t channel = channel_begin; channel < channel_end; channel++) {
        const float *plane = planes + channel * plane_size;
        if (channel + 1 < channel_end) prefetch_tile_rows(plane + plane_size, x0, y0, height, width);
        __m256 rows[6][6];
        for (int r = 0; r < 6; r++) {
            const int64_t y = y0 + r;
            if (y < 0 || y >= height) {
                for (int k = 0; k < 6; k++) rows[r][k] = _mm256_setzero_ps();
                continue;
            }
            __m256 d[6];
            load_tile_columns_avx2(plane + y * width, x0, width, d);
            input_line_avx2(d, rows[r]);
        }
        for (int kc = 0; kc < 6; kc++) {
            __m256 column[6] = {rows[0][kc], rows[1][kc], rows[2][kc], rows[3][kc], rows[4][kc], rows[5][kc]};
            __m256 transformed[6];
            input_line_avx2(column, transformed);
            for (int kr = 0; kr < 6; kr++) {
                float *target = v + (kr * 6 + kc) * stride + channel * NR2;
                if (whole) {
                    if (stream) {
                        _mm256_stream_ps(target, transformed[kr]);
                    } else {
                        _mm256_storeu_ps(target, transformed[kr]);
                    }
                } else {
                    _mm256_maskstore_ps(target, mine, transformed[kr]);
                }
            }
        }
    }
}

AVX2 static void transform_output_avx2(const nodus_winograd_shape *shape, const float *m, int64_t stride, float bias,
                                       const segment *segs, int count, float *output, int64_t channel) {
    __m256 rows[6][4];
    for (int kr = 0; kr < 6; kr++) {
        __m256 line[6];
        for (int kc = 0; kc < 6; kc++) line[kc] = _mm256_loadu_ps(m + (kr * 6 + kc) * stride);
        output_line_avx2(line, rows[kr]);
    }
    __m256 y[4][4]; /* y[j][i]: output row i, column j of each tile */
    const __m256 offset = _mm256_set1_ps(bias);
    for (int j = 0; j < 4; j++) {
        __m256 column[6] = {rows[0][j], rows[1][j], rows[2][j], rows[3][j], rows[4][j], rows[5][j]};
        output_line_avx2(column, y[j]);
        for (int i = 0; i < 4; i++) y[j][i] = _mm256_add_ps(y[j][i], offset);
    }
    /* out[i][q]: tiles 2q and 2q + 1 of output row i, 4 pixels each. */
    __m256 out[4][4];
    for (int i = 0; i < 4; i++) {
        const __m256 a = _mm256_unpacklo_ps(y[0][i], y[1][i]), b = _mm256_unpackhi_ps(y[0][i], y[1][i]);
        const __m256 c = _mm256_unpacklo_ps(y[2][i], y[3][i]), d = _mm256_unpackhi_ps(y[2][i], y[3][i]);
        const __m256 e0 = _mm256_shuffle_ps(a, c, 0x44), e1 = _mm256_shuffle_ps(a, c, 0xEE); /* tiles 0|4, 1|5 */
        const __m256 e2 = _mm256_shuffle_ps(b, d, 0x44), e3 = _mm256_shuffle_ps(b, d, 0xEE); /* tiles 2|6, 3|7 */
        out[i][0] = _mm256_permute2f128_ps(e0, e1, 0x20);
        out[i][1] = _mm256_permute2f128_ps(e2, e3, 0x20);
        out[i][2] = _mm256_permute2f128_ps(e0, e1, 0x31);
        out[i][3] = _mm256_permute2f128_ps(e2, e3, 0x31);
    }
    const int64_t height = shape->height, width = shape->width;
    for (int n = 0; n < count; n++) {
        const segment *seg = &segs[n];
        const int64_t x0 = 4 * (seg->tile_x - seg->first_lane);
        float *plane = output + seg->image * shape->output_image_stride + channel * height * width;
        __m256i masks[4];
        for (int q = 0; q < 4; q++) masks[q] = mask_of_bits(seg->stores[q]);
        for (int i = 0; i < 4; i++) {
            const int64_t row = 4 * seg->tile_y + i;
            if (row >= height) break;
            const intptr_t line = (intptr_t)(plane + row * width);
            for (int q = 0; q < 4; q++) {
                if (!seg->stores[q]) continue;
                float *target = (float *)(line + (x0 + 8 * q) * (int64_t)sizeof(float));
                if (seg->stores[q] == 0xFF) {
                    _mm256_storeu_ps(target, out[i][q]);
                } else {
                    _mm256_maskstore_ps(target, masks[q], out[i][q]);
                }
            }
        }
    }
}

/* product_tile for the AVX2 form: MR2 x NR2 (12 accumulators), runs of KB2. */
AVX2 static void product_tile_avx2(int64_t depth, const float *a, const float *b, float *c, int64_t ldc) {
    for (int64_t start = 0; start < depth; start += CHUNK) {
        __m256 low[MR2], high[MR2];
#pragma GCC unroll 6
        for (int i = 0; i < MR2; i++) low[i] = high[i] = _mm256_setzero_ps();
        for (int64_t run = start; run < depth && run < start + CHUNK; run += KB2) {
#pragma GCC unroll 8
            for (int p = 0; p < KB2; p++) {
                __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
                for (int i = 0; i < MR2; i++) {
                    __m256 ai = _mm256_broadcast_ss(a + i * KB2 + p);
                    low[i] = _mm256_fmadd_ps(ai, b0, low[i]);
                    high[i] = _mm256_fmadd_ps(ai, b1, high[i]);
                }
                b += NR2;
            }
            a += MR2 * KB2;
        }
#pragma GCC unroll 6
        for (int i = 0; i < MR2; i++) {
            if (start > 0) {
                low[i] = _mm256_add_ps(low[i], _mm256_loadu_ps(c + i * ldc));
                high[i] = _mm256_add_ps(high[i], _mm256_loadu_ps(c + i * ldc + 8));
            }
            _mm256_storeu_ps(c + i * ldc, low[i]);
            _mm256_storeu_ps(c + i * ldc + 8, high[i]);
        }
    }
}

static const winograd_form form_avx512 = {MR, NR, KB, LANES, weight_run, transform_input_segment, transform_output,
                                          product_tile};
static const winograd_form form_avx2 = {MR2, NR2, KB2, LANES2, weight_run_avx2, transform_input_segment_avx2,
                                        transform_output_avx2, product_tile_avx2};

static const winograd_form *form_in_use(void) {
    const nodus_kernel_level level = nodus_kernels_level_in_use();
    return level >= NODUS_KERNEL_LEVEL_AVX512 ? &form_avx512 : level >= NODUS_KERNEL_LEVEL_AVX2 ? &form_avx2 : NULL;
}

/* ---- blocks ---- */

/* A block's tiles and the products' columns (tiles rounded up to NR). */
typedef struct block_extent {
    int64_t first, tiles, columns;
} block_extent;

static block_extent extent_of(const nodus_winograd_shape *shape, const geometry *g, int64_t block) {
    block_extent e;
    e.first = block * shape->block_tiles;
    e.tiles = min64(shape->block_tiles, g->tiles - e.first);
    e.columns = (e.tiles + g->nr - 1) / g->nr * g->nr;
    return e;
}

int64_t nodus_winograd_input_count(const nodus_winograd_shape *shape) {
    return POINTS * point_stride(shape->block_tiles * geometry_of(shape).depth);
}

int64_t nodus_winograd_product_count(const nodus_winograd_shape *shape, int64_t panels) {
    return POINTS * point_stride(shape->block_tiles * panels * geometry_of(shape).mr);
}

/* V: [point][columns / NR][depth][NR], points point_stride(columns * depth) apart. */
int nodus_winograd_transform_input(const nodus_winograd_shape *shape, const float *input, int64_t block,
                                   int64_t channel_begin, int64_t channel_end, float *transformed_input) {
    const winograd_form *form = form_in_use();
    if (!form) return 0;
    const int64_t nr = form->nr;
    const geometry g = geometry_of(shape);
    const block_extent e = extent_of(shape, &g, block);
    const int64_t stride = point_stride(e.columns * g.depth);
    float *v = transformed_input;
    /* Rows past the last input channel meet zero weights in the products: they
     * must be zero too, not stale memory (which may hold NaN). (Lanes past the
     * last tile only reach columns of the products that are never read.) */
    if (channel_end == shape->in_channels && g.depth > channel_end) {
        for (int xi = 0; xi < POINTS; xi++) {
            for (int64_t panel = 0; panel < e.columns; panel += nr) {
                memset(v + xi * stride + panel * g.depth + channel_end * nr, 0,
                       (size_t)((g.depth - channel_end) * nr) * sizeof(float));
            }
        }
    }
    /* Streaming stores for a V larger than L2 (2 MB): at 512 channels and 256
     * tiles per block (19 MB) they halve the input transform's time (with the
     * prefetch); at 128 channels and 64 tiles (1.2 MB), V kept in L2 makes the
     * products 12% faster than streamed. */
    const int stream = POINTS * stride * (int64_t)sizeof(float) > 2 << 20;
    segment segs[MAX_LANES];
    for (int64_t lane0 = 0; lane0 < e.tiles; lane0 += g.lanes) {
        const int count = segments_of(&g, shape->width, e.first + lane0, min64(g.lanes, e.tiles - lane0), segs);
        float *target = v + (lane0 / nr) * g.depth * nr + lane0 % nr;
        for (int n = 0; n < count; n++) {
            form->input_segment(shape, input, &segs[n], channel_begin, channel_end, target, stride, stream);
        }
    }
    _mm_sfence();
    return 1;
}

/* M: [point][panels * MR][columns], points point_stride(columns * panels * MR) apart. */
int nodus_winograd_multiply(const nodus_winograd_shape *shape, const float *transformed_input,
                            const float *transformed_weights, const float *bias, int64_t block, int64_t panel_begin,
                            int64_t panel_end, float *products, float *output) {
    const winograd_form *form = form_in_use();
    if (!form) return 0;
    const geometry g = geometry_of(shape);
    const int64_t mr = g.mr, nr = g.nr;
    const block_extent e = extent_of(shape, &g, block);
    const int64_t columns = e.columns;
    const int64_t v_stride = point_stride(columns * g.depth);
    const int64_t m_stride = point_stride(columns * (panel_end - panel_begin) * mr);
    const int64_t weight_panel = g.depth * mr, weight_stride = g.panels * weight_panel;
    for (int xi = 0; xi < POINTS; xi++) {
        for (int64_t panel = panel_begin; panel < panel_end; panel++) {
            for (int64_t column = 0; column < columns; column += nr) {
                form->product(g.depth, transformed_weights + xi * weight_stride + panel * weight_panel,
                              transformed_input + xi * v_stride + column * g.depth,
                              products + xi * m_stride + (panel - panel_begin) * mr * columns + column, columns);
            }
        }
    }
    const int64_t channel_end = min64(panel_end * mr, shape->out_channels);
    segment segs[MAX_LANES];
    for (int64_t lane0 = 0; lane0 < e.tiles; lane0 += g.lanes) {
        const int count = segments_of(&g, shape->width, e.first + lane0, min64(g.lanes, e.tiles - lane0), segs);
        for (int64_t channel = panel_begin * mr; channel < channel_end; channel++) {
            form->output(shape, products + (channel - panel_begin * mr) * columns + lane0, m_stride,
                         bias ? bias[channel] : 0.0f, segs, count, output, channel);
        }
    }
    return 1;
}
