import XCTest
@testable import NodusModels
import NodusCore
import NodusGraph

/// Plans that would not fit fail with `outOfMemory` before they allocate: past the machine's
/// available memory, or past a context's budget, which a plan cache honours by dropping its other
/// plans first.
final class MemoryBudgetTests: XCTestCase {
    /// x [rows, 1] + y [1, columns]: an output of rows * columns floats from two small inputs.
    private func outerSum(rows: Int, columns: Int) throws -> Graph {
        var builder = GraphBuilder()
        let x = builder.input("x", shape: [rows, 1])
        let y = builder.input("y", shape: [1, columns])
        builder.setOutput(try builder.binary(.add, x, y))
        return builder.finish()
    }

    func testAPlanBeyondTheMachineFailsBeforeAllocating() throws {
        // 2^16 x 2^20 floats: 256 GB of output, more than any machine of this project has.
        let graph = try outerSum(rows: 1 << 16, columns: 1 << 20)
        XCTAssertThrowsError(try Executable(graph: graph)) { error in
            XCTAssertEqual((error as? NodusError)?.code, .outOfMemory)
            let message = (error as? NodusError)?.message ?? ""
            XCTAssertTrue(message.contains("available") && message.contains("'x' [65536, 1]"), message)
        }
        XCTAssertNotNil(System.availableMemory())
    }

    func testABudgetBoundsOnePlanAndRefusesNegativeSizes() throws {
        let graph = try outerSum(rows: 64, columns: 64)
        let arena = MemoryPlan(graph: graph).arenaByteCount
        XCTAssertThrowsError(try Executable(graph: graph, budget: MemoryBudget(bytes: arena - 1))) { error in
            XCTAssertEqual((error as? NodusError)?.code, .outOfMemory)
            XCTAssertTrue((error as? NodusError)?.message.contains("memory budget") ?? false, "\(error)")
        }
        let executable = try Executable(graph: graph, budget: MemoryBudget(bytes: arena))
        XCTAssertLessThanOrEqual(executable.byteCount, arena)
        XCTAssertThrowsError(try MemoryBudget(bytes: -1))
    }

    func testACacheDropsItsPlansToMakeRoomAndRunsEachCorrectly() throws {
        let small = try outerSum(rows: 32, columns: 32), large = try outerSum(rows: 64, columns: 64)
        let largeBytes = MemoryPlan(graph: large).arenaByteCount
        // Room for the large plan alone, not beside the small one.
        var cache = ExecutableCache(packedWeights: PackedWeights(precision: .float32),
                                    budget: try MemoryBudget(bytes: largeBytes))
        let x = try Tensor(shape: [32, 1], floats: (0..<32).map(Float.init))
        let y = try Tensor(shape: [1, 32], floats: (0..<32).map { Float($0) * 100 })
        for round in 0..<2 {
            let first = try cache.executable(for: [32]) { small }
            XCTAssertEqual(try first.run(["x": x, "y": y]).floatArray()[33], 101, "round \(round)")
            let second = try cache.executable(for: [64]) { large }
            let wide = try second.run(["x": try Tensor(zeros: [64, 1]), "y": try Tensor(zeros: [1, 64])])
            XCTAssertEqual(wide.shape, [64, 64])
        }
        XCTAssertThrowsError(try cache.executable(for: [128]) { try outerSum(rows: 128, columns: 128) }) { error in
            XCTAssertEqual((error as? NodusError)?.code, .outOfMemory)
        }
    }
}
