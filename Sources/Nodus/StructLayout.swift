#if canImport(Glibc)
import Glibc
#endif

/// Where the fields of a C struct imported into Swift begin and end, by C's layout rules (each
/// field at the next multiple of its alignment). A params struct only grows at the end, so the
/// struct of an older header is this one cut at a field's start: those offsets, the ends of the
/// fields and the whole size are the `struct_size` values a caller can mean; any other would
/// split a field (the low half of a pointer read as a whole one).
enum StructLayout {
    // The offsets of each struct type, computed once (reflection is slow next to a call).
    private nonisolated(unsafe) static var cache: [ObjectIdentifier: Set<Int>] = [:]
    // pthread's mutex must not move: it lives in its own allocation.
    private nonisolated(unsafe) static let mutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        return mutex
    }()

    /// The offsets at which a field of `Value` begins or ends, with 0 and the whole size; nil when
    /// the fields as reflected do not add up to the struct (a layout this cannot follow).
    static func fieldBoundaries<Value>(_ value: Value) -> Set<Int>? {
        let key = ObjectIdentifier(Value.self)
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let found = cache[key] ?? boundaries(of: value, stride: MemoryLayout<Value>.stride)
        cache[key] = found
        return found.isEmpty ? nil : found
    }

    /// The boundaries of the fields of `value`, a struct of `stride` bytes; empty when they do
    /// not add up to it.
    private static func boundaries(of value: Any, stride: Int) -> Set<Int> {
        var boundaries: Set<Int> = [0]
        var offset = 0
        var alignment = 1
        for child in Mirror(reflecting: value).children {
            let (size, fieldAlignment) = _openExistential(child.value, do: fieldLayout)
            offset = (offset + fieldAlignment - 1) / fieldAlignment * fieldAlignment
            boundaries.insert(offset)
            offset += size
            boundaries.insert(offset)
            alignment = max(alignment, fieldAlignment)
        }
        let size = (offset + alignment - 1) / alignment * alignment
        return size == stride ? boundaries.union([size]) : []
    }
}

/// The size and alignment of a field's type.
private func fieldLayout<Field>(_ field: Field) -> (size: Int, alignment: Int) {
    (MemoryLayout<Field>.size, MemoryLayout<Field>.alignment)
}
