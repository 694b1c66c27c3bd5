/* 3x3 stride-1 convolutions with zero padding 1 (nn.Conv2d(k, k, 3, padding=1))
 * by Winograd's F(4x4, 3x3): 36 products in a transformed domain per 4x4 block
 * of output instead of 144 (a quarter of the multiplications of the direct
 * convolution). Internal to Nodus (not part of the public ABI in include/nodus.h).
 *
 * A convolution runs in two steps, each split between threads by ranges:
 * 1. nodus_winograd_transform_weights: the weights, transformed and packed for
 *    the products, in panels of nodus_winograd_panel_channels() output channels;
 * 2. per block of output tiles (4x4 pixels each, numbered across the batch,
 *    then rows of tiles, then tiles in a row): nodus_winograd_transform_input
 *    (by ranges of input channels), then nodus_winograd_multiply (by ranges of
 *    panels), in buffers the caller gives. */
#ifndef NODUS_WINOGRAD_H
#define NODUS_WINOGRAD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_WINOGRAD_INTERNAL __attribute__((visibility("hidden")))

/* Input [batch, in_channels, height, width] and weight [out_channels,
 * in_channels, 3, 3] (PyTorch's layout), contiguous float32. The output has
 * out_channels planes of height x width per image, images output_image_stride
 * floats apart (out_channels * height * width, or more when the output
 * channels are a slice of a larger tensor's). */
typedef struct nodus_winograd_shape {
    int64_t batch, in_channels, out_channels, height, width;
    int64_t output_image_stride;
    int64_t block_tiles; /* tiles per block, a positive multiple of nodus_winograd_tile_columns() */
} nodus_winograd_shape;

/* 1 when this CPU runs the functions below (AVX-512F), else 0. */
NODUS_WINOGRAD_INTERNAL int nodus_winograd_supported(void);

/* Tiles one product kernel call covers: block_tiles must be a multiple of it. */
NODUS_WINOGRAD_INTERNAL int64_t nodus_winograd_tile_columns(void);

/* Output channels per panel, the panels of the shape, and the floats of its
 * transformed weights. */
NODUS_WINOGRAD_INTERNAL int64_t nodus_winograd_panel_channels(void);
NODUS_WINOGRAD_INTERNAL int64_t nodus_winograd_panel_count(const nodus_winograd_shape *shape);
NODUS_WINOGRAD_INTERNAL int64_t nodus_winograd_weight_count(const nodus_winograd_shape *shape);

/* Transforms panels [panel_begin, panel_end) of `weight` into `transformed`
 * (64-byte aligned, nodus_winograd_weight_count floats). Threads may call it
 * on disjoint panel ranges. Returns 1, or 0 without touching anything when the
 * CPU lacks AVX-512. */
NODUS_WINOGRAD_INTERNAL int nodus_winograd_transform_weights(const nodus_winograd_shape *shape, const float *weight,
                                                             float *transformed, int64_t panel_begin,
                                                             int64_t panel_end);

/* Blocks of block_tiles tiles in the batch. */
NODUS_WINOGRAD_INTERNAL int64_t nodus_winograd_block_count(const nodus_winograd_shape *shape);

/* Floats of a block's transformed input, and of its products for `panels` panels. */
NODUS_WINOGRAD_INTERNAL int64_t nodus_winograd_input_count(const nodus_winograd_shape *shape);
NODUS_WINOGRAD_INTERNAL int64_t nodus_winograd_product_count(const nodus_winograd_shape *shape, int64_t panels);

/* Transforms input channels [channel_begin, channel_end) of block `block`
 * into `transformed_input` (64-byte aligned, nodus_winograd_input_count
 * floats). Threads may call it on disjoint channel ranges of one buffer.
 * Returns 1, or 0 without touching anything when the CPU lacks AVX-512. */
NODUS_WINOGRAD_INTERNAL int nodus_winograd_transform_input(const nodus_winograd_shape *shape, const float *input,
                                                           int64_t block, int64_t channel_begin,
                                                           int64_t channel_end, float *transformed_input);

/* Writes the output pixels of block `block` in the output channels of panels
 * [panel_begin, panel_end): the products of the block's transformed input
 * (every channel) and the transformed weights, transformed back, plus bias[o]
 * on channel o when bias is not NULL. `products` (64-byte aligned,
 * nodus_winograd_product_count(shape, panel_end - panel_begin) floats) is
 * overwritten. Threads may call it on disjoint blocks or panel ranges, each
 * with its own products buffer. Returns 1, or 0 without touching anything
 * when the CPU lacks AVX-512. */
NODUS_WINOGRAD_INTERNAL int nodus_winograd_multiply(const nodus_winograd_shape *shape, const float *transformed_input,
                                                    const float *transformed_weights, const float *bias,
                                                    int64_t block, int64_t panel_begin, int64_t panel_end,
                                                    float *products, float *output);

#ifdef __cplusplus
}
#endif

#endif
