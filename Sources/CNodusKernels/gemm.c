#include "nodus_gemm.h"

#include "nodus_cpu.h"

#include <math.h>
#include <stdlib.h>

#include "tile.h"
#include "tile_avx2.h"

/* Two forms of one product, chosen by the CPU level in use: AVX-512 with a
 * 12 x 32 register tile (24 accumulators of 16 floats), and AVX2 + FMA with a
 * 6 x 16 tile (12 accumulators of 8 floats, 2 B vectors and 1 broadcast A: 15
 * of the 16 ymm registers). Blocks follow the BLIS scheme for both: a KC x NR
 * panel of B stays in L1 while MC / MR panels of A stream through it from L2;
 * a KC x NC block of B is packed once per K block. MC, MC_PACKED_B and NC are
 * multiples of both tiles. Packed operands are laid out in the panels of the
 * form in use, so a process packs and multiplies at one level.
 *
 * The AVX-512 form takes products of two matrices (Linears, MatMul) in blocks
 * of KC_PACKED_B instead, deeper than the Linears of the models Nodus runs:
 * each tile of C is then summed in registers over all of k and stored once,
 * where KC-deep blocks load and store all of C (megabytes, in L3) once per
 * block. The NR-wide panel of a weight packed ahead (at most 768 KB) is read
 * from L2 by the MC_PACKED_B / MR tiles of A, read in place: 4 to 8% faster on
 * the Linears of DiT-XL/2 and SD-1.5 (Zen 5). MC_PACKED_B takes a batch-2
 * DiT's 512 tokens in one block. The AVX2 form keeps KC: it gained nothing
 * where it was measured (AVX-512 masked off), and Zen 3's L2 is half as large. */
enum { KC = 256, MC = 192, NC = 2048, MC_PACKED_B = 516, KC_PACKED_B = 6144 };
enum { MR = TILE_ROWS, NR = TILE_COLUMNS, MR2 = TILE_AVX2_ROWS, NR2 = TILE_AVX2_COLUMNS };

typedef void (*pack_a_function)(const nodus_gemm_matrix *a, int64_t row0, int64_t rows, int64_t col0, int64_t depth,
                                float *target);
typedef void (*pack_b_matrix_function)(const nodus_gemm_matrix *b, int64_t row0, int64_t depth, int64_t col0,
                                       int64_t columns, float *target);
typedef void (*pack_b_image_function)(const nodus_gemm_image *image, int64_t row0, int64_t depth, int64_t col0,
                                      int64_t columns, float *target);
typedef void (*kernel_function)(int64_t depth, const float *a, const float *b, float *c, int64_t ldc, int64_t rows,
                                int64_t columns, tile_epilogue epilogue);
typedef void (*kernel_rows_function)(int64_t depth, const float *a, int64_t lda, const float *b, float *c,
                                     int64_t ldc, int64_t columns, tile_epilogue epilogue);
typedef void (*blocks_function)(const nodus_gemm_problem *problem, int64_t row_begin, int64_t row_end,
                                int64_t column_begin, int64_t column_end, float *packed_a, float *packed_b);

/* The code of one level: its tile, its packing of constant operands, and its
 * block loops (run_blocks compiled for the level, the kernel inlined in them). */
typedef struct gemm_form {
    int64_t mr, nr;
    int64_t weight_depth; /* the depth blocks of B packed ahead */
    pack_a_function pack_a;
    pack_b_matrix_function pack_b_matrix;
    blocks_function blocks;
} gemm_form;

static const gemm_form *form_in_use(void);

int nodus_gemm_supported(void) { return form_in_use() != NULL; }

int64_t nodus_gemm_tile_rows(void) { return form_in_use() ? form_in_use()->mr : MR; }

int64_t nodus_gemm_tile_columns(void) { return form_in_use() ? form_in_use()->nr : NR; }

/* A[row0 ..< row0 + rows, col0 ..< col0 + depth] as panels of MR rows, each
 * [depth][MR] (column-interleaved), rows past the end zero. */
