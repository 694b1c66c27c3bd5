#if canImport(Glibc)
import Glibc
#endif
import CNodus

/// The message of the last failed call, kept per thread: a `malloc`'d C string
/// stored under a pthread key, replaced on every failure and freed when the
/// thread exits.
enum LastError {
    /// The key; nil only if the system ran out of keys, in which case messages
    /// are dropped (calls still return their status).
    private static let key: pthread_key_t? = {
        var key = pthread_key_t()
        guard pthread_key_create(&key, { message in free(message) }) == 0 else { return nil }
        return key
    }()

    /// Replaces this thread's message with `message`.
    static func set(_ message: String) {
        guard let key else { return }
        let copy = strdup(message)
        let previous = pthread_getspecific(key)
        if pthread_setspecific(key, copy) == 0 {
            free(previous)
        } else {
            free(copy)
        }
    }

    /// This thread's message, or `""` when no call failed on this thread yet.
    static var current: UnsafePointer<CChar> {
        guard let key, let message = pthread_getspecific(key) else { return StaticCString.empty }
        return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
    }
}

/// `const char *nodus_last_error(void)`: the message of the last failed call on
/// this thread, `""` if none failed yet; never NULL.
@_cdecl("nodus_last_error")
public func nodusLastError() -> UnsafePointer<CChar> {
    LastError.current
}
