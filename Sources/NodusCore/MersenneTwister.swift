/// The 32-bit Mersenne Twister (MT19937), seeded the way PyTorch's CPU generator
/// seeds it (`at::mt19937_engine`): only the low 32 bits of the 64-bit seed are
/// used, and the state is expanded with the standard Knuth multiplier 1812433253.
///
/// A value type: copying an engine copies its whole state, so the copy and the
/// original produce the same stream independently.
public struct MersenneTwister: Sendable {
    /// Number of 32-bit words of state.
    public static let stateSize = 624
    /// The twist offset ("M" in the reference description).
    static let shiftSize = 397
    static let matrixA: UInt32 = 0x9908_b0df
    static let upperMask: UInt32 = 0x8000_0000
    static let lowerMask: UInt32 = 0x7fff_ffff

    /// The raw (untempered) state words.
    private var state: [UInt32]
    /// Index of the next state word to temper and return; `stateSize` means
    /// the state must be twisted first.
    private var nextIndex: Int

    /// The seed this engine was created with (all 64 bits, as torch records it).
    public let seed: UInt64

    /// Seeds the engine like `at::mt19937(seed)`: `state[0] = seed & 0xffffffff`,
    /// `state[i] = 1812433253 * (state[i-1] ^ (state[i-1] >> 30)) + i` (mod 2^32).
    public init(seed: UInt64) {
        self.seed = seed
        var words = [UInt32](repeating: 0, count: MersenneTwister.stateSize)
        var previous = UInt32(truncatingIfNeeded: seed)
        words[0] = previous
        for index in 1..<MersenneTwister.stateSize {
            previous = 1_812_433_253 &* (previous ^ (previous >> 30)) &+ UInt32(index)
            words[index] = previous
        }
        state = words
        nextIndex = MersenneTwister.stateSize
    }

    /// The next 32-bit output (torch's `CPUGeneratorImpl::random()`).
    @inline(__always)
    public mutating func next() -> UInt32 {
        if nextIndex >= MersenneTwister.stateSize {
            twist()
        }
        var value = state[nextIndex]
        nextIndex += 1
        value ^= value >> 11
        value ^= (value << 7) & 0x9d2c_5680
        value ^= (value << 15) & 0xefc6_0000
        value ^= value >> 18
        return value
    }

    /// Writes the next `count` 32-bit outputs to `target`, in order.
    public mutating func fill(_ target: UnsafeMutablePointer<UInt32>, count: Int) {
        var written = 0
        while written < count {
            if nextIndex >= MersenneTwister.stateSize {
                twist()
            }
            let available = min(MersenneTwister.stateSize - nextIndex, count - written)
            let start = nextIndex
            state.withUnsafeBufferPointer { words in
                for offset in 0..<available {
                    var value = words[start + offset]
                    value ^= value >> 11
                    value ^= (value << 7) & 0x9d2c_5680
                    value ^= (value << 15) & 0xefc6_0000
                    value ^= value >> 18
                    target[written + offset] = value
                }
            }
            nextIndex += available
            written += available
        }
    }

    /// Regenerates all 624 state words (the "twist").
    private mutating func twist() {
        let size = MersenneTwister.stateSize
        let shift = MersenneTwister.shiftSize
        state.withUnsafeMutableBufferPointer { words in
            for index in 0..<size {
                let mixed = (words[index] & MersenneTwister.upperMask)
                    | (words[index + 1 == size ? 0 : index + 1] & MersenneTwister.lowerMask)
                let partner = index + shift < size ? index + shift : index + shift - size
                var value = words[partner] ^ (mixed >> 1)
                if mixed & 1 != 0 {
                    value ^= MersenneTwister.matrixA
                }
                words[index] = value
            }
        }
        nextIndex = 0
    }
}