AVX512 static void pack_a(const nodus_gemm_matrix *a, int64_t row0, int64_t rows, int64_t col0, int64_t depth,
                          float *target) {
    for (int64_t first = 0; first < rows; first += MR) {
        const int64_t count = min64(MR, rows - first);
        const float *origin = a->data + (row0 + first) * a->row_stride + col0 * a->column_stride;
        if (a->column_stride == 1) {
            interleave_lines(origin, a->row_stride, count, depth, target, MR, MR);
        } else {
            for (int64_t r = 0; r < MR; r++) {
                for (int64_t p = 0; p < depth; p++) {
                    target[p * MR + r] = r < count ? origin[r * a->row_stride + p * a->column_stride] : 0;
                }
            }
        }
        target += depth * MR;
    }
}

/* B[row0 ..< row0 + depth, col0 ..< col0 + columns] as panels of NR columns,
 * each [depth][NR], columns past the end zero. */
AVX512 static void pack_b_matrix(const nodus_gemm_matrix *b, int64_t row0, int64_t depth, int64_t col0, int64_t columns,
                                 float *target) {
    for (int64_t first = 0; first < columns; first += NR) {
        const int64_t count = min64(NR, columns - first);
        const float *origin = b->data + row0 * b->row_stride + (col0 + first) * b->column_stride;
        if (b->column_stride == 1) {
            __mmask16 low = lanes(count), high = lanes(count - 16);
            for (int64_t p = 0; p < depth; p++) {
                const float *row = origin + p * b->row_stride;
                _mm512_storeu_ps(target + p * NR, _mm512_maskz_loadu_ps(low, row));
                _mm512_storeu_ps(target + p * NR + 16, _mm512_maskz_loadu_ps(high, row + 16));
            }
        } else if (b->row_stride == 1) {
            /* Transposed B (a Linear weight): each column is contiguous in memory. */
            for (int64_t half = 0; half < NR; half += 16) {
                interleave_lines(origin + half * b->column_stride, b->column_stride, count - half, depth, target + half,
                                 NR, 16);
            }
        } else {
            for (int64_t j = 0; j < NR; j++) {
                for (int64_t p = 0; p < depth; p++) {
                    target[p * NR + j] = j < count ? origin[p * b->row_stride + j * b->column_stride] : 0;
                }
            }
        }
        target += depth * NR;
    }
}

/* pack_a for the AVX2 tile: panels of MR2 rows, each [depth][MR2]. Eight
 * columns of up to six rows at a time, transposed in registers; each column
 * stored as 4 + 2 floats (AMD's masked stores are slow). */
AVX2 static void pack_a_avx2(const nodus_gemm_matrix *a, int64_t row0, int64_t rows, int64_t col0, int64_t depth,
                             float *target) {
    for (int64_t first = 0; first < rows; first += MR2) {
        const int64_t count = min64(MR2, rows - first);
        const float *origin = a->data + (row0 + first) * a->row_stride + col0 * a->column_stride;
        if (a->column_stride == 1) {
            for (int64_t p0 = 0; p0 < depth; p0 += 8) {
                const int64_t chunk = min64(8, depth - p0);
                __m256 block[8];
                for (int64_t i = 0; i < 8; i++) {
                    block[i] = i < count ? load8(origin + i * a->row_stride + p0, chunk) : _mm256_setzero_ps();
                }
                transpose8(block);
                for (int64_t q = 0; q < chunk; q++) {
                    float *out = target + (p0 + q) * MR2;
                    _mm_storeu_ps(out, _mm256_castps256_ps128(block[q]));
                    _mm_storel_pi((__m64 *)(out + 4), _mm256_extractf128_ps(block[q], 1));
                }
            }
        } else {
            for (int64_t r = 0; r < MR2; r++) {
                for (int64_t p = 0; p < depth; p++) {
                    target[p * MR2 + r] = r < count ? origin[r * a->row_stride + p * a->column_stride] : 0;
                }
            }
        }
        target += depth * MR2;
    }
}

