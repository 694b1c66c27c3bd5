/* Direct N-D convolution by row updates (see nodus_convolution.h).
 *
 * Each output row (all axes but the last fixed) gets, per input channel of its
 * group and per kernel tap, one multiply-add of an input row: contiguous when
 * the stride is 1, which is what depthwise 3x3x3 convolutions over token grids
 * (MedSyn2's blocks) and most 3-D VAE layers use. The same C loop is compiled
 * three times, for AVX-512, AVX2 + FMA and baseline x86-64, and the level in use
 * picks one. */
#include "nodus_convolution.h"

#include "nodus_cpu.h"

#define ROW_UPDATE(name, attributes)                                                                     \
    attributes static void name(float *out, const float *in, float w, int64_t count, int64_t stride) {  \
        if (stride == 1) {                                                                               \
            for (int64_t x = 0; x < count; x++) out[x] += w * in[x];                                     \
        } else {                                                                                         \
            for (int64_t x = 0; x < count; x++) out[x] += w * in[x * stride];                            \
        }                                                                                                \
    }

ROW_UPDATE(row_update_avx512, __attribute__((target("avx512f,fma"))))
ROW_UPDATE(row_update_avx2, __attribute__((target("avx2,fma"))))
ROW_UPDATE(row_update_baseline, )

typedef void (*row_update_function)(float *, const float *, float, int64_t, int64_t);

/* The first and one-past-last output index whose input i = x * stride - pad + tap is in [0, size). */
static void valid_range(int64_t out_size, int64_t in_size, int64_t stride, int64_t offset, int64_t *first,
                        int64_t *end) {
    int64_t begin = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    int64_t stop = in_size - offset <= 0 ? 0 : (in_size - offset + stride - 1) / stride;
    *first = begin;
    *end = stop < out_size ? stop : out_size;
}

void nodus_convolution_direct(const float *input, const float *weight, const float *bias, float *output,
                              const nodus_convolution_geometry *g, int64_t plane_begin, int64_t plane_end) {
    const nodus_kernel_level level = nodus_kernels_level_in_use();
    const row_update_function update = level >= NODUS_KERNEL_LEVEL_AVX512 ? row_update_avx512
                                       : level >= NODUS_KERNEL_LEVEL_AVX2 ? row_update_avx2
                                                                          : row_update_baseline;
    const int64_t group_in = g->in_channels / g->groups, group_out = g->out_channels / g->groups;
    const int64_t in_plane = g->in_size[0] * g->in_size[1] * g->in_size[2];
    const int64_t out_plane = g->out_size[0] * g->out_size[1] * g->out_size[2];
    const int64_t taps = g->kernel[0] * g->kernel[1] * g->kernel[2];
    for (int64_t plane = plane_begin; plane < plane_end; plane++) {
        const int64_t image = plane / g->out_channels, channel = plane % g->out_channels;
        const int64_t group = channel / group_out;
        float *out = output + plane * out_plane;
        const float start = bias ? bias[channel] : 0.0f;
        for (int64_t i = 0; i < out_plane; i++) out[i] = start;
        for (int64_t c = 0; c < group_in; c++) {
            const float *in = input + (image * g->in_channels + group * group_in + c) * in_plane;
            const float *w = weight + (channel * group_in + c) * taps;
            for (int64_t kz = 0; kz < g->kernel[0]; kz++) {
                const int64_t z_offset = kz * g->dilation[0] - g->pad_before[0];
                int64_t z_first, z_end;
                valid_range(g->out_size[0], g->in_size[0], g->stride[0], z_offset, &z_first, &z_end);
                for (int64_t ky = 0; ky < g->kernel[1]; ky++) {
                    const int64_t y_offset = ky * g->dilation[1] - g->pad_before[1];
                    int64_t y_first, y_end;
                    valid_range(g->out_size[1], g->in_size[1], g->stride[1], y_offset, &y_first, &y_end);
                    for (int64_t kx = 0; kx < g->kernel[2]; kx++) {
                        const float tap = w[(kz * g->kernel[1] + ky) * g->kernel[2] + kx];
                        const int64_t x_offset = kx * g->dilation[2] - g->pad_before[2];
                        int64_t x_first, x_end;
                        valid_range(g->out_size[2], g->in_size[2], g->stride[2], x_offset, &x_first, &x_end);
                        if (x_end <= x_first) continue;
                        for (int64_t z = z_first; z < z_end; z++) {
                            const int64_t iz = z * g->stride[0] + z_offset;
                            for (int64_t y = y_first; y < y_end; y++) {
                                const int64_t iy = y * g->stride[1] + y_offset;
                                float *row = out + (z * g->out_size[1] + y) * g->out_size[2];
                                const float *source = in + (iz * g->in_size[1] + iy) * g->in_size[2];
                                update(row + x_first, source + x_first * g->stride[2] + x_offset, tap,
                                       x_end - x_first, g->stride[2]);
                            }
                        }
                    }
                }
            }
        }
    }
}

#define CHANNEL_UPDATE(name, attributes)                                                                  \
    attributes static void name(float *out, const float *in, const float *w, int64_t count) {           \
        for (int64_t c = 0; c < count; c++) out[c] += w[c] * in[c];                                      \
    }

CHANNEL_UPDATE(channel_update_avx512, __attribute__((target("avx512f,fma"))))
CHANNEL_UPDATE(channel_update_avx2, __attribute__((target("avx2,fma"))))
CHANNEL_UPDATE(channel_update_baseline, )

typedef void (*channel_update_function)(float *, const float *, const float *, int64_t);

void nodus_token_depthwise(const float *input, const float *tap_weights, const float *bias, float *output,
                           const int64_t grid[3], const int64_t kernel[3], int64_t channels, int64_t token_begin,
                           int64_t token_end) {
    const nodus_kernel_level level = nodus_kernels_level_in_use();
    const channel_update_function update = level >= NODUS_KERNEL_LEVEL_AVX512 ? channel_update_avx512
                                           : level >= NODUS_KERNEL_LEVEL_AVX2 ? channel_update_avx2
                                                                              : channel_update_baseline;
    const int64_t plane = grid[1] * grid[2], tokens = grid[0] * plane;
    for (int64_t token = token_begin; token < token_end; token++) {
        const int64_t item = token / tokens, place = token % tokens;
        const int64_t z = place / plane, y = (place / grid[2]) % grid[1], x = place % grid[2];
        float *out = output + token * channels;
        for (int64_t c = 0; c < channels; c++) out[c] = bias ? bias[c] : 0.0f;
        const float *w = tap_weights;
        for (int64_t kz = 0; kz < kernel[0]; kz++) {
            const int64_t iz = z + kz - kernel[0] / 2;
            for (int64_t ky = 0; ky < kernel[1]; ky++) {
                const int64_t iy = y + ky - kernel[1] / 2;
                for (int64_t kx = 0; kx < kernel[2]; kx++, w += channels) {
                    const int64_t ix = x + kx - kernel[2] / 2;
                    if (iz < 0 || iz >= grid[0] || iy < 0 || iy >= grid[1] || ix < 0 || ix >= grid[2]) continue;
                    const float *source = input + (item * tokens + (iz * grid[1] + iy) * grid[2] + ix) * channels;
                    update(out, source, w, channels);
                }
            }
        }
    }
}
