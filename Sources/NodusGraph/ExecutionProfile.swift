/// Where the time of a plan goes: every step timed over several rounds, with
/// totals per kind of operation and per layer. Made by `Executable.profile`.
public struct ExecutionProfile: Sendable {
    /// One step of the plan.
    public struct Step: Sendable {
        /// The kernel's name (`linear`, `conv2d`, `attention`, `group_norm`, ...).
        public var kind: String
        /// The module it belongs to (see `Graph.layerNames`).
        public var layer: String
        /// Floating-point operations of one run, 2 per multiply-add (0 for steps that do no products).
        public var flops: Int
        /// The median over the rounds.
        public var seconds: Double
    }

    /// The steps of one kind, or of one kind in one layer.
    public struct Total: Sendable {
        /// The kind, or the layer for `layers`.
        public var name: String
        /// The kind, for `layers`; the same as `name` for `kinds`.
        public var kind: String
        /// Sum of the steps' median seconds.
        public var seconds: Double
        public var calls: Int
        public var flops: Int

        /// Billions of floating-point operations per second (0 without products or time).
        public var gigaflopsPerSecond: Double { seconds > 0 ? Double(flops) / seconds / 1e9 : 0 }
    }

    /// Timed rounds (one untimed warm-up ran before them).
    public var rounds: Int
    /// Wall time of each round's steps.
    public var roundSeconds: [Double]
    /// Every step, in execution order.
    public var steps: [Step]

    /// The median of `roundSeconds`.
    public var medianRoundSeconds: Double { ExecutionProfile.median(roundSeconds) }

    /// Sum of the steps' medians: what `kinds` and `layers` share out.
    public var stepSeconds: Double { steps.reduce(0) { $0 + $1.seconds } }

    /// Per kind of operation, the slowest first.
    public var kinds: [Total] { totals { ($0.kind, $0.kind) } }

    /// Per layer and kind of operation, the slowest first.
    public var layers: [Total] { totals { ($0.layer, $0.kind) } }

    private func totals(by key: (Step) -> (name: String, kind: String)) -> [Total] {
        var order: [String: Int] = [:]
        var result: [Total] = []
        for step in steps {
            let (name, kind) = key(step)
            let id = name + "\u{0}" + kind
            if let index = order[id] {
                result[index].seconds += step.seconds
                result[index].calls += 1
                result[index].flops += step.flops
            } else {
                order[id] = result.count
                result.append(Total(name: name, kind: kind, seconds: step.seconds, calls: 1, flops: step.flops))
            }
        }
        // Stable for ties: execution order.
        return result.enumerated().sorted { ($0.element.seconds, $1.offset) > ($1.element.seconds, $0.offset) }
            .map(\.element)
    }

    /// The middle value (the mean of the two middle ones for an even count); 0 when empty.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
