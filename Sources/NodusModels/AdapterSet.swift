import NodusCore
import NodusFormats
import NodusGraph

/// The LoRA adapters loaded into one model and their state, with the
/// semantics of diffusers' PEFT integration:
///
/// * `load` adds an adapter and makes it the only active one, at weight 1
///   (PEFT's `add_adapter` / `set_adapter`).
/// * `setActive(names, weights)` activates exactly those adapters; for every
///   targeted Linear, `y = W x + b + sum_i w_i s_i B_i (A_i x)` with
///   s_i = alpha / rank per layer. It only changes run-time weights: nothing
///   is rebuilt.
/// * `isEnabled = false` (disable_lora) runs the base model, keeping the set.
/// * fusing merges `lora_scale * w_i * s_i * B_i A_i` into copies of the
///   weights; a Linear with a merged adapter then runs no side paths (as a
///   merged PEFT layer does), and unfusing drops the copies, restoring the
///   mapped weights bit for bit.
final class AdapterSet {
    struct Adapter {
        var name: String
        var slot: Int
        var report: LoRAReport
        /// Paths by target weight name.
        var paths: [String: [(down: Tensor, up: Tensor, scale: Float)]]
    }

    private(set) var adapters: [Adapter] = []
    /// The active adapters, in the order they were set.
    private(set) var active: [String] = []
    /// Each loaded adapter's weight: 1 at load, then what set_adapters gave it last
    /// (kept while inactive, as PEFT keeps its scaling; fusing a named adapter uses it).
    private var weights: [String: Float] = [:]
    var isEnabled = true {
        didSet { publishWeights() }
    }
    /// Adapters merged into the weights, and the weights they changed.
    private(set) var fusedAdapters: [String] = []
    private(set) var fusedWeights: Set<String> = []
    let runtimeWeights = AdapterWeights()
    private var nextSlot = 0

    var names: [String] { adapters.map(\.name) }

    func adapter(named name: String) -> Adapter? { adapters.first { $0.name == name } }

    /// Adds `file` as adapter `name`, matched by `matcher`.
    /// - Throws: leaving the set unchanged, when the name is taken or the file does not fit.
    func load(_ file: LoRAFile, name: String, matcher: LoRAMatcher) throws -> LoRAReport {
        guard !name.isEmpty else { throw NodusError.invalidArgument("adapter_name must not be empty") }
        guard adapter(named: name) == nil else {
            throw NodusError.invalidArgument("an adapter named '\(name)' is already loaded (delete it first or choose another name)")
        }
        let match = try matcher.match(file)
        let report = LoRAReport(adapterName: name, format: file.format.rawValue, layerCount: file.layers.count,
                                matched: match.matched, unmatched: match.unmatched)
        adapters.append(Adapter(name: name, slot: nextSlot, report: report, paths: match.paths))
        nextSlot += 1
        weights[name] = 1
        active = [name]
        publishWeights()
        return report
    }

    /// Activates exactly `names` with `weights`.
    func setActive(_ names: [String], weights: [Float]) throws {
        try checkActivation(names, weights: weights)
        for (name, weight) in zip(names, weights) { self.weights[name] = weight }
        active = names
        publishWeights()
    }

    /// Removes adapters (unfuse first if any of them is fused).
    func delete(_ names: [String]) throws {
        try requireLoaded(names)
        if let fused = names.first(where: fusedAdapters.contains) {
            throw NodusError.invalidArgument("adapter '\(fused)' is fused into the weights: call unfuse_lora before deleting it")
        }
        adapters.removeAll { names.contains($0.name) }
        active.removeAll { names.contains($0) }
        for name in names { weights[name] = nil }
        publishWeights()
    }

    /// The paths the unfused graph gets: active-or-not adapters all have
    /// paths (their weights decide at run time), except on fused Linears.
    func lowRankPaths() -> [String: [LowRankPath]] {
        var result: [String: [LowRankPath]] = [:]
        for adapter in adapters {
            for (weightName, paths) in adapter.paths where !fusedWeights.contains(weightName) {
                let module = String(weightName.dropLast(".weight".count))
                for (index, path) in paths.enumerated() {
                    let suffix = paths.count > 1 ? ".\(index)" : ""
                    result[weightName, default: []].append(LowRankPath(
                        down: path.down, up: path.up, slot: adapter.slot, scale: path.scale,
                        downName: "\(module).lora_A.\(adapter.name)\(suffix).weight",
                        upName: "\(module).lora_B.\(adapter.name)\(suffix).weight"))
                }
            }
        }
        return result
    }

