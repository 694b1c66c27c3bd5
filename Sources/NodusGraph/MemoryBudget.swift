import NodusCore

/// The memory a run context's plans may take for their activations (arena and scratch; the
/// weights and their packed copies are the model's). A plan that would not fit fails with
/// `outOfMemory` before it allocates: past the context's own budget, or past what the machine
/// has left (`System.availableMemory`), since on Linux an allocation beyond it "succeeds" and the
/// kernel later kills the process for touching it.
public struct MemoryBudget: Sendable, Equatable {
    /// Bytes of activations allowed; nil: only the machine limits them.
    public let bytes: Int?

    public static let machine = MemoryBudget(unchecked: nil)

    /// - Throws: `invalidArgument` for a negative byte count.
    public init(bytes: Int?) throws {
        if let bytes, bytes < 0 {
            throw NodusError.invalidArgument("a memory budget must be positive (0: none), got \(bytes) bytes")
        }
        self.bytes = bytes
    }

    private init(unchecked bytes: Int?) { self.bytes = bytes }

    /// The budget left once `held` bytes are taken.
    public func less(_ held: Int) -> MemoryBudget {
        MemoryBudget(unchecked: bytes.map { max(0, $0 - held) })
    }

    /// Checks that `bytes` more fit, `planned` in all for the plan being built.
    /// - Throws: `outOfMemory` saying what was needed and what limited it.
    func admit(_ bytes: Int, planned: Int, for what: @autoclosure () -> String) throws {
        if let limit = self.bytes, planned > limit {
            throw NodusError(.outOfMemory,
                             "\(what()) needs \(MemoryBudget.format(planned)) of activations; the context's memory budget leaves \(MemoryBudget.format(limit))")
        }
        if bytes >= MemoryBudget.machineCheckFloor, let available = System.availableMemory(), bytes > available {
            throw NodusError(.outOfMemory,
                             "\(what()) needs \(MemoryBudget.format(bytes)) more memory for its activations; the machine has \(MemoryBudget.format(available)) available")
        }
    }

    /// Below this, a plan's memory is not checked against the machine's: reading the kernel's
    /// counters costs some 0.3 ms, and the ONNX importer builds hundreds of plans of a few bytes
    /// to recognise activations by their values (it made loading DiT-XL/2's export 4x slower).
    static let machineCheckFloor = 16 << 20

    /// "1.50 GB", "12.0 MB", "512 bytes".
    static func format(_ bytes: Int) -> String {
        func decimal(_ value: Double) -> String {
            let rounded = (value * 100).rounded() / 100
            return "\(rounded)"
        }
        switch bytes {
        case 1_000_000_000...: return decimal(Double(bytes) / 1e9) + " GB"
        case 1_000_000...: return decimal(Double(bytes) / 1e6) + " MB"
        case 1_000...: return decimal(Double(bytes) / 1e3) + " kB"
        default: return "\(bytes) bytes"
        }
    }
}
