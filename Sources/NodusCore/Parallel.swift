import CBLAS
import Dispatch
import Synchronization

/// Splits loops over the worker threads. Each model sets the thread count it
/// was loaded with before it runs; OpenBLAS follows the same count.
public enum Parallel {
    /// Shared by every model; atomic because hosts may run models on several threads.
    private static let workerCount = Atomic<Int>(max(1, System.coreCount))

    /// The number of threads loops are split over.
    public static var threads: Int { workerCount.load(ordering: .relaxed) }

    /// The most worker threads a model may ask for.
    public static let maximumThreads = 1024

    /// Sets the worker count for this process (0 = every core, at most `maximumThreads`), for
    /// loops and GEMM. OpenBLAS gets at most one thread per core: with more it spins without end
    /// under a memory limit.
    public static func setThreads(_ count: Int) {
        let resolved = count > 0 ? min(count, maximumThreads) : max(1, System.coreCount)
        guard workerCount.exchange(resolved, ordering: .relaxed) != resolved else { return }
        openblas_set_num_threads(Int32(min(resolved, max(1, System.coreCount))))
    }

    /// Runs `body` over `0..<count` split into contiguous ranges, one per worker,
    /// or inline when the work (`count * costPerItem`) is too small to share.
    public static func forEach(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
        let workers = min(threads, count)
        if workers <= 1 || count * costPerItem < 32_768 {
            body(0..<count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let start = count * worker / workers
            let end = count * (worker + 1) / workers
            if start < end { body(start..<end) }
        }
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
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
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
