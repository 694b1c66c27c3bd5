import NodusCore

/// A graph lowered to a flat list of kernels over one preallocated arena.
/// Build it once per input shape; `run` copies the inputs in, runs every step
/// and copies the output out, with no allocation in between.
public final class Executable {
    public let graph: Graph
    public let plan: MemoryPlan
    private let arena: Storage
    private let scratch: Storage
    private let steps: [any Kernel]
    /// Class-label style inputs and the table size their values must index.
    private let indexLimits: [(input: String, rows: Int, table: String)]

    /// `packedWeights` (kept by the model across plans) lets products read
    /// their weights packed once instead of packing them on every call.
    public init(graph: Graph, packedWeights: PackedWeights? = nil) throws {
        guard let output = graph.output else { throw NodusError(.internal, "graph has no output") }
        let plan = MemoryPlan(graph: graph)
        let arena = try Storage(zeroedByteCount: plan.arenaByteCount)
        var lowering = Lowering(graph: graph, plan: plan, arena: arena.bytes, packedWeights: packedWeights)
        let steps = try graph.nodes.map { try lowering.kernel(for: $0) }
        let scratchCount = steps.map(\.scratchCount).max() ?? 0
        self.graph = graph
        self.plan = plan
        self.arena = arena
        self.scratch = try Storage(zeroedByteCount: scratchCount * 4)
        self.steps = steps
        self.indexLimits = lowering.indexLimits
        _ = output
    }

    public var inputNames: [String] { graph.inputs.keys.sorted() }

    /// Runs the graph. Inputs must match the graph's input shapes and dtypes
    /// exactly (the model front ends convert and check user input first).
    public func run(_ inputs: [String: Tensor]) throws -> Tensor {
        for (name, value) in graph.inputs {
            guard let tensor = inputs[name] else { throw NodusError.invalidArgument("missing input '\(name)'") }
            let info = graph[value]
            guard tensor.shape == info.shape, tensor.dtype == info.dtype else {
                throw NodusError.shape("input '\(name)' must be \(info.dtype.name) \(info.shape), got \(tensor.dtype.name) \(tensor.shape)")
            }
        }
        for limit in indexLimits {
            for index in inputs[limit.input]?.int64Array() ?? [] where index < 0 || index >= limit.rows {
                throw NodusError.invalidArgument("\(limit.input) value \(index) is out of range: '\(limit.table)' has \(limit.rows) rows")
            }
        }
        for (name, value) in graph.inputs {
            guard let tensor = inputs[name], let offset = plan.offsets[value.index] else { continue }
            (arena.bytes + offset).copyMemory(from: tensor.bytes, byteCount: tensor.byteCount)
        }
        let scratchPointer = scratch.bytes.assumingMemoryBound(to: Float.self)
        for step in steps { step.run(scratch: scratchPointer) }
        guard let output = graph.output, let offset = plan.offsets[output.index] else {
            throw NodusError(.internal, "graph output has no buffer")
        }
        let info = graph[output]
        let result = try Tensor(zeros: info.shape, dtype: info.dtype)
        result.bytes.copyMemory(from: arena.bytes + offset, byteCount: info.byteCount)
        return result
    }

    /// Runs the graph and reports the seconds spent in each kernel kind.
    public func profile(_ inputs: [String: Tensor]) throws -> [(name: String, seconds: Double, calls: Int)] {
        _ = try run(inputs)  // validates and loads the inputs
        var totals: [String: (Double, Int)] = [:]
        let scratchPointer = scratch.bytes.assumingMemoryBound(to: Float.self)
        for step in steps {
            let start = Clock.seconds()
            step.run(scratch: scratchPointer)
            let elapsed = Clock.seconds() - start
            totals[step.name, default: (0, 0)].0 += elapsed
            totals[step.name, default: (0, 0)].1 += 1
        }
        return totals.map { (name: $0.key, seconds: $0.value.0, calls: $0.value.1) }.sorted { $0.seconds > $1.seconds }
    }
}
