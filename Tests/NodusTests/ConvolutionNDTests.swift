import XCTest
@testable import NodusCore

/// `ConvolutionND`'s two paths (im2col + packed GEMM, and the C row-update
/// kernel) against `PrimitiveMath.convolution`, the float64 definition: 1-D,
/// 2-D and 3-D, strides, dilations, asymmetric padding, groups (depthwise),
/// chunks of output rows smaller than the output, batches and biases.
final class ConvolutionNDTests: XCTestCase {
    private struct Case {
        var input: [Int], weight: [Int], strides: [Int], dilations: [Int], before: [Int], after: [Int], groups: Int
        var budget = 2 << 20
    }

    private func check(_ test: Case, expectGemm: Bool?, file: StaticString = #filePath, line: UInt = #line) throws {
        let spatial = test.input.count - 2
        var output = [test.input[0], test.weight[0]]
        for axis in 0..<spatial {
            let extent = test.input[axis + 2] + test.before[axis] + test.after[axis]
            output.append((extent - test.dilations[axis] * (test.weight[axis + 2] - 1) - 1) / test.strides[axis] + 1)
        }
        var generator = TorchGenerator(seed: UInt64(test.input.reduce(0, +) * 31 + test.groups))
        let input = generator.normal(count: test.input.reduce(1, *))
        let weight = generator.normal(count: test.weight.reduce(1, *))
        let bias = generator.normal(count: test.weight[0])
        let reference = try Tensor(zeros: output), ours = try Tensor(zeros: output)
        var convolution = ConvolutionND(inputShape: test.input, weightShape: test.weight, outputShape: output,
                                        strides: test.strides, dilations: test.dilations, padsBefore: test.before,
                                        groups: test.groups)
        convolution.columnBudget = test.budget
        if let expectGemm, PackedGemm.isSupported { XCTAssertEqual(convolution.usesGemm, expectGemm, file: file, line: line) }
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, convolution.scratchCount))
        defer { scratch.deallocate() }
        input.withUnsafeBufferPointer { x in weight.withUnsafeBufferPointer { w in bias.withUnsafeBufferPointer { b in
            PrimitiveMath.convolution(x.baseAddress!, inputShape: test.input, weight: w.baseAddress!, weightShape: test.weight,
                                      bias: b.baseAddress!, output: reference.floats, outputShape: output,
                                      strides: test.strides, dilations: test.dilations, padsBefore: test.before,
                                      groups: test.groups)
            convolution.run(input: x.baseAddress!, weight: w.baseAddress!, bias: b.baseAddress!, output: ours.floats,
                            scratch: scratch)
        } } }
        XCTAssertLessThan(relativeError(ours, reference), 2e-6, "\(test) output \(output)", file: file, line: line)
    }

    func testThreeDimensionalGemmPath() throws {
        try check(Case(input: [2, 8, 5, 6, 7], weight: [12, 8, 3, 3, 3], strides: [1, 1, 1], dilations: [1, 1, 1],
                       before: [1, 1, 1], after: [1, 1, 1], groups: 1), expectGemm: true)
        // Stride 2 with asymmetric padding (a downsampler), and chunks of 3 output rows.
        try check(Case(input: [1, 4, 7, 8, 9], weight: [8, 4, 3, 3, 3], strides: [2, 2, 2], dilations: [1, 1, 1],
                       before: [0, 0, 0], after: [1, 1, 1], groups: 1, budget: 4 * 27 * 4 * 3), expectGemm: true)
        try check(Case(input: [1, 16, 4, 4, 4], weight: [8, 16, 1, 1, 1], strides: [1, 1, 1], dilations: [1, 1, 1],
                       before: [0, 0, 0], after: [0, 0, 0], groups: 1), expectGemm: true)
    }

    func testDepthwiseAndGroupedRowPath() throws {
        try check(Case(input: [2, 6, 4, 6, 8], weight: [6, 1, 3, 3, 3], strides: [1, 1, 1], dilations: [1, 1, 1],
                       before: [1, 1, 1], after: [1, 1, 1], groups: 6), expectGemm: false)
        try check(Case(input: [1, 4, 5, 9], weight: [6, 2, 3, 3], strides: [2, 1], dilations: [1, 2],
                       before: [1, 2], after: [0, 2], groups: 2), expectGemm: false)
        try check(Case(input: [3, 2, 11], weight: [4, 2, 5], strides: [3], dilations: [2], before: [4], after: [1],
                       groups: 1), expectGemm: false)
    }

    func testTwoAndOneDimensionalGemmPath() throws {
        try check(Case(input: [1, 8, 9, 10], weight: [16, 8, 3, 3], strides: [1, 2], dilations: [2, 1],
                       before: [2, 1], after: [2, 0], groups: 1), expectGemm: true)
        try check(Case(input: [2, 16, 13], weight: [8, 16, 3], strides: [1], dilations: [1], before: [1], after: [1],
                       groups: 1), expectGemm: true)
    }
}

/// `TokenConvolution` (channels-last depthwise over a token grid) against the channels-first
/// depthwise convolution's definition.
final class TokenConvolutionTests: XCTestCase {
    func testDepthwiseOverTokensEqualsTheVolumeConvolution() throws {
        let (batch, grid, channels, kernel) = (2, [3, 4, 5], 24, [3, 3, 1])
        let tokens = grid.reduce(1, *)
        var generator = TorchGenerator(seed: 5)
        let input = generator.normal(count: batch * tokens * channels)
        let weight = generator.normal(count: channels * kernel.reduce(1, *))
        let bias = generator.normal(count: channels)
        // The same values channels-first, [B, C, D, H, W], for the reference.
        var volume = [Float](repeating: 0, count: input.count)
        for item in 0..<batch { for token in 0..<tokens { for channel in 0..<channels {
            volume[(item * channels + channel) * tokens + token] = input[(item * tokens + token) * channels + channel]
        } } }
        let reference = try Tensor(zeros: [batch, channels] + grid)
        let ours = try Tensor(zeros: [batch, tokens, channels])
        volume.withUnsafeBufferPointer { x in weight.withUnsafeBufferPointer { w in bias.withUnsafeBufferPointer { b in
            PrimitiveMath.convolution(x.baseAddress!, inputShape: [batch, channels] + grid, weight: w.baseAddress!,
                                      weightShape: [channels, 1] + kernel, bias: b.baseAddress!, output: reference.floats,
                                      outputShape: [batch, channels] + grid, strides: [1, 1, 1], dilations: [1, 1, 1],
                                      padsBefore: kernel.map { $0 / 2 }, groups: channels)
        } } }
        weight.withUnsafeBufferPointer { w in input.withUnsafeBufferPointer { x in bias.withUnsafeBufferPointer { b in
            TokenConvolution(weight: w.baseAddress!, batch: batch, grid: grid, kernel: kernel, channels: channels)
                .run(input: x.baseAddress!, bias: b.baseAddress!, output: ours.floats)
        } } }
        var worst: Float = 0, scale: Float = 0
        for item in 0..<batch { for token in 0..<tokens { for channel in 0..<channels {
            let expected = reference.floats[(item * channels + channel) * tokens + token]
            worst = max(worst, abs(ours.floats[(item * tokens + token) * channels + channel] - expected))
            scale = max(scale, abs(expected))
        } } }
        XCTAssertLessThan(worst / scale, 2e-6)
    }
}
