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

    /// Whether these bytes are a view of a memory-mapped file (a weight read in place).
    public var isFileMapped: Bool { owner is MappedFile }

    /// For a view of a mapped file: drops the whole pages it covers from this
    /// process's memory. They stay valid and are read back from the file (the
    /// page cache) if touched again; for weights another copy now stands in for.
    public func releaseFilePages() {
        guard isFileMapped else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: bytes) + page - 1) / page * page
        let end = (Int(bitPattern: bytes) + byteCount) / page * page
        guard end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(address, end - start, MADV_DONTNEED)
    }

    deinit {
        if ownsBytes { free(bytes) }
    }
}
