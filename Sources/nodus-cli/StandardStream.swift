#if canImport(Glibc)
import Glibc
#endif

/// Writes to the standard streams with `write(2)` (C's `stdout`/`stderr` globals are
/// not concurrency-safe in Swift 6).
enum StandardStream {
    static func output(_ text: String) { write(to: 1, text) }
    static func error(_ text: String) { write(to: 2, text) }

    /// Whether standard error is a terminal (for the progress bar).
    static var errorIsTerminal: Bool { isatty(2) == 1 }

    private static func write(to descriptor: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            guard let base = bytes.baseAddress else { return }
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, base + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
