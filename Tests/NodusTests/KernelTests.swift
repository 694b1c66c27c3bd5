#if canImport(Glibc)
import Glibc
#endif
import XCTest
@testable import NodusCore

/// Kernels against plain loops written from their definitions, on sizes that
/// reach the paths the model fixtures do not (strides, padding, blocked
/// attention, several im2col chunks).
final class KernelTests: XCTestCase {
    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    private func assertClose(_ ours: [Float], _ expected: [Float], _ label: String, tolerance: Float = 1e-5) {
        XCTAssertEqual(ours.count, expected.count, label)
        var worst: Float = 0, scale: Float = 0
        for index in 0..<min(ours.count, expected.count) {
            worst = max(worst, abs(ours[index] - expected[index]))
            scale = max(scale, abs(expected[index]))
        }
        XCTAssertLessThan(worst / max(scale, 1e-30), tolerance, "\(label): relative error \(worst / scale)")
    }

    func testConvolutionMatchesDirectSum() {
        // (stride, padding before, padding after, kernel); (2, 0, 1, 3) is diffusers' Downsample2D.
        for (stride, padding, trailing, kernel) in [(1, 1, 1, 3), (2, 1, 1, 3), (2, 0, 0, 3), (1, 0, 0, 1), (1, 2, 2, 5),
                                                    (2, 0, 1, 3), (1, 0, 1, 1)] {
            var shape = ConvolutionShape(batch: 2, inChannels: 3, height: 9, width: 7, outChannels: 4,
                                         kernelHeight: kernel, kernelWidth: kernel, stride: stride, padding: padding,
                                         trailingPadding: trailing)
            // Two output rows per im2col chunk, so every chunk boundary is crossed.
            shape.columnBudget = 2 * 3 * kernel * kernel * shape.outWidth
            let input = random(2 * 3 * 9 * 7, seed: 1)
            let weight = random(4 * 3 * kernel * kernel, seed: 2)
            let bias = random(4, seed: 3)
            XCTAssertEqual(shape.chunkRows, min(2, shape.outHeight))
            var output = [Float](repeating: .nan, count: 2 * 4 * shape.outHeight * shape.outWidth)
            var scratch = [Float](repeating: 0, count: max(1, shape.scratchCount))
            Convolution.run(shape: shape, input: input, weight: weight, bias: bias, output: &output, scratch: &scratch)

            var expected = [Float](repeating: 0, count: output.count)
            for b in 0..<2 { for o in 0..<4 { for y in 0..<shape.outHeight { for x in 0..<shape.outWidth {
                var sum = Double(bias[o])
                for c in 0..<3 { for ky in 0..<kernel { for kx in 0..<kernel {
                    let iy = y * stride + ky - padding, ix = x * stride + kx - padding
                    guard iy >= 0, iy < 9, ix >= 0, ix < 7 else { continue }
                    sum += Double(input[((b * 3 + c) * 9 + iy) * 7 + ix]) * Double(weight[((o * 3 + c) * kernel + ky) * kernel + kx])
                } } }
                expected[((b * 4 + o) * shape.outHeight + y) * shape.outWidth + x] = Float(sum)
            } } } }
            assertClose(output, expected, "conv k\(kernel) s\(stride) p\(padding),\(trailing)")
        }
    }

    func testBlockedAttentionMatchesSoftmaxFormula() {
        var shape = AttentionShape(batch: 2, queryTokens: 37, keyTokens: 23, heads: 3, headWidth: 4)
        shape.scoreBudget = 23 * 5  // five query rows per block: eight blocks
        XCTAssertEqual(shape.blockRows, 5)
        let width = 12
        let query = random(2 * 37 * width, seed: 4), key = random(2 * 23 * width, seed: 5), value = random(2 * 23 * width, seed: 6)
        var output = [Float](repeating: .nan, count: query.count)
        var scratch = [Float](repeating: 0, count: shape.scratchCount)
        AttentionKernel.blocked(shape: shape, query: query, key: key, value: value, output: &output, scratch: &scratch,
                                scale: 0.5)

        var expected = [Float](repeating: 0, count: query.count)
        for b in 0..<2 { for h in 0..<3 { for i in 0..<37 {
            var scores = [Double](repeating: 0, count: 23)
            for j in 0..<23 {
                for d in 0..<4 { scores[j] += Double(query[(b * 37 + i) * width + h * 4 + d]) * Double(key[(b * 23 + j) * width + h * 4 + d]) }
                scores[j] *= 0.5
            }
            let top = scores.max() ?? 0
            let weights = scores.map { referenceExp($0 - top) }
            let total = weights.reduce(0, +)
            for d in 0..<4 {
                var sum = 0.0
                for j in 0..<23 { sum += weights[j] / total * Double(value[(b * 23 + j) * width + h * 4 + d]) }
                expected[(b * 37 + i) * width + h * 4 + d] = Float(sum)
            }
        } } }
        assertClose(output, expected, "blocked attention")
    }

