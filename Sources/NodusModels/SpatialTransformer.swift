import NodusCore
import NodusGraph

/// How one `Transformer2DModel` of a UNet block is laid out.
struct SpatialTransformerShape {
    var heads: Int
    var layers: Int
    /// `use_linear_projection`: proj_in / proj_out are Linears on tokens, not 1x1 convolutions.
    var linearProjection: Bool
    /// `only_cross_attention`: attn1 also attends to the context.
    var onlyCrossAttention: Bool
}

extension WeightedGraphBuilder {
    /// diffusers' `Transformer2DModel` on continuous input, as UNet blocks use
    /// it: GroupNorm (eps 1e-6), proj_in, `BasicTransformerBlock`s over the
    /// H*W tokens, proj_out, plus the input. `context` is [B, L, width].
    mutating func spatialTransformer(_ x: ValueID, _ prefix: String, _ layout: SpatialTransformerShape,
                                     context: ValueID) throws -> ValueID {
        let shape = graph.shape(of: x)
        let channels = shape[1]
        let inner = layout.heads * (channels / layout.heads)
        let normed = try groupNorm(x, prefix + ".norm", silu: false, eps: 1e-6)
        var tokens: ValueID
        if layout.linearProjection {
            tokens = try linear(graph.channelsToTokens(normed), prefix + ".proj_in", outWidth: inner)
        } else {
            tokens = try graph.channelsToTokens(conv(normed, prefix + ".proj_in", outChannels: inner, kernel: 1))
        }
        for layer in 0..<layout.layers {
            tokens = try transformerBlock(tokens, "\(prefix).transformer_blocks.\(layer)", heads: layout.heads,
                                          context: context, onlyCrossAttention: layout.onlyCrossAttention)
        }
        let image: ValueID
        if layout.linearProjection {
            image = try graph.tokensToChannels(linear(tokens, prefix + ".proj_out", outWidth: channels),
                                               height: shape[2], width: shape[3])
        } else {
            image = try conv(graph.tokensToChannels(tokens, height: shape[2], width: shape[3]), prefix + ".proj_out",
                             outChannels: channels, kernel: 1)
        }
        return try graph.add(image, x)
    }

    /// `BasicTransformerBlock` with norm_type "layer_norm": self-attention
    /// (or attention to the context when `onlyCrossAttention`), cross-attention
    /// to the context, and a GEGLU feed-forward, each pre-normed (LayerNorm
    /// eps 1e-5, affine) and added to the tokens.
    private mutating func transformerBlock(_ tokens: ValueID, _ prefix: String, heads: Int, context: ValueID,
                                           onlyCrossAttention: Bool) throws -> ValueID {
        let width = graph.shape(of: tokens)[2]
        let selfAttention = AttentionLayer(prefix: prefix + ".attn1", heads: heads, projectionBias: false)
        let crossAttention = AttentionLayer(prefix: prefix + ".attn2", heads: heads, projectionBias: false)
        let feedForward = FeedForwardLayer(prefix: prefix + ".ff", innerWidth: 4 * width, activation: .geglu)
        var hidden = tokens
        hidden = try graph.add(selfAttention(layerNorm(hidden, prefix + ".norm1"),
                                             context: onlyCrossAttention ? context : nil, in: &self), hidden)
        hidden = try graph.add(crossAttention(layerNorm(hidden, prefix + ".norm2"), context: context, in: &self), hidden)
        return try graph.add(feedForward(layerNorm(hidden, prefix + ".norm3"), in: &self), hidden)
    }
}
