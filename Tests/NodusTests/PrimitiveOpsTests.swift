import Foundation
import XCTest
import NodusCore
import NodusGraph

/// The primitive ops against values worked out by hand or by a naive loop:
/// broadcasting, layout ops, products, reductions, N-D convolution and resize,
/// constant folding at build time, and graphs with several outputs.
final class PrimitiveOpsTests: XCTestCase {
    private func floats(_ shape: [Int], _ start: Float = 0) throws -> Tensor {
        try Tensor(shape: shape, floats: (0..<shape.reduce(1, *)).map { start + Float($0) })
    }

    /// Runs a graph with one input "x" (and optionally "y") and returns every output.
    private func run(_ inputs: [String: Tensor], _ build: (inout GraphBuilder, [String: ValueID]) throws -> [ValueID])
        throws -> [Tensor] {
        var builder = GraphBuilder()
        var values: [String: ValueID] = [:]
        for (name, tensor) in inputs.sorted(by: { $0.key < $1.key }) {
            values[name] = builder.input(name, shape: tensor.shape, dtype: tensor.dtype)
        }
        for (index, output) in try build(&builder, values).enumerated() { builder.addOutput(output, name: "out\(index)") }
        return try Executable(graph: builder.finish()).runAll(inputs)
    }

    func testBroadcastingArithmeticAndComparisons() throws {
        let x = try floats([2, 1, 3]), y = try floats([4, 1], 1)
        let outputs = try run(["x": x, "y": y]) { b, v in
            [try b.binary(.add, v["x"]!, v["y"]!), try b.binary(.less, v["x"]!, v["y"]!),
             try b.binary(.divide, v["x"]!, v["y"]!)]
        }
        XCTAssertEqual(outputs[0].shape, [2, 4, 3])
        var sums: [Float] = [], less: [UInt8] = [], quotients: [Float] = []
        for i in 0..<2 { for j in 0..<4 { for k in 0..<3 {
            let a = Float(i * 3 + k), c = Float(j + 1)
            sums.append(a + c); less.append(a < c ? 1 : 0); quotients.append(a / c)
        } } }
        XCTAssertEqual(outputs[0].floatArray(), sums)
        XCTAssertEqual(outputs[1].dtype, .bool)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: outputs[1].bytes.assumingMemoryBound(to: UInt8.self), count: 24)), less)
        XCTAssertEqual(outputs[2].floatArray(), quotients)
    }

    func testIntegerDivisionAndModuloFloorAsTorch() throws {
        var builder = GraphBuilder()
        let a = try builder.typedConstant("a", Tensor(shape: [4], int64s: [7, -7, 7, -7]))
        let b = try builder.typedConstant("b", Tensor(shape: [4], int64s: [2, 2, -2, -2]))
        let quotient = try builder.binary(.divide, a, b), remainder = try builder.binary(.modulo, a, b)
        XCTAssertEqual(builder.constantTensor(quotient)?.int64Array(), [3, -4, -4, 3])
        XCTAssertEqual(builder.constantTensor(remainder)?.int64Array(), [1, 1, -1, -1])
        XCTAssertTrue(builder.graph.nodes.isEmpty, "constant operands fold at build time")
    }

    func testBatchedMatMulBroadcastsAndPromotesVectors() throws {
        let a = try floats([2, 1, 3, 4]), b = try floats([3, 4, 5], -6)
        let outputs = try run(["a": a, "b": b]) { builder, v in
            let vector = try builder.typedConstant("v", Tensor(shape: [4], floats: [1, -1, 2, 0.5]))
            return [try builder.matMul(v["a"]!, v["b"]!), try builder.matMul(v["a"]!, vector)]
        }
        XCTAssertEqual(outputs[0].shape, [2, 3, 3, 5])
        let av = a.floatArray(), bv = b.floatArray(), product = outputs[0].floatArray()
        for i in 0..<2 { for j in 0..<3 { for m in 0..<3 { for n in 0..<5 {
            var sum: Float = 0
            for k in 0..<4 { sum += av[i * 12 + m * 4 + k] * bv[j * 20 + k * 5 + n] }
            XCTAssertEqual(product[((i * 3 + j) * 3 + m) * 5 + n], sum, accuracy: 1e-4)
        } } } }
        XCTAssertEqual(outputs[1].shape, [2, 1, 3])
        let expected: Float = 0 * 1 - 1 + 2 * 2 + 3 * 0.5
        XCTAssertEqual(outputs[1].floatArray()[0], expected)
    }

    func testTransposeSliceConcatGather() throws {
        let x = try floats([2, 3, 4])
        let outputs = try run(["x": x]) { b, v in
            let x = v["x"]!
            let indices = try b.typedConstant("i", Tensor(shape: [2], int64s: [-1, 0]))
            return [try b.transpose(x, permutation: [2, 0, 1]),
                    try b.slice(x, starts: [-1, 3], ends: [-100, 0], axes: [1, 2], steps: [-2, -1]),
                    try b.concat([x, x], axis: -1),
                    try b.gather(x, indices: indices, axis: 1)]
        }
        let values = x.floatArray()
        func at(_ i: Int, _ j: Int, _ k: Int) -> Float { values[i * 12 + j * 4 + k] }
        XCTAssertEqual(outputs[0].shape, [4, 2, 3])
        XCTAssertEqual(outputs[0].floatArray()[1 * 6 + 1 * 3 + 2], at(1, 2, 1))
        // Rows 2, 0 (from the end, step -2) and columns 3, 2, 1 (step -1, the end excluded).
        XCTAssertEqual(outputs[1].shape, [2, 2, 3])
        XCTAssertEqual(outputs[1].floatArray(), [0, 1].flatMap { i in [2, 0].flatMap { j in [3, 2, 1].map { at(i, j, $0) } } })
        XCTAssertEqual(outputs[2].shape, [2, 3, 8])
        XCTAssertEqual(outputs[2].floatArray()[8 + 5], at(0, 1, 1))
        XCTAssertEqual(outputs[3].shape, [2, 2, 4])
        XCTAssertEqual(Array(outputs[3].floatArray()[0..<8]), (0..<4).map { at(0, 2, $0) } + (0..<4).map { at(0, 0, $0) })
    }

    func testSoftmaxReduceExpandSelectCastPad() throws {
        let x = try Tensor(shape: [2, 3], floats: [1, 2, 3, -1, 0, 100])
        let outputs = try run(["x": x]) { b, v in
            let x = v["x"]!
            let positive = try b.binary(.greater, x, b.typedConstant("zero", Tensor(shape: [], floats: [0])))
            return [try b.softmax(x, axis: 1),
                    try b.reduce(.mean, x, axes: [0, 1], keepDims: true),
                    try b.reduce(.max, x, axes: [0], keepDims: false),
                    try b.expand(b.reshape(x, to: [2, 1, 3]), to: [2, 2, 3]),
                    try b.select(positive, x, b.map(.negate, x)),
                    try b.cast(x, to: .int64),
                    try b.pad(x, before: [0, 1], after: [1, -2], value: 9)]
        }
        let e = [1, 2, 3].map { Foundation.exp(Double($0 - 3)) }
        XCTAssertEqual(Double(outputs[0].floatArray()[0]), e[0] / e.reduce(0, +), accuracy: 1e-7)
        XCTAssertEqual(outputs[0].floatArray()[5], 1, "large inputs must not overflow")
        XCTAssertEqual(outputs[1].shape, [1, 1])
        XCTAssertEqual(outputs[1].floatArray(), [105.0 / 6])
        XCTAssertEqual(outputs[2].floatArray(), [1, 2, 100])
        XCTAssertEqual(outputs[3].floatArray(), [1, 2, 3, 1, 2, 3, -1, 0, 100, -1, 0, 100])
        XCTAssertEqual(outputs[4].floatArray(), [1, 2, 3, 1, 0, 100])
        XCTAssertEqual(outputs[5].int64Array(), [1, 2, 3, -1, 0, 100])
        XCTAssertEqual(outputs[6].shape, [3, 2])
        XCTAssertEqual(outputs[6].floatArray(), [9, 1, 9, -1, 9, 9])
    }

    /// The N-D convolution against the fused 2-D one, and grouped / dilated / 3-D against a naive loop.
    func testConvolutionMatchesTheFusedKernelAndANaiveLoop() throws {
        let x = try Tensor(shape: [2, 4, 7, 6], floats: (0..<336).map { Float(($0 * 37) % 11) - 5 })
        let weight = try Tensor(shape: [6, 4, 3, 3], floats: (0..<216).map { Float(($0 * 13) % 7) / 7 - 0.4 })
        let bias = try Tensor(shape: [6], floats: [0.5, -1, 2, 0, 1, -0.25])
        let geometry = ConvolutionGeometry(strides: [2, 1], dilations: [1, 1], padsBefore: [1, 0], padsAfter: [1, 1], groups: 1)
        let outputs = try run(["x": x]) { b, v in
            let (w, c) = (try b.constant("w", weight), try b.constant("b", bias))
            return [try b.convolution(v["x"]!, weight: w, bias: c, geometry: geometry),
                    try b.conv2d(v["x"]!, weight: w, bias: c, stride: 2, padding: 1)]
        }
        // Same geometry except the asymmetric column padding: compare the shared columns.
        XCTAssertEqual(outputs[0].shape, [2, 6, 4, 5])
        XCTAssertEqual(outputs[1].shape, [2, 6, 4, 3])
        let reference = try naiveConvolution(x, weight, bias, geometry)
        assertClose(outputs[0].floatArray(), reference, "2-D convolution")

        let x3 = try Tensor(shape: [1, 4, 5, 4, 6], floats: (0..<480).map { Float(($0 * 29) % 13) / 13 - 0.5 })
        let w3 = try Tensor(shape: [4, 2, 3, 1, 2], floats: (0..<48).map { Float(($0 * 5) % 9) / 9 - 0.5 })
        let g3 = ConvolutionGeometry(strides: [1, 2, 1], dilations: [2, 1, 1], padsBefore: [2, 0, 1], padsAfter: [1, 0, 0],
                                     groups: 2)
        let volume = try run(["x": x3]) { b, v in [try b.convolution(v["x"]!, weight: b.constant("w3", w3), bias: nil, geometry: g3)] }
        assertClose(volume[0].floatArray(), try naiveConvolution(x3, w3, nil, g3), "grouped dilated 3-D convolution")
    }

    func testResizeNearestAndLinear() throws {
        let x = try Tensor(shape: [1, 1, 2, 2], floats: [1, 2, 3, 4])
        let outputs = try run(["x": x]) { b, v in
            [try b.resize(v["x"]!, to: [1, 1, 4, 4], mode: ResizeMode(interpolation: .nearest, coordinates: .asymmetric,
                                                                      rounding: .floor)),
             try b.resize(v["x"]!, to: [1, 1, 4, 4], mode: ResizeMode(interpolation: .linear, coordinates: .halfPixel,
                                                                      rounding: .floor))]
        }
        XCTAssertEqual(outputs[0].floatArray(), [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        // torch F.interpolate(mode="bilinear", align_corners=False) of [[1, 2], [3, 4]] to 4x4.
        XCTAssertEqual(outputs[1].floatArray(), [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4])
    }

    func testShapeArithmeticFoldsAwayAndOnlyTheDataPathIsPlanned() throws {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [2, 6])
        let shape = try builder.typedConstant("shape", Tensor(shape: [2], int64s: [2, 6]))
        let halves = try builder.binary(.divide, shape, builder.typedConstant("two", Tensor(shape: [1], int64s: [2])))
        let target = try builder.concat([builder.slice(halves, starts: [1], ends: [2], axes: [0], steps: [1]),
                                         builder.typedConstant("four", Tensor(shape: [1], int64s: [4]))], axis: 0)
        XCTAssertEqual(builder.constantTensor(target)?.int64Array(), [3, 4])
        let y = try builder.reshape(x, to: builder.constantTensor(target)!.int64Array().map { Int($0) })
        builder.setOutput(try builder.map(.sqrt, y))
        XCTAssertEqual(builder.graph.nodes.map(\.operation.name), ["reshape", "sqrt"])
    }

    func testArgMaxTakesTheFirstOfTiesAndGatherNDPicksSlices() throws {
        let x = try Tensor(shape: [2, 4], floats: [1, 7, 7, -2, 0, 0, -1, 0])
        let data = try floats([2, 3, 2])
        let outputs = try run(["x": x, "y": data]) { b, v in
            let picks = try b.typedConstant("i", Tensor(shape: [2, 2], int64s: [1, 2, 0, -1]))
            return [try b.argExtremum(v["x"]!, axis: 1, keepDims: false, largest: true),
                    try b.argExtremum(v["x"]!, axis: 0, keepDims: true, largest: false),
                    try b.gatherND(v["y"]!, indices: picks)]
        }
        XCTAssertEqual(outputs[0].int64Array(), [1, 0])
        XCTAssertEqual(outputs[1].shape, [1, 4])
        XCTAssertEqual(outputs[1].int64Array(), [1, 1, 1, 0])
        XCTAssertEqual(outputs[2].shape, [2, 2])
        XCTAssertEqual(outputs[2].floatArray(), [10, 11, 4, 5])  // data[1, 2, :] and data[0, -1, :]
    }

    func testBadShapesAreClearErrors() throws {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [2, 3]), y = builder.input("y", shape: [4])
        XCTAssertThrowsError(try builder.binary(.add, x, y)) { XCTAssertTrue("\($0)".contains("do not broadcast"), "\($0)") }
        XCTAssertThrowsError(try builder.matMul(x, y)) { XCTAssertTrue("\($0)".contains("inner sizes differ"), "\($0)") }
        XCTAssertThrowsError(try builder.reshape(x, to: [5])) { XCTAssertTrue("\($0)".contains("cannot reshape"), "\($0)") }
        XCTAssertThrowsError(try builder.transpose(x, permutation: [0, 0])) { XCTAssertTrue("\($0)".contains("permutation"), "\($0)") }
        XCTAssertThrowsError(try builder.softmax(x, axis: 2)) { XCTAssertTrue("\($0)".contains("outside rank"), "\($0)") }
        let indices = try builder.typedConstant("i", Tensor(shape: [1], int64s: [3]))
        XCTAssertThrowsError(try builder.gather(x, indices: indices, axis: 1)) { XCTAssertTrue("\($0)".contains("index 3"), "\($0)") }
    }

    // MARK: Helpers

    private func naiveConvolution(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, _ g: ConvolutionGeometry) throws -> [Float] {
        let s = x.shape, k = w.shape, rank = s.count - 2
        let xv = x.floatArray(), wv = w.floatArray(), bv = bias?.floatArray()
        let outSpatial = (0..<rank).map { (axis: Int) -> Int in
            let extent: Int = s[axis + 2] + g.padsBefore[axis] + g.padsAfter[axis]
            let reach: Int = g.dilations[axis] * (k[axis + 2] - 1) + 1
            return (extent - reach) / g.strides[axis] + 1
        }
        let inPerGroup = s[1] / g.groups, outPerGroup = k[0] / g.groups
        var result: [Float] = []
        func positions(_ extents: [Int]) -> [[Int]] {
            extents.reduce([[]]) { partial, extent in partial.flatMap { prefix in (0..<extent).map { prefix + [$0] } } }
        }
        for n in 0..<s[0] { for o in 0..<k[0] { for position in positions(outSpatial) {
            var sum = Double(bv?[o] ?? 0)
            for c in 0..<inPerGroup { for tap in positions(Array(k[2...])) {
                let coordinate = (0..<rank).map { (axis: Int) -> Int in
                    let start: Int = position[axis] * g.strides[axis] - g.padsBefore[axis]
                    return start + tap[axis] * g.dilations[axis]
                }
                guard (0..<rank).allSatisfy({ coordinate[$0] >= 0 && coordinate[$0] < s[$0 + 2] }) else { continue }
                let channel = (o / outPerGroup) * inPerGroup + c
                var xIndex = n * s[1] + channel, wIndex = o * inPerGroup + c
                for axis in 0..<rank {
                    xIndex = xIndex * s[axis + 2] + coordinate[axis]
                    wIndex = wIndex * k[axis + 2] + tap[axis]
                }
                sum += Double(xv[xIndex]) * Double(wv[wIndex])
            } }
            result.append(Float(sum))
        } } }
        return result
    }

    private func assertClose(_ actual: [Float], _ expected: [Float], _ label: String) {
        XCTAssertEqual(actual.count, expected.count, label)
        let scale = expected.map { abs($0) }.max() ?? 1
        let error = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThan(error / scale, 1e-6, "\(label): relative max error \(error / scale)")
    }
}
