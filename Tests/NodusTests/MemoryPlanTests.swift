import XCTest
import NodusCore
import NodusGraph

/// The memory planner: buffers are reused after their last reader, element-wise
/// ops run in place, and pinned values never share memory with live ones.
final class MemoryPlanTests: XCTestCase {
    /// x -> silu -> gelu -> linear -> add(., x) over [4, 64] floats.
    private func chainGraph() throws -> (Graph, [ValueID]) {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [4, 64])
        let a = builder.unary(.silu, x)
        let b = builder.unary(.geluTanh, a)
        let weight = try builder.constant("w", try Tensor(zeros: [64, 64]))
        let c = try builder.linear(b, weight: weight, bias: nil)
        let d = try builder.add(c, x)
        builder.setOutput(d)
        return (builder.finish(), [x, a, b, c, d])
    }

    func testChainReusesBuffersAndPinsInputs() throws {
        let (graph, values) = try chainGraph()
        let plan = MemoryPlan(graph: graph)
        let bytes = 4 * 64 * 4
        let offset = { (value: ValueID) in plan.offsets[value.index] ?? -1 }
        let (x, a, b, c, d) = (values[0], values[1], values[2], values[3], values[4])
        // x is read again at the end, so silu cannot overwrite it; gelu can overwrite silu's result.
        XCTAssertNotEqual(offset(a), offset(x))
        XCTAssertEqual(offset(b), offset(a), "gelu should run in place over silu's dead output")
        XCTAssertNotEqual(offset(c), offset(b), "linear is not in-place")
        // The output is pinned: it may not take x's buffer even though add is its last reader.
        XCTAssertNotEqual(offset(d), offset(x))
        XCTAssertLessThan(plan.arenaByteCount, 5 * bytes, "five values should not need five buffers:\n\(plan)")
        XCTAssertTrue(plan.description.contains("gelu_tanh"), plan.description)
    }

    /// A node's scratch is live only while the node runs: it takes memory a dead value
    /// left, never that of the node's own input or output, and it adds nothing to the peak.
    func testScratchTakesTheMemoryOfDeadValues() throws {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [4, 16])
        let wide = try builder.linear(x, weight: builder.constant("up", Tensor(zeros: [1024, 16])), bias: nil)
        let narrow = try builder.linear(wide, weight: builder.constant("down", Tensor(zeros: [16, 1024])), bias: nil)
        let y = try builder.linear(narrow, weight: builder.constant("out", Tensor(zeros: [16, 16])), bias: nil)
        builder.setOutput(y)
        let graph = builder.finish()
        let scratch = 8 << 10  // half of `wide` (16 KB), which is dead by the last node
        let plan = MemoryPlan(graph: graph, scratchByteCounts: [0, 0, scratch])
        XCTAssertEqual(plan.arenaByteCount, MemoryPlan(graph: graph).arenaByteCount, "\(plan)")
        let offset = try XCTUnwrap(plan.scratchOffsets[2])
        XCTAssertNil(plan.scratchOffsets[0])
        for value in [x, narrow, y] {
            let start = try XCTUnwrap(plan.offsets[value.index])
            XCTAssertTrue(start >= offset + scratch || offset >= start + graph[value].byteCount,
                          "the scratch overlaps \(value):\n\(plan)")
        }
    }

    func testExecutableRunsThePlan() throws {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [2, 3])
        let y = try builder.add(builder.unary(.scale(2), x), x)
        builder.setOutput(y)
        let executable = try Executable(graph: builder.finish())
        let result = try executable.run(["x": try Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])])
        XCTAssertEqual(result.floatArray(), [3, 6, 9, 12, 15, 18])
        XCTAssertThrowsError(try executable.run(["x": try Tensor(zeros: [3, 2])])) { error in
            XCTAssertTrue("\(error)".contains("input 'x'"), "\(error)")
        }
    }
}