/* pack_b_matrix for the AVX2 tile: panels of NR2 columns, each [depth][NR2]. */
AVX2 static void pack_b_matrix_avx2(const nodus_gemm_matrix *b, int64_t row0, int64_t depth, int64_t col0,
                                    int64_t columns, float *target) {
    for (int64_t first = 0; first < columns; first += NR2) {
        const int64_t count = min64(NR2, columns - first);
        const float *origin = b->data + row0 * b->row_stride + (col0 + first) * b->column_stride;
        if (b->column_stride == 1) {
            for (int64_t p = 0; p < depth; p++) {
                const float *row = origin + p * b->row_stride;
                _mm256_storeu_ps(target + p * NR2, load8(row, count));
                _mm256_storeu_ps(target + p * NR2 + 8, load8(row + 8, count - 8));
            }
        } else if (b->row_stride == 1) {
            /* Transposed B (a Linear weight): each column is contiguous in memory. */
            for (int64_t half = 0; half < NR2; half += 8) {
                const int64_t lines = count - half;
                const float *start = origin + half * b->column_stride;
                for (int64_t p0 = 0; p0 < depth; p0 += 8) {
                    const int64_t chunk = min64(8, depth - p0);
                    __m256 block[8];
                    for (int64_t i = 0; i < 8; i++) {
                        block[i] = i < lines ? load8(start + i * b->column_stride + p0, chunk) : _mm256_setzero_ps();
                    }
                    transpose8(block);
                    for (int64_t q = 0; q < chunk; q++) _mm256_storeu_ps(target + (p0 + q) * NR2 + half, block[q]);
                }
            }
        } else {
            for (int64_t j = 0; j < NR2; j++) {
                for (int64_t p = 0; p < depth; p++) {
                    target[p * NR2 + j] = j < count ? origin[p * b->row_stride + j * b->column_stride] : 0;
                }
            }
        }
        target += depth * NR2;
    }
}

/* out[0 ..< count] = line[x0 ..< x0 + count], zero where x is outside [0, width):
 * masked loads, which never touch the masked-off addresses. */
AVX512 static void copy_padded(float *out, const float *line, int64_t x0, int64_t count, int64_t width) {
    for (int64_t q = 0; q < count; q += 16) {
        int64_t x = x0 + q, chunk = min64(16, count - q);
        __mmask16 inside = lanes(min64(chunk, width - x)) & (__mmask16)~lanes(-x);
        __m512 v = _mm512_maskz_loadu_ps(inside, (const float *)((intptr_t)line + x * (int64_t)sizeof(float)));
        _mm512_mask_storeu_ps(out + q, lanes(chunk), v);
    }
}

AVX2 static void copy_padded_avx2(float *out, const float *line, int64_t x0, int64_t count, int64_t width) {
    for (int64_t q = 0; q < count; q += 8) {
        int64_t x = x0 + q, chunk = min64(8, count - q);
        __m256 v = _mm256_maskload_ps((const float *)((intptr_t)line + x * (int64_t)sizeof(float)),
                                      lane_range8(-x, min64(chunk, width - x)));
        store8(out + q, v, chunk);
    }
}

typedef void (*copy_padded_function)(float *out, const float *line, int64_t x0, int64_t count, int64_t width);

/* The im2col matrix of `image` for rows [row0, row0 + depth) and columns
 * [col0, col0 + columns), packed as pack_b_matrix packs (panels of `nr`
 * columns), read from the image with `copy`. */
static inline __attribute__((always_inline)) void pack_b_image_with(const nodus_gemm_image *image, int64_t row0,
                                                                    int64_t depth, int64_t col0, int64_t columns,
                                                                    float *target, const int64_t nr,
                                                                    copy_padded_function copy) {
    const int64_t taps = image->kernel_height * image->kernel_width;
    const int64_t plane_size = image->height * image->width;
    for (int64_t first = 0; first < columns; first += nr) {
        const int64_t count = min64(nr, columns - first);
        const int64_t start_y = (col0 + first) / image->out_width, start_x = (col0 + first) % image->out_width;
        /* Row p of B is (channel, ky, kx); counters instead of divisions per row. */
        const float *plane = image->data + (row0 / taps) * plane_size;
        int64_t ky = (row0 % taps) / image->kernel_width, kx = (row0 % taps) % image->kernel_width;
        for (int64_t p = 0; p < depth; p++) {
            float *out = target + p * nr;
            const int64_t dy = ky - image->pad_top, dx = kx - image->pad_left;
            /* Runs of the panel's columns that lie on one output row. */
            int64_t j = 0, oy = start_y, ox = start_x;
            while (j < count) {
                int64_t run = min64(count - j, image->out_width - ox);
                int64_t y = oy * image->stride + dy;
                if (y < 0 || y >= image->height) {
                    copy(out + j, plane, 0, run, 0);
                } else if (image->stride == 1) {
                    copy(out + j, plane + y * image->width, ox + dx, run, image->width);
                } else {
                    const float *line = plane + y * image->width;
                    for (int64_t r = 0; r < run; r++) {
                        int64_t x = (ox + r) * image->stride + dx;
                        out[j + r] = (x >= 0 && x < image->width) ? line[x] : 0;
                    }
                }
                j += run;
                ox = 0;
                oy++;
            }
            if (count < nr) copy(out + count, plane, 0, nr - count, 0);
            if (++kx == image->kernel_width) {
                kx = 0;
                if (++ky == image->kernel_height) {
                    ky = 0;
                    plane += plane_size;
                }
            }
        }
        target += depth * nr;
    }
}

