#if canImport(Glibc)
import Glibc
#endif

/// A block of bytes a tensor reads from: either memory this process allocated
/// (freed with the storage) or a view into something another object keeps alive
/// (a memory-mapped file, a caller's buffer).
public final class Storage: @unchecked Sendable {
    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int
    /// What keeps `bytes` valid when this storage does not own them.
    private let owner: AnyObject?
    private let ownsBytes: Bool

    /// Allocates `byteCount` zeroed bytes, 64-byte aligned.
    public init(zeroedByteCount byteCount: Int) throws {
        var pointer: UnsafeMutableRawPointer?
        let size = max(byteCount, 1)
        guard posix_memalign(&pointer, 64, size) == 0, let pointer else {
            throw NodusError(.outOfMemory, "cannot allocate \(byteCount) bytes")
        }
        memset(pointer, 0, size)
        self.bytes = pointer
        self.byteCount = byteCount
        self.owner = nil
        self.ownsBytes = true
    }

    /// Allocates `byteCount` bytes, 64-byte aligned, without clearing them (for
    /// buffers the caller overwrites completely, such as fused weights).
    public init(uninitializedByteCount byteCount: Int) throws {
        var pointer: UnsafeMutableRawPointer?
        guard posix_memalign(&pointer, 64, max(byteCount, 1)) == 0, let pointer else {
            throw NodusError(.outOfMemory, "cannot allocate \(byteCount) bytes")
        }
        self.bytes = pointer
        self.byteCount = byteCount
        self.owner = nil
        self.ownsBytes = true
    }

    /// A view of memory owned by `owner`; the storage keeps `owner` alive.
    public init(viewing bytes: UnsafeMutableRawPointer, byteCount: Int, owner: AnyObject?) {
        self.bytes = bytes
        self.byteCount = byteCount
        self.owner = owner
        self.ownsBytes = false
    }

    deinit {
        if ownsBytes { free(bytes) }
    }
}
