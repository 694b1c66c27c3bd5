#if canImport(Glibc)
import Glibc
#endif

/// C strings that live as long as the process: the names the ABI returns as
/// `const char *` ("ok", "float32", "DDIMScheduler", ...). Each is allocated once,
/// when its table is first used, and never freed.
enum StaticCString {
    /// A new NUL-terminated copy of `text` that is never freed.
    static func make(_ text: String) -> UnsafePointer<CChar> {
        let characters = Array(text.utf8CString)
        let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: characters.count)
        pointer.initialize(from: characters, count: characters.count)
        return UnsafePointer(pointer)
    }

    /// The empty string `""`.
    // Immutable after initialisation (a `let` initialised once by the runtime), so
    // sharing the pointer between threads is safe.
    nonisolated(unsafe) static let empty: UnsafePointer<CChar> = make("")

    /// A table of static names indexed by an enum's raw value.
    static func table(_ names: [String]) -> [UnsafePointer<CChar>] { names.map(make) }

    /// The name at `index` of `table`, or nil when `index` is out of range.
    static func lookup(_ table: [UnsafePointer<CChar>], _ index: Int32) -> UnsafePointer<CChar>? {
        guard index >= 0, Int(index) < table.count else { return nil }
        return table[Int(index)]
    }
}
