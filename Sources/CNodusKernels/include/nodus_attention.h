/* Streaming scaled dot-product attention (an online softmax over key blocks,
 * as in FlashAttention): memory per thread is a few tiles, never Nq x Nk.
 * Internal to Nodus (not part of the public ABI in include/nodus.h). */
#ifndef NODUS_ATTENTION_H
#define NODUS_ATTENTION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Inside libnodus.so only: not exported beside the public ABI. */
#define NODUS_ATTENTION_INTERNAL __attribute__((visibility("hidden")))

/* Heads packed in the feature dimension, as diffusers' Attention lays them
 * out: q [batch, query_tokens, *], k and v [batch, key_tokens, *], head h at
 * columns h * head_width ..< (h + 1) * head_width; strides in floats between tokens.
 * When `causal` is 1, query i sees keys 0 ... i only (torch's is_causal, the
 * mask of CLIP's text encoder). */
typedef struct nodus_attention_shape {
    int64_t batch, query_tokens, key_tokens, heads, head_width;
    int64_t query_stride, key_stride, value_stride, output_stride;
    int64_t causal;
} nodus_attention_shape;

/* 1 when the level in use runs nodus_attention_tiles (AVX2 + FMA or AVX-512F), else 0. */
NODUS_ATTENTION_INTERNAL int nodus_attention_supported(void);

/* Query rows per tile; tiles are numbered ((b * heads + h) * tiles_per_head + t). */
NODUS_ATTENTION_INTERNAL int64_t nodus_attention_tile_rows(void);
NODUS_ATTENTION_INTERNAL int64_t nodus_attention_tile_count(const nodus_attention_shape *shape);

/* output = softmax(scale * q k^T) v for tiles [tile_begin, tile_end). Threads
 * may call it on disjoint tile ranges. Returns 1, or 0 without touching
 * anything below the AVX2 level or when scratch memory cannot be had. */
NODUS_ATTENTION_INTERNAL int nodus_attention_tiles(const nodus_attention_shape *shape, const float *query, const float *key,
                          const float *value, float *output, float scale, int64_t tile_begin, int64_t tile_end);

#ifdef __cplusplus
}
#endif

#endif
