import CNodusKernels

/// A float32 weight rounded to bfloat16 (to nearest even, as torch's
/// `.to(torch.bfloat16)`) and packed once into the register-tile panels of
/// `BFloat16Gemm` (`Sources/CNodusKernels/gemm_bf16.c`): half the memory of
/// the float32 weight, read in place by every product.
///
/// A value: copies share the packed memory, which is never written after
/// packing.
public struct PackedBFloat16Weight: Sendable {
    /// Which operand of the product the weight is.
    public enum Role: Sendable {
        /// A `Linear` weight [out, in]: `output = input weightᵀ`.
        case linear
        /// A convolution weight [out, in * kh * kw]: `output = weight patches`.
        case convolution

        var kernelRole: nodus_gemm_bf16_role {
            switch self {
            case .linear: NODUS_GEMM_BF16_LINEAR
            case .convolution: NODUS_GEMM_BF16_CONVOLUTION
            }
        }
    }

    public let role: Role
    /// Output features (Linear) or output channels (convolution).
    public let rows: Int
    /// Input features (Linear) or `in * kh * kw` (convolution).
    public let depth: Int
    private let storage: Storage

    /// Rounds and packs the row-major float32 weight [rows, depth], split over `Parallel.threads`.
    /// - Throws: `NodusError.invalidArgument` for a negative shape,
    ///   `.outOfMemory` when the packed copy cannot be allocated.
    public init(weight: UnsafePointer<Float>, rows: Int, depth: Int, role: Role) throws {
        guard rows >= 0, depth >= 0 else {
            throw NodusError.invalidArgument("bf16 weight shape [\(rows), \(depth)] is negative")
        }
        let width = Int(nodus_gemm_bf16_panel_width(role.kernelRole))
        let panels = rows / width + (rows % width == 0 ? 0 : 1)
        // The padded size, checked for overflow before the kernel computes it.
        let pairs = depth / 2 + depth % 2
        let (paddedRows, rowsOverflow) = panels.multipliedReportingOverflow(by: width)
        let (elements, overflow) = paddedRows.multipliedReportingOverflow(by: pairs)
        guard !rowsOverflow, !overflow, elements <= Int.max / 4 else {
            throw NodusError(.outOfMemory, "bf16 weight [\(rows), \(depth)] is too large to pack")
        }
        let byteCount = Int(nodus_gemm_bf16_packed_size(role.kernelRole, Int64(rows), Int64(depth))) * 2
        storage = try Storage(uninitializedByteCount: byteCount)
        (self.role, self.rows, self.depth) = (role, rows, depth)
        let packed = storage.bytes.assumingMemoryBound(to: UInt16.self)
        Parallel.forEach(panels, costPerItem: width * depth) { range in
            nodus_gemm_bf16_pack(role.kernelRole, weight, Int64(rows), Int64(depth), packed,
                                 Int64(range.lowerBound), Int64(range.upperBound))
        }
    }

    /// Bytes of the packed weight (about half the float32 weight's).
    public var byteCount: Int { storage.byteCount }

    var packed: UnsafePointer<UInt16> { UnsafePointer(storage.bytes.assumingMemoryBound(to: UInt16.self)) }
}
