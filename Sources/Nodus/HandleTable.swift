#if canImport(Glibc)
import Glibc
#endif

/// The handles the library has given out, as SQLite and Vulkan validation keep
/// theirs. A handle's value is not the object's address but a slot number and
/// the slot's generation, `generation << 32 | (slot + 1)`: freeing a handle
/// empties its slot and moves the generation on. So a freed handle (a use after
/// free, a double free) and a value the library never gave out are recognised
/// from the value alone, without touching memory, and a new handle reusing the
/// slot has another value. A handle's value repeats only after its slot has
/// been reused 2^32 times.
///
/// One lookup costs a lock and an array read, against the milliseconds of any
/// call that computes. The table holds the host's reference to each object; a
/// call keeps its own reference for its whole run, so a handle freed by another
/// thread meanwhile lives until that call returns.
final class HandleTable: @unchecked Sendable {
    static let shared = HandleTable()

    /// What a handle value names.
    enum Entry {
        case live(AnyObject)
        /// A slot's old generation: the handle was freed.
        case freed
        /// No slot, or a generation the slot never had: not a handle of this library.
        case unknown
    }

    private struct Slot {
        var generation: UInt32 = 1
        var object: AnyObject?
    }

    private var slots: [Slot] = []
    private var vacant: [Int] = []
    // pthread's mutex must not move: it lives in its own allocation.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    private init() {
        pthread_mutex_init(mutex, nil)
    }

    private func locked<Result>(_ body: () -> Result) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// A new handle holding `object`.
    func insert(_ object: AnyObject) -> OpaquePointer {
        let value: UInt = locked {
            let index: Int
            if let reused = vacant.popLast() {
                index = reused
            } else {
                index = slots.count
                slots.append(Slot())
            }
            slots[index].object = object
            return UInt(slots[index].generation) << 32 | UInt(index + 1)
        }
        // Never 0: the slot part is at least 1.
        return OpaquePointer(bitPattern: value)!
    }

    /// The slot and generation a handle value encodes, when the slot exists.
    private func decode(_ pointer: OpaquePointer) -> (index: Int, generation: UInt32)? {
        let value = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(pointer)))
        let slot = Int(value & 0xFFFF_FFFF)
        guard slot >= 1, slot <= slots.count else { return nil }
        return (slot - 1, UInt32(value >> 32))
    }

    private func entry(_ pointer: OpaquePointer) -> Entry {
        guard let (index, generation) = decode(pointer), generation >= 1 else { return .unknown }
        let slot = slots[index]
        if generation == slot.generation, let object = slot.object { return .live(object) }
        return generation < slot.generation ? .freed : .unknown
    }

    /// What `pointer` names.
    func lookup(_ pointer: OpaquePointer) -> Entry {
        locked { entry(pointer) }
    }

    /// Frees the handle `pointer` when it is live and `accept` takes its object; either way,
    /// what it named. The object itself is released after the table is unlocked (its
    /// deinitialisers may run then).
    func remove(_ pointer: OpaquePointer, if accept: (AnyObject) -> Bool) -> Entry {
        let found: Entry = locked {
            let found = entry(pointer)
            guard case .live(let object) = found, accept(object), let (index, _) = decode(pointer) else { return found }
            slots[index].object = nil
            slots[index].generation &+= 1
            if slots[index].generation == 0 { slots[index].generation = 1 }
            vacant.append(index)
            return found
        }
        return found
    }
}
