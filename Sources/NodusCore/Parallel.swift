import CBLAS
import Dispatch
import Synchronization

/// Splits loops over the worker threads. Each model runs inside
/// `withThreads(count)` with the thread count it was loaded with: the count
/// holds for that call on that thread only, so models with different counts
/// run side by side from several threads without changing each other's.
public enum Parallel {
    /// The count outside any `withThreads`; atomic because hosts may set it from several threads.
    private static let workerCount = Atomic<Int>(max(1, System.coreCount))

    /// The count of the innermost `withThreads` on this thread (task-local storage, which falls
    /// back to a thread-local value outside Swift tasks).
    @TaskLocal private static var callThreads: Int?

    /// The number of threads loops are split over.
    public static var threads: Int { callThreads ?? workerCount.load(ordering: .relaxed) }

    /// Runs `body` with loops split over `count` threads (0 = every core, at most
    /// `maximumThreads`). Loops started from inside a worker use the process default.
    public static func withThreads<Result>(_ count: Int, _ body: () throws -> Result) rethrows -> Result {
        _ = openBLASIsSerial
        return try $callThreads.withValue(resolvedCount(count)) { try body() }
    }

    private static func resolvedCount(_ count: Int) -> Int {
        count > 0 ? min(count, maximumThreads) : max(1, System.coreCount)
    }

    /// OpenBLAS (the GEMM below the AVX2 level) runs on one thread, set once: its sums then do
    /// not depend on any thread count (the same pixels for any split of work over processes, as
    /// Nodus' own kernels), and its process-wide count is never changed while another model's
    /// products run (OpenBLAS does not take that safely).
    private static let openBLASIsSerial: Bool = {
        openblas_set_num_threads(1)
        return true
    }()

    /// The most worker threads a model may ask for.
    public static let maximumThreads = 1024

    /// Sets the process default (0 = every core, at most `maximumThreads`): the count outside
    /// any `withThreads`, for loops and GEMM.
    public static func setThreads(_ count: Int) {
        let resolved = resolvedCount(count)
        workerCount.store(resolved, ordering: .relaxed)
        _ = openBLASIsSerial
    }

    /// Runs `body` over `0..<count` split into contiguous ranges, one per worker,
    /// or inline when the work (`count * costPerItem`) is too small to share.
    public static func forEach(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = min(threads, count)
        if workers <= 1 || count * costPerItem < 32_768 {
            body(0..<count)
            return
        }
        inParallel(workers) { worker in
            let start = count * worker / workers
            let end = count * (worker + 1) / workers
            if start < end { body(start..<end) }
        }
    }

    /// `body(worker)` for each of `0..<workers` at once: on the spinning `WorkerPool` when it is
    /// free and large enough, else on libdispatch's threads.
    private static func inParallel(_ workers: Int, _ body: (Int) -> Void) {
        if WorkerPool.shared.run(parts: workers, body) { return }
        DispatchQueue.concurrentPerform(iterations: workers, execute: body)
    }

    /// Runs `body` on every index of `0..<count`. Each worker walks its own
    /// contiguous share of the indices in order (as `forEach`, so workers touch
    /// different memory), then helps with what is left of the others' shares:
    /// for many similar items whose cost varies, or when another process takes a
    /// core for a while (a static split would wait for the slowed worker).
    public static func forEachBalanced(_ count: Int, _ body: (Int) -> Void) {
        let workers = min(threads, count)
        if workers <= 1 {
            for index in 0..<count { body(index) }
            return
        }
        // Share w is [start(w), start(w + 1)); next[w] is its next index not yet taken.
        let start = { (worker: Int) in count * worker / workers }
        let next = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: workers)
        for worker in 0..<workers { (next + worker).initialize(to: Atomic(start(worker))) }
        defer {
            _ = next.deinitialize(count: workers)
            next.deallocate()
        }
        inParallel(workers) { worker in
            for offset in 0..<workers {
                let share = (worker + offset) % workers
                while true {
                    let index = next[share].add(1, ordering: .relaxed).oldValue
                    guard index < start(share + 1) else { break }
                    body(index)
                }
            }
        }
    }
}