AVX512 static void pack_b_image(const nodus_gemm_image *image, int64_t row0, int64_t depth, int64_t col0,
                                int64_t columns, float *target) {
    pack_b_image_with(image, row0, depth, col0, columns, target, NR, copy_padded);
}

AVX2 static void pack_b_image_avx2(const nodus_gemm_image *image, int64_t row0, int64_t depth, int64_t col0,
                                   int64_t columns, float *target) {
    pack_b_image_with(image, row0, depth, col0, columns, target, NR2, copy_padded_avx2);
}

/* A from a packed panel, [depth][MR]. */
AVX512 static void kernel(int64_t depth, const float *a, const float *b, float *c, int64_t ldc, int64_t rows,
                          int64_t columns, tile_epilogue epilogue) {
    tile_products(depth, a, 1, MR, b, c, ldc, rows, columns, epilogue);
}

/* A full tile with A read in place, rows `lda` apart, as MLAS reads them: the same
 * products in the same order, so the same sums, without the packing pass over A
 * (a Linear's activations, read once per column sweep of packed weights). */
AVX512 static void kernel_rows(int64_t depth, const float *a, int64_t lda, const float *b, float *c, int64_t ldc,
                               int64_t columns, tile_epilogue epilogue) {
    tile_products(depth, a, lda, 1, b, c, ldc, MR, columns, epilogue);
}

/* The AVX2 tile [rows x columns] (at most MR2 x NR2), as tile_products: per step
 * of k, two vectors of B and six broadcasts of A into twelve accumulators. */
AVX2 static inline __attribute__((always_inline)) void tile_products_avx2(
    int64_t depth, const float *a, int64_t row_step, int64_t depth_step, const float *b, float *c, int64_t ldc,
    int64_t rows, int64_t columns, tile_epilogue epilogue) {
    prefetch_tile_avx2(c, ldc, rows, epilogue);
    __m256 low[MR2], high[MR2];
#pragma GCC unroll 6
    for (int i = 0; i < MR2; i++) low[i] = high[i] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int64_t p = 0; p < depth; p++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR2; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i * row_step);
            low[i] = _mm256_fmadd_ps(ai, b0, low[i]);
            high[i] = _mm256_fmadd_ps(ai, b1, high[i]);
        }
        a += depth_step;
        b += NR2;
    }
    store_tile_avx2(low, high, c, ldc, rows, columns, epilogue);
}

AVX2 static void kernel_avx2(int64_t depth, const float *a, const float *b, float *c, int64_t ldc, int64_t rows,
                             int64_t columns, tile_epilogue epilogue) {
    tile_products_avx2(depth, a, 1, MR2, b, c, ldc, rows, columns, epilogue);
}

AVX2 static void kernel_rows_avx2(int64_t depth, const float *a, int64_t lda, const float *b, float *c, int64_t ldc,
                                  int64_t columns, tile_epilogue epilogue) {
    tile_products_avx2(depth, a, lda, 1, b, c, ldc, MR2, columns, epilogue);
}

/* Packed operands are stored by blocks of k: block p0 holds every panel's rows
 * [p0, p0 + depth), panel after panel, so the block a product reads is one
 * contiguous run, laid out as its own packing would lay it out. Blocks are KC
 * deep for A, the form's weight_depth for B. */
static inline int64_t padded(int64_t count, int64_t tile) { return (count + tile - 1) / tile * tile; }

/* Where element (line, p) of an operand packed with `tile`-wide panels along
 * `lines` (rows of A, columns of B) and `k` along the other side, in blocks of
 * `block` k, sits. */
