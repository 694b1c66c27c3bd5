import NodusGraph

/// Plans built so far, by input shape: a model that sees the same shapes again
/// (every sampling step) reuses its plan and arena.
struct ExecutableCache {
    private var plans: [[Int]: Executable] = [:]
    /// Keep a few shapes: each plan holds an activation arena.
    private let capacity = 4
    /// The LoRA generation the plans were built for.
    private var generation = 0
    /// Weights packed once, for every plan of the model.
    let packedWeights: PackedWeights

    /// - Parameter packedWeights: shared by every run context of one model.
    init(packedWeights: PackedWeights) {
        self.packedWeights = packedWeights
    }

    /// The plan for `shape`, built anew when none exists or the model's LoRA
    /// `generation` changed since the cached ones were built.
    mutating func executable(for shape: [Int], generation: Int = 0, build: () throws -> Graph) throws -> Executable {
        if generation != self.generation {
            plans.removeAll()
            packedWeights.forgetUnheldWeights()
            self.generation = generation
        }
        if let cached = plans[shape] { return cached }
        let executable = try Executable(graph: try build(), packedWeights: packedWeights)
        if plans.count >= capacity { plans.removeAll() }
        plans[shape] = executable
        return executable
    }
}
