/* bf16 products (see nodus_gemm_bf16.h), in the scheme of gemm.c: a 12 x 32
 * register tile, BLIS-style blocks, biases and the old C added as a tile is
 * stored. What changes is the element: k runs in pairs, and one 32-bit word
 * holds the bf16 values of k = 2q (low half) and 2q + 1 (high half), the
 * operand layout of vdpbf16ps, which adds both products of a pair to a float32
 * lane. A panel of `width` rows of an operand is [pairs][width] words: the
 * kernel broadcasts one word of A per row and loads 16 words of B per vector.
 *
 * The weight is packed once over its whole depth, panel after panel, so a K
 * block of it is a contiguous slice of its panel and is read in place; only
 * the activations are packed per block (A for a Linear, the image's patches
 * for a convolution), rounded to bf16 as they are. */
#include "nodus_cpu.h"
#include "nodus_gemm_bf16.h"

#include <stdlib.h>
#include <string.h>

#include "tile.h"
#include "tile_avx2.h"

/* KC counts k (even, so pairs never straddle blocks). Twice gemm.c's depth:
 * the L1-resident B panel (KC x NR bf16) keeps gemm.c's 32 KB. */
enum { MR = TILE_ROWS, NR = TILE_COLUMNS, KC = 512, MC = 192, NC = 2048 };

#define AVX512_BF16 __attribute__((target("avx512f,fma,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))

static int has_avx512(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512; }

static int has_bf16(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX512_BF16; }

static int has_avx2(void) { return nodus_kernels_level_in_use() >= NODUS_KERNEL_LEVEL_AVX2; }

int nodus_gemm_bf16_path_supported(nodus_gemm_bf16_path path) {
    switch (path) {
    case NODUS_GEMM_BF16_AUTOMATIC:
    case NODUS_GEMM_BF16_PORTABLE: return 1;
    case NODUS_GEMM_BF16_DOT_PRODUCT: return has_bf16();
    case NODUS_GEMM_BF16_AVX512: return has_avx512();
    case NODUS_GEMM_BF16_AVX2: return has_avx2();
    }
    return 0;
}

int64_t nodus_gemm_bf16_tile_rows(void) { return MR; }

int64_t nodus_gemm_bf16_tile_columns(void) { return NR; }

int64_t nodus_gemm_bf16_panel_width(nodus_gemm_bf16_role role) { return role == NODUS_GEMM_BF16_LINEAR ? NR : MR; }

static inline int64_t pair_count(int64_t depth) { return (depth + 1) / 2; }

int64_t nodus_gemm_bf16_packed_size(nodus_gemm_bf16_role role, int64_t rows, int64_t depth) {
    const int64_t width = nodus_gemm_bf16_panel_width(role);
    return (rows + width - 1) / width * width * pair_count(depth) * 2;
}

/* ---- float32 -> bf16 ---------------------------------------------------- */

/* x rounded to bf16 to nearest even, in the upper half of its bits (the lower
 * half is junk): c10::BFloat16's round_to_nearest_even, NaN -> 0x7FC0. */
static inline uint32_t rounded_bits(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return x != x ? 0x7FC00000u : bits + 0x7FFFu + ((bits >> 16) & 1u);
}

/* The pair word of (k even, k odd). */
static inline uint32_t pair_word(float even, float odd) {
    return (rounded_bits(odd) & 0xFFFF0000u) | (rounded_bits(even) >> 16);
}

static inline float low_value(uint32_t word) {
    uint32_t bits = word << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline float high_value(uint32_t word) {
    uint32_t bits = word & 0xFFFF0000u;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

AVX512 INLINE __m512i rounded_bits16(__m512 x) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
    return _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC00000));
}

/* Sixteen pair words, lane j from (even[j], odd[j]). */
AVX512 INLINE __m512i pair_words16(__m512 even, __m512 odd) {
    return _mm512_or_si512(_mm512_and_si512(rounded_bits16(odd), _mm512_set1_epi32((int)0xFFFF0000u)),
                           _mm512_srli_epi32(rounded_bits16(even), 16));
}

/* Sixteen pair words from 32 consecutive k: first = k 0..15, second = k 16..31. */
AVX512 INLINE __m512i consecutive_words16(__m512 first, __m512 second) {
    const __m256i low = _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded_bits16(first), 16));
    const __m256i high = _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded_bits16(second), 16));
    return _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
}

AVX2 INLINE __m256i rounded_bits8(__m256 x) {
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF)));
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rounded),
                                                _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC00000)),
                                                _mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
}

/* Eight pair words, lane j from (even[j], odd[j]). */
AVX2 INLINE __m256i pair_words8(__m256 even, __m256 odd) {
    return _mm256_or_si256(_mm256_and_si256(rounded_bits8(odd), _mm256_set1_epi32((int)0xFFFF0000u)),
                           _mm256_srli_epi32(rounded_bits8(even), 16));
}

/* Eight pair words from 16 consecutive k: first = k 0..7, second = k 8..15
 * (packs within 128-bit halves, then the 64-bit quarters put in order). */
AVX2 INLINE __m256i consecutive_words8(__m256 first, __m256 second) {
    const __m256i packed = _mm256_packus_epi32(_mm256_srli_epi32(rounded_bits8(first), 16),
                                               _mm256_srli_epi32(rounded_bits8(second), 16));
    return _mm256_permute4x64_epi64(packed, _MM_SHUFFLE(3, 1, 2, 0));
}

/* ---- packing ------------------------------------------------------------- */

