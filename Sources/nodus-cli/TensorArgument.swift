#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore

/// Builds `nodus_tensor` values from `Tensor`s, and `Tensor`s from outputs the library
/// describes.
enum TensorArgument {
    /// A `nodus_tensor` describing `tensor` (which must stay alive while the C call
    /// runs); `name` is a C string owned by the caller, or nil.
    static func make(_ tensor: Tensor, name: UnsafePointer<CChar>? = nil) throws -> nodus_tensor {
        guard tensor.shape.count <= Int(NODUS_MAX_DIMS) else {
            throw CLIError.failure("a tensor of shape \(tensor.shape) has more than \(NODUS_MAX_DIMS) dimensions")
        }
        var value = nodus_tensor()
        value.name = name
        value.dtype = tensor.dtype.rawValue
        value.ndim = Int32(tensor.shape.count)
        setShape(&value, tensor.shape)
        value.data = tensor.bytes
        value.size_bytes = tensor.byteCount
        return value
    }

    /// An empty output description of `shape` (for `nodus_randn`), float32.
    static func setShape(_ value: inout nodus_tensor, _ shape: [Int]) {
        withUnsafeMutableBytes(of: &value.shape) { bytes in
            for (index, size) in shape.prefix(Int(NODUS_MAX_DIMS)).enumerated() {
                bytes.storeBytes(of: Int64(size), toByteOffset: index * 8, as: Int64.self)
            }
        }
    }

    /// The shape a `nodus_tensor` reports.
    static func shape(of value: nodus_tensor) -> [Int] {
        var dimensions = value.shape
        let rank = max(0, min(Int(value.ndim), Int(NODUS_MAX_DIMS)))
        return withUnsafeBytes(of: &dimensions) { bytes in
            (0..<rank).map { Int(bytes.load(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }

    /// Runs `call` twice: with `data` NULL to learn the result's dtype and shape, then
    /// into a new tensor of that size, which it returns.
    static func output(_ what: String, _ call: (UnsafeMutablePointer<nodus_tensor>) -> nodus_status) throws -> Tensor {
        var description = nodus_tensor()
        try check(call(&description), what)
        guard let dtype = DType(rawValue: description.dtype) else {
            throw CLIError.failure("\(what): the library reported dtype \(description.dtype)")
        }
        let result = try Tensor(zeros: shape(of: description), dtype: dtype)
        var output = nodus_tensor()
        output.data = result.bytes
        output.size_bytes = max(result.byteCount, 1)
        try check(call(&output), what)
        return result
    }
}

extension TensorArgument {
    /// `output` for a call with `count` outputs in one array (`nodus_model_forward_all`).
    static func outputs(_ what: String, count: Int, _ call: (UnsafeMutablePointer<nodus_tensor>, Int) -> nodus_status)
        throws -> [Tensor] {
        var descriptions = [nodus_tensor](repeating: nodus_tensor(), count: count)
        try check(descriptions.withUnsafeMutableBufferPointer { call($0.baseAddress!, count) }, what)
        let results = try descriptions.map { description -> Tensor in
            guard let dtype = DType(rawValue: description.dtype) else {
                throw CLIError.failure("\(what): the library reported dtype \(description.dtype)")
            }
            return try Tensor(zeros: shape(of: description), dtype: dtype)
        }
        var targets = results.map { result -> nodus_tensor in
            var output = nodus_tensor()
            output.data = result.bytes
            output.size_bytes = max(result.byteCount, 1)
            return output
        }
        try check(targets.withUnsafeMutableBufferPointer { call($0.baseAddress!, count) }, what)
        return results
    }
}

/// C strings that stay valid until the object is released.
final class CStringPool {
    private var strings: [UnsafeMutablePointer<CChar>] = []

    func add(_ text: String) -> UnsafePointer<CChar>? {
        guard let copy = strdup(text) else { return nil }
        strings.append(copy)
        return UnsafePointer(copy)
    }

    deinit { strings.forEach { free($0) } }
}