    /// The terms `lora_scale * w_i * s_i * B_i A_i` to merge for `names` (nil:
    /// the active adapters), by weight name, in adapter order (the order PEFT
    /// adds them in). A weight an adapter targets is listed even when all its
    /// factors are 0 (it is still fused: a copy). The pointers are valid while
    /// the adapters stay loaded. Does not change the set; `markFused` does once
    /// the caller has installed the merged weights.
    func fusionTerms(for names: [String]?, loraScale: Float) throws -> (names: [String], terms: [String: [LowRankMerge.Term]]) {
        guard fusedAdapters.isEmpty else {
            throw NodusError.invalidArgument("adapters \(fusedAdapters) are already fused: call unfuse_lora first")
        }
        guard loraScale.isFinite else { throw NodusError.invalidArgument("lora_scale \(loraScale) is not finite") }
        let chosen = names ?? active
        try requireLoaded(chosen)
        guard !chosen.isEmpty else { throw NodusError.invalidArgument("fuse_lora: no adapter is active and none was named") }
        var terms: [String: [LowRankMerge.Term]] = [:]
        for adapter in adapters where chosen.contains(adapter.name) {
            let factor = loraScale * (weights[adapter.name] ?? 1)
            for (weightName, paths) in adapter.paths {
                terms[weightName, default: []] += paths.filter { factor * $0.scale != 0 }.map {
                    (down: UnsafePointer($0.down.floats), up: UnsafePointer($0.up.floats), rank: $0.down.shape[0],
                     factor: factor * $0.scale)
                }
            }
        }
        return (chosen, terms)
    }

    func markFused(_ names: [String], weights: Set<String>) {
        fusedAdapters = names
        fusedWeights = weights
    }

    func markUnfused() {
        fusedAdapters = []
        fusedWeights = []
    }

    private func requireLoaded(_ names: [String]) throws {
        if let unknown = names.first(where: { adapter(named: $0) == nil }) {
            let loaded = adapters.isEmpty ? "none" : adapters.map(\.name).joined(separator: ", ")
            throw NodusError.invalidArgument("no adapter named '\(unknown)' is loaded (loaded: \(loaded))")
        }
    }

    /// Pushes the active weights to the kernels' slots.
    /// The kernels' slot weights with exactly `names` active at `weights`, the set left as it is
    /// (a run context's own strengths).
    func slotWeights(_ names: [String], weights: [Float]) throws -> [Float] {
        try checkActivation(names, weights: weights)
        var slots = [Float](repeating: 0, count: nextSlot)
        for (name, weight) in zip(names, weights) {
            if let adapter = adapter(named: name) { slots[adapter.slot] = weight }
        }
        return slots
    }

    private func checkActivation(_ names: [String], weights: [Float]) throws {
        guard names.count == weights.count else {
            throw NodusError.invalidArgument("set_adapters got \(names.count) names and \(weights.count) weights")
        }
        if let bad = weights.firstIndex(where: { !$0.isFinite }) {
            throw NodusError.invalidArgument("set_adapters: weights[\(bad)] is \(weights[bad]); every weight must be finite")
        }
        try requireLoaded(names)
        guard Set(names).count == names.count else { throw NodusError.invalidArgument("set_adapters names an adapter twice") }
    }

    private func publishWeights() {
        var slots = [Float](repeating: 0, count: nextSlot)
        if isEnabled {
            for adapter in adapters where active.contains(adapter.name) { slots[adapter.slot] = weights[adapter.name] ?? 1 }
        }
        runtimeWeights.set(slots)
    }

    /// The state for hosts: adapters, weights, enabled, fused.
    var json: JSONValue {
        .object([
            "enabled": .bool(isEnabled),
            "active": .object(Dictionary(uniqueKeysWithValues: active.map { ($0, .number(Double(weights[$0] ?? 1))) })),
            "adapters": .array(adapters.map { .string($0.name) }),
            "fused": .array(fusedAdapters.map { .string($0) }),
        ])
    }
}