/* A panel of `width` rows from `data` (at element (row 0, k 0); strides in
 * floats) over `depth` k: [pairs][width] words, rows from `valid` on zero. */
static void pack_rows_portable(const float *data, int64_t row_stride, int64_t column_stride, int64_t valid,
                               int64_t width, int64_t depth, uint32_t *target) {
    const int64_t pairs = pair_count(depth);
    for (int64_t r = 0; r < width; r++) {
        const float *row = data + r * row_stride;
        for (int64_t q = 0; q < pairs; q++) {
            const int64_t k = 2 * q;
            target[q * width + r] = r >= valid ? 0
                                               : pair_word(row[k * column_stride],
                                                           k + 1 < depth ? row[(k + 1) * column_stride] : 0);
        }
    }
}

/* As pack_rows_portable; rows of consecutive k are converted 32 k at a time. */
AVX512 static void pack_rows_avx512(const float *data, int64_t row_stride, int64_t column_stride, int64_t valid,
                                    int64_t width, int64_t depth, uint32_t *target) {
    if (column_stride != 1) {
        pack_rows_portable(data, row_stride, column_stride, valid, width, depth, target);
        return;
    }
    const int64_t pairs = pair_count(depth);
    /* 16 pairs of every row, then written out pair by pair. */
    __attribute__((aligned(64))) uint32_t chunk[NR][16];
    for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
        const int64_t k = 2 * q0, count = min64(16, pairs - q0);
        for (int64_t r = 0; r < width; r++) {
            __m512i words = _mm512_setzero_si512();
            if (r < valid) {
                const float *source = data + r * row_stride + k;
                words = consecutive_words16(_mm512_maskz_loadu_ps(lanes(depth - k), source),
                                            _mm512_maskz_loadu_ps(lanes(depth - k - 16), source + 16));
            }
            _mm512_store_si512(chunk[r], words);
        }
        for (int64_t t = 0; t < count; t++) {
            uint32_t *out = target + (q0 + t) * width;
            for (int64_t r = 0; r < width; r++) out[r] = chunk[r][t];
        }
    }
}

/* pack_rows_avx512 on AVX2: 8 pairs (16 k) of every row at a time. */
AVX2 static void pack_rows_avx2(const float *data, int64_t row_stride, int64_t column_stride, int64_t valid,
                                int64_t width, int64_t depth, uint32_t *target) {
    if (column_stride != 1) {
        pack_rows_portable(data, row_stride, column_stride, valid, width, depth, target);
        return;
    }
    const int64_t pairs = pair_count(depth);
    __attribute__((aligned(32))) uint32_t chunk[NR][8];
    for (int64_t q0 = 0; q0 < pairs; q0 += 8) {
        const int64_t k = 2 * q0, count = min64(8, pairs - q0);
        for (int64_t r = 0; r < width; r++) {
            __m256i words = _mm256_setzero_si256();
            if (r < valid) {
                const float *source = data + r * row_stride + k;
                words = consecutive_words8(load8(source, depth - k), load8(source + 8, depth - k - 8));
            }
            _mm256_store_si256((__m256i *)chunk[r], words);
        }
        for (int64_t t = 0; t < count; t++) {
            uint32_t *out = target + (q0 + t) * width;
            for (int64_t r = 0; r < width; r++) out[r] = chunk[r][t];
        }
    }
}

/* Element (row, column) of the activation operand: A for a Linear, B for a convolution. */
static float input_element(const nodus_gemm_bf16_problem *problem, int64_t row, int64_t column) {
    if (!problem->image.data) {
        return problem->input.data[row * problem->input.row_stride + column * problem->input.column_stride];
    }
    const nodus_gemm_image *image = &problem->image;
    const int64_t taps = image->kernel_height * image->kernel_width;
    const int64_t channel = row / taps, ky = row % taps / image->kernel_width, kx = row % taps % image->kernel_width;
    const int64_t y = column / image->out_width * image->stride + ky - image->pad_top;
    const int64_t x = column % image->out_width * image->stride + kx - image->pad_left;
    if (y < 0 || y >= image->height || x < 0 || x >= image->width) return 0;
    return image->data[(channel * image->height + y) * image->width + x];
}

/* B[k0 ..< k0 + depth, col0 ..< col0 + columns] as panels of NR columns, each
 * [pairs][NR] words, columns past the end zero. */
static void pack_columns_portable(const nodus_gemm_bf16_problem *problem, int64_t k0, int64_t depth, int64_t col0,
                                  int64_t columns, uint32_t *target) {
    const int64_t pairs = pair_count(depth);
    for (int64_t first = 0; first < columns; first += NR) {
        const int64_t count = min64(NR, columns - first);
        for (int64_t q = 0; q < pairs; q++) {
            const int64_t k = k0 + 2 * q;
            for (int64_t j = 0; j < NR; j++) {
                const int64_t column = col0 + first + j;
                target[q * NR + j] =
                    j >= count ? 0
                               : pair_word(input_element(problem, k, column),
                                           2 * q + 1 < depth ? input_element(problem, k + 1, column) : 0);
            }
        }
        target += pairs * NR;
    }
}

/* out[0 ..< count] = line[x0 ..< x0 + count], zero where x is outside [0, width):
 * masked loads, which never touch the masked-off addresses (from gemm.c). */
