import Foundation
import XCTest
import NodusCore
import NodusGraph

/// The fusion pass: exported patterns become the fused ops and compute the
/// same values; patterns that differ in any way keep their primitives.
final class OperatorFusionTests: XCTestCase {
    private func random(_ shape: [Int], seed: UInt64) throws -> Tensor {
        var state = seed &* 6_364_136_223_846_793_005 &+ 1
        let values = (0..<shape.reduce(1, *)).map { _ -> Float in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2001) / 1000 - 1
        }
        return try Tensor(shape: shape, floats: values)
    }

    /// Runs `graph` before and after fusion; returns the fused graph's op names.
    private func check(_ graph: Graph, inputs: [String: Tensor], file: StaticString = #filePath, line: UInt = #line)
        throws -> [String] {
        let (fused, _) = try OperatorFusion().fuse(graph)
        let before = try Executable(graph: graph).run(inputs).floatArray()
        let after = try Executable(graph: fused).run(inputs).floatArray()
        let scale = before.map { abs($0) }.max() ?? 1
        let error = zip(before, after).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThan(error / scale, 1e-5, "fused and primitive graphs differ", file: file, line: line)
        return fused.nodes.map(\.operation.name)
    }

    /// softmax(q kᵀ / sqrt(D) (+ mask)) v over heads, written as an exporter writes it.
    private func attentionGraph(mask: Bool) throws -> Graph {
        let (batch, tokens, heads, headWidth) = (2, 5, 3, 4)
        let width = heads * headWidth
        var builder = GraphBuilder()
        let q = builder.input("q", shape: [batch, tokens, width])
        let k = builder.input("k", shape: [batch, tokens, width])
        let v = builder.input("v", shape: [batch, tokens, width])
        func split(_ x: ValueID) throws -> ValueID {
            try builder.transpose(builder.reshape(x, to: [batch, tokens, heads, headWidth]), permutation: [0, 2, 1, 3])
        }
        let scale = try builder.typedConstant("scale", Tensor(shape: [1], floats: [1 / Float(headWidth).squareRoot()]))
        let keys = try builder.transpose(builder.reshape(k, to: [batch, tokens, heads, headWidth]), permutation: [0, 2, 3, 1])
        var scores = try builder.binary(.multiply, builder.matMul(split(q), keys), scale)
        if mask {
            scores = try builder.binary(.add, scores, builder.typedConstant("mask", random([tokens, tokens], seed: 9)))
        }
        let weights = try builder.softmax(scores, axis: -1)
        let merged = try builder.transpose(builder.matMul(weights, split(v)), permutation: [0, 2, 1, 3])
        builder.setOutput(try builder.reshape(merged, to: [batch, tokens, width]))
        return builder.finish()
    }

    func testAttentionFusesIntoTheStreamingKernel() throws {
        let inputs = try ["q": random([2, 5, 12], seed: 1), "k": random([2, 5, 12], seed: 2), "v": random([2, 5, 12], seed: 3)]
        let ops = try check(attentionGraph(mask: false), inputs: inputs)
        XCTAssertEqual(ops, ["attention"])
        let masked = try check(attentionGraph(mask: true), inputs: inputs)
        XCTAssertTrue(masked.contains("softmax"), "a masked attention is not the fused kernel's: \(masked)")
    }

    /// GELU as `x * 0.5 * (1 + erf(x / sqrt 2))` in an exporter's order, and a near miss.
    private func geluGraph(divisor: Float) throws -> Graph {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [3, 40])
        func scalar(_ value: Float) throws -> ValueID { try builder.typedConstant("c", Tensor(shape: [], floats: [value])) }
        let inner = try builder.map(.erf, builder.binary(.divide, x, scalar(divisor)))
        let half = try builder.binary(.multiply, scalar(0.5), builder.binary(.add, inner, scalar(1)))
        builder.setOutput(try builder.binary(.multiply, x, half))
        return builder.finish()
    }

    func testActivationsAreRecognisedByTheirValues() throws {
        let inputs = try ["x": random([3, 40], seed: 4)]
        XCTAssertEqual(try check(geluGraph(divisor: Float(2).squareRoot()), inputs: inputs), ["gelu"])
        XCTAssertFalse(try check(geluGraph(divisor: 1.5), inputs: inputs).contains("gelu"), "not a GELU")
    }

    func testRMSNormIsRecognisedInBothExportersForms() throws {
        for reciprocal in [true, false] {
            var builder = GraphBuilder()
            let x = builder.input("x", shape: [2, 3, 8])
            func scalar(_ value: Float) throws -> ValueID { try builder.typedConstant("c", Tensor(shape: [], floats: [value])) }
            let mean = try builder.reduce(.mean, builder.binary(.power, x, scalar(2)), axes: [-1], keepDims: true)
            let root = try builder.map(.sqrt, builder.binary(.add, mean, scalar(1e-6)))
            let inverse = reciprocal ? try builder.map(.reciprocal, root) : try builder.binary(.divide, scalar(1), root)
            let normed = try builder.binary(.multiply, x, inverse)
            builder.setOutput(try builder.binary(.multiply, normed, builder.typedConstant("w", random([8], seed: 10))))
            XCTAssertEqual(try check(builder.finish(), inputs: ["x": random([2, 3, 8], seed: 11)]), ["rms_norm"])
        }
    }

    func testMatMulByAConstantWithBiasIsALinear() throws {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [2, 3, 8])
        let product = try builder.matMul(x, builder.typedConstant("w", random([8, 6], seed: 5)))
        builder.setOutput(try builder.binary(.add, product, builder.typedConstant("b", random([6], seed: 6))))
        XCTAssertEqual(try check(builder.finish(), inputs: ["x": random([2, 3, 8], seed: 7)]), ["linear"])

        var variable = GraphBuilder()
        let a = variable.input("a", shape: [2, 3, 8]), w = variable.input("w", shape: [8, 6])
        variable.setOutput(try variable.matMul(a, w))
        let inputs = try ["a": random([2, 3, 8], seed: 8), "w": random([8, 6], seed: 9)]
        XCTAssertEqual(try check(variable.finish(), inputs: inputs), ["mat_mul"], "a weight that is an input stays a MatMul")
    }

    /// Found by `make fuzz-graphs`: a [B, 1, 1] constant added to a MatMul's [B, 1, N] output has
    /// as many elements as a bias when B == N, but holds one value per batch item: it is no bias.
    /// Nor is such a constant an RMSNorm weight.
    func testAConstantOfTheBiasesSizeButAnotherShapeIsNoBias() throws {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [5, 1, 2])
        let product = try builder.matMul(x, builder.typedConstant("w", random([2, 5], seed: 12)))
        builder.setOutput(try builder.binary(.add, product, builder.typedConstant("b", random([5, 1, 1], seed: 13))))
        let ops = try check(builder.finish(), inputs: ["x": random([5, 1, 2], seed: 14)])
        XCTAssertEqual(ops, ["linear", "add"], "a [5, 1, 1] addend stays an add after the linear")

        var scaled = GraphBuilder()
        let y = scaled.input("y", shape: [4, 1, 4])
        let two = try scaled.typedConstant("two", Tensor(shape: [], floats: [2]))
        let epsilon = try scaled.typedConstant("eps", Tensor(shape: [], floats: [1e-6]))
        let mean = try scaled.reduce(.mean, scaled.binary(.power, y, two), axes: [-1], keepDims: true)
        let inverse = try scaled.map(.reciprocal, scaled.map(.sqrt, scaled.binary(.add, mean, epsilon)))
        let normed = try scaled.binary(.multiply, y, inverse)
        scaled.setOutput(try scaled.binary(.multiply, normed, scaled.typedConstant("w", random([4, 1, 1], seed: 15))))
        let normOps = try check(scaled.finish(), inputs: ["y": random([4, 1, 4], seed: 16)])
        XCTAssertEqual(normOps.last, "multiply", "a [4, 1, 1] factor is no RMSNorm weight: \(normOps)")
    }

    /// Tokens [B, N, C] moved to a grid, a depthwise-separable convolution, and back, as a 3D
    /// DiT exports it (`grid` of one to three axes; `dilation` 2 is a near miss: same shapes,
    /// other neighbours).
    private func tokenConvolutionGraph(grid: [Int], pointwise: Bool, dilation: Int = 1) throws -> Graph {
        let (batch, channels, outputs) = (2, 6, 5)
        let tokens = grid.reduce(1, *), kernel = grid.map { _ in 3 }
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [batch, tokens, channels])
        let volume = try builder.reshape(builder.transpose(x, permutation: [0, 2, 1]), to: [batch, channels] + grid)
        let ones = grid.map { _ in 1 }, zeros = grid.map { _ in 0 }
        var convolved = try builder.convolution(
            volume, weight: builder.typedConstant("dw.weight", random([channels, 1] + kernel, seed: 20)),
            bias: builder.typedConstant("dw.bias", random([channels], seed: 21)),
            geometry: ConvolutionGeometry(strides: ones, dilations: ones.map { $0 * dilation },
                                          padsBefore: ones.map { $0 * dilation }, padsAfter: ones.map { $0 * dilation },
                                          groups: channels))
        if pointwise {
            convolved = try builder.convolution(
                convolved, weight: builder.typedConstant("pw.weight", random([outputs, channels] + ones, seed: 22)),
                bias: builder.typedConstant("pw.bias", random([outputs], seed: 23)),
                geometry: ConvolutionGeometry(strides: ones, dilations: ones, padsBefore: zeros, padsAfter: zeros,
                                              groups: 1))
        }
        let width = pointwise ? outputs : channels
        builder.setOutput(try builder.transpose(builder.reshape(convolved, to: [batch, width, tokens]), permutation: [0, 2, 1]))
        return builder.finish()
    }

    func testADepthwiseSeparableConvolutionOfTokensRunsWhereTheTokensAre() throws {
        let volume = try check(tokenConvolutionGraph(grid: [2, 3, 4], pointwise: true),
                               inputs: ["x": random([2, 24, 6], seed: 24)])
        XCTAssertEqual(volume, ["token_depthwise_convolution", "linear"])
        let plane = try check(tokenConvolutionGraph(grid: [3, 5], pointwise: false), inputs: ["x": random([2, 15, 6], seed: 25)])
        XCTAssertEqual(plane, ["token_depthwise_convolution"])
        let dilated = try check(tokenConvolutionGraph(grid: [3, 5], pointwise: false, dilation: 2),
                                inputs: ["x": random([2, 15, 6], seed: 26)])
        XCTAssertTrue(dilated.contains("convolution"), "a dilated convolution keeps its primitives: \(dilated)")
    }

    /// x [rows, 16] -> a Linear to 2 x `width` features -> GEGLU. `exposed` also makes the projection an output
    /// (so it must exist whole); `lora` gives the Linear a rank-2 side path.
    private func feedForwardGraph(rows: Int, width: Int, layout: WeightLayout, exposed: Bool = false,
                                  lora: AdapterWeights? = nil) throws -> Graph {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [rows, 16])
        let weightShape = layout == .outputsByInputs ? [2 * width, 16] : [16, 2 * width]
        let projection = try builder.linear(x, weight: builder.constant("proj.weight", random(weightShape, seed: 30)),
                                            bias: builder.constant("proj.bias", random([2 * width], seed: 31)),
                                            layout: layout)
        builder.setOutput(try builder.geglu(projection))
        if exposed { builder.addOutput(projection, name: "projection") }
        var graph = builder.finish()
        if let lora {
            let path = try LowRankPath(down: random([2, 16], seed: 32), up: random([2 * width, 2], seed: 33), slot: 0,
                                       scale: 0.5, downName: "proj.lora_A", upName: "proj.lora_B")
            graph = try LoRAPass(paths: ["proj.weight": [path]], weights: lora).apply(to: graph)
        }
        return graph
    }

    func testAProjectionOnlyItsGatingReadsRunsInChunksWithTheSameValues() throws {
        // 5,000 rows of 1,024 projected features: three chunks of GEGLUProjectionStep's 8 MB.
        let (rows, width) = (5000, 512)
        let inputs = try ["x": random([rows, 16], seed: 34)]
        for (layout, precision) in [(WeightLayout.outputsByInputs, PackedWeights.Precision.float32),
                                    (.inputsByOutputs, .float32), (.outputsByInputs, .bfloat16)] {
            let fused = try Executable(graph: feedForwardGraph(rows: rows, width: width, layout: layout),
                                       packedWeights: PackedWeights(precision: precision))
            let whole = try Executable(graph: feedForwardGraph(rows: rows, width: width, layout: layout, exposed: true),
                                       packedWeights: PackedWeights(precision: precision))
            let what = "\(layout), \(precision)"
            XCTAssertEqual(fused.graph.nodes.map(\.operation.name), ["geglu_projection"], what)
            XCTAssertEqual(whole.graph.nodes.map(\.operation.name), ["linear", "geglu"], what)
            // Bit for bit where Nodus' own GEMM runs; OpenBLAS (the baseline level) blocks by row count.
            let chunked = try fused.run(inputs).floatArray(), reference = try whole.runAll(inputs)[0].floatArray()
            let scale = reference.map { abs($0) }.max() ?? 1
            let error = zip(chunked, reference).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertEqual(chunked.count, reference.count, what)
            XCTAssertLessThan(error / scale, 1e-6, "chunked and whole projections differ by \(error / scale): \(what)")
            // The whole projection (20 MB, twice the output) gives way to one 8 MB chunk of scratch.
            XCTAssertLessThan(fused.plan.arenaByteCount, whole.plan.arenaByteCount - rows * width * 4, what)
        }
    }

    func testAProjectionWithALoRASidePathKeepsItsLinear() throws {
        let strengths = AdapterWeights()
        strengths.set([0.8])
        let graph = try feedForwardGraph(rows: 6, width: 4, layout: .outputsByInputs, lora: strengths)
        let executable = try Executable(graph: graph)
        XCTAssertEqual(executable.graph.nodes.map(\.operation.name), ["linear", "low_rank_update", "geglu"])
    }

    func testAnEmptyBatchRunsThroughAChunkedProjection() throws {
        let empty = try Executable(graph: feedForwardGraph(rows: 0, width: 4, layout: .outputsByInputs))
        XCTAssertEqual(empty.graph.nodes.map(\.operation.name), ["geglu_projection"])
        XCTAssertEqual(try empty.run(["x": Tensor(zeros: [0, 16])]).shape, [0, 4])
    }

    /// x [rows, 300] -> a Linear to 70 features (+ bias) -> `activation`. `exposed` also makes the
    /// product an output, so it must be stored bare.
    private func activatedGraph(_ activation: NodusGraph.Operation, rows: Int, exposed: Bool = false) throws -> Graph {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [rows, 300])
        let product = try builder.linear(x, weight: builder.constant("fc.weight", random([70, 300], seed: 40)),
                                         bias: builder.constant("fc.bias", random([70], seed: 41)))
        builder.setOutput(builder.unary(activation, product))
        if exposed { builder.addOutput(product, name: "product") }
        return builder.finish()
    }

    func testALinearOnlyItsActivationReadsAppliesItAsItStores() throws {
        // 300 deep: more than one 256-deep block where products go block by block (AVX2), so the
        // activation must wait for the last; 70 columns and 101 rows end in partial tiles.
        let inputs = try ["x": random([101, 300], seed: 42)]
        for (activation, name) in [(NodusGraph.Operation.geluTanh, "linear_gelu_tanh"), (.silu, "linear_silu"),
                                   (.quickGELU, "linear_quick_gelu")] {
            for precision in [PackedWeights.Precision.float32, .bfloat16] {
                let fused = try Executable(graph: activatedGraph(activation, rows: 101),
                                           packedWeights: PackedWeights(precision: precision))
                let apart = try Executable(graph: activatedGraph(activation, rows: 101, exposed: true),
                                           packedWeights: PackedWeights(precision: precision))
                let what = "\(name), \(precision)"
                XCTAssertEqual(fused.graph.nodes.map(\.operation.name), [name], what)
                XCTAssertEqual(apart.graph.nodes.map(\.operation.name), ["linear", activation.name], what)
                let together = try fused.run(inputs).floatArray(), reference = try apart.runAll(inputs)[0].floatArray()
                XCTAssertEqual(together.count, reference.count, what)
                if CPULevel.inUse >= .avx2 {
                    // The tile epilogue computes the activation kernels' formula, vector for vector.
                    XCTAssertEqual(together, reference, "fused and apart differ: \(what)")
                } else {
                    let scale = reference.map { abs($0) }.max() ?? 1
                    let error = zip(together, reference).map { abs($0 - $1) }.max() ?? .infinity
                    XCTAssertLessThan(error / scale, 1e-6, what)
                }
            }
        }
    }

    func testALinearWithALoRASidePathKeepsItsActivationApart() throws {
        let strengths = AdapterWeights()
        strengths.set([0.8])
        var graph = try activatedGraph(.geluTanh, rows: 3)
        let path = try LowRankPath(down: random([2, 300], seed: 43), up: random([70, 2], seed: 44), slot: 0,
                                   scale: 0.5, downName: "fc.lora_A", upName: "fc.lora_B")
        graph = try LoRAPass(paths: ["fc.weight": [path]], weights: strengths).apply(to: graph)
        let executable = try Executable(graph: graph)
        XCTAssertEqual(executable.graph.nodes.map(\.operation.name), ["linear", "low_rank_update", "gelu_tanh"])
    }
}
