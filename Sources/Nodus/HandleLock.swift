#if canImport(Glibc)
import Glibc
#endif

/// The lock every handle's calls hold: a handle used from several threads at
/// once is safe, its calls taking turns (a model's plans and arenas, a
/// scheduler's state and a pipeline's models are not shared between two
/// running calls). Recursive, so a progress callback may call into the handle
/// that is running it.
final class HandleLock: @unchecked Sendable {
    // pthread's mutex must not move: it lives in its own allocation.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    init() {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
}

/// The handle locks one entry point holds: `Status.run` opens a scope, each
/// handle the entry point looks up (`Argument.handle`) is locked into it, and
/// they are all released when the entry point returns.
final class HeldHandleLocks: @unchecked Sendable {
    @TaskLocal static var current: HeldHandleLocks?

    private var locks: [HandleLock] = []

    /// Locks `lock` until the scope ends.
    func hold(_ lock: HandleLock) {
        lock.lock()
        locks.append(lock)
    }

    /// Runs `body` with a scope of held locks, releasing them after (in reverse order).
    static func scope<Result>(_ body: () throws -> Result) rethrows -> Result {
        let held = HeldHandleLocks()
        defer { for lock in held.locks.reversed() { lock.unlock() } }
        return try $current.withValue(held) { try body() }
    }
}