AVX512 static inline void copy_padded(float *out, const float *line, int64_t x0, int64_t count, int64_t width) {
    for (int64_t q = 0; q < count; q += 16) {
        int64_t x = x0 + q, chunk = min64(16, count - q);
        __mmask16 inside = lanes(min64(chunk, width - x)) & (__mmask16)~lanes(-x);
        __m512 v = _mm512_maskz_loadu_ps(inside, (const float *)((intptr_t)line + x * (int64_t)sizeof(float)));
        _mm512_mask_storeu_ps(out + q, lanes(chunk), v);
    }
}

AVX2 INLINE void copy_padded_avx2(float *out, const float *line, int64_t x0, int64_t count, int64_t width) {
    for (int64_t q = 0; q < count; q += 8) {
        int64_t x = x0 + q, chunk = min64(8, count - q);
        __m256 v = _mm256_maskload_ps((const float *)((intptr_t)line + x * (int64_t)sizeof(float)),
                                      lane_range8(-x, min64(chunk, width - x)));
        store8(out + q, v, chunk);
    }
}

/* Where an im2col row reads the image: its channel's plane and kernel tap.
 * Stepped row by row instead of divided out for each. */
typedef struct patch_row {
    const float *plane;
    int64_t ky, kx;
} patch_row;

static inline patch_row patch_row_at(const nodus_gemm_image *image, int64_t row) {
    const int64_t taps = image->kernel_height * image->kernel_width;
    return (patch_row){image->data + row / taps * image->height * image->width, row % taps / image->kernel_width,
                       row % taps % image->kernel_width};
}

static inline void patch_row_advance(const nodus_gemm_image *image, patch_row *row) {
    if (++row->kx < image->kernel_width) return;
    row->kx = 0;
    if (++row->ky < image->kernel_height) return;
    row->ky = 0;
    row->plane += image->height * image->width;
}

/* out[0 ..< count] = an im2col row at columns [col0, col0 + count), zero
 * from there to the next multiple of NR. */
typedef void (*copy_padded_function)(float *out, const float *line, int64_t x0, int64_t count, int64_t width);

INLINE void read_patch_line_with(const nodus_gemm_image *image, patch_row row, int64_t col0, int64_t count,
                                 float *out, copy_padded_function copy_padded) {
    const int64_t dy = row.ky - image->pad_top, dx = row.kx - image->pad_left;
    /* Runs of the columns that lie on one output row. */
    int64_t j = 0, oy = col0 / image->out_width, ox = col0 % image->out_width;
    while (j < count) {
        const int64_t run = min64(count - j, image->out_width - ox);
        const int64_t y = oy * image->stride + dy;
        if (y < 0 || y >= image->height) {
            copy_padded(out + j, row.plane, 0, run, 0);
        } else if (image->stride == 1) {
            copy_padded(out + j, row.plane + y * image->width, ox + dx, run, image->width);
        } else {
            const float *line = row.plane + y * image->width;
            for (int64_t r = 0; r < run; r++) {
                const int64_t x = (ox + r) * image->stride + dx;
                out[j + r] = (x >= 0 && x < image->width) ? line[x] : 0;
            }
        }
        j += run;
        ox = 0;
        oy++;
    }
    copy_padded(out + count, row.plane, 0, (count + NR - 1) / NR * NR - count, 0);
}

AVX512 static void read_patch_line(const nodus_gemm_image *image, patch_row row, int64_t col0, int64_t count,
                                   float *out) {
    read_patch_line_with(image, row, col0, count, out, copy_padded);
}

AVX2 static void read_patch_line_avx2(const nodus_gemm_image *image, patch_row row, int64_t col0, int64_t count,
                                      float *out) {
    read_patch_line_with(image, row, col0, count, out, copy_padded_avx2);
}

/* Sixteen columns of an im2col row, output (oy, ox ..< ox + 16) of a stride-1
 * convolution, straight from the image: the first `count` of them, the rest
 * zero. One masked load, which never touches the masked-off addresses. */
AVX512 INLINE __m512 patch16(const nodus_gemm_image *image, patch_row row, int64_t oy, int64_t ox,
                             int64_t count) {
    const int64_t y = oy + row.ky - image->pad_top, x = ox + row.kx - image->pad_left;
    if (y < 0 || y >= image->height) return _mm512_setzero_ps();
    const __mmask16 inside = lanes(min64(count, image->width - x)) & (__mmask16)~lanes(-x);
    const float *line = row.plane + y * image->width;
    return _mm512_maskz_loadu_ps(inside, (const float *)((intptr_t)line + x * (int64_t)sizeof(float)));
}

/* As pack_columns_portable, reading B's rows two at a time (a pair) as
 * vectors: from the image, 16 columns at a time straight into the panels when
 * 16 columns never straddle two output rows (stride 1, output width a multiple
 * of 16: most layers), else a whole row of the block at a time through a
 * buffer (runs along output rows, not cut at every panel); or from a matrix
 * with unit column stride. */