static inline int64_t packed_index(int64_t line, int64_t p, int64_t lines, int64_t k, int64_t tile, int64_t block) {
    const int64_t p0 = p / block * block, depth = min64(block, k - p0);
    return p0 * padded(lines, tile) + line / tile * depth * tile + (p - p0) * tile + line % tile;
}

/* A[row, p], from wherever the problem keeps it. */
static float a_element(const nodus_gemm_problem *problem, int64_t row, int64_t p) {
    if (problem->packed_a) {
        return problem->packed_a[packed_index(row, p, problem->m, problem->k, form_in_use()->mr, KC)];
    }
    return problem->a.data[row * problem->a.row_stride + p * problem->a.column_stride];
}

/* B[p, column], read as the packing reads it. */
static float b_element(const nodus_gemm_problem *problem, int64_t p, int64_t column) {
    if (problem->packed_b) {
        const gemm_form *form = form_in_use();
        return problem->packed_b[packed_index(column, p, problem->n, problem->k, form->nr, form->weight_depth)];
    }
    if (!problem->image.data) return problem->b.data[p * problem->b.row_stride + column * problem->b.column_stride];
    const nodus_gemm_image *image = &problem->image;
    int64_t taps = image->kernel_height * image->kernel_width;
    int64_t channel = p / taps, ky = p % taps / image->kernel_width, kx = p % taps % image->kernel_width;
    int64_t y = column / image->out_width * image->stride + ky - image->pad_top;
    int64_t x = column % image->out_width * image->stride + kx - image->pad_left;
    if (y < 0 || y >= image->height || x < 0 || x >= image->width) return 0;
    return image->data[(channel * image->height + y) * image->width + x];
}

/* The block without packing, element by element: only when packing memory
 * cannot be had, so that a caller never has to undo a half-written C. */
static void block_unpacked(const nodus_gemm_problem *problem, int64_t row_begin, int64_t row_end, int64_t column_begin,
                           int64_t column_end) {
    const tile_epilogue gate = activating((tile_epilogue){.scale = 1}, problem->activation);
    for (int64_t i = row_begin; i < row_end; i++) {
        for (int64_t j = column_begin; j < column_end; j++) {
            float sum = 0;
            for (int64_t p = 0; p < problem->k; p++) {
                sum = fmaf(a_element(problem, i, p), b_element(problem, p, j), sum);
            }
            float *target = problem->c + i * problem->ldc + j;
            sum *= problem->scale;
            if (problem->row_bias) sum += problem->row_bias[i];
            if (problem->column_bias) sum += problem->column_bias[j];
            *target = gated(problem->accumulate ? *target + sum : sum, gate);
        }
    }
}

int64_t nodus_gemm_packed_a_count(int64_t m, int64_t k) { return padded(m, nodus_gemm_tile_rows()) * k; }

int64_t nodus_gemm_packed_b_count(int64_t k, int64_t n) { return k * padded(n, nodus_gemm_tile_columns()); }

int nodus_gemm_pack_a(const nodus_gemm_matrix *a, int64_t m, int64_t k, int64_t row_begin, int64_t row_end,
                      float *target) {
    const gemm_form *form = form_in_use();
    if (!form) return 0;
    for (int64_t p0 = 0; p0 < k; p0 += KC) {
        const int64_t depth = min64(KC, k - p0);
        form->pack_a(a, row_begin, min64(row_end, m) - row_begin, p0, depth,
                     target + p0 * padded(m, form->mr) + row_begin * depth);
    }
    return 1;
}

int nodus_gemm_pack_b(const nodus_gemm_matrix *b, int64_t k, int64_t n, int64_t column_begin, int64_t column_end,
                      float *target) {
    const gemm_form *form = form_in_use();
    if (!form) return 0;
    for (int64_t p0 = 0; p0 < k; p0 += form->weight_depth) {
        const int64_t depth = min64(form->weight_depth, k - p0);
        form->pack_b_matrix(b, p0, depth, column_begin, min64(column_end, n) - column_begin,
                            target + p0 * padded(n, form->nr) + column_begin * depth);
    }
    return 1;
}

/* How the block loops step through a problem: rows, columns and k per block. */
typedef struct block_steps {
    int64_t rows, columns, depth;
    int a_in_place; /* full tiles read A where it is; only a last, partial tile of rows is packed */
} block_steps;

