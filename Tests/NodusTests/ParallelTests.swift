import Synchronization
import XCTest
import NodusCore

final class ParallelTests: XCTestCase {
    func testForEachBalancedRunsEveryIndexOnce() {
        // More workers than this machine may have cores, counts below, at and above the worker count.
        let saved = Parallel.threads
        defer { Parallel.setThreads(saved) }
        for threads in [1, 2, 3] {
            Parallel.setThreads(threads)
            for count in [0, 1, 2, 5, 1000] {
                let runs = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: max(count, 1))
                for index in 0..<count { (runs + index).initialize(to: Atomic(0)) }
                Parallel.forEachBalanced(count) { index in
                    usleep(UInt32(index % 7))  // uneven items, so workers move on to each other's shares
                    runs[index].add(1, ordering: .relaxed)
                }
                let counts = (0..<count).map { runs[$0].load(ordering: .relaxed) }
                XCTAssertEqual(counts, [Int](repeating: 1, count: count), "\(threads) threads, \(count) items: runs per index")
                _ = runs.deinitialize(count: count)
                runs.deallocate()
            }
        }
    }
}
