import XCTest
import NodusCore
@testable import NodusGraph

/// Profiles of a plan: layer names by the rules of `Graph.layerNames`, FLOPs,
/// and the totals per kind and layer. No assertion depends on timings.
final class ExecutionProfileTests: XCTestCase {
    /// Two blocks of: q/k/v projections of the residual stream, attention, an
    /// output projection and a residual add; the first fed by a patchify of the input.
    private func twoBlockGraph() throws -> Graph {
        var g = GraphBuilder()
        let width = 8
        func linear(_ x: ValueID, _ name: String) throws -> ValueID {
            try g.linear(x, weight: g.constant(name + ".weight", try Tensor(zeros: [width, width])),
                         bias: g.constant(name + ".bias", try Tensor(zeros: [width])))
        }
        let image = g.input("sample", shape: [1, 2, 4, 4])
        var hidden = try linear(try g.patchify(image, patch: 2), "pos_embed.proj")
        for block in 0..<2 {
            let prefix = "transformer_blocks.\(block).attn1."
            let attended = try g.attention(query: linear(hidden, prefix + "to_q"), key: linear(hidden, prefix + "to_k"),
                                           value: linear(hidden, prefix + "to_v"), heads: 2)
            hidden = try g.add(hidden, linear(attended, prefix + "to_out.0"))
        }
        g.setOutput(g.unary(.silu, hidden))
        return g.finish()
    }

    func testLayerNamesFollowDiffusersModules() throws {
        let graph = try twoBlockGraph()
        let names = Dictionary(grouping: zip(graph.nodes, graph.layerNames), by: { $0.0.operation.name })
            .mapValues { $0.map(\.1) }
        XCTAssertEqual(names["patchify"], ["pos_embed.proj"], "a step fed by graph inputs takes its reader's module")
        XCTAssertEqual(names["linear"]?.prefix(5), ["pos_embed.proj", "transformer_blocks.0.attn1.to_q",
                                                     "transformer_blocks.0.attn1.to_k", "transformer_blocks.0.attn1.to_v",
                                                     "transformer_blocks.0.attn1.to_out.0"])
        XCTAssertEqual(names["attention"], ["transformer_blocks.0.attn1", "transformer_blocks.1.attn1"],
                       "attention belongs to the module holding its projections")
        // The residual stream comes from another block (or pos_embed): it is left out.
        XCTAssertEqual(names["add"], ["transformer_blocks.0.attn1.to_out.0", "transformer_blocks.1.attn1.to_out.0"])
        XCTAssertEqual(names["silu"], ["transformer_blocks.1.attn1.to_out.0"])
    }

    func testSharedModules() {
        XCTAssertEqual(Graph.module(ofConstant: "down_blocks.0.resnets.1.conv1.weight"), "down_blocks.0.resnets.1.conv1")
        XCTAssertEqual(Graph.module(ofConstant: "scale"), "scale")
        XCTAssertEqual(Graph.sharedModule(["a.attn1.to_q", "a.attn1.to_k"]), "a.attn1")
        XCTAssertEqual(Graph.sharedModule(["a.to_q.lora_A.x", "a.to_q.lora_B.x"]), "a.to_q")
        XCTAssertEqual(Graph.sharedModule(["a.b", "a.b"]), "a.b")
        XCTAssertNil(Graph.sharedModule(["transformer_blocks.0.ff", "transformer_blocks.1.ff"]), "a numbered list")
        XCTAssertNil(Graph.sharedModule(["conv_in", "down_blocks.0.resnets.0.conv2"]), "the whole model")
        XCTAssertNil(Graph.sharedModule([]))
    }

    func testProfileCountsEveryStepAndItsFlops() throws {
        let executable = try Executable(graph: try twoBlockGraph())
        let sample = try Tensor(shape: [1, 2, 4, 4], floats: (0..<32).map { Float($0) / 32 })
        let expected = try executable.run(["sample": sample])
        let profile = try executable.profile(["sample": sample], rounds: 3)
        XCTAssertEqual(profile.rounds, 3)
        XCTAssertEqual(profile.roundSeconds.count, 3)
        XCTAssertEqual(profile.steps.count, executable.graph.nodes.count)
        XCTAssertEqual(try executable.run(["sample": sample]).floatArray(), expected.floatArray())

        // 4 patches of 8 features: a Linear is 2 * 4 * 8 * 8; attention 2 products of 4 x 4 tokens x 4 per head.
        for step in profile.steps where step.kind == "linear" { XCTAssertEqual(step.flops, 2 * 4 * 8 * 8, step.layer) }
        for step in profile.steps where step.kind == "attention" { XCTAssertEqual(step.flops, 4 * 2 * 4 * 4 * 4) }
        for step in profile.steps where !["linear", "attention"].contains(step.kind) { XCTAssertEqual(step.flops, 0) }

        let kinds = profile.kinds
        XCTAssertEqual(Set(kinds.map(\.name)), ["patchify", "linear", "attention", "add", "silu"])
        XCTAssertEqual(kinds.first { $0.name == "linear" }?.calls, 9)
        XCTAssertEqual(kinds.map(\.calls).reduce(0, +), profile.steps.count)
        XCTAssertEqual(kinds.map(\.seconds), kinds.map(\.seconds).sorted(by: >))
        XCTAssertEqual(kinds.map(\.seconds).reduce(0, +), profile.stepSeconds, accuracy: 1e-12)
        let layers = profile.layers
        XCTAssertEqual(layers.map(\.calls).reduce(0, +), profile.steps.count)
        XCTAssertEqual(layers.filter { $0.name == "transformer_blocks.1.attn1.to_out.0" }.map(\.kind).sorted(),
                       ["add", "linear", "silu"])

        XCTAssertThrowsError(try executable.profile(["sample": sample], rounds: 0)) { error in
            XCTAssertTrue("\(error)".contains("rounds"), "\(error)")
        }
    }

    func testMedian() {
        XCTAssertEqual(ExecutionProfile.median([3, 1, 2]), 2)
        XCTAssertEqual(ExecutionProfile.median([4, 1, 3, 2]), 2.5)
        XCTAssertEqual(ExecutionProfile.median([]), 0)
    }
}
