import CNodusKernels
import XCTest
@testable import NodusCore

/// The bf16 products (`gemm_bf16.c`) against float64 sums of the bf16-rounded
/// operands, which they must match to float32 rounding (a product of two bf16
/// values is exact in float32): shapes that end inside register tiles (12 x 32)
/// and cross the cache blocks (K 512, rows 192, columns 2048), odd depths,
/// biases, accumulation, convolutions read from the image; every code path on
/// this CPU; and the whole idea's error against float32 (SPEC section 5).
final class BFloat16GemmTests: XCTestCase {
    private typealias LinearShape = (rows: Int, inFeatures: Int, outFeatures: Int)

    private let linearShapes: [LinearShape] = [
        (12, 2, 32), (13, 257, 33), (25, 1025, 70), (200, 40, 2100), (37, 7, 65), (5, 0, 7),
        (7, 33, 17), (19, 16, 47),  // edges inside the AVX2 path's 6 x 16 quarters of a tile
    ]

    private let convolutionShapes = [
        ConvolutionShape(batch: 2, inChannels: 61, height: 9, width: 13, outChannels: 14, kernelHeight: 3,
                         kernelWidth: 3, stride: 1, padding: 1),  // depth 549: odd, past one K block
        ConvolutionShape(batch: 1, inChannels: 3, height: 11, width: 70, outChannels: 25, kernelHeight: 3,
                         kernelWidth: 3, stride: 2, padding: 0, trailingPadding: 1),  // Downsample2D
        ConvolutionShape(batch: 1, inChannels: 41, height: 6, width: 7, outChannels: 12, kernelHeight: 1,
                         kernelWidth: 1, stride: 1, padding: 0),  // pointwise: B is a matrix
        ConvolutionShape(batch: 1, inChannels: 2, height: 8, width: 8, outChannels: 13, kernelHeight: 3,
                         kernelWidth: 5, stride: 2, padding: 2),
        ConvolutionShape(batch: 1, inChannels: 3, height: 45, width: 50, outChannels: 13, kernelHeight: 3,
                         kernelWidth: 3, stride: 1, padding: 1),  // 2250 columns: past one column block
        // Output widths that are multiples of 16: patches go straight from the image into the panels.
        ConvolutionShape(batch: 2, inChannels: 7, height: 5, width: 32, outChannels: 14, kernelHeight: 3,
                         kernelWidth: 3, stride: 1, padding: 1),
        ConvolutionShape(batch: 1, inChannels: 3, height: 40, width: 64, outChannels: 13, kernelHeight: 3,
                         kernelWidth: 3, stride: 1, padding: 1),
        // A multiple of 8, not 16: straight from the image on AVX2 only.
        ConvolutionShape(batch: 1, inChannels: 5, height: 6, width: 24, outChannels: 7, kernelHeight: 3,
                         kernelWidth: 3, stride: 1, padding: 1),
    ]

    private let paths: [BFloat16Gemm.Path] = [.dotProduct, .avx512, .avx2, .portable]

    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    /// x rounded to bfloat16, to nearest even (written apart from the kernel's rounding).
    private func bf16(_ x: Float) -> Float {
        if x.isNaN { return x }
        let bits = x.bitPattern
        let lower = bits & 0xFFFF, upper = bits & 0xFFFF_0000
        let roundsUp = lower > 0x8000 || (lower == 0x8000 && (bits >> 16) & 1 == 1)
        return Float(bitPattern: roundsUp ? upper &+ 0x1_0000 : upper)
    }

