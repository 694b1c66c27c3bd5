import NodusFormats
import NodusGraph

extension ExecutionProfile {
    /// The profile as `nodus_model_profile` returns it: {"rounds",
    /// "round_seconds": [wall time of each round], "seconds": their median,
    /// "step_seconds": sum of the steps' medians, "flops", "steps": step count,
    /// "kinds": [{"kind", "seconds", "calls", "share", "flops", "gflops"}],
    /// "layers": [{"layer", "kind", "seconds", "calls", "share", "flops",
    /// "gflops"}]}, kinds and layers the slowest first; shares are of
    /// "step_seconds" and sum to 1.
    public var json: JSONValue {
        let allSeconds = stepSeconds
        func entry(_ total: Total, key: String) -> JSONValue {
            var members: [String: JSONValue] = [
                key: .string(total.name),
                "seconds": .number(total.seconds),
                "calls": .number(Double(total.calls)),
                "share": .number(allSeconds > 0 ? total.seconds / allSeconds : 0),
                "flops": .number(Double(total.flops)),
                "gflops": .number(total.gigaflopsPerSecond),
            ]
            if key == "layer" { members["kind"] = .string(total.kind) }
            return .object(members)
        }
        return .object([
            "rounds": .number(Double(rounds)),
            "round_seconds": .array(roundSeconds.map { .number($0) }),
            "seconds": .number(medianRoundSeconds),
            "step_seconds": .number(allSeconds),
            "flops": .number(Double(steps.reduce(0) { $0 + $1.flops })),
            "steps": .number(Double(steps.count)),
            "kinds": .array(kinds.map { entry($0, key: "kind") }),
            "layers": .array(layers.map { entry($0, key: "layer") }),
        ])
    }
}
