import Dispatch
import NodusCore
import NodusFormats

/// A model's weights as float32 tensors, each checked against the shape the
/// network reads it with. Float32 weights are views into the mapped file;
/// float16/bfloat16 ones are converted once and kept. A fused LoRA installs
/// replacements; removing them restores the original views exactly.
final class Weights {
    let store: WeightStore
    private var loaded: [String: Tensor] = [:]
    private var replacements: [String: Tensor] = [:]

    init(store: WeightStore) {
        self.store = store
    }

    func contains(_ name: String) -> Bool { store.contains(name) }

    /// The weight `name` (its replacement if one is installed), which must have `shape`.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let tensor = try replacements[name] ?? original(name)
        guard tensor.shape == shape else {
            throw NodusError.shape("weight '\(name)' in '\(store.directory)' has shape \(tensor.shape), expected \(shape)")
        }
        return tensor
    }

    /// The weight as the file holds it, ignoring replacements.
    func original(_ name: String) throws -> Tensor {
        if let tensor = loaded[name] { return tensor }
        let tensor = try store.float32(name)
        loaded[name] = tensor
        return tensor
    }

    /// Every weight as it stands now: replacements, else the file's tensor in its own dtype.
    func current() throws -> [(name: String, tensor: Tensor)] {
        try store.names.map { name in (name, try replacements[name] ?? store.tensor(name)) }
    }

    /// Installs `W + sum of the terms` as the replacement of every weight in
    /// `terms` (new float32 copies); returns their names.
    func installMerged(_ terms: [String: [LowRankMerge.Term]]) throws -> Set<String> {
        var merged: [String: Tensor] = [:]
        var jobs: [LowRankMerge.Job] = []
        for name in terms.keys.sorted() {
            let original = try self.original(name)
            guard original.rank == 2 else {
                throw NodusError.shape("cannot fuse a LoRA into '\(name)': shape \(original.shape) is not a matrix")
            }
            let target = Tensor(storage: try Storage(uninitializedByteCount: original.byteCount), shape: original.shape,
                                dtype: .float32)
            merged[name] = target
            jobs.append(LowRankMerge.Job(weight: original.floats, target: target.floats, rows: original.shape[0],
                                         columns: original.shape[1], terms: terms[name] ?? []))
        }
        LowRankMerge.merge(jobs)
        replacements.merge(merged) { _, new in new }
        return Set(merged.keys)
    }

    /// Drops the replacements. Their memory (hundreds of MB for a fused LoRA)
    /// is returned to the system on a background queue, so this returns at once.
    func removeReplacements() {
        let released = replacements
        replacements = [:]
        DispatchQueue.global(qos: .utility).async { withExtendedLifetime(released) {} }
    }
}
