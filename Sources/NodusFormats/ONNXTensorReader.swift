#if canImport(Glibc)
import Glibc
#endif
import CNodusONNX
import NodusCore

/// Turns the `TensorProto`s of one parsed `.onnx` file (initializers, `Constant` values)
/// into `Tensor`s, checking each against its dims and dtype.
///
/// * `raw_data`, and typed fields whose element type is the tensor's (`float_data` of a FLOAT
///   tensor, `int64_data` of INT64, `double_data` of DOUBLE, `int32_data` of INT32), become
///   zero-copy views of the parsed protobuf; their `Storage` keeps it alive.
/// * `int32_data` of FLOAT16 / BFLOAT16 / UINT8 / BOOL (ONNX widens those to int32) is narrowed
///   into a new buffer.
/// * External data (`data_location = EXTERNAL`, keys `location` / `offset` / `length`) is
///   memory-mapped with `MappedFile`, one mapping per distinct file, and the tensor is a view of
///   it. `location` must stay inside the model's folder: absolute paths, `..` components and
///   symlinks that resolve outside it are refused.
///
/// Every failure is a `NodusError` naming the file and the tensor. NaN and Inf values are
/// not errors. Limitations: little-endian hosts only; segmented tensors and the element types
/// Nodus has no `DType` for are refused.
final class ONNXTensorReader {
    let proto: ONNXModelProto
    /// "ONNX file '<path>'", the start of every message.
    let context: String
    /// The model's folder as given (`.` for a bare file name).
    let folder: String
    private var realFolder: String?
    private var mappings: [String: MappedFile] = [:]
    private let access: FileAccess

    init(proto: ONNXModelProto, access: FileAccess) {
        self.proto = proto
        self.access = access
        self.context = "ONNX file '\(proto.path)'"
        if let slash = proto.path.lastIndex(of: "/") {
            let prefix = String(proto.path[..<slash])
            self.folder = prefix.isEmpty ? "/" : prefix
        } else {
            self.folder = "."
        }
    }

    /// The tensor `description` describes; `subject` names it in messages ("initializer 'w'").
    func tensor(_ description: nodus_onnx_tensor, subject: String) throws -> Tensor {
        let where_ = "\(context): \(subject)"
        let typeName = DType.onnxElementTypeName(description.elem_type)
        guard let dtype = DType(onnxElementType: description.elem_type) else {
            let supported = DType.allCases.map { DType.onnxElementTypeName($0.onnxElementType) }.joined(separator: ", ")
            if description.elem_type <= 0 || typeName.hasPrefix("type ") {
                throw NodusError.format("\(where_) has element type \(typeName), which ONNX does not define")
            }
            throw NodusError.unsupported("\(where_) has element type \(typeName), which Nodus does not support (supported: \(supported))")
        }
        let dims = (0..<Int(max(description.rank, 0))).map { Int(description.dims[$0]) }
        guard dims.allSatisfy({ $0 >= 0 }) else {
            throw NodusError.format("\(where_) has dims \(dims) with a negative dimension")
        }
        let elementCount: Int
        do {
            elementCount = try Tensor.elementCount(of: dims)
        } catch {
            throw NodusError.format("\(where_) has dims \(dims), too large (2^40 elements or more)")
        }
        let declared = "\(typeName) \(dims)"
        guard description.has_segment == 0 else {
            throw NodusError.unsupported("\(where_) is a segment of a larger tensor, which Nodus does not support")
        }

        let fields = (0...8).filter { description.data_fields & (1 << UInt32($0)) != 0 }
        guard fields.count <= 1 else {
            throw NodusError.format("\(where_) holds its data in several fields (\(fields.map(ONNXTensorReader.fieldName).joined(separator: ", "))); exactly one is allowed")
        }
        let kind = Int(description.data_kind)
        let typedKind = ONNXTensorReader.typedKind(of: dtype)
        let isTyped = kind >= Int(NODUS_ONNX_DATA_FLOAT.rawValue) && kind <= Int(NODUS_ONNX_DATA_STRING.rawValue)
        if isTyped && kind != typedKind {
            throw NodusError.format("\(where_) is \(typeName) but holds \(ONNXTensorReader.fieldName(kind)) (\(typeName) values belong in raw_data or \(ONNXTensorReader.fieldName(typedKind)))")
        }

        let byteCount = elementCount * dtype.byteSize
        switch kind {
        case Int(NODUS_ONNX_DATA_NONE.rawValue):
            guard elementCount == 0 else {
                throw NodusError.format("\(where_) holds no data, but \(declared) needs \(elementCount) values")
            }
            return try Tensor(zeros: dims, dtype: dtype)
        case Int(NODUS_ONNX_DATA_RAW.rawValue):
            guard description.count == byteCount else {
                throw NodusError.format("\(where_): raw_data holds \(description.count) bytes, but \(declared) needs \(byteCount)")
            }
            return try view(description.data, byteCount: byteCount, dims: dims, dtype: dtype)
        case Int(NODUS_ONNX_DATA_EXTERNAL.rawValue):
            return try external(description, subject: where_, dims: dims, dtype: dtype, declared: declared)
        default:
            guard description.count == elementCount else {
                throw NodusError.format("\(where_): \(ONNXTensorReader.fieldName(kind)) holds \(description.count) values, but \(declared) needs \(elementCount)")
            }
            if kind != Int(NODUS_ONNX_DATA_INT32.rawValue) || dtype == .int32 {
                return try view(description.data, byteCount: byteCount, dims: dims, dtype: dtype)
            }
            return try narrowed(description.data, dims: dims, dtype: dtype, count: elementCount)
        }
    }