AVX512 static void pack_columns_avx512(const nodus_gemm_bf16_problem *problem, int64_t k0, int64_t depth,
                                       int64_t col0, int64_t columns, uint32_t *target) {
    const nodus_gemm_image *image = &problem->image;
    const nodus_gemm_matrix *matrix = &problem->input;
    if (!image->data && matrix->column_stride != 1) {
        pack_columns_portable(problem, k0, depth, col0, columns, target);
        return;
    }
    const int64_t pairs = pair_count(depth), panels = (columns + NR - 1) / NR;
    if (image->data && image->stride == 1 && image->out_width % 16 == 0) {
        patch_row row = patch_row_at(image, k0);
        for (int64_t q = 0; q < pairs; q++) {
            const patch_row even = row;
            patch_row_advance(image, &row);
            const patch_row odd = row;
            const int has_odd = 2 * q + 1 < depth;
            if (has_odd) patch_row_advance(image, &row);
            /* col0 is a multiple of NR, so each 16 columns lie on one output row. */
            int64_t oy = col0 / image->out_width, ox = col0 % image->out_width;
            for (int64_t j = 0; j < panels * NR; j += 16) {
                const __m512 e = patch16(image, even, oy, ox, columns - j);
                const __m512 o = has_odd ? patch16(image, odd, oy, ox, columns - j) : _mm512_setzero_ps();
                _mm512_store_si512(target + (j / NR * pairs + q) * NR + j % NR, pair_words16(e, o));
                if ((ox += 16) == image->out_width) {
                    ox = 0;
                    oy++;
                }
            }
        }
        return;
    }
    if (image->data) {
        /* The pair's two im2col rows over the block's columns (at most NC). */
        __attribute__((aligned(64))) float even[NC], odd[NC];
        patch_row row = patch_row_at(image, k0);
        for (int64_t q = 0; q < pairs; q++) {
            read_patch_line(image, row, col0, columns, even);
            patch_row_advance(image, &row);
            if (2 * q + 1 < depth) {
                read_patch_line(image, row, col0, columns, odd);
                patch_row_advance(image, &row);
            } else {
                memset(odd, 0, (size_t)(panels * NR) * sizeof(float));
            }
            for (int64_t panel = 0; panel < panels; panel++) {
                uint32_t *out = target + (panel * pairs + q) * NR;
                const float *e = even + panel * NR, *o = odd + panel * NR;
                _mm512_store_si512(out, pair_words16(_mm512_load_ps(e), _mm512_load_ps(o)));
                _mm512_store_si512(out + 16, pair_words16(_mm512_load_ps(e + 16), _mm512_load_ps(o + 16)));
            }
        }
        return;
    }
    for (int64_t panel = 0; panel < panels; panel++) {
        const int64_t count = min64(NR, columns - panel * NR);
        const __mmask16 low = lanes(count), high = lanes(count - 16);
        for (int64_t q = 0; q < pairs; q++) {
            const float *source = matrix->data + (k0 + 2 * q) * matrix->row_stride + col0 + panel * NR;
            __m512 even0 = _mm512_maskz_loadu_ps(low, source), even1 = _mm512_maskz_loadu_ps(high, source + 16);
            __m512 odd0 = _mm512_setzero_ps(), odd1 = _mm512_setzero_ps();
            if (2 * q + 1 < depth) {
                odd0 = _mm512_maskz_loadu_ps(low, source + matrix->row_stride);
                odd1 = _mm512_maskz_loadu_ps(high, source + matrix->row_stride + 16);
            }
            uint32_t *out = target + (panel * pairs + q) * NR;
            _mm512_store_si512(out, pair_words16(even0, odd0));
            _mm512_store_si512(out + 16, pair_words16(even1, odd1));
        }
    }
}

/* Eight columns of an im2col row (patch16 on AVX2). */
AVX2 INLINE __m256 patch8(const nodus_gemm_image *image, patch_row row, int64_t oy, int64_t ox, int64_t count) {
    const int64_t y = oy + row.ky - image->pad_top, x = ox + row.kx - image->pad_left;
    if (y < 0 || y >= image->height) return _mm256_setzero_ps();
    const float *line = row.plane + y * image->width;
    return _mm256_maskload_ps((const float *)((intptr_t)line + x * (int64_t)sizeof(float)),
                              lane_range8(-x, min64(count, image->width - x)));
}

/* pack_columns_avx512 on AVX2: 8 columns at a time (straight from the image
 * when the output width is a multiple of 8). */
AVX2 static void pack_columns_avx2(const nodus_gemm_bf16_problem *problem, int64_t k0, int64_t depth, int64_t col0,
                                   int64_t columns, uint32_t *target) {
    const nodus_gemm_image *image = &problem->image;
    const nodus_gemm_matrix *matrix = &problem->input;
    if (!image->data && matrix->column_stride != 1) {
        pack_columns_portable(problem, k0, depth, col0, columns, target);
        return;
    }
    const int64_t pairs = pair_count(depth), panels = (columns + NR - 1) / NR;
    if (image->data && image->stride == 1 && image->out_width % 8 == 0) {
        patch_row row = patch_row_at(image, k0);
        for (int64_t q = 0; q < pairs; q++) {
            const patch_row even = row;
            patch_row_advance(image, &row);
            const patch_row odd = row;
            const int has_odd = 2 * q + 1 < depth;
            if (has_odd) patch_row_advance(image, &row);
            int64_t oy = col0 / image->out_width, ox = col0 % image->out_width;
            for (int64_t j = 0; j < panels * NR; j += 8) {
                const __m256 e = patch8(image, even, oy, ox, columns - j);
                const __m256 o = has_odd ? patch8(image, odd, oy, ox, columns - j) : _mm256_setzero_ps();
                _mm256_store_si256((__m256i *)(target + (j / NR * pairs + q) * NR + j % NR), pair_words8(e, o));
                if ((ox += 8) == image->out_width) {
                    ox = 0;
                    oy++;
                }
            }
        }
        return;
    }
    if (image->data) {
        __attribute__((aligned(64))) float even[NC], odd[NC];
        patch_row row = patch_row_at(image, k0);
        for (int64_t q = 0; q < pairs; q++) {
            read_patch_line_avx2(image, row, col0, columns, even);
            patch_row_advance(image, &row);
            if (2 * q + 1 < depth) {
                read_patch_line_avx2(image, row, col0, columns, odd);
                patch_row_advance(image, &row);
            } else {
                memset(odd, 0, (size_t)(panels * NR) * sizeof(float));
            }
            for (int64_t panel = 0; panel < panels; panel++) {
                uint32_t *out = target + (panel * pairs + q) * NR;
                const float *e = even + panel * NR, *o = odd + panel * NR;
                for (int v = 0; v < NR; v += 8) {
                    _mm256_store_si256((__m256i *)(out + v), pair_words8(_mm256_load_ps(e + v), _mm256_load_ps(o + v)));
                }
            }
        }
        return;
    }
    for (int64_t panel = 0; panel < panels; panel++) {
        const int64_t count = min64(NR, columns - panel * NR);
        for (int64_t q = 0; q < pairs; q++) {
            const float *source = matrix->data + (k0 + 2 * q) * matrix->row_stride + col0 + panel * NR;
            const int has_odd = 2 * q + 1 < depth;
            uint32_t *out = target + (panel * pairs + q) * NR;
            for (int v = 0; v < NR; v += 8) {
                const __m256 even = load8(source + v, count - v);
                const __m256 odd = has_odd ? load8(source + matrix->row_stride + v, count - v) : _mm256_setzero_ps();
                _mm256_store_si256((__m256i *)(out + v), pair_words8(even, odd));
            }
        }
    }
}

