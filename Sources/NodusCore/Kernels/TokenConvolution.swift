import CNodusKernels

/// A depthwise convolution over a grid of tokens stored channels-last
/// ([B, D H W, C], as a DiT keeps them): "same" zero padding, stride 1. Each
/// output token is its bias plus, per kernel tap, the neighbour token times the
/// tap's weights, one vector multiply-add over the channels (MedSyn2's
/// depthwise 3x3x3 after each block, without moving the tokens to a volume
/// and back).
public struct TokenConvolution: @unchecked Sendable {
    /// The weights by tap, [kd kh kw][C] (the Conv3d weight [C, 1, kd, kh, kw] transposed).
    private let tapWeights: [Float]
    private let batch: Int, grid: [Int64], kernel: [Int64], channels: Int

    /// - Parameter weight: [channels, 1, kernel...] (read once here).
    public init(weight: UnsafePointer<Float>, batch: Int, grid: [Int], kernel: [Int], channels: Int) {
        let taps = kernel.reduce(1, *)
        var transposed = [Float](repeating: 0, count: taps * channels)
        for channel in 0..<channels {
            for tap in 0..<taps { transposed[tap * channels + channel] = weight[channel * taps + tap] }
        }
        tapWeights = transposed
        self.batch = batch
        self.grid = grid.map(Int64.init)
        self.kernel = kernel.map(Int64.init)
        self.channels = channels
    }

    public var flops: Int { 2 * batch * Int(grid.reduce(1, *)) * channels * Int(kernel.reduce(1, *)) }

    public func run(input: UnsafePointer<Float>, bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
        let tokens = batch * Int(grid.reduce(1, *))
        tapWeights.withUnsafeBufferPointer { weights in
            grid.withUnsafeBufferPointer { grid in
                kernel.withUnsafeBufferPointer { kernel in
                    Parallel.forEach(tokens, costPerItem: channels * Int(kernel.reduce(1, *))) { range in
                        nodus_token_depthwise(input, weights.baseAddress, bias, output, grid.baseAddress,
                                              kernel.baseAddress, Int64(channels), Int64(range.lowerBound),
                                              Int64(range.upperBound))
                    }
                }
            }
        }
    }
}
