import Dispatch
import NodusCore
import NodusFormats

/// A model's weights as float32 tensors, each checked against the shape the
/// network reads it with. Float32 weights are views into the mapped file;
/// float16/bfloat16 ones are converted once and kept. A fused LoRA installs
/// replacements; removing them restores the original views exactly.
///
/// Run contexts build plans from one `Weights` at the same time: the cache of
/// converted weights has a lock; replacements change only while no context
/// runs (`LoRAController`'s structure lock).
final class Weights {
    let source: any WeightSource
    private var loaded: [String: Tensor] = [:]
    private let loadedLock = ReadWriteLock()
    private var replacements: [String: Tensor] = [:]

    init(store: WeightStore) {
        self.source = store
    }

    init(source: any WeightSource) {
        self.source = source
    }

    func contains(_ name: String) -> Bool { source.contains(name) }

    /// The weight `name` (its replacement if one is installed), which must have `shape`.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let tensor = try replacements[name] ?? original(name)
        guard tensor.shape == shape else {
            throw NodusError.shape("weight '\(name)' in '\(source.location)' has shape \(tensor.shape), expected \(shape)")
        }
        return tensor
    }

    /// The weight as the file holds it, ignoring replacements.
    func original(_ name: String) throws -> Tensor {
        try loadedLock.writing {
            if let tensor = loaded[name] { return tensor }
            let tensor = try source.float32(name)
            loaded[name] = tensor
            return tensor
        }
    }

    /// Every weight as it stands now: replacements, else the file's tensor in its own dtype.
    func current() throws -> [(name: String, tensor: Tensor)] {
        try source.names.map { name in (name, try replacements[name] ?? source.tensor(name)) }
    }

    /// Installs `W + sum of the terms` as the replacement of every weight in
    /// `terms` (float32 [rows, columns], in the memory `replacementRegion`
    /// describes); returns their names. When it throws, nothing was installed.
    func installMerged(_ terms: [String: [LowRankMerge.Term]]) throws -> Set<String> {
        let names = terms.keys.sorted()
        guard !names.isEmpty else { return [] }
        var originals: [Tensor] = []
        var offsets: [Int] = []
        var byteCount = 0
        for name in names {
            let original = try self.original(name)
            guard original.rank == 2 else {
                throw NodusError.shape("cannot fuse a LoRA into '\(name)': shape \(original.shape) is not a matrix")
            }
            originals.append(original)
            offsets.append(byteCount)
            byteCount += (original.byteCount + 63) / 64 * 64
        }
        let region = try replacementMemory(byteCount: byteCount)
        var merged: [String: Tensor] = [:]
        var jobs: [LowRankMerge.Job] = []
        // A weight stored [in, out] takes (B A)ᵀ = Aᵀ Bᵀ: its terms' factors transposed (small: rank x side).
        var transposedFactors: [Tensor] = []
        for (index, name) in names.enumerated() {
            let original = originals[index]
            let storage = Storage(viewing: region.bytes + offsets[index], byteCount: original.byteCount, owner: region)
            let target = Tensor(storage: storage, shape: original.shape, dtype: .float32)
            merged[name] = target
            var nameTerms = terms[name] ?? []
            if source.layout(of: name) == .inputsByOutputs {
                let (inFeatures, outFeatures) = (original.shape[0], original.shape[1])
                nameTerms = try nameTerms.map { term in
                    let up = try Weights.transposed(term.down, rows: term.rank, columns: inFeatures)   // Aᵀ [in, r]
                    let down = try Weights.transposed(term.up, rows: outFeatures, columns: term.rank)  // Bᵀ [r, out]
                    transposedFactors += [up, down]
                    return (down: UnsafePointer(down.floats), up: UnsafePointer(up.floats), rank: term.rank,
                            factor: term.factor)
                }
            }
            jobs.append(LowRankMerge.Job(weight: original.floats, target: target.floats, rows: original.shape[0],
                                         columns: original.shape[1], terms: nameTerms))
        }
        LowRankMerge.merge(jobs)
        withExtendedLifetime(transposedFactors) {}
        replacements.merge(merged) { _, new in new }
        return Set(names)
    }

    /// A [columns, rows] copy of the row-major [rows, columns] matrix at `matrix`.
    private static func transposed(_ matrix: UnsafePointer<Float>, rows: Int, columns: Int) throws -> Tensor {
        let result = try Tensor(zeros: [columns, rows])
        Layout.transpose(matrix, result.floats, batch: 1, rows: rows, columns: columns)
        return result
    }

    /// The memory of the merged weights. Held from the first fuse while the
    /// model lives, so that fusing again rewrites pages that are already mapped
    /// instead of taking a page fault (and a page clear) for every 4 KiB:
    ///
    /// * while fused, it holds the merged copies: one float32 copy of each fused
    ///   weight (the originals stay views of the mapped file);
    /// * after unfuse, `removeReplacements` marks it free with `MADV_FREE`: it
    ///   still counts in the RSS, but the kernel takes its pages back whenever it
    ///   needs memory, and the next fuse reuses the pages it left;
    /// * it is unmapped when the model is freed, or when a fuse needs more than
    ///   it holds or less than half of it (then the new region replaces it).
    ///
    /// Plans built for an earlier fusion may still view this memory when it is
    /// rewritten; they are never run again (fuse and unfuse change the LoRA
    /// generation, and models rebuild their plans when it changes).
    private var replacementRegion: ReusableRegion?
    /// Marking the region free takes milliseconds for 4 KiB pages: it runs here,
    /// and the next fuse waits for it.
    private let releaseQueue = DispatchQueue(label: "nodus.weights.release")

    private func replacementMemory(byteCount: Int) throws -> ReusableRegion {
        releaseQueue.sync {}  // a pending MADV_FREE must not follow the new writes
        if let region = replacementRegion, byteCount <= region.byteCount, byteCount * 2 >= region.byteCount {
            return region
        }
        if let old = replacementRegion {
            replacementRegion = nil
            releaseQueue.async { withExtendedLifetime(old) {} }  // unmapping hundreds of MB takes a while
        }
        let region = try ReusableRegion(byteCount: byteCount)
        replacementRegion = region
        return region
    }

    /// Drops the replacements: the weights are the file's views again. Their
    /// memory is kept for the next fuse and marked lazily free (see
    /// `replacementRegion`), on a background queue, so this returns at once.
    func removeReplacements() {
        replacements = [:]
        if let region = replacementRegion {
            releaseQueue.async { region.releaseLazily() }
        }
    }
}