void nodus_gemm_bf16_pack(nodus_gemm_bf16_role role, const float *weight, int64_t rows, int64_t depth,
                          uint16_t *packed, int64_t panel_begin, int64_t panel_end) {
    const int64_t width = nodus_gemm_bf16_panel_width(role), pairs = pair_count(depth);
    const int avx512 = has_avx512(), avx2 = has_avx2();
    for (int64_t panel = panel_begin; panel < panel_end; panel++) {
        const float *source = weight + panel * width * depth;
        const int64_t valid = min64(width, rows - panel * width);
        uint32_t *target = (uint32_t *)packed + panel * pairs * width;
        if (avx512) {
            pack_rows_avx512(source, depth, 1, valid, width, depth, target);
        } else if (avx2) {
            pack_rows_avx2(source, depth, 1, valid, width, depth, target);
        } else {
            pack_rows_portable(source, depth, 1, valid, width, depth, target);
        }
    }
}

/* ---- register-tile kernels ------------------------------------------------ */

/* C tile [rows x columns] (at most MR x NR) = A panel x B panel over `pairs`
 * pairs of k, then the epilogue: one vdpbf16ps per row and 16 columns. */
AVX512_BF16 static void kernel_dot_product(int64_t pairs, const uint32_t *a, const uint32_t *b, float *c,
                                           int64_t ldc, int64_t rows, int64_t columns, tile_epilogue epilogue) {
    prefetch_tile(c, ldc, rows, epilogue);
    __m512 low[MR], high[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) low[i] = high[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < pairs; p++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            low[i] = _mm512_dpbf16_ps(low[i], ai, b0);
            high[i] = _mm512_dpbf16_ps(high[i], ai, b1);
        }
        a += MR;
        b += NR;
    }
    store_tile(low, high, c, ldc, rows, columns, epilogue);
}

/* As kernel_dot_product with fused multiply-adds on the bf16 values widened
 * to float32 (a shift): the products are exact, and each pair adds its odd
 * product, then its even one, as vdpbf16ps is specified to. */
AVX512 static void kernel_avx512(int64_t pairs, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc,
                                 int64_t rows, int64_t columns, tile_epilogue epilogue) {
    prefetch_tile(c, ldc, rows, epilogue);
    const __m512i upper = _mm512_set1_epi32((int)0xFFFF0000u);
    __m512 low[MR], high[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) low[i] = high[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < pairs; p++) {
        const __m512i w0 = _mm512_load_si512(b), w1 = _mm512_load_si512(b + 16);
        const __m512 even0 = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16));
        const __m512 odd0 = _mm512_castsi512_ps(_mm512_and_si512(w0, upper));
        const __m512 even1 = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16));
        const __m512 odd1 = _mm512_castsi512_ps(_mm512_and_si512(w1, upper));
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512 odd = _mm512_set1_ps(high_value(a[i])), even = _mm512_set1_ps(low_value(a[i]));
            low[i] = _mm512_fmadd_ps(even, even0, _mm512_fmadd_ps(odd, odd0, low[i]));
            high[i] = _mm512_fmadd_ps(even, even1, _mm512_fmadd_ps(odd, odd1, high[i]));
        }
        a += MR;
        b += NR;
    }
    store_tile(low, high, c, ldc, rows, columns, epilogue);
}

/* kernel_avx512 on AVX2, bit for bit: the 12 x 32 tile in four 6 x 16
 * quarters (12 accumulators each), each over every pair. A arrives widened
 * (widen_words: per pair and row, the odd value, then the even one, as
 * floats), so a row costs one broadcast from memory per value; B's words are
 * widened here, two instructions per 8 columns. Per pair, the odd products of
 * all six rows are added first, then the even ones, so each sum sees the same
 * fused multiply-adds in the same order as on AVX-512. */
