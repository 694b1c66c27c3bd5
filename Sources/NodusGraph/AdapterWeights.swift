import Synchronization

/// The run-time weight of each adapter slot that low-rank kernels read when
/// they run. Changing a weight between two forward passes changes the output
/// without rebuilding or replanning anything; a weight of 0 skips the
/// adapter's products entirely.
public final class AdapterWeights: Sendable {
    private let values: Mutex<[Float]>

    public init() {
        values = Mutex([])
    }

    /// The weight of `slot` (0 for a slot never set).
    public subscript(slot: Int) -> Float {
        values.withLock { slot < $0.count ? $0[slot] : 0 }
    }

    /// Sets every slot's weight at once; slots past the array are 0.
    public func set(_ weights: [Float]) {
        values.withLock { $0 = weights }
    }

    /// A copy of the current weights, one per slot.
    public var all: [Float] { values.withLock { $0 } }
}
