#if canImport(Glibc)
import Glibc
#endif

/// Anonymous memory for large buffers that are rewritten completely every time
/// they are used, such as fused LoRA weights, and kept between uses.
///
/// * It is mapped on 2 MiB boundaries and asks for transparent huge pages
///   (`MADV_HUGEPAGE`), so first writing it takes one page fault per 2 MiB
///   instead of one per 4 KiB where the kernel allows huge pages, marking it
///   free takes under a millisecond for 600 MB (4 KiB pages: 5 to 40 ms), and
///   rewriting it misses the TLB less. The first write still costs the kernel
///   clearing every page: in this project's 2-vCPU VMs, whose host takes back
///   free guest memory in 2 MiB blocks, first writes of 600 MB of huge pages
///   measured 0.03 to 1.4 s (4 KiB pages: 0.2 to 0.4 s).
/// * `releaseLazily()` (`MADV_FREE`) tells the kernel the contents are no longer
///   needed: it may take the pages back whenever it is short of memory, without
///   writing them anywhere. Until it does, the pages stay mapped (and counted in
///   the process's RSS), and rewriting them costs no page fault: that is what
///   makes a second use fast. Pages it took come back zeroed on the next write.
/// * `deinit` unmaps it (the memory is returned at once).
public final class ReusableRegion: @unchecked Sendable {
    public let bytes: UnsafeMutableRawPointer
    public let byteCount: Int
    private let mapping: UnsafeMutableRawPointer
    private let mappingByteCount: Int

    private static let alignment = 2 << 20

    /// Maps `byteCount` bytes (contents undefined until written).
    public init(byteCount: Int) throws {
        let alignment = ReusableRegion.alignment
        let length = (max(byteCount, 1) + alignment - 1) / alignment * alignment
        // Map one alignment unit more and start at the first 2 MiB boundary.
        guard let address = mmap(nil, length + alignment, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              address != MAP_FAILED else {
            throw NodusError(.outOfMemory, "cannot map \(byteCount) bytes: \(String(cString: strerror(errno)))")
        }
        let skip = (alignment - Int(bitPattern: address) % alignment) % alignment
        self.mapping = address
        self.mappingByteCount = length + alignment
        self.bytes = address + skip
        self.byteCount = byteCount
        // Huge pages are a hint: without them (THP disabled) the region works with 4 KiB pages.
        _ = madvise(bytes, length, MADV_HUGEPAGE)
    }

    /// Lets the kernel reclaim the pages lazily (`MADV_FREE`); the contents are
    /// undefined until the next write. Where the kernel lacks `MADV_FREE`
    /// (Linux before 4.5), the pages are returned at once (`MADV_DONTNEED`).
    public func releaseLazily() {
        if madvise(mapping, mappingByteCount, MADV_FREE) != 0 {
            _ = madvise(mapping, mappingByteCount, MADV_DONTNEED)
        }
    }

    deinit {
        munmap(mapping, mappingByteCount)
    }
}
