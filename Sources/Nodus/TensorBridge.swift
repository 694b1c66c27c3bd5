#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore

/// Converts between the ABI's `nodus_tensor` and `Tensor`, validating everything a
/// host can get wrong: ndim in 0...NODUS_MAX_DIMS, non-negative dimensions, a known
/// dtype, a byte size that does not overflow, a non-NULL `data` when there are
/// bytes to read or write, and output buffers large enough.
enum TensorBridge {
    static let maximumDimensions = 8

    /// The dimensions of a `nodus_tensor`, checked.
    /// - Parameter label: how error messages name the tensor (`"input 'sample'"`).
    static func shape(of tensor: nodus_tensor, label: String) throws -> [Int] {
        let rank = Int(tensor.ndim)
        guard (0...maximumDimensions).contains(rank) else {
            throw NodusError.shape("\(label): ndim \(rank) is outside 0...\(maximumDimensions)")
        }
        var dimensions = tensor.shape
        let shape = withUnsafeBytes(of: &dimensions) { bytes in
            (0..<rank).map { Int(bytes.load(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
        if let negative = shape.first(where: { $0 < 0 }) {
            throw NodusError.shape("\(label): dimension \(negative) in shape \(shape) is negative")
        }
        return shape
    }

    /// The dtype of a `nodus_tensor`, checked.
    static func dtype(of tensor: nodus_tensor, label: String) throws -> DType {
        guard let dtype = DType(rawValue: tensor.dtype) else {
            throw NodusError.invalidArgument("\(label): unknown dtype value \(tensor.dtype)")
        }
        return dtype
    }

    /// Bytes needed for `shape` of `dtype`, or a shape error on overflow.
    static func byteCount(shape: [Int], dtype: DType, label: String) throws -> Int {
        let elements: Int
        do {
            elements = try Tensor.elementCount(of: shape)
        } catch let error as NodusError {
            throw NodusError.shape("\(label): \(error.message)")
        }
        let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw NodusError.shape("\(label): shape \(shape) is too large") }
        return bytes
    }

    /// A tensor holding the values of an input `nodus_tensor`. Floating-point values must
    /// be finite (the header's policy for every number a call takes).
    /// - Parameters:
    ///   - copy: copy the caller's bytes (needed when the result may outlive the call,
    ///     e.g. a scheduler that keeps past model outputs); otherwise the tensor is a
    ///     view of the caller's buffer, valid only during the call. Unaligned data is
    ///     always copied.
    static func input(_ tensor: nodus_tensor, label: String, copy: Bool) throws -> Tensor {
        let dtype = try dtype(of: tensor, label: label)
        let shape = try shape(of: tensor, label: label)
        let bytes = try byteCount(shape: shape, dtype: dtype, label: label)
        if bytes == 0 { return try Tensor(zeros: shape, dtype: dtype) }
        guard let data = tensor.data else {
            throw NodusError.invalidArgument("\(label): data is NULL")
        }
        let aligned = Int(bitPattern: data) % dtype.byteSize == 0
        let result: Tensor
        if !copy && aligned {
            result = Tensor(storage: Storage(viewing: data, byteCount: bytes, owner: nil), shape: shape, dtype: dtype)
        } else {
            result = try Tensor(zeros: shape, dtype: dtype)
            result.bytes.copyMemory(from: data, byteCount: bytes)
        }
        if let index = result.firstNonFiniteIndex() {
            throw NodusError.invalidArgument("\(label) holds a NaN or infinity at element \(index)")
        }
        return result
    }

    /// Prepares an output `nodus_tensor` for a result of `shape` and `dtype`, before the
    /// work runs. When `data` is NULL it reports dtype, ndim, shape and `size_bytes` and
    /// returns false (nothing more to do); otherwise it checks that `size_bytes` holds
    /// the result and returns true.
    static func prepareOutput(_ output: UnsafeMutablePointer<nodus_tensor>, shape: [Int], dtype: DType,
                              label: String) throws -> Bool {
        guard shape.count <= maximumDimensions else {
            throw NodusError.unsupported("\(label): the result has \(shape.count) dimensions, more than \(maximumDimensions)")
        }
        let bytes = try byteCount(shape: shape, dtype: dtype, label: label)
        guard output.pointee.data != nil else {
            describe(output, shape: shape, dtype: dtype)
            output.pointee.size_bytes = bytes
            return false
        }
        guard capacity(of: output.pointee) >= bytes else {
            throw NodusError.shape(
                "\(label): the buffer holds \(output.pointee.size_bytes) bytes, but \(dtype.name) \(shape) "
                    + "needs \(bytes)")
        }
        return true
    }

    /// Copies `tensor` into an output prepared by `prepareOutput` (converting to `dtype`
    /// float32 when needed) and writes its dtype, ndim and shape.
    static func write(_ tensor: Tensor, to output: UnsafeMutablePointer<nodus_tensor>, shape: [Int], dtype: DType,
                      label: String) throws {
        guard tensor.shape == shape else {
            throw NodusError(.internal, "\(label): the result has shape \(tensor.shape), expected \(shape)")
        }
        let value: Tensor
        if tensor.dtype == dtype {
            value = tensor
        } else if dtype == .float32 {
            value = try tensor.asFloat32()
        } else {
            throw NodusError(.internal, "\(label): the result is \(tensor.dtype.name), expected \(dtype.name)")
        }
        let bytes = try byteCount(shape: shape, dtype: dtype, label: label)
        guard capacity(of: output.pointee) >= bytes else {
            throw NodusError.shape("\(label): the buffer holds \(output.pointee.size_bytes) bytes, needs \(bytes)")
        }
        if bytes > 0, let data = output.pointee.data {
            // memmove semantics: the result may be a view of an input buffer.
            data.copyMemory(from: value.bytes, byteCount: bytes)
        }
        describe(output, shape: shape, dtype: dtype)
    }

    /// The bytes an output buffer holds (`size_t` arrives as `Int`; above Int.max it is
    /// negative and means "more than enough").
    static func capacity(of tensor: nodus_tensor) -> Int {
        tensor.size_bytes < 0 ? Int.max : tensor.size_bytes
    }

    /// Writes dtype, ndim and shape (unused dimensions zero).
    static func describe(_ output: UnsafeMutablePointer<nodus_tensor>, shape: [Int], dtype: DType) {
        output.pointee.dtype = dtype.rawValue
        output.pointee.ndim = Int32(shape.count)
        withUnsafeMutableBytes(of: &output.pointee.shape) { bytes in
            for index in 0..<maximumDimensions {
                let value = index < shape.count ? Int64(shape[index]) : 0
                bytes.storeBytes(of: value, toByteOffset: index * 8, as: Int64.self)
            }
        }
    }
}