    /// A view of `byteCount` bytes owned by the parsed protobuf.
    private func view(_ data: UnsafeRawPointer?, byteCount: Int, dims: [Int], dtype: DType) throws -> Tensor {
        guard byteCount > 0, let data else { return try Tensor(zeros: dims, dtype: dtype) }
        // The protobuf is never written; the mutable pointer is only what `Storage` stores.
        let storage = Storage(viewing: UnsafeMutableRawPointer(mutating: data), byteCount: byteCount, owner: proto)
        return Tensor(storage: storage, shape: dims, dtype: dtype)
    }

    /// `int32_data` narrowed to FLOAT16 / BFLOAT16 (bit patterns), UINT8 or BOOL (0 / 1).
    private func narrowed(_ data: UnsafeRawPointer?, dims: [Int], dtype: DType, count: Int) throws -> Tensor {
        let result = try Tensor(zeros: dims, dtype: dtype)
        guard count > 0, let data else { return result }
        let source = data.assumingMemoryBound(to: Int32.self)
        switch dtype {
        case .float16, .bfloat16:
            let target = result.bytes.assumingMemoryBound(to: UInt16.self)
            for index in 0..<count { target[index] = UInt16(truncatingIfNeeded: source[index]) }
        case .bool:
            let target = result.bytes.assumingMemoryBound(to: UInt8.self)
            for index in 0..<count { target[index] = source[index] != 0 ? 1 : 0 }
        default:
            let target = result.bytes.assumingMemoryBound(to: UInt8.self)
            for index in 0..<count { target[index] = UInt8(truncatingIfNeeded: source[index]) }
        }
        return result
    }

    // MARK: - External data

    private func external(_ description: nodus_onnx_tensor, subject: String, dims: [Int], dtype: DType,
                          declared: String) throws -> Tensor {
        var entries: [String: String] = [:]
        var copy = description
        for index in 0..<description.external_count {
            var key = nodus_onnx_string()
            var value = nodus_onnx_string()
            guard nodus_onnx_tensor_external_entry(&copy, index, &key, &value) == 1 else { continue }
            entries[key.string] = value.string
        }
        guard let location = entries["location"], !location.isEmpty else {
            throw NodusError.format("\(subject): external data has no 'location'")
        }
        let offset = try ONNXTensorReader.externalNumber(entries["offset"] ?? "0", key: "offset", subject: subject)
        let needed = dims.reduce(1, *) * dtype.byteSize
        if let lengthText = entries["length"] {
            let length = try ONNXTensorReader.externalNumber(lengthText, key: "length", subject: subject)
            guard length == needed else {
                throw NodusError.format("\(subject): external data length \(length), but \(declared) needs \(needed) bytes")
            }
        }
        let mapping = try mappedFile(location, subject: subject)
        guard offset <= mapping.byteCount, needed <= mapping.byteCount - offset else {
            throw NodusError.format("\(subject): external data (offset \(offset), length \(needed)) runs past the end of '\(location)' (\(mapping.byteCount) bytes)")
        }
        guard needed > 0 else { return try Tensor(zeros: dims, dtype: dtype) }
        // The mapping is PROT_READ; the mutable pointer is only what `Storage` stores.
        let start = UnsafeMutableRawPointer(mutating: mapping.bytes + offset)
        return Tensor(storage: Storage(viewing: start, byteCount: needed, owner: mapping), shape: dims, dtype: dtype)
    }

