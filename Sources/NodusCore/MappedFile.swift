#if canImport(Glibc)
import Glibc
#endif

/// A whole file mapped read-only into memory. Weights are views into it, so a
/// model's weights cost page cache, not heap.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawPointer
    public let byteCount: Int

    public init(path: String) throws {
        // Non-blocking, so a FIFO in place of a file fails below instead of waiting for a writer.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw NodusError.io("cannot open '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw NodusError.io("cannot stat '\(path)': \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw NodusError.io("'\(path)' is not a regular file")
        }
        let size = Int(status.st_size)
        self.path = path
        self.byteCount = size
        if size == 0 {
            // mmap rejects length 0; an empty file still has a valid (empty) view.
            self.bytes = UnsafeRawPointer(bitPattern: 0x40)!
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0)
        guard let address, address != MAP_FAILED else {
            throw NodusError.io("cannot map '\(path)': \(String(cString: strerror(errno)))")
        }
        self.bytes = UnsafeRawPointer(address)
    }

    deinit {
        if byteCount > 0 { munmap(UnsafeMutableRawPointer(mutating: bytes), byteCount) }
    }
}
