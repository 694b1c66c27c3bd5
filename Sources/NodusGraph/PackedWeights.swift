import NodusCore
import Synchronization

/// Weights packed once into the panels the GEMM reads, so that a Linear or a
/// convolution does not repack its weight on every call. A model keeps one
/// across its plans (every input shape, every LoRA state).
///
/// In `.float32`, only weights read in place from a mapped file are packed
/// (at the AVX2 level and above), and their file pages are dropped from memory once
/// packed, so the packed copy is the only one the process holds. Weights the
/// model made itself (LoRA-fused, converted from float16 or bfloat16) are used
/// as they are: packing them would hold them twice.
///
/// In `.bfloat16`, every Linear and convolution weight is rounded to bf16 and
/// packed (half the bytes), file pages dropped as in `.float32`; weights the
/// model made itself are packed too, since that is the only way to compute
/// their products in bf16.
public final class PackedWeights: Sendable {
    /// The precision of the products that read the packed weights.
    public enum Precision: Sendable {
        case float32, bfloat16
    }

    /// A bf16 weight and the storage it was packed from: an entry is reused
    /// only for the same storage at the same address, so a weight made anew
    /// where an old one lay (a fused LoRA rewrites its memory) is packed anew.
    private struct BFloat16Entry {
        var source: Storage
        let weight: PackedBFloat16Weight
    }

    private struct State {
        /// Float32 packed weights by the address of the weight each was packed from.
        var packed: [Int: UnsafeMutablePointer<Float>] = [:]
        var memory = PackedMemory()
        /// bf16 packed weights by the address of the weight each was packed from.
        var bfloat16: [Int: BFloat16Entry] = [:]
    }

    public let precision: Precision
    private let state = Mutex(State())

    public init(precision: Precision = .float32) {
        self.precision = precision
    }

    /// Bytes of the bf16 weights packed so far.
    public var bfloat16ByteCount: Int {
        state.withLock { state in state.bfloat16.values.reduce(0) { $0 + $1.weight.byteCount } }
    }

    /// The packed form of a Linear weight ([out, in] or [in, out] by `layout`), or nil where none is used.
    func linear(_ weight: Tensor, layout: WeightLayout = .outputsByInputs) throws -> UnsafePointer<Float>? {
        let (outFeatures, inFeatures) = layout.features(of: weight.shape)
        return try panels(of: weight, count: Gemm.packedLinearWeightCount(outFeatures: outFeatures,
                                                                           inFeatures: inFeatures)) { target in
            Gemm.packLinearWeight(weight.floats, outFeatures: outFeatures, inFeatures: inFeatures,
                                  weightIsTransposed: layout == .inputsByOutputs, into: target)
        }
    }

    /// The packed form of a convolution weight [out, in, kh, kw], or nil where none is used.
    func convolution(_ weight: Tensor) throws -> UnsafePointer<Float>? {
        let outChannels = weight.shape[0], patchSize = weight.elementCount / max(weight.shape[0], 1)
        return try panels(of: weight, count: Convolution.packedWeightCount(outChannels: outChannels,
                                                                            patchSize: patchSize)) { target in
            Convolution.packWeight(weight.floats, outChannels: outChannels, patchSize: patchSize, into: target)
        }
    }

    /// The bf16 form of a float32 Linear weight [out, in] or convolution
    /// weight [out, in, kh, kw] (by `role`), or nil unless the precision is
    /// `.bfloat16`. A Linear weight stored [in, out] is packed through a
    /// transposed copy that lives only while it is packed.
    func bfloat16(_ weight: Tensor, role: PackedBFloat16Weight.Role,
                  layout: WeightLayout = .outputsByInputs) throws -> PackedBFloat16Weight? {
        guard precision == .bfloat16, weight.dtype == .float32, weight.rank >= 2 else { return nil }
        let transposed = role == .linear && layout == .inputsByOutputs
        let rows = transposed ? weight.shape[1] : weight.shape[0], depth = weight.elementCount / max(rows, 1)
        let key = Int(bitPattern: weight.bytes)
        return try state.withLock { state in
            if let entry = state.bfloat16[key], entry.source === weight.storage, entry.weight.role == role {
                return entry.weight
            }
            let packed: PackedBFloat16Weight
            if transposed {
                let copy = try Tensor(zeros: [rows, depth])
                Layout.transpose(weight.floats, copy.floats, batch: 1, rows: depth, columns: rows)
                packed = try PackedBFloat16Weight(weight: copy.floats, rows: rows, depth: depth, role: role)
            } else {
                packed = try PackedBFloat16Weight(weight: weight.floats, rows: rows, depth: depth, role: role)
            }
            state.bfloat16[key] = BFloat16Entry(source: weight.storage, weight: packed)
            if weight.storage.isFileMapped { weight.storage.releaseFilePages() }
            return packed
        }
    }

    /// Frees the bf16 weights packed from storage nothing else holds any
    /// more (the fused weights of a LoRA state the model has left). Call it
    /// once the plans that read them are gone.
    public func forgetUnheldWeights() {
        state.withLock { state in
            for key in Array(state.bfloat16.keys) where isKnownUniquelyReferenced(&state.bfloat16[key]!.source) {
                state.bfloat16[key] = nil
            }
        }
    }

    private func panels(of weight: Tensor, count: Int?,
                        pack: (UnsafeMutablePointer<Float>) -> Void) throws -> UnsafePointer<Float>? {
        guard let count, weight.dtype == .float32, weight.storage.isFileMapped else { return nil }
        let key = Int(bitPattern: weight.bytes)
        return try state.withLock { state in
            if let existing = state.packed[key] { return UnsafePointer(existing) }
            let target = try state.memory.allocate(floats: count)
            pack(target)
            state.packed[key] = target
            weight.storage.releaseFilePages()
            return UnsafePointer(target)
        }
    }
}

/// Memory for packed weights: slices of large huge-page regions (a weight's
/// first use writes it once; huge pages make that fewer page faults and make
/// streaming the weights on every forward miss the TLB less), never freed
/// before the model.
private struct PackedMemory {
    private var regions: [ReusableRegion] = []
    private var used = 0

    /// Regions are at least this large, so that small weights share them.
    private static let regionBytes = 64 << 20

    mutating func allocate(floats count: Int) throws -> UnsafeMutablePointer<Float> {
        let bytes = (count * MemoryLayout<Float>.size + 63) / 64 * 64
        if regions.isEmpty || used + bytes > regions[regions.count - 1].byteCount {
            regions.append(try ReusableRegion(byteCount: max(bytes, Self.regionBytes)))
            used = 0
        }
        defer { used += bytes }
        return (regions[regions.count - 1].bytes + used).assumingMemoryBound(to: Float.self)
    }
}
