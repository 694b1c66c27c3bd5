import NodusCore

/// A graph lowered to a flat list of kernels over one preallocated arena
/// (after `LinearReaderFusion`, which fuses Linears with their readers). Build it once per
/// input shape; `run` copies the inputs in, runs every step and copies the
/// output out, with no allocation in between.
public final class Executable {
    public let graph: Graph
    public let plan: MemoryPlan
    private let arena: Storage
    private let steps: [any Kernel]
    /// Each step's scratch, in the arena (see `MemoryPlan`).
    private let scratch: [UnsafeMutablePointer<Float>]
    /// Class-label style inputs and the table size their values must index.
    private let indexLimits: [(input: String, rows: Int, table: String)]

    /// Bytes of activations this plan holds: its arena, scratch included.
    public var byteCount: Int { arena.byteCount }

    /// `packedWeights` (kept by the model across plans) lets products read
    /// their weights packed once instead of packing them on every call.
    /// - Throws: `outOfMemory`, before allocating, when the arena would exceed
    ///   `budget` or the memory the machine has left.
    public init(graph: Graph, packedWeights: PackedWeights? = nil, budget: MemoryBudget = .machine) throws {
        guard !graph.outputs.isEmpty else { throw NodusError(.internal, "graph has no output") }
        // Last of the passes: it needs the LoRA side paths in place (see the pass).
        let graph = LinearReaderFusion().apply(to: graph)
        // Only a failure names the plan.
        func what() -> String {
            let inputShapes = graph.inputs.sorted { $0.key < $1.key }.map { "'\($0.key)' \(graph[$0.value].shape)" }
            return "the plan for " + (inputShapes.isEmpty ? "this graph" : inputShapes.joined(separator: ", "))
        }
        // A kernel knows its scratch only once made (a Winograd convolution's tiles, say), so a first
        // lowering, over the values' plan and memory never touched, finds it (weights it packs stay
        // packed for the second). Then each step's scratch is planned where it runs, beside the
        // values live there, not on top of the arena's peak.
        let values = MemoryPlan(graph: graph)
        try budget.admit(values.arenaByteCount, planned: values.arenaByteCount, for: what())
        let scratchByteCounts = try withExtendedLifetime(Storage(uninitializedByteCount: values.arenaByteCount)) { draft in
            var lowering = Lowering(graph: graph, plan: values, arena: draft.bytes, packedWeights: packedWeights)
            return try graph.nodes.map { node in
                let (bytes, overflow) = try lowering.kernel(for: node).scratchCount.multipliedReportingOverflow(by: 4)
                guard !overflow else { throw NodusError(.outOfMemory, "\(what()) needs more scratch memory than can be addressed") }
                return bytes
            }
        }
        let plan = MemoryPlan(graph: graph, scratchByteCounts: scratchByteCounts)
        try budget.admit(plan.arenaByteCount, planned: plan.arenaByteCount, for: what())
        let arena = try Storage(zeroedByteCount: plan.arenaByteCount)
        var lowering = Lowering(graph: graph, plan: plan, arena: arena.bytes, packedWeights: packedWeights)
        self.steps = try graph.nodes.map { try lowering.kernel(for: $0) }
        self.scratch = plan.scratchOffsets.map { (arena.bytes + ($0 ?? 0)).assumingMemoryBound(to: Float.self) }
        self.graph = graph
        self.plan = plan
        self.arena = arena
        self.indexLimits = lowering.indexLimits
    }

    public var inputNames: [String] { graph.inputs.keys.sorted() }

    /// Runs the graph. Inputs must match the graph's input shapes and dtypes
    /// exactly (the model front ends convert and check user input first).
    public func run(_ inputs: [String: Tensor]) throws -> Tensor {
        try runAll(inputs)[0]
    }

    /// Runs the graph and returns every output, in `graph.outputs` order.
    public func runAll(_ inputs: [String: Tensor]) throws -> [Tensor] {
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
        for (step, scratch) in zip(steps, scratch) { step.run(scratch: scratch) }
        return try graph.outputs.map { output in
            let info = graph[output.value]
            let result = try Tensor(zeros: info.shape, dtype: info.dtype)
            switch info.origin {
            case .constant(_, let tensor):
                result.bytes.copyMemory(from: tensor.bytes, byteCount: info.byteCount)
            case .input, .node:
                guard let offset = plan.offsets[output.value.index] else {
                    throw NodusError(.internal, "graph output '\(output.name)' has no buffer")
                }
                result.bytes.copyMemory(from: arena.bytes + offset, byteCount: info.byteCount)
            }
            return result
        }
    }

    /// Times every step over `rounds` runs after one untimed warm-up run (which
    /// checks and loads the inputs, and touches the arena and packed weights).
    /// Each step's time is its median over the rounds.
    /// - Throws: as `run`; `NodusError.invalidArgument` when `rounds` < 1.
    public func profile(_ inputs: [String: Tensor], rounds: Int) throws -> ExecutionProfile {
        guard rounds >= 1 else { throw NodusError.invalidArgument("rounds must be at least 1, got \(rounds)") }
        _ = try run(inputs)  // the warm-up; the inputs stay in the arena for the rounds
        // timings[round * steps.count + step], allocated before the clock starts.
        var timings = [Double](repeating: 0, count: rounds * steps.count)
        var roundSeconds = [Double](repeating: 0, count: rounds)
        for round in 0..<rounds {
            let roundStart = Clock.seconds()
            var start = roundStart
            for (index, step) in steps.enumerated() {
                step.run(scratch: scratch[index])
                let end = Clock.seconds()
                timings[round * steps.count + index] = end - start
                start = end
            }
            roundSeconds[round] = start - roundStart
        }
        let layers = graph.layerNames
        let profiled = steps.indices.map { index in
            ExecutionProfile.Step(kind: steps[index].name, layer: layers[index], flops: steps[index].flops,
                                  seconds: ExecutionProfile.median((0..<rounds).map { timings[$0 * steps.count + index] }))
        }
        return ExecutionProfile(rounds: rounds, roundSeconds: roundSeconds, steps: profiled)
    }
}