    /// Worst |a - b| over the largest |b|.
    private func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
        let peak = max(expected.map(abs).max() ?? 1, 1e-30)
        return zip(actual, expected).map { abs(Double($0) - $1) }.max().map { $0 / peak } ?? 0
    }

    /// `BFloat16Gemm(linearInput:...)` over arrays, run on `path`.
    private func runLinear(input: [Float], inputRowStride: Int? = nil, weight: PackedBFloat16Weight, bias: [Float]?,
                           output: inout [Float], rows: Int, accumulate: Bool = false,
                           path: BFloat16Gemm.Path = .automatic) throws {
        try input.withUnsafeBufferPointer { input in
            try output.withUnsafeMutableBufferPointer { output in
                try withOptionalPointer(bias) { bias in
                    try BFloat16Gemm(linearInput: input.baseAddress!, inputRowStride: inputRowStride, weight: weight,
                                     bias: bias, output: output.baseAddress!, rows: rows, accumulate: accumulate)
                        .run(path: path)
                }
            }
        }
    }

    /// `BFloat16Gemm(convolution:...)` over arrays, run on `path`.
    private func runConvolution(_ shape: ConvolutionShape, input: [Float], weight: PackedBFloat16Weight,
                                bias: [Float]?, output: inout [Float], accumulate: Bool = false,
                                path: BFloat16Gemm.Path = .automatic) throws {
        try input.withUnsafeBufferPointer { input in
            try output.withUnsafeMutableBufferPointer { output in
                try withOptionalPointer(bias) { bias in
                    try BFloat16Gemm(convolution: shape, input: input.baseAddress!, weight: weight, bias: bias,
                                     output: output.baseAddress!, accumulate: accumulate).run(path: path)
                }
            }
        }
    }

    private func withOptionalPointer(_ values: [Float]?, _ body: (UnsafePointer<Float>?) throws -> Void) rethrows {
        guard let values else { return try body(nil) }
        try values.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    // MARK: - Cases

    /// A Linear case through `BFloat16Gemm(linearInput:)` on each of `paths`, with
    /// bias; every other case accumulates onto an old output and reads input
    /// rows 3 floats apart, with NaN between them: the padding of an odd depth
    /// must not read past a row.
    private func linear(_ shape: LinearShape, index: Int, paths: [BFloat16Gemm.Path]) throws -> (outputs: [[Float]], expected: [Double]) {
        let accumulate = index % 2 == 1
        let stride = shape.inFeatures + (accumulate ? 3 : 0)
        var input = random(shape.rows * stride, seed: UInt64(index))
        for r in 0..<shape.rows { for k in shape.inFeatures..<stride { input[r * stride + k] = .nan } }
        let weight = random(shape.outFeatures * shape.inFeatures, seed: UInt64(100 + index))
        let bias = random(shape.outFeatures, seed: UInt64(200 + index))
        let old = random(shape.rows * shape.outFeatures, seed: UInt64(300 + index))
        var expected = [Double](repeating: 0, count: shape.rows * shape.outFeatures)
        for r in 0..<shape.rows {
            for n in 0..<shape.outFeatures {
                var sum = Double(bias[n]) + (accumulate ? Double(old[r * shape.outFeatures + n]) : 0)
                for k in 0..<shape.inFeatures {
                    sum += Double(bf16(input[r * stride + k])) * Double(bf16(weight[n * shape.inFeatures + k]))
                }
                expected[r * shape.outFeatures + n] = sum
            }
        }
        let packed = try PackedBFloat16Weight(weight: weight, rows: shape.outFeatures, depth: shape.inFeatures,
                                              role: .linear)
        let outputs = try paths.map { path in
            var output = accumulate ? old : [Float](repeating: .nan, count: old.count)
            try runLinear(input: input, inputRowStride: stride, weight: packed, bias: bias, output: &output,
                          rows: shape.rows, accumulate: accumulate, path: path)
            return output
        }
        return (outputs, expected)
    }

    /// A convolution case through `BFloat16Gemm(convolution:)` on each of
    /// `paths`, with bias; the last case accumulates onto an old output. A
    /// plane of NaN follows the input: nothing past it may be read.
    private func convolution(_ shape: ConvolutionShape, index: Int, paths: [BFloat16Gemm.Path]) throws -> (outputs: [[Float]], expected: [Double]) {
        let accumulate = index == convolutionShapes.count - 1
        let input = random(shape.batch * shape.inChannels * shape.height * shape.width, seed: UInt64(index))
            + [Float](repeating: .nan, count: shape.height * shape.width)
        let weight = random(shape.outChannels * shape.patchSize, seed: UInt64(50 + index))
        let bias = random(shape.outChannels, seed: UInt64(90 + index))
        let (outHeight, outWidth) = (shape.outHeight, shape.outWidth)
        let old = random(shape.batch * shape.outChannels * outHeight * outWidth, seed: UInt64(70 + index))
        var expected = [Double](repeating: 0, count: old.count)
        for item in 0..<shape.batch { for o in 0..<shape.outChannels { for y in 0..<outHeight { for x in 0..<outWidth {
            let target = ((item * shape.outChannels + o) * outHeight + y) * outWidth + x
            var sum = Double(bias[o]) + (accumulate ? Double(old[target]) : 0)
            for c in 0..<shape.inChannels { for ky in 0..<shape.kernelHeight { for kx in 0..<shape.kernelWidth {
                let iy = y * shape.stride + ky - shape.padding, ix = x * shape.stride + kx - shape.padding
                guard iy >= 0, iy < shape.height, ix >= 0, ix < shape.width else { continue }
                let w = weight[((o * shape.inChannels + c) * shape.kernelHeight + ky) * shape.kernelWidth + kx]
                let v = input[((item * shape.inChannels + c) * shape.height + iy) * shape.width + ix]
                sum += Double(bf16(w)) * Double(bf16(v))
            } } }
            expected[target] = sum
        } } } }
        let packed = try PackedBFloat16Weight(weight: weight, rows: shape.outChannels, depth: shape.patchSize,
                                              role: .convolution)
        let outputs = try paths.map { path in
            var output = accumulate ? old : [Float](repeating: .nan, count: old.count)
            try runConvolution(shape, input: input, weight: packed, bias: bias, output: &output,
                               accumulate: accumulate, path: path)
            return output
        }
        return (outputs, expected)
    }

    // MARK: - Tests

    func testLinearMatchesFloat64OfRoundedOperands() throws {
        for (index, shape) in linearShapes.enumerated() {
            let (outputs, expected) = try linear(shape, index: index, paths: [.automatic])
            XCTAssertLessThan(relativeError(outputs[0], expected), 1e-5, "shape \(shape)")
        }
    }

    func testConvolutionMatchesFloat64OfRoundedOperands() throws {
        for (index, shape) in convolutionShapes.enumerated() {
            let (outputs, expected) = try convolution(shape, index: index, paths: [.automatic])
            XCTAssertLessThan(relativeError(outputs[0], expected), 1e-5, "case \(index): \(shape)")
        }
    }

    /// Every path this CPU has matches float64, and the fallbacks match the
    /// first (vdpbf16ps where the CPU has it) to float32 rounding.
    func testEveryPathAgrees() throws {
        let available = paths.filter(\.isSupported)
        var cases: [(name: String, outputs: [[Float]], expected: [Double])] = []
        for (index, shape) in linearShapes.enumerated() {
            let (outputs, expected) = try linear(shape, index: index, paths: available)
            cases.append(("linear \(shape)", outputs, expected))
        }
        for (index, shape) in convolutionShapes.enumerated() {
            let (outputs, expected) = try convolution(shape, index: index, paths: available)
            cases.append(("convolution \(index)", outputs, expected))
        }
        for (name, outputs, expected) in cases {
            for (path, output) in zip(available, outputs) {
                XCTAssertLessThan(relativeError(output, expected), 1e-5, "\(name), path \(path)")
                XCTAssertLessThan(relativeError(output, outputs[0].map(Double.init)), 1e-6,
                                  "\(name), path \(path) against \(available[0])")
            }
        }
    }

    /// The AVX2 path (for CPUs without AVX-512) gives what the AVX-512 path
    /// computes, bit for bit, and so does plain C: the same fused multiply-adds
    /// of exact products in the same order, the same epilogue. Automatic takes
    /// it at the AVX2 level.
    func testAVX2PathEqualsTheAVX512Path() throws {
        try XCTSkipUnless(BFloat16Gemm.Path.avx2.isSupported, "below AVX2")
        let compared = [BFloat16Gemm.Path.avx2, .avx512, .portable].filter(\.isSupported)
        if CPULevel.inUse == .avx2 { XCTAssertEqual(compared, [.avx2, .portable]) }
        // Automatic is vdpbf16ps where the CPU has it: equal to float32 rounding only.
        let linearPaths = CPULevel.inUse < .avx512BFloat16 ? compared + [.automatic] : compared
        for (index, shape) in linearShapes.enumerated() {
            let (outputs, _) = try linear(shape, index: index, paths: linearPaths)
            for (path, output) in zip(linearPaths, outputs) {
                XCTAssertEqual(output, outputs[0], "linear \(shape): \(path) against avx2")
            }
        }
        for (index, shape) in convolutionShapes.enumerated() {
            let (outputs, _) = try convolution(shape, index: index, paths: compared)
            for (path, output) in zip(compared, outputs) {
                XCTAssertEqual(output, outputs[0], "convolution \(index): \(path) against avx2")
            }
        }
    }

    /// Blocks as threads take them, on an uneven 2 x 2 split; a block that
    /// starts off the tile grid is refused without touching C.
    func testBlocksCoverTheProduct() throws {
        let (rows, depth, columns) = (30, 37, 70)
        let input = random(rows * depth, seed: 1), weight = random(columns * depth, seed: 2)
        let packed = try PackedBFloat16Weight(weight: weight, rows: columns, depth: depth, role: .linear)
        var whole = [Float](repeating: 0, count: rows * columns)
        try runLinear(input: input, weight: packed, bias: nil, output: &whole, rows: rows)
        var output = [Float](repeating: .nan, count: rows * columns)
        input.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { output in
                var problem = nodus_gemm_bf16_problem()
                (problem.m, problem.n, problem.k) = (Int64(rows), Int64(columns), Int64(depth))
                (problem.role, problem.weight) = (NODUS_GEMM_BF16_LINEAR, packed.packed)
                problem.input = nodus_gemm_matrix(data: input.baseAddress, row_stride: Int64(depth),
                                                       column_stride: 1)
                (problem.c, problem.ldc) = (output.baseAddress, Int64(columns))
                withUnsafePointer(to: problem) { problem in
                    XCTAssertEqual(nodus_gemm_bf16_block(problem, 5, 30, 0, 70), 0)
                    XCTAssertEqual(nodus_gemm_bf16_block(problem, 0, 30, 16, 70), 0)
                    XCTAssertEqual(nodus_gemm_bf16_block(problem, 0, 12, 0, 70), 1)
                    XCTAssertEqual(nodus_gemm_bf16_block(problem, 12, 30, 0, 32), 1)
                    XCTAssertEqual(nodus_gemm_bf16_block(problem, 12, 30, 32, 70), 1)
                }
            }
        }
        XCTAssertEqual(output, whole)
    }

    /// Both operands are rounded to nearest even as torch's `.to(torch.bfloat16)`:
    /// ties to the even neighbour, overflow to infinity, NaN kept.
    func testOperandsRoundToNearestEven() throws {
        let cases: [(value: Float, rounded: Float)] = [
            (1 + 0x1p-8, 1),                       // tie, down to even
            (1 + 3 * 0x1p-8, 1 + 0x1p-6),          // tie, up to even
            (1 + 0x1p-8 + 0x1p-20, 1 + 0x1p-7),    // above the tie
            (-(1 + 0x1p-8), -1),
            (Float.greatestFiniteMagnitude, .infinity),
        ]
        for path in paths where path.isSupported {
            for (value, rounded) in cases + [(Float.nan, Float.nan)] {
                for roundedOperand in ["weight", "input"] {
                    let (weight, input): (Float, Float) = roundedOperand == "weight" ? (value, 1) : (1, value)
                    let packed = try PackedBFloat16Weight(weight: [weight], rows: 1, depth: 1, role: .linear)
                    var output: [Float] = [0]
                    try runLinear(input: [input], weight: packed, bias: nil, output: &output, rows: 1, path: path)
                    XCTAssertTrue(output[0] == rounded || (output[0].isNaN && rounded.isNaN),
                                  "\(roundedOperand) \(value) gave \(output[0]), expected \(rounded) (path \(path))")
                }
            }
        }
    }

    /// The whole idea's error: a DiT-XL/2-sized Linear in bf16 against float32
    /// stays well inside SPEC section 5's 3e-2, and is really bf16 (far above float32's).
    func testBFloat16LinearIsWithinTheSpecOfFloat32() throws {
        let (rows, features) = (64, 1152)
        let input = random(rows * features, seed: 11)
        let weight = random(features * features, seed: 12).map { $0 / Float(features).squareRoot() }
        let bias = random(features, seed: 13)
        var reference = [Float](repeating: 0, count: rows * features)
        Gemm.linear(input: input, weight: weight, bias: bias, output: &reference, rows: rows, inFeatures: features,
                    outFeatures: features)
        let packed = try PackedBFloat16Weight(weight: weight, rows: features, depth: features, role: .linear)
        XCTAssertEqual(packed.byteCount, features * features * 2)
        var output = [Float](repeating: .nan, count: rows * features)
        try runLinear(input: input, weight: packed, bias: bias, output: &output, rows: rows)
        let error = relativeError(output, reference.map(Double.init))
        XCTAssertLessThan(error, 3e-2, "bf16 against float32")
        XCTAssertGreaterThan(error, 1e-4, "bf16 against float32: as close as float32 itself, so not bf16")
    }

    func testBadShapesThrow() throws {
        let one: [Float] = [1]
        XCTAssertThrowsError(try PackedBFloat16Weight(weight: one, rows: -1, depth: 1, role: .linear)) { error in
            XCTAssertEqual((error as? NodusError)?.code, .invalidArgument)
        }
        for (rows, depth) in [(1 << 40, 1 << 20), (Int.max / 2, Int.max / 2)] {
            XCTAssertThrowsError(try PackedBFloat16Weight(weight: one, rows: rows, depth: depth, role: .linear)) { error in
                XCTAssertEqual((error as? NodusError)?.code, .outOfMemory, "[\(rows), \(depth)]")
            }
        }
        let linear = try PackedBFloat16Weight(weight: one, rows: 1, depth: 1, role: .linear)
        let shape = ConvolutionShape(batch: 1, inChannels: 1, height: 1, width: 1, outChannels: 1, kernelHeight: 1,
                                     kernelWidth: 1, stride: 1, padding: 0)
        var output: [Float] = [0]
        XCTAssertThrowsError(try runConvolution(shape, input: one, weight: linear, bias: nil, output: &output)) { error in
            XCTAssertEqual((error as? NodusError)?.code, .shape)
        }
    }
}
