#if canImport(Glibc)
import Glibc
#endif

/// Writes text files atomically, as the medical writers do: a temporary file in the
/// same folder, flushed to disk, then renamed; on an error nothing is left behind.
enum AtomicTextFile {
    static func write(_ text: String, to path: String) throws {
        let temporary = path + ".partial-\(getpid())"
        guard let file = fopen(temporary, "wb") else {
            throw CLIError.failure("cannot write '\(path)': \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        let written = fwrite(bytes, 1, bytes.count, file)
        let flushed = fflush(file) == 0 && fsync(fileno(file)) == 0
        let failure = errno
        fclose(file)
        guard written == bytes.count, flushed, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(written == bytes.count && flushed ? errno : failure))
            unlink(temporary)
            throw CLIError.failure("cannot write '\(path)': \(reason)")
        }
    }

    /// Removes the files of a result that failed part way (missing ones are fine).
    static func remove(_ paths: [String]) {
        for path in paths { unlink(path) }
    }

    /// Creates `folder` (and its parents) when missing.
    static func makeFolder(_ folder: String) throws {
        var path = folder.hasPrefix("/") ? "/" : ""
        for part in folder.split(separator: "/") {
            path += (path.isEmpty || path.hasSuffix("/") ? "" : "/") + part
            if mkdir(path, 0o755) != 0, errno != EEXIST {
                throw CLIError.failure("cannot create '\(path)': \(String(cString: strerror(errno)))")
            }
        }
    }
}
