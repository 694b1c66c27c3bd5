import NodusCore
import NodusGraph

/// The convolutional blocks of diffusers' VAE and UNet: resnets, the spatial
/// attention, the mid block and the downsampler.
extension WeightedGraphBuilder {
    /// `ResnetBlock2D`: GN-SiLU-conv twice, plus a 1x1 `conv_shortcut` when
    /// the channel count changes. With `timeEmbedding` (SiLU of the UNet's
    /// time embedding, [B, T]) its `time_emb_proj` is added per channel after
    /// conv1 (time_embedding_norm "default"); the sum is divided by `outputScale`.
    mutating func resnet(_ x: ValueID, _ prefix: String, outChannels: Int, timeEmbedding: ValueID? = nil,
                         outputScale: Float = 1) throws -> ValueID {
        var hidden = try groupNorm(x, prefix + ".norm1", silu: true)
        hidden = try conv(hidden, prefix + ".conv1", outChannels: outChannels, kernel: 3)
        if let timeEmbedding {
            hidden = try graph.addPerChannel(hidden, linear(timeEmbedding, prefix + ".time_emb_proj", outWidth: outChannels))
        }
        hidden = try groupNorm(hidden, prefix + ".norm2", silu: true)
        hidden = try conv(hidden, prefix + ".conv2", outChannels: outChannels, kernel: 3)
        let shortcut = channels(x) == outChannels ? x : try conv(x, prefix + ".conv_shortcut", outChannels: outChannels, kernel: 1)
        let sum = try graph.add(shortcut, hidden)
        return outputScale == 1 ? sum : graph.unary(.scale(1 / outputScale), sum)
    }

    /// The VAE mid-block `Attention`: GroupNorm, attention over the H*W
    /// positions with `channels / headWidth` heads (biased projections),
    /// output projection, residual.
    mutating func spatialAttention(_ x: ValueID, _ prefix: String, headWidth: Int) throws -> ValueID {
        let shape = graph.shape(of: x)
        let width = shape[1]
        let tokens = try graph.channelsToTokens(groupNorm(x, prefix + ".group_norm", silu: false))
        let attention = AttentionLayer(prefix: prefix, heads: max(1, width / headWidth), projectionBias: true)
        let image = try graph.tokensToChannels(attention(tokens, in: &self), height: shape[2], width: shape[3])
        return try graph.add(image, x)
    }

    /// The VAE's `UNetMidBlock2D`: resnet, single-head spatial attention (when
    /// `attention`), resnet, all at the input's width.
    mutating func midBlock(_ x: ValueID, _ prefix: String, attention: Bool) throws -> ValueID {
        let width = channels(x)
        var hidden = try resnet(x, prefix + ".resnets.0", outChannels: width)
        if attention {
            hidden = try spatialAttention(hidden, prefix + ".attentions.0", headWidth: width)
        }
        return try resnet(hidden, prefix + ".resnets.1", outChannels: width)
    }

    /// diffusers' `Downsample2D` with a convolution (3x3, stride 2, same
    /// channels). With `padding` 0, as the VAE encoder builds it, the input is
    /// first padded by one zero row and column at the bottom and right
    /// (`F.pad(x, (0, 1, 0, 1))`); otherwise the conv pads `padding` all round.
    mutating func downsample(_ x: ValueID, _ prefix: String, padding: Int) throws -> ValueID {
        let width = channels(x)
        let weightValue = try weight(prefix + ".conv.weight", [width, width, 3, 3])
        let bias = try weight(prefix + ".conv.bias", [width])
        return try graph.conv2d(x, weight: weightValue, bias: bias, stride: 2, padding: padding,
                                trailingPadding: padding == 0 ? 1 : padding)
    }
}