    func testGroupNormWithSiLU() {
        let input = random(2 * 6 * 10, seed: 7), weight = random(6, seed: 8), bias = random(6, seed: 9)
        var output = [Float](repeating: .nan, count: input.count)
        Normalization.groupNorm(input, &output, batch: 2, channels: 6, spatial: 10, groups: 3, eps: 1e-6,
                                weight: weight, bias: bias, silu: true)
        var expected = [Float](repeating: 0, count: input.count)
        for b in 0..<2 { for g in 0..<3 {
            let range = ((b * 6 + g * 2) * 10)..<((b * 6 + g * 2 + 2) * 10)
            let mean = range.reduce(0.0) { $0 + Double(input[$1]) } / 20
            let variance = range.reduce(0.0) { $0 + (Double(input[$1]) - mean) * (Double(input[$1]) - mean) } / 20
            for index in range {
                let channel = index / 10 % 6
                let y = (Double(input[index]) - mean) / (variance + 1e-6).squareRoot() * Double(weight[channel]) + Double(bias[channel])
                expected[index] = Float(y / (1 + referenceExp(-y)))
            }
        } }
        assertClose(output, expected, "group norm + SiLU")
    }

    func testLowRankMergeAcrossRowBlocks() {
        // Blocks of two rows: every block boundary is crossed, and the last block is short.
        let (rows, columns) = (5, 700)
        let weight = random(rows * columns, seed: 10)
        let (downA, upA) = (random(3 * columns, seed: 11), random(rows * 3, seed: 12))
        let (downB, upB) = (random(2 * columns, seed: 13), random(rows * 2, seed: 14))
        var target = [Float](repeating: .nan, count: rows * columns)
        downA.withUnsafeBufferPointer { da in upA.withUnsafeBufferPointer { ua in
            downB.withUnsafeBufferPointer { db in upB.withUnsafeBufferPointer { ub in
                let terms: [LowRankMerge.Term] = [(da.baseAddress!, ua.baseAddress!, 3, 0.5), (db.baseAddress!, ub.baseAddress!, 2, -2)]
                LowRankMerge.merge(weight, terms, into: &target, rows: rows, columns: columns, blockBytes: 2 * columns * 4)
            } }
        } }
        var expected = [Float](repeating: 0, count: rows * columns)
        for row in 0..<rows {
            for column in 0..<columns {
                var sum = Double(weight[row * columns + column])
                for k in 0..<3 { sum += 0.5 * Double(upA[row * 3 + k]) * Double(downA[k * columns + column]) }
                for k in 0..<2 { sum -= 2 * Double(upB[row * 2 + k]) * Double(downB[k * columns + column]) }
                expected[row * columns + column] = Float(sum)
            }
        }
        assertClose(target, expected, "W + 0.5 B_a A_a - 2 B_b A_b")
    }

    func testVectorExpAcrossTheRange() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let ours = Double(VectorMath.exp(x)), exact = referenceExp(Double(x))
            worst = max(worst, abs(ours - exact) / exact)
            x += 0.37
        }
        XCTAssertLessThan(worst, 4e-7, "exp relative error \(worst)")
        XCTAssertEqual(VectorMath.exp(-200), 0)
        XCTAssertEqual(VectorMath.exp(100), .infinity)
    }
}

/// libm's double-precision exp, for references.
private func referenceExp(_ x: Double) -> Double { Glibc.exp(x) }