AVX2 __attribute__((noinline)) static void kernel_avx2(int64_t pairs, const float *a, const uint32_t *b, float *c,
                                                      int64_t ldc, int64_t rows, int64_t columns,
                                                      tile_epilogue epilogue) {
    const __m256i upper = _mm256_set1_epi32((int)0xFFFF0000u);
    for (int64_t row0 = 0; row0 < rows; row0 += TILE_AVX2_ROWS) {
        for (int64_t column0 = 0; column0 < columns; column0 += TILE_AVX2_COLUMNS) {
            tile_epilogue quarter = epilogue;
            if (quarter.row_bias) quarter.row_bias += row0;
            if (quarter.column_bias) quarter.column_bias += column0;
            float *tile = c + row0 * ldc + column0;
            const int64_t tile_rows = min64(TILE_AVX2_ROWS, rows - row0);
            prefetch_tile_avx2(tile, ldc, tile_rows, quarter);
            __m256 low[TILE_AVX2_ROWS], high[TILE_AVX2_ROWS];
#pragma GCC unroll 6
            for (int i = 0; i < TILE_AVX2_ROWS; i++) low[i] = high[i] = _mm256_setzero_ps();
            const float *pa = a + 2 * row0;
            const uint32_t *pb = b + column0;
            for (int64_t p = 0; p < pairs; p++) {
                const __m256 odd0 =
                    _mm256_castsi256_ps(_mm256_and_si256(_mm256_load_si256((const __m256i *)pb), upper));
                const __m256 odd1 =
                    _mm256_castsi256_ps(_mm256_and_si256(_mm256_load_si256((const __m256i *)(pb + 8)), upper));
#pragma GCC unroll 6
                for (int i = 0; i < TILE_AVX2_ROWS; i++) {
                    const __m256 odd = _mm256_broadcast_ss(pa + 2 * i);
                    low[i] = _mm256_fmadd_ps(odd, odd0, low[i]);
                    high[i] = _mm256_fmadd_ps(odd, odd1, high[i]);
                }
                /* B's words loaded again, through a pointer the compiler cannot see
                 * is the same: keeping them alive across the odd half would take
                 * more than the 16 registers. */
                const uint32_t *pb_again = pb;
                __asm__("" : "+r"(pb_again));
                const __m256 even0 =
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_load_si256((const __m256i *)pb_again), 16));
                const __m256 even1 =
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_load_si256((const __m256i *)(pb_again + 8)), 16));
#pragma GCC unroll 6
                for (int i = 0; i < TILE_AVX2_ROWS; i++) {
                    const __m256 even = _mm256_broadcast_ss(pa + 2 * i + 1);
                    low[i] = _mm256_fmadd_ps(even, even0, low[i]);
                    high[i] = _mm256_fmadd_ps(even, even1, high[i]);
                }
                pa += 2 * MR;
                pb += NR;
            }
            store_tile_avx2(low, high, tile, ldc, tile_rows, min64(TILE_AVX2_COLUMNS, columns - column0), quarter);
        }
    }
}

/* `count` pair words as 2 count floats: each word's odd (high) value, then its
 * even (low) value, both exact. */
AVX2 static void widen_words(const uint32_t *words, int64_t count, float *target) {
    const __m256i upper = _mm256_set1_epi32((int)0xFFFF0000u);
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(words + i));
        const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(w, upper));
        const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
        const __m256 low = _mm256_unpacklo_ps(odd, even), high = _mm256_unpackhi_ps(odd, even);
        _mm256_storeu_ps(target + 2 * i, _mm256_permute2f128_ps(low, high, 0x20));
        _mm256_storeu_ps(target + 2 * i + 8, _mm256_permute2f128_ps(low, high, 0x31));
    }
    for (; i < count; i++) {
        target[2 * i] = high_value(words[i]);
        target[2 * i + 1] = low_value(words[i]);
    }
}

/* As kernel_avx512 in plain C. A product of two bf16 values is exact in
 * float32, so a multiply and an add round as one fused multiply-add does. */
static void kernel_portable(int64_t pairs, const uint32_t *a, const uint32_t *b, float *c, int64_t ldc, int64_t rows,
                            int64_t columns, tile_epilogue epilogue) {
    float sums[MR][NR] = {{0}};
    for (int64_t p = 0; p < pairs; p++) {
        for (int i = 0; i < MR; i++) {
            const float odd = high_value(a[i]), even = low_value(a[i]);
            for (int j = 0; j < NR; j++) {
                float sum = sums[i][j] + odd * high_value(b[j]);
                sums[i][j] = sum + even * low_value(b[j]);
            }
        }
        a += MR;
        b += NR;
    }
    for (int64_t i = 0; i < rows; i++) {
        float *row = c + i * ldc;
        for (int64_t j = 0; j < columns; j++) {
            float v = sums[i][j] + (epilogue.column_bias ? epilogue.column_bias[j] : 0);
            if (epilogue.row_bias) v += epilogue.row_bias[i];
            row[j] = gated(epilogue.load ? v + row[j] : v, epilogue);
        }
    }
}

/* ---- blocks ---------------------------------------------------------------- */

typedef void (*pack_rows_function)(const float *, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t *);
typedef void (*pack_columns_function)(const nodus_gemm_bf16_problem *, int64_t, int64_t, int64_t, int64_t,
                                      uint32_t *);
typedef void (*kernel_function)(int64_t, const uint32_t *, const uint32_t *, float *, int64_t, int64_t, int64_t,
                                tile_epilogue);

