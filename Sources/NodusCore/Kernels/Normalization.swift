import CNodusKernels

/// Layer and group normalisation, with the modulations diffusion models put
/// right after them fused in (AdaLN shift/scale, SiLU).
public enum Normalization {
    /// Whether `moments` runs the AVX-512 or AVX2 kernel (`Sources/CNodusKernels/statistics.c`).
    static let hasVectorMoments = nodus_statistics_supported() != 0

    /// Mean and 1/sqrt(variance + eps) of `count` floats (two passes, accumulated in Double).
    @inline(__always)
    static func moments(_ values: UnsafePointer<Float>, count: Int, eps: Float) -> (mean: Float, inverseDeviation: Float) {
        if hasVectorMoments {
            var result: (mean: Float, inverseDeviation: Float) = (0, 0)
            _ = nodus_moments(values, Int64(count), Double(eps), &result.mean, &result.inverseDeviation)
            return result
        }
        var sum = 0.0
        for index in 0..<count { sum += Double(values[index]) }
        let mean = sum / Double(count)
        var squares = 0.0
        for index in 0..<count {
            let centred = Double(values[index]) - mean
            squares += centred * centred
        }
        let variance = squares / Double(count)
        return (Float(mean), Float(1 / (variance + Double(eps)).squareRoot()))
    }

    /// `nn.LayerNorm` over the last dimension (`width`) of `rows` rows, with an
    /// optional elementwise affine. `input` may equal `output`.
    public static func layerNorm(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                 rows: Int, width: Int, eps: Float,
                                 weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?) {
        Parallel.forEach(rows, costPerItem: width * 4) { range in
            for row in range {
                let x = input + row * width
                let y = output + row * width
                let (mean, inverse) = moments(x, count: width, eps: eps)
                for index in 0..<width {
                    var value = (x[index] - mean) * inverse
                    if let weight { value *= weight[index] }
                    if let bias { value += bias[index] }
                    y[index] = value
                }
            }
        }
    }

    /// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) * weight` (the
    /// q/k norms of 3D DiTs, `torch.nn.RMSNorm`), the mean of squares summed in
    /// float64. `input` may equal `output`.
    public static func rmsNorm(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                               rows: Int, width: Int, eps: Float, weight: UnsafePointer<Float>?) {
        // Sums in float32 eight lanes at a time, as torch's float32 `pow(2).mean(-1)` does:
        // head norms run on millions of rows of 64.
        Parallel.forEach(rows, costPerItem: width * 3) { range in
            for row in range {
                let x = input + row * width, y = output + row * width
                var lanes = SIMD8<Float>(repeating: 0)
                var index = 0
                while index + 8 <= width {
                    let values = UnsafeRawPointer(x + index).loadUnaligned(as: SIMD8<Float>.self)
                    lanes += values * values
                    index += 8
                }
                var squares = lanes.sum()
                while index < width {
                    squares += x[index] * x[index]
                    index += 1
                }
                let inverse = 1 / (squares / Float(max(width, 1)) + eps).squareRoot()
                if let weight {
                    for index in 0..<width { y[index] = x[index] * inverse * weight[index] }
                } else {
                    for index in 0..<width { y[index] = x[index] * inverse }
                }
            }
        }
    }

    /// AdaLN: `layerNorm(x) * (1 + scale[b]) + shift[b]` (no affine), as in DiT's
    /// `AdaLayerNormZero`. `x` is [batch, tokens, width]; `scale` and `shift` are
    /// rows of width `width` read at `modulationStride` floats per batch item.
    public static func modulatedLayerNorm(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                          batch: Int, tokens: Int, width: Int, eps: Float,
                                          scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
                                          modulationStride: Int) {
        Parallel.forEach(batch * tokens, costPerItem: width * 4) { range in
            for row in range {
                let item = row / tokens
                let scaleRow = scale + item * modulationStride
                let shiftRow = shift + item * modulationStride
                let x = input + row * width
                let y = output + row * width
                let (mean, inverse) = moments(x, count: width, eps: eps)
                for index in 0..<width {
                    y[index] = (x[index] - mean) * inverse * (1 + scaleRow[index]) + shiftRow[index]
                }
            }
        }
    }

    /// `nn.GroupNorm` on NCHW data ([batch, channels, spatial]), optionally
    /// followed by SiLU. `input` may equal `output`.
    public static func groupNorm(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                 batch: Int, channels: Int, spatial: Int, groups: Int, eps: Float,
                                 weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, silu: Bool) {
        let channelsPerGroup = channels / groups
        let groupSize = channelsPerGroup * spatial
        Parallel.forEach(batch * groups, costPerItem: groupSize * 4) { range in
            for unit in range {
                let group = unit % groups
                let offset = unit * groupSize
                let (mean, inverse) = moments(input + offset, count: groupSize, eps: eps)
                for local in 0..<channelsPerGroup {
                    let channel = group * channelsPerGroup + local
                    let gamma = (weight?[channel] ?? 1) * inverse
                    let beta = (bias?[channel] ?? 0) - mean * gamma
                    let x = input + offset + local * spatial
                    let y = output + offset + local * spatial
                    for index in 0..<spatial { y[index] = x[index] * gamma + beta }
                    if silu { Activation.siluSerial(y, y, count: spatial) }
                }
            }
        }
    }
}
