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

    /// Normalisation statistics far from zero (where one-pass float sums lose
    /// the variance) on counts that end inside a vector.
    func testMomentsAreTwoPassInDouble() {
        for count in [1, 15, 16, 37, 4099] {
            let values = random(count, seed: UInt64(count)).map { 1000 + $0 * 0.01 }
            let mean = values.reduce(0.0) { $0 + Double($1) } / Double(count)
            let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(count)
            let (ourMean, inverse) = Normalization.moments(values, count: count, eps: 1e-6)
            // Double sums in another order may round to the neighbouring float.
            let expectedInverse = Float(1 / (variance + Double(Float(1e-6))).squareRoot())
            XCTAssertEqual(ourMean, Float(mean), accuracy: Float(mean).ulp, "mean of \(count)")
            XCTAssertEqual(inverse, expectedInverse, accuracy: expectedInverse.ulp, "1/deviation of \(count)")
        }
    }

    /// Tokens <-> channels on shapes that end inside the 16 x 16 register blocks
    /// and the 64-row runs threads take: an exact permutation.
    func testTransposeMovesEveryElement() {
        for (batch, rows, columns) in [(2, 70, 45), (1, 3, 17), (3, 129, 16), (1, 16, 1)] {
            let input = random(batch * rows * columns, seed: UInt64(rows))
            var output = [Float](repeating: .nan, count: input.count)
            Layout.transpose(input, &output, batch: batch, rows: rows, columns: columns)
            var expected = output
            for item in 0..<batch {
                for row in 0..<rows {
                    for column in 0..<columns {
                        expected[(item * columns + column) * rows + row] = input[(item * rows + row) * columns + column]
                    }
                }
            }
            XCTAssertEqual(output, expected, "[\(batch), \(rows), \(columns)]")
        }
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

    /// W + sum_t f_t B_t A_t in double precision.
    private func lowRankReference(_ weight: [Float], _ terms: [(down: [Float], up: [Float], rank: Int, factor: Float)],
                                  rows: Int, columns: Int) -> [Float] {
        var expected = [Float](repeating: 0, count: rows * columns)
        for row in 0..<rows {
            for column in 0..<columns {
                var sum = Double(weight[row * columns + column])
                for term in terms {
                    var product = 0.0
                    for k in 0..<term.rank { product += Double(term.up[row * term.rank + k]) * Double(term.down[k * columns + column]) }
                    sum += Double(term.factor) * product
                }
                expected[row * columns + column] = Float(sum)
            }
        }
        return expected
    }

    /// A 64-byte aligned copy of `values` followed by `padding` NaNs, freed when the test ends.
    private func buffer(_ values: [Float], padding: Int = 0) -> UnsafeMutablePointer<Float> {
        let count = max(values.count + padding, 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
        addTeardownBlock { raw.deallocate() }
        let pointer = raw.bindMemory(to: Float.self, capacity: count)
        pointer.initialize(repeating: .nan, count: count)
        pointer.update(from: values, count: values.count)
        return pointer
    }

    private func checkMerge(rows: Int, columns: Int, ranks: [Int], factors: [Float], seed: UInt64) {
        let count = rows * columns
        let weight = random(count, seed: seed)
        let terms = ranks.indices.map { index in
            (down: random(ranks[index] * columns, seed: seed + 10 + UInt64(index)),
             up: random(rows * ranks[index], seed: seed + 20 + UInt64(index)), rank: ranks[index], factor: factors[index])
        }
        let expected = lowRankReference(weight, terms, rows: rows, columns: columns)
        let mergeTerms: [LowRankMerge.Term] = terms.map { (UnsafePointer(buffer($0.down)), UnsafePointer(buffer($0.up)), $0.rank, $0.factor) }
        // Targets: a separate 64-byte aligned one, one 4 bytes off alignment, and the weight itself (in place).
        for singlePass in [true, false] {
            for (inPlace, offset) in [(false, 0), (false, 1), (true, 0)] {
                let source = buffer(weight)
                let target = inPlace ? source : buffer([], padding: count + 2) + offset
                LowRankMerge.merge([LowRankMerge.Job(weight: source, target: target, rows: rows, columns: columns,
                                                     terms: mergeTerms)],
                                   singlePass: singlePass, blockBytes: 2 * columns * 4)
                let ours = Array(UnsafeBufferPointer(start: target, count: count))
                let label = "\(rows)x\(columns) ranks \(ranks), single pass \(singlePass), in place \(inPlace), offset \(offset)"
                XCTAssertEqual(ours.filter { !$0.isFinite }.count, 0, "\(label): elements left unwritten")
                assertClose(ours, expected, label)
                if !inPlace {
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: source, count: count)), weight, "\(label): weight changed")
                    XCTAssertTrue(target[count].isNaN, "\(label): wrote past the end")
                }
            }
        }
    }

    func testLowRankMergeMatchesReference() {
        XCTAssertEqual(LowRankMerge.hasSinglePassKernel, CPULevel.inUse >= .avx2, "single-pass merge at \(CPULevel.inUse)")
        // Sizes that reach every path of the single-pass kernel: 64-row blocks, 8-row tiles with 4-row and
        // 1-row remainders (77 = 64 + 8 + 4 + 1), 32-column tiles, a lone 16-column vector and a masked tail
        // (87 = 2 * 32 + 16 + 7), a matrix narrower than one vector, and widths that are multiples of 16
        // (streaming stores when the target is aligned; 130 = 2 * 64 + 2 rows). Ranks are not multiples of
        // 16, one is 0; the factors differ in sign and size; terms are added in order. At AVX2 the tiles are
        // 4 rows x 16 columns: 19 x 29 = 4 tiles + 3 rows by 16 + a lone 8-column vector + a masked 5.
        for (rows, columns) in [(77, 87), (13, 5), (130, 96), (19, 29)] {
            checkMerge(rows: rows, columns: columns, ranks: [3, 17, 0, 1], factors: [0.5, -2, 3, 1.25], seed: UInt64(rows))
        }
        checkMerge(rows: 9, columns: 48, ranks: [], factors: [], seed: 40)  // no terms: a copy
        checkMerge(rows: 66, columns: 33, ranks: [32], factors: [1], seed: 50)  // one LoRA of rank 32
    }

    func testLowRankMergeRunsSeveralJobs() {
        // Blocks of several weights in one parallel loop: each target gets its own weight and terms.
        let shapes = [(70, 33), (3, 130), (129, 16)]
        var jobs: [LowRankMerge.Job] = []
        var expected: [[Float]] = []
        for (index, (rows, columns)) in shapes.enumerated() {
            let seed = UInt64(300 + 10 * index)
            let (weight, down, up) = (random(rows * columns, seed: seed), random(5 * columns, seed: seed + 1),
                                      random(rows * 5, seed: seed + 2))
            let factor = Float(index) - 0.5
            expected.append(lowRankReference(weight, [(down, up, 5, factor)], rows: rows, columns: columns))
            jobs.append(LowRankMerge.Job(weight: buffer(weight), target: buffer([], padding: rows * columns),
                                         rows: rows, columns: columns, terms: [(UnsafePointer(buffer(down)), UnsafePointer(buffer(up)), 5, factor)]))
        }
        LowRankMerge.merge(jobs)
        for (index, job) in jobs.enumerated() {
            let ours = Array(UnsafeBufferPointer(start: job.target, count: job.rows * job.columns))
            XCTAssertEqual(ours.filter { !$0.isFinite }.count, 0, "job \(index): elements left unwritten")
            assertClose(ours, expected[index], "job \(index) of \(jobs.count)")
        }
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
