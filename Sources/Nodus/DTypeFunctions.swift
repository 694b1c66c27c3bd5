import CNodus
import NodusCore

/// The `nodus_dtype_*` functions: names and sizes of element types.
enum DTypeNames {
    // Immutable after initialisation; safe to share between threads.
    nonisolated(unsafe) static let table = StaticCString.table(
        (0..<Int32(DType.allCases.count)).map { DType(rawValue: $0)?.name ?? "unknown" })
}

/// `const char *nodus_dtype_name(nodus_dtype)`: "float32", ...; NULL for an unknown value.
@_cdecl("nodus_dtype_name")
public func nodusDTypeName(_ dtype: nodus_dtype) -> UnsafePointer<CChar>? {
    guard DType(rawValue: dtype) != nil else { return nil }
    return StaticCString.lookup(DTypeNames.table, dtype)
}

/// `nodus_status nodus_dtype_from_name(const char *, nodus_dtype *)`.
@_cdecl("nodus_dtype_from_name")
public func nodusDTypeFromName(_ name: UnsafePointer<CChar>?, _ outDType: UnsafeMutablePointer<nodus_dtype>?)
    -> nodus_status
{
    Status.run("nodus_dtype_from_name") {
        let function = "nodus_dtype_from_name"
        let text = try Argument.string(name, "name", in: function)
        let target = try Argument.required(outDType, "out_dtype", in: function)
        guard let dtype = DType(name: text) else {
            let known = DType.allCases.map(\.name).joined(separator: ", ")
            throw NodusError.invalidArgument("\(function): unknown dtype '\(text)' (known: \(known))")
        }
        target.pointee = dtype.rawValue
    }
}

/// `size_t nodus_dtype_size(nodus_dtype)`: bytes per element, 0 for an unknown value.
@_cdecl("nodus_dtype_size")
public func nodusDTypeSize(_ dtype: nodus_dtype) -> Int {
    DType(rawValue: dtype)?.byteSize ?? 0
}