    /// The mapping of external data file `location`, checked to lie inside the model's folder.
    private func mappedFile(_ location: String, subject: String) throws -> MappedFile {
        guard !location.utf8.contains(0) else {
            throw NodusError.format("\(subject): external data location holds a NUL byte")
        }
        guard !location.hasPrefix("/") else {
            throw NodusError.format("\(subject): external data location '\(location)' is an absolute path; external data must lie in the model's folder")
        }
        guard !location.split(separator: "/").contains("..") else {
            throw NodusError.format("\(subject): external data location '\(location)' leads outside the model's folder ('..')")
        }
        let folderPath = try resolvedFolder()
        let joined = folder + "/" + location
        guard let resolved = ONNXTensorReader.realPath(joined) else {
            throw NodusError.io("\(subject): cannot open external data '\(joined)': \(String(cString: strerror(errno)))")
        }
        let inside = folderPath == "/" ? resolved.hasPrefix("/") : resolved.hasPrefix(folderPath + "/")
        guard inside else {
            throw NodusError.format("\(subject): external data location '\(location)' resolves to '\(resolved)', outside the model's folder '\(folderPath)'")
        }
        if let mapping = mappings[resolved] { return mapping }
        // Opened by the joined path, which reaches the file whatever bytes its real path holds
        // (a String holds only UTF-8). stat first: opening a FIFO for reading would block.
        var status = stat()
        guard stat(joined, &status) == 0 else {
            throw NodusError.io("\(subject): cannot stat external data '\(joined)': \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw NodusError.io("\(subject): external data '\(joined)' is not a regular file")
        }
        let mapping = try MappedFile(path: joined, access: access)
        mappings[resolved] = mapping
        return mapping
    }

    private func resolvedFolder() throws -> String {
        if let realFolder { return realFolder }
        guard let resolved = ONNXTensorReader.realPath(folder) else {
            throw NodusError.io("\(context): cannot resolve the model's folder '\(folder)': \(String(cString: strerror(errno)))")
        }
        realFolder = resolved
        return resolved
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func externalNumber(_ text: String, key: String, subject: String) throws -> Int {
        guard let value = Int(text), value >= 0 else {
            throw NodusError.format("\(subject): external data \(key) '\(text)' is not a non-negative integer")
        }
        return value
    }

    // MARK: - Field names

    /// The typed field ONNX keeps `dtype`'s values in.
    private static func typedKind(of dtype: DType) -> Int {
        switch dtype {
        case .float32: Int(NODUS_ONNX_DATA_FLOAT.rawValue)
        case .float64: Int(NODUS_ONNX_DATA_DOUBLE.rawValue)
        case .int64: Int(NODUS_ONNX_DATA_INT64.rawValue)
        case .int32, .float16, .bfloat16, .uint8, .bool: Int(NODUS_ONNX_DATA_INT32.rawValue)
        }
    }

    static func fieldName(_ kind: Int) -> String {
        switch kind {
        case Int(NODUS_ONNX_DATA_RAW.rawValue): "raw_data"
        case Int(NODUS_ONNX_DATA_FLOAT.rawValue): "float_data"
        case Int(NODUS_ONNX_DATA_INT32.rawValue): "int32_data"
        case Int(NODUS_ONNX_DATA_INT64.rawValue): "int64_data"
        case Int(NODUS_ONNX_DATA_DOUBLE.rawValue): "double_data"
        case Int(NODUS_ONNX_DATA_UINT64.rawValue): "uint64_data"
        case Int(NODUS_ONNX_DATA_STRING.rawValue): "string_data"
        case Int(NODUS_ONNX_DATA_EXTERNAL.rawValue): "external data"
        default: "no field"
        }
    }
}