/* The block loops (gemm.c's), given one path's packing and kernel: inlined
 * into a function per path, so each is compiled for its instruction set.
 * `packed` holds the activations' block: MC x KC for a Linear's A, KC x NC
 * for a convolution's B. */
INLINE void run_block(const nodus_gemm_bf16_problem *problem, int64_t row_begin, int64_t row_end,
                      int64_t column_begin, int64_t column_end, uint32_t *packed, pack_rows_function pack_rows,
                      pack_columns_function pack_columns, kernel_function kernel) {
    const int linear = problem->role == NODUS_GEMM_BF16_LINEAR;
    const int64_t depth_total = problem->k, weight_pairs = pair_count(depth_total);
    const uint32_t *weight = (const uint32_t *)problem->weight;
    const nodus_gemm_matrix *input = &problem->input;
    for (int64_t jc = column_begin; jc < column_end; jc += NC) {
        const int64_t columns = min64(NC, column_end - jc);
        int64_t pc = 0;
        do {
            /* k = 0 still runs once: C = bias (+ C). */
            const int64_t depth = min64(KC, depth_total - pc), pairs = pair_count(depth);
            if (!linear) pack_columns(problem, pc, depth, jc, columns, packed);
            for (int64_t ic = row_begin; ic < row_end; ic += MC) {
                const int64_t rows = min64(MC, row_end - ic);
                if (linear) {
                    for (int64_t ir = 0; ir < rows; ir += MR) {
                        pack_rows(input->data + (ic + ir) * input->row_stride + pc * input->column_stride,
                                  input->row_stride, input->column_stride, min64(MR, rows - ir), MR, depth,
                                  packed + ir * pairs);
                    }
                }
                for (int64_t jr = 0; jr < columns; jr += NR) {
                    const uint32_t *b = linear ? weight + (jc + jr) * weight_pairs + pc / 2 * NR : packed + jr * pairs;
                    for (int64_t ir = 0; ir < rows; ir += MR) {
                        const uint32_t *a =
                            linear ? packed + ir * pairs : weight + (ic + ir) * weight_pairs + pc / 2 * MR;
                        tile_epilogue epilogue = {
                            .row_bias = pc == 0 && problem->row_bias ? problem->row_bias + ic + ir : NULL,
                            .column_bias = pc == 0 && problem->column_bias ? problem->column_bias + jc + jr : NULL,
                            .scale = 1.0f,
                            .load = problem->accumulate || pc > 0,
                        };
                        if (pc + depth >= depth_total) epilogue = activating(epilogue, problem->activation);
                        kernel(pairs, a, b, problem->c + (ic + ir) * problem->ldc + jc + jr, problem->ldc,
                               min64(MR, rows - ir), min64(NR, columns - jr), epilogue);
                    }
                }
            }
            pc += depth;
        } while (pc < depth_total);
    }
}

AVX512_BF16 static void block_dot_product(const nodus_gemm_bf16_problem *problem, int64_t row_begin, int64_t row_end,
                                          int64_t column_begin, int64_t column_end, uint32_t *packed) {
    run_block(problem, row_begin, row_end, column_begin, column_end, packed, pack_rows_avx512, pack_columns_avx512,
              kernel_dot_product);
}

AVX512 static void block_avx512(const nodus_gemm_bf16_problem *problem, int64_t row_begin, int64_t row_end,
                                int64_t column_begin, int64_t column_end, uint32_t *packed) {
    run_block(problem, row_begin, row_end, column_begin, column_end, packed, pack_rows_avx512, pack_columns_avx512,
              kernel_avx512);
}

/* run_block for the AVX2 path: the same loops, with each block of A widened
 * (widen_words) into `widened` (MC x KC floats) before the kernels read it. */
AVX2 static void block_avx2(const nodus_gemm_bf16_problem *problem, int64_t row_begin, int64_t row_end,
                            int64_t column_begin, int64_t column_end, uint32_t *packed, float *widened) {
    const int linear = problem->role == NODUS_GEMM_BF16_LINEAR;
    const int64_t depth_total = problem->k, weight_pairs = pair_count(depth_total);
    const uint32_t *weight = (const uint32_t *)problem->weight;
    const nodus_gemm_matrix *input = &problem->input;
    for (int64_t jc = column_begin; jc < column_end; jc += NC) {
        const int64_t columns = min64(NC, column_end - jc);
        int64_t pc = 0;
        do {
            /* k = 0 still runs once: C = bias (+ C). */
            const int64_t depth = min64(KC, depth_total - pc), pairs = pair_count(depth);
            if (!linear) pack_columns_avx2(problem, pc, depth, jc, columns, packed);
            for (int64_t ic = row_begin; ic < row_end; ic += MC) {
                const int64_t rows = min64(MC, row_end - ic);
                for (int64_t ir = 0; ir < rows; ir += MR) {
                    if (linear) {
                        pack_rows_avx2(input->data + (ic + ir) * input->row_stride + pc * input->column_stride,
                                       input->row_stride, input->column_stride, min64(MR, rows - ir), MR, depth,
                                       packed);
                        widen_words(packed, pairs * MR, widened + 2 * ir * pairs);
                    } else {
                        widen_words(weight + (ic + ir) * weight_pairs + pc / 2 * MR, pairs * MR,
                                    widened + 2 * ir * pairs);
                    }
                }
                for (int64_t jr = 0; jr < columns; jr += NR) {
                    const uint32_t *b = linear ? weight + (jc + jr) * weight_pairs + pc / 2 * NR : packed + jr * pairs;
                    for (int64_t ir = 0; ir < rows; ir += MR) {
                        tile_epilogue epilogue = {
                            .row_bias = pc == 0 && problem->row_bias ? problem->row_bias + ic + ir : NULL,
                            .column_bias = pc == 0 && problem->column_bias ? problem->column_bias + jc + jr : NULL,
                            .scale = 1.0f,
                            .load = problem->accumulate || pc > 0,
                        };
                        if (pc + depth >= depth_total) epilogue = activating(epilogue, problem->activation);
                        kernel_avx2(pairs, widened + 2 * ir * pairs, b, problem->c + (ic + ir) * problem->ldc + jc + jr,
                                    problem->ldc, min64(MR, rows - ir), min64(NR, columns - jr), epilogue);
                    }
                }
            }
            pc += depth;
        } while (pc < depth_total);
    }
}

