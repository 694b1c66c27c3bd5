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

    /// Sets the worker count for this process (0 = every core), for loops and GEMM.
    public static func setThreads(_ count: Int) {
        let resolved = count > 0 ? count : max(1, System.coreCount)
        guard workerCount.exchange(resolved, ordering: .relaxed) != resolved else { return }
        openblas_set_num_threads(Int32(resolved))
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
}
