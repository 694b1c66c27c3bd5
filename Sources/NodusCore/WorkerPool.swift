#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Worker threads that stay awake for a moment between loops, as onnxruntime's and OpenMP's
/// thread pools spin: a forward pass runs hundreds of short parallel loops back to back, and
/// waking a parked thread for each (what `DispatchQueue.concurrentPerform` does) costs some
/// 50 µs a loop on these machines. A worker spins for `spinSeconds` after its last loop, then
/// sleeps on its semaphore until the next one.
///
/// One caller at a time: a caller that finds the pool taken (another thread's loop, or a loop
/// started from inside a loop) is told to run its loop another way; so is a forked child, which
/// has none of the parent's threads.
final class WorkerPool: @unchecked Sendable {
    /// One worker per core beyond the caller's own.
    static let shared = WorkerPool(workers: System.coreCount - 1)

    /// How long an idle worker spins before it sleeps.
    private static let spinSeconds = 0.0002

    /// The workers started (fewer than asked for when the system refuses a thread).
    private(set) var workerCount = 0
    /// The process whose threads these are.
    private let owner = getpid()
    /// Held by the caller whose loop the pool runs.
    private let taken = Atomic<Bool>(false)
    /// Bumped for each loop; workers wait for it to change.
    private let generation = Atomic<Int>(0)
    /// Workers done with a loop, over every loop so far.
    private let finished = Atomic<Int>(0)
    /// Per worker: whether it sleeps (or is about to) on its semaphore.
    private let asleep: UnsafeMutablePointer<Atomic<Bool>>
    private let wakeups: [DispatchSemaphore]
    /// The loop being run: how many take part (the caller is part 0) and its body. Written
    /// before `generation` is bumped, read by workers after they see the bump.
    private nonisolated(unsafe) var participants = 0
    private nonisolated(unsafe) var body: ((Int) -> Void)?

    private init(workers: Int) {
        let wanted = max(0, workers)
        asleep = .allocate(capacity: max(1, wanted))
        for index in 0..<wanted { (asleep + index).initialize(to: Atomic(false)) }
        wakeups = (0..<wanted).map { _ in DispatchSemaphore(value: 0) }
        while workerCount < wanted, start(worker: workerCount) { workerCount += 1 }
    }

    /// Runs `body(part)` for every part in `0..<parts` (part 0 on the calling thread), or
    /// returns false without running anything when the pool is taken or too small.
    func run(parts: Int, _ body: (Int) -> Void) -> Bool {
        guard parts - 1 <= workerCount, getpid() == owner,
              taken.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        defer { taken.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { escaping in
            participants = parts
            self.body = escaping
            let target = finished.load(ordering: .relaxed) + workerCount
            generation.add(1, ordering: .sequentiallyConsistent)
            for index in 0..<workerCount where asleep[index].exchange(false, ordering: .sequentiallyConsistent) {
                wakeups[index].signal()
            }
            escaping(0)
            var spins = 0
            while finished.load(ordering: .acquiring) < target {
                spins += 1
                if spins & 63 == 0 { sched_yield() }
            }
            self.body = nil
        }
        return true
    }

    /// Starts worker `index`'s thread; false when the system refuses it.
    private func start(worker index: Int) -> Bool {
        let context = Unmanaged.passRetained(WorkerStart(pool: self, index: index))
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { argument in
            let start = Unmanaged<WorkerStart>.fromOpaque(argument!).takeRetainedValue()
            start.pool.work(index: start.index)
        }, context.toOpaque())
        guard status == 0 else {
            context.release()
            return false
        }
        pthread_detach(thread)
        return true
    }

    private func work(index: Int) -> Never {
        var seen = 0
        while true {
            var deadline = 0.0
            var current = generation.load(ordering: .acquiring)
            var spins = 0
            while current == seen {
                spins += 1
                // Yield now and then: a thread that needs this core (another process's, or the
                // caller's under valgrind, which runs one thread at a time) gets it.
                if spins & 63 == 0 { sched_yield() }
                if spins & 1023 == 0 {
                    let now = Clock.seconds()
                    if deadline == 0 {
                        deadline = now + WorkerPool.spinSeconds
                    } else if now > deadline {
                        // Say so before the last look: a caller bumping the generation after it
                        // sees the flag and signals; one bumping it before, this look sees.
                        asleep[index].store(true, ordering: .sequentiallyConsistent)
                        if generation.load(ordering: .sequentiallyConsistent) == seen {
                            wakeups[index].wait()
                        } else if !asleep[index].exchange(false, ordering: .sequentiallyConsistent) {
                            wakeups[index].wait()  // the caller saw the flag: take its signal
                        }
                        deadline = 0
                    }
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if index + 1 < participants, let body { body(index + 1) }
            finished.add(1, ordering: .releasing)
        }
    }
}

/// What a new worker thread is started with.
private final class WorkerStart {
    let pool: WorkerPool
    let index: Int

    init(pool: WorkerPool, index: Int) {
        self.pool = pool
        self.index = index
    }
}