/* The steps for `columns` columns of a problem, at a level whose packed weights
 * are `weight_depth` deep and `nr` wide. Products of two matrices (Linears,
 * MatMul) go weight_depth deep, whether B is packed ahead or per call, so that
 * both give the same sums; row-major A is read in place (as MLAS reads it).
 * Convolutions go KC deep, as A is packed ahead and B read from the image. A B
 * packed per call takes at most KC x NC floats per block, as many columns as fit. */
static inline block_steps steps_for(const nodus_gemm_problem *problem, int64_t columns, int64_t weight_depth,
                                    int64_t nr) {
    const int matrices = !problem->packed_a && !problem->image.data;
    block_steps steps = {.depth = matrices ? weight_depth : KC, .a_in_place = matrices && problem->a.column_stride == 1};
    /* With B packed once there is no B block to keep small: one pass over the
     * columns packs each block of A once, and taller A blocks read B fewer times. */
    steps.rows = problem->packed_b ? MC_PACKED_B : MC;
    const int64_t depth = min64(steps.depth, problem->k > 0 ? problem->k : 1);
    steps.columns = problem->packed_b ? columns : (KC * NC / depth / nr > 0 ? KC * NC / depth / nr * nr : nr);
    return steps;
}

/* The block loops of nodus_gemm_block for one level's functions: inlined into
 * a function per level (blocks_avx512, blocks_avx2), so each is compiled for
 * its instruction set with its kernel inlined. `packed_a` and `packed_b` are
 * the packing buffers (unused where the problem brings the operand packed). */
static inline __attribute__((always_inline)) void run_blocks(
    const nodus_gemm_problem *problem, int64_t row_begin, int64_t row_end, int64_t column_begin, int64_t column_end,
    float *packed_a, float *packed_b, const int64_t mr, const int64_t nr, const int64_t weight_depth,
    pack_a_function pack_a_block, pack_b_matrix_function pack_b_matrix_block, pack_b_image_function pack_b_image_block,
    kernel_function kernel_tile, kernel_rows_function kernel_rows_tile) {
    const int64_t depth_total = problem->k;
    const block_steps steps = steps_for(problem, column_end - column_begin, weight_depth, nr);
    const int64_t step_rows = steps.rows, step_columns = steps.columns, step_depth = steps.depth;
    for (int64_t jc = column_begin; jc < column_end; jc += step_columns) {
        const int64_t columns = min64(step_columns, column_end - jc);
        int64_t pc = 0;
        do {
            /* k = 0 still runs once: C = bias (+ C). */
            const int64_t depth = min64(step_depth, depth_total - pc);
            const float *block_b = packed_b;
            int64_t panel_depth = depth; /* B's panels are this deep in block_b */
            if (problem->packed_b) {
                /* The step's rows of the weight_depth block of packed B that holds them. */
                const int64_t b0 = pc / weight_depth * weight_depth;
                panel_depth = min64(weight_depth, depth_total - b0);
                block_b = problem->packed_b + b0 * padded(problem->n, nr) + jc * panel_depth + (pc - b0) * nr;
            } else if (problem->image.data) {
                pack_b_image_block(&problem->image, pc, depth, jc, columns, packed_b);
            } else {
                pack_b_matrix_block(&problem->b, pc, depth, jc, columns, packed_b);
            }
            for (int64_t ic = row_begin; ic < row_end; ic += step_rows) {
                const int64_t rows = min64(step_rows, row_end - ic);
                /* With A read in place only the last, partial tile of rows is packed (at packed_a). */
                const int64_t full_rows = steps.a_in_place ? rows / mr * mr : 0;
                const float *block_a = packed_a; /* its first panel is row `full_rows` of the block */
                if (problem->packed_a) {
                    block_a = problem->packed_a + pc * padded(problem->m, mr) + ic * depth;
                } else if (full_rows < rows) {
                    pack_a_block(&problem->a, ic + full_rows, rows - full_rows, pc, depth, packed_a);
                }
                for (int64_t jr = 0; jr < columns; jr += nr) {
                    for (int64_t ir = 0; ir < rows; ir += mr) {
                        tile_epilogue epilogue = {
                            .row_bias = pc == 0 && problem->row_bias ? problem->row_bias + ic + ir : NULL,
                            .column_bias = pc == 0 && problem->column_bias ? problem->column_bias + jc + jr : NULL,
                            .scale = problem->scale,
                            .load = problem->accumulate || pc > 0,
                        };
                        if (pc + depth >= depth_total) epilogue = activating(epilogue, problem->activation);
                        float *tile = problem->c + (ic + ir) * problem->ldc + jc + jr;
                        if (ir < full_rows) {
                            kernel_rows_tile(depth, problem->a.data + (ic + ir) * problem->a.row_stride + pc,
                                             problem->a.row_stride, block_b + jr * panel_depth, tile, problem->ldc,
                                             min64(nr, columns - jr), epilogue);
                        } else {
                            kernel_tile(depth, block_a + (ir - full_rows) * depth, block_b + jr * panel_depth, tile,
                                        problem->ldc, min64(mr, rows - ir), min64(nr, columns - jr), epilogue);
                        }
                    }
                }
            }
            pc += depth;
        } while (pc < depth_total);
    }
}

