import CNodusKernels
import XCTest
@testable import NodusCore

/// The packed product (`gemm.c`, its AVX-512 or AVX2 form by `CPULevel.inUse`)
/// against float64 sums: shapes that end inside register tiles (12 x 32 at
/// AVX-512, 6 x 16 at AVX2) and cross its cache blocks (K 256, rows 192,
/// columns 2048), fewer rows than a tile, transposed operands, scale, biases,
/// accumulation, and B read from an image as a convolution's patches.
final class PackedGemmTests: XCTestCase {
    private static let skipReason = "below AVX2: OpenBLAS runs instead"

    func testTheFormFollowsTheCPULevel() {
        let level = CPULevel.inUse
        XCTAssertEqual(PackedGemm.isSupported, level >= .avx2, "level \(level.name)")
        if level >= .avx512 {
            XCTAssertEqual([PackedGemm.tileRows, PackedGemm.tileColumns], [12, 32])
        } else if level == .avx2 {
            XCTAssertEqual([PackedGemm.tileRows, PackedGemm.tileColumns], [6, 16])
        }
    }

    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    /// Worst |a - b| over the largest |b|.
    private func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
        let peak = max(expected.map(abs).max() ?? 1, 1e-30)
        return zip(actual, expected).map { abs(Double($0) - $1) }.max().map { $0 / peak } ?? 0
    }

    /// Runs `problem` as three blocks on a 2 x 2 split with uneven edges, the way
    /// threads share it, so block offsets are exercised too.
    private func runInBlocks(_ problem: nodus_gemm_problem, rowSplit: Int, columnSplit: Int) {
        withUnsafePointer(to: problem) { problem in
            let (m, n) = (problem.pointee.m, problem.pointee.n)
            let rows = Int64(rowSplit), columns = Int64(columnSplit)
            XCTAssertEqual(nodus_gemm_block(problem, 0, rows, 0, n), 1)
            XCTAssertEqual(nodus_gemm_block(problem, rows, m, 0, columns), 1)
            XCTAssertEqual(nodus_gemm_block(problem, rows, m, columns, n), 1)
        }
    }

    func testStridedProductsMatchFloat64() throws {
        try XCTSkipUnless(PackedGemm.isSupported, Self.skipReason)
        let shapes = [(m: 12, n: 32, k: 1), (m: 13, n: 33, k: 257), (m: 25, n: 70, k: 300),
                      (m: 14, n: 2100, k: 20), (m: 200, n: 40, k: 513), (m: 30, n: 5, k: 0), (m: 2, n: 100, k: 260),
                      (m: 6, n: 16, k: 9), (m: 7, n: 17, k: 31), (m: 5, n: 15, k: 8), (m: 19, n: 47, k: 65),
                      (m: 13, n: 150, k: 6300)]  // two depth blocks at AVX-512, B packed 64 columns at a time
        for (index, shape) in shapes.enumerated() {
            for (transposeA, transposeB) in [(false, false), (false, true), (true, false), (true, true)] {
                let a = random(shape.m * shape.k, seed: UInt64(index))
                let b = random(shape.k * shape.n, seed: UInt64(100 + index))
                let rowBias = random(shape.m, seed: 7), columnBias = random(shape.n, seed: 8)
                let old = random(shape.m * shape.n, seed: 9)
                let accumulate = index % 2 == 1
                let scale: Float = index % 3 == 2 ? 0.37 : 1
                var expected = [Double](repeating: 0, count: shape.m * shape.n)
                for i in 0..<shape.m {
                    for j in 0..<shape.n {
                        var product = 0.0
                        for p in 0..<shape.k {
                            let x = transposeA ? a[p * shape.m + i] : a[i * shape.k + p]
                            let y = transposeB ? b[j * shape.k + p] : b[p * shape.n + j]
                            product += Double(x) * Double(y)
                        }
                        expected[i * shape.n + j] = Double(scale) * product + Double(rowBias[i]) + Double(columnBias[j])
                            + (accumulate ? Double(old[i * shape.n + j]) : 0)
                    }
                }
                var output = accumulate ? old : [Float](repeating: .nan, count: old.count)
                a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
                    rowBias.withUnsafeBufferPointer { rowBias in columnBias.withUnsafeBufferPointer { columnBias in
                        output.withUnsafeMutableBufferPointer { output in
                            var problem = PackedGemm.problem(
                                m: shape.m, n: shape.n, k: shape.k,
                                a: transposeA ? PackedGemm.matrix(a.baseAddress!, rowStride: 1, columnStride: shape.m)
                                              : PackedGemm.matrix(a.baseAddress!, rowStride: shape.k, columnStride: 1),
                                c: output.baseAddress!, ldc: shape.n)
                            problem.b = transposeB ? PackedGemm.matrix(b.baseAddress!, rowStride: 1, columnStride: shape.k)
                                                   : PackedGemm.matrix(b.baseAddress!, rowStride: shape.n, columnStride: 1)
                            (problem.row_bias, problem.column_bias) = (rowBias.baseAddress!, columnBias.baseAddress!)
                            (problem.scale, problem.accumulate) = (scale, accumulate ? 1 : 0)
                            runInBlocks(problem, rowSplit: min(shape.m - 1, 2 * PackedGemm.tileRows),
                                        columnSplit: shape.n / 2)
                        }
                    } }
                } }
                XCTAssertLessThan(relativeError(output, expected), sumTolerance(terms: shape.k),
                                  "shape \(shape), transposeA \(transposeA), transposeB \(transposeB)")
            }
        }
    }

    /// The error float32 sums of `terms` products may have against float64: 1e-6,
    /// or the probabilistic bound of a sum in one chain, 4 sqrt(terms) units of
    /// rounding (Higham and Mary 2019), for long ones. A wrong element is off by
    /// far more.
    private func sumTolerance(terms: Int) -> Double {
        max(1e-6, 4 * Double(terms).squareRoot() * Double(Float.ulpOfOne) / 2)
    }

    /// Operands packed once (weights), in two ranges as threads pack them, then
    /// read by products split into blocks.
    func testPrepackedOperandsMatchFloat64() throws {
        try XCTSkipUnless(PackedGemm.isSupported, Self.skipReason)
        // k = 6500: B packed ahead in two depth blocks at the AVX-512 level (6144 + 356), A in KC blocks.
        for (index, shape) in [(m: 25, n: 70, k: 300), (m: 400, n: 45, k: 513), (m: 3, n: 33, k: 7),
                                (m: 13, n: 49, k: 17), (m: 14, n: 35, k: 6500)].enumerated() {
            let a = random(shape.m * shape.k, seed: UInt64(200 + index))
            let b = random(shape.n * shape.k, seed: UInt64(300 + index))  // [n, k]: a Linear weight
            let bias = random(shape.n, seed: 11)
            var expected = [Double](repeating: 0, count: shape.m * shape.n)
            for i in 0..<shape.m {
                for j in 0..<shape.n {
                    var sum = Double(bias[j])
                    for p in 0..<shape.k { sum += Double(a[i * shape.k + p]) * Double(b[j * shape.k + p]) }
                    expected[i * shape.n + j] = sum
                }
            }
            var packedA = [Float](repeating: .nan, count: Int(nodus_gemm_packed_a_count(Int64(shape.m), Int64(shape.k))))
            var packedB = [Float](repeating: .nan, count: Int(nodus_gemm_packed_b_count(Int64(shape.k), Int64(shape.n))))
            var output = [Float](repeating: .nan, count: shape.m * shape.n)
            for packA in [false, true] {
                a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in bias.withUnsafeBufferPointer { bias in
                    packedA.withUnsafeMutableBufferPointer { packedA in packedB.withUnsafeMutableBufferPointer { packedB in
                        output.withUnsafeMutableBufferPointer { output in
                            var matrixA = PackedGemm.matrix(a.baseAddress!, rowStride: shape.k, columnStride: 1)
                            var matrixB = PackedGemm.matrix(b.baseAddress!, rowStride: 1, columnStride: shape.k)
                            let (m, n, k) = (Int64(shape.m), Int64(shape.n), Int64(shape.k))
                            let rowSplit = min(m, Int64(PackedGemm.tileRows))
                            let columnSplit = min(n, Int64(PackedGemm.tileColumns))
                            XCTAssertEqual(nodus_gemm_pack_a(&matrixA, m, k, 0, rowSplit, packedA.baseAddress!), 1)
                            XCTAssertEqual(nodus_gemm_pack_a(&matrixA, m, k, rowSplit, m, packedA.baseAddress!), 1)
                            XCTAssertEqual(nodus_gemm_pack_b(&matrixB, k, n, 0, columnSplit, packedB.baseAddress!), 1)
                            XCTAssertEqual(nodus_gemm_pack_b(&matrixB, k, n, columnSplit, n, packedB.baseAddress!), 1)
                            var problem = PackedGemm.problem(m: shape.m, n: shape.n, k: shape.k, a: matrixA,
                                                             c: output.baseAddress!, ldc: shape.n)
                            (problem.packed_b, problem.column_bias) = (UnsafePointer(packedB.baseAddress!), bias.baseAddress!)
                            if packA { problem.packed_a = UnsafePointer(packedA.baseAddress!) }
                            runInBlocks(problem, rowSplit: Int(rowSplit), columnSplit: Int(columnSplit))
                        }
                    } }
                } } }
                XCTAssertLessThan(relativeError(output, expected), sumTolerance(terms: shape.k),
                                  "shape \(shape), packed A \(packA)")
            }
        }
    }

    /// Convolutions through `Convolution.run` (the image read as patches, no
    /// im2col buffer) against the definition in float64.
    func testConvolutionReadsPatchesFromTheImage() throws {
        try XCTSkipUnless(PackedGemm.isSupported, "below AVX2: im2col + OpenBLAS runs instead")
        let cases = [
            ConvolutionShape(batch: 2, inChannels: 5, height: 9, width: 13, outChannels: 14, kernelHeight: 3,
                             kernelWidth: 3, stride: 1, padding: 1),
            ConvolutionShape(batch: 1, inChannels: 3, height: 11, width: 70, outChannels: 25, kernelHeight: 3,
                             kernelWidth: 3, stride: 2, padding: 0, trailingPadding: 1),  // Downsample2D
            ConvolutionShape(batch: 1, inChannels: 40, height: 6, width: 7, outChannels: 12, kernelHeight: 1,
                             kernelWidth: 1, stride: 1, padding: 0),  // pointwise
            ConvolutionShape(batch: 1, inChannels: 2, height: 8, width: 8, outChannels: 13, kernelHeight: 3,
                             kernelWidth: 5, stride: 2, padding: 2),
        ]
        for (index, shape) in cases.enumerated() {
            XCTAssertTrue(shape.readsImageDirectly)
            XCTAssertEqual(shape.scratchCount, 0, "no im2col buffer")
            let input = random(shape.batch * shape.inChannels * shape.height * shape.width, seed: UInt64(index))
            let weight = random(shape.outChannels * shape.patchSize, seed: UInt64(50 + index))
            let bias = random(shape.outChannels, seed: UInt64(90 + index))
            let (outHeight, outWidth) = (shape.outHeight, shape.outWidth)
            var expected = [Double](repeating: 0, count: shape.batch * shape.outChannels * outHeight * outWidth)
            for item in 0..<shape.batch { for o in 0..<shape.outChannels { for y in 0..<outHeight { for x in 0..<outWidth {
                var sum = Double(bias[o])
                for c in 0..<shape.inChannels { for ky in 0..<shape.kernelHeight { for kx in 0..<shape.kernelWidth {
                    let iy = y * shape.stride + ky - shape.padding, ix = x * shape.stride + kx - shape.padding
                    guard iy >= 0, iy < shape.height, ix >= 0, ix < shape.width else { continue }
                    let w = weight[((o * shape.inChannels + c) * shape.kernelHeight + ky) * shape.kernelWidth + kx]
                    sum += Double(w) * Double(input[((item * shape.inChannels + c) * shape.height + iy) * shape.width + ix])
                } } }
                expected[((item * shape.outChannels + o) * outHeight + y) * outWidth + x] = sum
            } } } }
            var output = [Float](repeating: .nan, count: expected.count)
            var scratch: [Float] = [0]
            Convolution.run(shape: shape, input: input, weight: weight, bias: bias, output: &output, scratch: &scratch)
            XCTAssertLessThan(relativeError(output, expected), 1e-6, "case \(index)")
        }
    }
}
