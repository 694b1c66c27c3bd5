import NodusGraph

/// Plans built so far, by input shape: a model that sees the same shapes again
/// (every sampling step) reuses its plan and arena.
struct ExecutableCache {
    private var plans: [[Int]: Executable] = [:]
    /// Keep a few shapes: each plan holds an activation arena.
    private let capacity = 4

    mutating func executable(for shape: [Int], build: () throws -> Graph) throws -> Executable {
        if let cached = plans[shape] { return cached }
        let executable = try Executable(graph: try build())
        if plans.count >= capacity { plans.removeAll() }
        plans[shape] = executable
        return executable
    }
}
