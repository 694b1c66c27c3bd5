extension Tensor {
    /// This tensor as float32, after checking every value is finite.
    /// - Throws: `NodusError.invalidArgument` naming `name` and the first NaN or infinity.
    public func finiteFloat32(_ name: String) throws -> Tensor {
        let converted = try asFloat32()
        if let index = converted.firstNonFiniteIndex() {
            throw NodusError.invalidArgument("\(name) holds a NaN or infinity at element \(index)")
        }
        return converted
    }

    /// Whether any value is NaN or infinite (never, for integer dtypes).
    public var containsNonFinite: Bool { firstNonFiniteIndex() != nil }

    /// The index of the first NaN or infinity, or nil when every value is finite (always for
    /// integer dtypes).
    public func firstNonFiniteIndex() -> Int? {
        switch dtype {
        case .float32: Tensor.firstAllOnes(bytes, count: elementCount, mask: UInt32(0x7F80_0000))
        case .float64: Tensor.firstAllOnes(bytes, count: elementCount, mask: UInt64(0x7FF0_0000_0000_0000))
        case .float16: Tensor.firstAllOnes(bytes, count: elementCount, mask: UInt16(0x7C00))
        case .bfloat16: Tensor.firstAllOnes(bytes, count: elementCount, mask: UInt16(0x7F80))
        case .int64, .int32, .uint8, .bool: nil
        }
    }

    /// The first of `count` words whose `mask` bits (a float's exponent) are all ones: a NaN or an
    /// infinity. All ones is the largest value `word & mask` takes, so a max-reduction over a block
    /// (which the compiler vectorises) answers for the block, and only a block that holds one is
    /// searched.
    private static func firstAllOnes<Word: FixedWidthInteger & UnsignedInteger>(
        _ bytes: UnsafeRawPointer, count: Int, mask: Word
    ) -> Int? {
        let words = bytes.assumingMemoryBound(to: Word.self)
        var start = 0
        while start < count {
            let end = min(start &+ 4096, count)
            var maximum: Word = 0
            var index = start
            while index < end {
                maximum = max(maximum, words[index] & mask)
                index &+= 1
            }
            if maximum == mask { return (start..<end).first { words[$0] & mask == mask } }
            start = end
        }
        return nil
    }
}
