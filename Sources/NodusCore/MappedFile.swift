#if canImport(Glibc)
import Glibc
#endif

/// A whole file in memory, read-only: mapped (the default: weights are views
/// into it, so a model's weights cost page cache, not heap), or read into
/// private memory (`FileAccess.read`).
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawPointer
    public let byteCount: Int

    /// - Parameter access: `.mapped`, or `.read` to copy the file into private memory, which a
    ///   later change to the file (truncated, rewritten on a network share) cannot reach.
    public init(path: String, access: FileAccess = .mapped) throws {
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
        switch access {
        case .mapped:
            let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0)
            guard let address, address != MAP_FAILED else {
                throw NodusError.io("cannot map '\(path)': \(String(cString: strerror(errno)))")
            }
            self.bytes = UnsafeRawPointer(address)
        case .read:
            let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let address, address != MAP_FAILED else {
                throw NodusError(.outOfMemory, "cannot allocate \(size) bytes to read '\(path)'")
            }
            var done = 0
            while done < size {
                let count = pread(descriptor, address + done, min(size - done, 1 << 30), off_t(done))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    let reason = count == 0 ? "the file ended early" : String(cString: strerror(errno))
                    munmap(address, size)
                    throw NodusError.io("cannot read '\(path)' (\(done) of \(size) bytes): \(reason)")
                }
                done += count
            }
            mprotect(address, size, PROT_READ)
            self.bytes = UnsafeRawPointer(address)
        }
    }

    deinit {
        if byteCount > 0 { munmap(UnsafeMutableRawPointer(mutating: bytes), byteCount) }
    }
}
