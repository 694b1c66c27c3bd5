/// A dense, row-major tensor: a dtype, a shape and a byte range of a `Storage`.
/// A value type: copying a `Tensor` shares its storage (weights are views into a
/// mapped file); only the kernels write through `floats`.
public struct Tensor: @unchecked Sendable {
    public let storage: Storage
    public let byteOffset: Int
    public let shape: [Int]
    public let dtype: DType

    public init(storage: Storage, byteOffset: Int = 0, shape: [Int], dtype: DType) {
        self.storage = storage
        self.byteOffset = byteOffset
        self.shape = shape
        self.dtype = dtype
    }

    /// A new zero-filled tensor.
    public init(zeros shape: [Int], dtype: DType = .float32) throws {
        let count = try Tensor.elementCount(of: shape)
        self.init(storage: try Storage(zeroedByteCount: count * dtype.byteSize), shape: shape, dtype: dtype)
    }

    /// A new float32 tensor holding `values`.
    public init(shape: [Int], floats values: [Float]) throws {
        let count = try Tensor.elementCount(of: shape)
        guard count == values.count else {
            throw NodusError.shape("\(values.count) values do not fill shape \(shape)")
        }
        try self.init(zeros: shape)
        values.withUnsafeBufferPointer { source in
            floats.update(from: source.baseAddress!, count: count)
        }
    }

    /// A new int64 tensor holding `values`.
    public init(shape: [Int], int64s values: [Int64]) throws {
        let count = try Tensor.elementCount(of: shape)
        guard count == values.count else {
            throw NodusError.shape("\(values.count) values do not fill shape \(shape)")
        }
        try self.init(zeros: shape, dtype: .int64)
        let target = bytes.assumingMemoryBound(to: Int64.self)
        for index in 0..<count { target[index] = values[index] }
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * dtype.byteSize }
    public var rank: Int { shape.count }

    public var bytes: UnsafeMutableRawPointer { storage.bytes + byteOffset }

    /// The elements of a float32 tensor. Only valid for `dtype == .float32`.
    public var floats: UnsafeMutablePointer<Float> {
        bytes.assumingMemoryBound(to: Float.self)
    }

    /// The same bytes seen with another shape of the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        guard try Tensor.elementCount(of: newShape) == elementCount else {
            throw NodusError.shape("cannot reshape \(shape) to \(newShape)")
        }
        return Tensor(storage: storage, byteOffset: byteOffset, shape: newShape, dtype: dtype)
    }

    /// The float32 elements as an array (converting from f16/bf16/f64/integers).
    public func floatArray() -> [Float] {
        let count = elementCount
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            Tensor.convertToFloat(from: bytes, dtype: dtype, count: count, into: buffer.baseAddress!)
            initialized = count
        }
    }

    /// A float32 tensor with this tensor's values: this tensor itself when it is
    /// already float32 and 4-byte aligned, else a converted copy.
    public func asFloat32() throws -> Tensor {
        if dtype == .float32 && Int(bitPattern: bytes) % 4 == 0 { return self }
        let result = try Tensor(zeros: shape)
        Tensor.convertToFloat(from: bytes, dtype: dtype, count: elementCount, into: result.floats)
        return result
    }

    /// Integer elements as `Int64` (from int64, int32, uint8, bool, or whole floats).
    public func int64Array() -> [Int64] {
        let count = elementCount
        switch dtype {
        case .int64:
            let source = bytes.assumingMemoryBound(to: Int64.self)
            return (0..<count).map { source[$0] }
        case .int32:
            let source = bytes.assumingMemoryBound(to: Int32.self)
            return (0..<count).map { Int64(source[$0]) }
        case .uint8, .bool:
            let source = bytes.assumingMemoryBound(to: UInt8.self)
            return (0..<count).map { Int64(source[$0]) }
        default:
            return floatArray().map { Int64($0) }
        }
    }

    /// Checks a shape and returns its element count, rejecting negative or overflowing sizes.
    public static func elementCount(of shape: [Int]) throws -> Int {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { throw NodusError.shape("negative dimension in shape \(shape)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow, product < (1 << 40) else { throw NodusError.shape("shape \(shape) is too large") }
            count = product
        }
        return count
    }

    /// Converts `count` elements of `dtype` at `source` (any alignment) to float32.
    public static func convertToFloat(from source: UnsafeRawPointer, dtype: DType, count: Int,
                                      into target: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32:
            UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: count * 4)
        case .float16:
            for index in 0..<count {
                let bits = source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)
                target[index] = Float(Float16(bitPattern: bits))
            }
        case .bfloat16:
            for index in 0..<count {
                let bits = source.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self)
                target[index] = Float(bitPattern: UInt32(bits) << 16)
            }
        case .float64:
            for index in 0..<count {
                target[index] = Float(source.loadUnaligned(fromByteOffset: index * 8, as: Double.self))
            }
        case .int64:
            for index in 0..<count {
                target[index] = Float(source.loadUnaligned(fromByteOffset: index * 8, as: Int64.self))
            }
        case .int32:
            for index in 0..<count {
                target[index] = Float(source.loadUnaligned(fromByteOffset: index * 4, as: Int32.self))
            }
        case .uint8, .bool:
            for index in 0..<count {
                target[index] = Float(source.load(fromByteOffset: index, as: UInt8.self))
            }
        }
    }
}
