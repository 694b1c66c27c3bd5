import NodusCore
import NodusGraph

/// Plans built so far, by graph and input shape: a model that sees the same shapes again
/// (every sampling step) reuses its plan and arena. The plans' activations stay within
/// `budget`: a new plan that does not fit beside the cached ones makes room by dropping them.
struct ExecutableCache {
    /// Which of a model's graphs a plan runs (a VAE has a decoder and an encoder), and for what shape.
    private struct Key: Hashable {
        let graph: String
        let shape: [Int]
    }

    private var plans: [Key: Executable] = [:]
    /// Keep a few shapes: each plan holds an activation arena.
    private let capacity = 4
    /// The LoRA generation the plans were built for.
    private var generation = 0
    /// Weights packed once, for every plan of the model.
    let packedWeights: PackedWeights
    /// What the cached plans' activations may take together.
    let budget: MemoryBudget

    /// - Parameter packedWeights: shared by every run context of one model.
    init(packedWeights: PackedWeights, budget: MemoryBudget = .machine) {
        self.packedWeights = packedWeights
        self.budget = budget
    }

    /// The plan for `shape` of `graph`, built anew when none exists or the model's LoRA
    /// `generation` changed since the cached ones were built.
    /// - Throws: `outOfMemory`, before allocating, when the plan alone does not fit the budget
    ///   or the machine.
    mutating func executable(for shape: [Int], graph: String = "", generation: Int = 0,
                             build: () throws -> Graph) throws -> Executable {
        if generation != self.generation {
            plans.removeAll()
            packedWeights.forgetUnheldWeights()
            self.generation = generation
        }
        let key = Key(graph: graph, shape: shape)
        if let cached = plans[key] { return cached }
        if plans.count >= capacity { plans.removeAll() }
        let built = try build()
        let executable: Executable
        do {
            let held = plans.values.reduce(0) { $0 + $1.byteCount }
            executable = try Executable(graph: built, packedWeights: packedWeights, budget: budget.less(held))
        } catch let error as NodusError where error.code == .outOfMemory && !plans.isEmpty {
            plans.removeAll()  // the cached plans' arenas make room for the new one
            executable = try Executable(graph: built, packedWeights: packedWeights, budget: budget)
        }
        plans[key] = executable
        return executable
    }
}