static void block_portable(const nodus_gemm_bf16_problem *problem, int64_t row_begin, int64_t row_end,
                           int64_t column_begin, int64_t column_end, uint32_t *packed) {
    run_block(problem, row_begin, row_end, column_begin, column_end, packed, pack_rows_portable,
              pack_columns_portable, kernel_portable);
}

/* The packed weight's word for (weight row, k pair). */
static uint32_t weight_word(const nodus_gemm_bf16_problem *problem, int64_t row, int64_t pair) {
    const int64_t width = nodus_gemm_bf16_panel_width(problem->role);
    const uint32_t *panel = (const uint32_t *)problem->weight + row / width * width * pair_count(problem->k);
    return panel[pair * width + row % width];
}

/* The block without packing buffers, element by element, the pairs in the
 * kernels' order: only when packing memory cannot be had, so that a caller
 * never has to undo a half-written C. */
static void block_unpacked(const nodus_gemm_bf16_problem *problem, int64_t row_begin, int64_t row_end,
                           int64_t column_begin, int64_t column_end) {
    const tile_epilogue gate = activating((tile_epilogue){.scale = 1}, problem->activation);
    const int linear = problem->role == NODUS_GEMM_BF16_LINEAR;
    for (int64_t i = row_begin; i < row_end; i++) {
        for (int64_t j = column_begin; j < column_end; j++) {
            float sum = 0;
            for (int64_t q = 0; q < pair_count(problem->k); q++) {
                const int64_t k = 2 * q;
                const uint32_t w = weight_word(problem, linear ? j : i, q);
                const float even = linear ? input_element(problem, i, k) : input_element(problem, k, j);
                const float odd = k + 1 >= problem->k ? 0
                                  : linear            ? input_element(problem, i, k + 1)
                                                      : input_element(problem, k + 1, j);
                const uint32_t x = pair_word(even, odd);
                sum += high_value(w) * high_value(x);
                sum += low_value(w) * low_value(x);
            }
            float *target = problem->c + i * problem->ldc + j;
            if (problem->column_bias) sum += problem->column_bias[j];
            if (problem->row_bias) sum += problem->row_bias[i];
            *target = gated(problem->accumulate ? sum + *target : sum, gate);
        }
    }
}

int nodus_gemm_bf16_block(const nodus_gemm_bf16_problem *problem, int64_t row_begin, int64_t row_end,
                          int64_t column_begin, int64_t column_end) {
    nodus_gemm_bf16_path path = problem->path;
    if (path == NODUS_GEMM_BF16_AUTOMATIC) {
        path = has_bf16()     ? NODUS_GEMM_BF16_DOT_PRODUCT
               : has_avx512() ? NODUS_GEMM_BF16_AVX512
               : has_avx2()   ? NODUS_GEMM_BF16_AVX2
                              : NODUS_GEMM_BF16_PORTABLE;
    }
    if (!nodus_gemm_bf16_path_supported(path) || row_begin % MR != 0 || column_begin % NR != 0) return 0;
    if (row_begin >= row_end || column_begin >= column_end) return 1;
    const int64_t block_pairs = pair_count(min64(KC, problem->k > 0 ? problem->k : 1));
    const int64_t block_width = problem->role == NODUS_GEMM_BF16_LINEAR
                                    ? min64(MC, (row_end - row_begin + MR - 1) / MR * MR)
                                    : min64(NC, (column_end - column_begin + NR - 1) / NR * NR);
    /* A whole number of 64-byte lines, as C11's aligned_alloc asks. */
    uint32_t *packed = aligned_alloc(64, (size_t)(block_pairs * block_width + 15) / 16 * 64);
    if (!packed) {
        block_unpacked(problem, row_begin, row_end, column_begin, column_end);
        return 1;
    }
    if (path == NODUS_GEMM_BF16_AVX2) {
        /* A block of A widened: MC x KC floats. */
        float *widened = aligned_alloc(64, (size_t)MC * KC * sizeof(float));
        if (!widened) {
            free(packed);
            block_unpacked(problem, row_begin, row_end, column_begin, column_end);
            return 1;
        }
        block_avx2(problem, row_begin, row_end, column_begin, column_end, packed, widened);
        free(widened);
        free(packed);
        return 1;
    }
    switch (path) {
    case NODUS_GEMM_BF16_DOT_PRODUCT:
        block_dot_product(problem, row_begin, row_end, column_begin, column_end, packed);
        break;
    case NODUS_GEMM_BF16_AVX512: block_avx512(problem, row_begin, row_end, column_begin, column_end, packed); break;
    default: block_portable(problem, row_begin, row_end, column_begin, column_end, packed); break;
    }
    free(packed);
    return 1;
}
