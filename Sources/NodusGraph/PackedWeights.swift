import NodusCore
import Synchronization

/// Weights packed once into the panels the GEMM reads (on AVX-512 CPUs), so
/// that a Linear or a convolution does not repack its weight on every call.
/// A model keeps one across its plans (every input shape, every LoRA state).
///
/// Only weights read in place from a mapped file are packed, and their file
/// pages are dropped from memory once packed, so the packed copy is the only
/// one the process holds. Weights the model made itself (LoRA-fused, converted
/// from float16 or bfloat16) are used as they are: packing them would hold
/// them twice.
public final class PackedWeights: Sendable {
    private struct State {
        /// Packed weights by the address of the weight each was packed from.
        var packed: [Int: UnsafeMutablePointer<Float>] = [:]
        var memory = PackedMemory()
    }

    private let state = Mutex(State())

    public init() {}

    /// The packed form of a Linear weight [out, in], or nil where none is used.
    func linear(_ weight: Tensor) throws -> UnsafePointer<Float>? {
        let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
        return try panels(of: weight, count: Gemm.packedLinearWeightCount(outFeatures: outFeatures,
                                                                           inFeatures: inFeatures)) { target in
            Gemm.packLinearWeight(weight.floats, outFeatures: outFeatures, inFeatures: inFeatures, into: target)
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