AVX512 static void blocks_avx512(const nodus_gemm_problem *problem, int64_t row_begin, int64_t row_end,
                                 int64_t column_begin, int64_t column_end, float *packed_a, float *packed_b) {
    run_blocks(problem, row_begin, row_end, column_begin, column_end, packed_a, packed_b, MR, NR, KC_PACKED_B, pack_a,
               pack_b_matrix, pack_b_image, kernel, kernel_rows);
}

AVX2 static void blocks_avx2(const nodus_gemm_problem *problem, int64_t row_begin, int64_t row_end,
                             int64_t column_begin, int64_t column_end, float *packed_a, float *packed_b) {
    run_blocks(problem, row_begin, row_end, column_begin, column_end, packed_a, packed_b, MR2, NR2, KC, pack_a_avx2,
               pack_b_matrix_avx2, pack_b_image_avx2, kernel_avx2, kernel_rows_avx2);
}

static const gemm_form form_avx512 = {MR, NR, KC_PACKED_B, pack_a, pack_b_matrix, blocks_avx512};
static const gemm_form form_avx2 = {MR2, NR2, KC, pack_a_avx2, pack_b_matrix_avx2, blocks_avx2};

static const gemm_form *form_in_use(void) {
    const nodus_kernel_level level = nodus_kernels_level_in_use();
    return level >= NODUS_KERNEL_LEVEL_AVX512 ? &form_avx512 : level >= NODUS_KERNEL_LEVEL_AVX2 ? &form_avx2 : NULL;
}

int nodus_gemm_block(const nodus_gemm_problem *problem, int64_t row_begin, int64_t row_end, int64_t column_begin,
                     int64_t column_end) {
    const gemm_form *form = form_in_use();
    if (!form) return 0;
    if (row_begin >= row_end || column_begin >= column_end) return 1;
    const int64_t mr = form->mr, nr = form->nr;
    const block_steps steps = steps_for(problem, column_end - column_begin, form->weight_depth, nr);
    const int64_t block_depth = min64(steps.depth, problem->k > 0 ? problem->k : 1);
    const int64_t block_rows = steps.a_in_place ? mr : min64(steps.rows, (row_end - row_begin + mr - 1) / mr * mr);
    const int64_t block_columns = min64(steps.columns, (column_end - column_begin + nr - 1) / nr * nr);
    /* A whole number of 64-byte lines (16 floats), as C11's aligned_alloc asks: a C library that
     * holds to it returns NULL otherwise, and every block would take the slow unpacked path. */
    float *packed_a = problem->packed_a ? NULL : aligned_alloc(64, (size_t)(block_rows * block_depth + 15) / 16 * 64);
    float *packed_b =
        problem->packed_b ? NULL : aligned_alloc(64, (size_t)(block_depth * block_columns + 15) / 16 * 64);
    if ((!problem->packed_a && !packed_a) || (!problem->packed_b && !packed_b)) {
        free(packed_a);
        free(packed_b);
        block_unpacked(problem, row_begin, row_end, column_begin, column_end);
        return 1;
    }
    form->blocks(problem, row_begin, row_end, column_begin, column_end, packed_a, packed_b);
    free(packed_a);
    free(packed_b);
    return 1;
}
