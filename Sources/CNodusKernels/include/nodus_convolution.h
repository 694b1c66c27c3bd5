/* Direct N-D convolution (1 to 3 spatial axes) for the primitive Conv op:
 * depthwise and small grouped convolutions, 3-D volumes. Internal to Nodus (not
 * part of the public ABI in include/nodus.h). */
#ifndef NODUS_CONVOLUTION_H
#define NODUS_CONVOLUTION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_CONVOLUTION_INTERNAL __attribute__((visibility("hidden")))

/* Geometry of one convolution, every spatial array padded to 3 axes (size 1,
 * kernel 1, stride 1, dilation 1, padding 0 for the missing leading axes). */
typedef struct nodus_convolution_geometry {
    int64_t in_channels, out_channels, groups;
    int64_t in_size[3], out_size[3], kernel[3], stride[3], dilation[3], pad_before[3];
} nodus_convolution_geometry;

/* Output planes [plane_begin, plane_end) of batch x out_channels: bias (or 0),
 * then every tap as a row update out[x] += w * in[x * stride + offset] over the
 * output x whose input is inside (zero padding), accumulated in float. The row
 * updates run as AVX-512 or AVX2 FMA loops where the level in use has them. */
NODUS_CONVOLUTION_INTERNAL void nodus_convolution_direct(const float *input, const float *weight, const float *bias,
                                                         float *output, const nodus_convolution_geometry *geometry,
                                                         int64_t plane_begin, int64_t plane_end);

/* A depthwise convolution over a grid of tokens stored channels-last, [B, D H W, C] (a DiT's
 * tokens), zero-padded to keep the grid ("same"): for tokens [token_begin, token_end) of
 * batch x D H W, out[t] = bias + sum over taps of w[tap] * in[t + tap offset], vectors over the
 * C channels. `tap_weights` is [kd kh kw][C] (the Conv3d weight [C, 1, kd, kh, kw] transposed),
 * every kernel side odd. */
NODUS_CONVOLUTION_INTERNAL void nodus_token_depthwise(const float *input, const float *tap_weights, const float *bias,
                                                      float *output, const int64_t grid[3], const int64_t kernel[3],
                                                      int64_t channels, int64_t token_begin, int64_t token_end);

#ifdef __cplusplus
}
#endif

#endif
