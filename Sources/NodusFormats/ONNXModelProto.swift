import CNodusONNX
import NodusCore

/// The parsed protobuf of an `.onnx` file (the C++ `onnx::ModelProto` behind `CNodusONNX`).
/// It owns the file's inline tensor bytes: tensors read from `raw_data` are views whose
/// `Storage` keeps this object, and so the parsed model, alive.
final class ONNXModelProto: @unchecked Sendable {
    // Immutable after init; the C functions only read it, from any thread.
    let handle: OpaquePointer
    let path: String

    /// Parses the file at `path` (streamed; a FIFO or directory is refused without blocking).
    /// - Throws: `NodusError.io` when it cannot be read, `NodusError.format` when it is not a valid
    ///   protobuf (truncated, garbled, over 2 GB), `NodusError(.internal)` on C++ failures.
    init(path: String) throws {
        var message = [CChar](repeating: 0, count: 1024)
        var model: OpaquePointer?
        let status = nodus_onnx_model_open(path, &model, &message, message.count)
        guard status == Int32(NODUS_ONNX_OK.rawValue), let model else {
            let text = String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            switch status {
            case Int32(NODUS_ONNX_IO.rawValue): throw NodusError.io(text)
            case Int32(NODUS_ONNX_FORMAT.rawValue): throw NodusError.format(text)
            default: throw NodusError(.internal, text)
            }
        }
        self.handle = model
        self.path = path
    }

    deinit { nodus_onnx_model_free(handle) }

    /// Runs ONNX 1.12's checker where it knows the model's versions.
    /// - Returns: true when it ran and passed, false when it was skipped (newer IR or opset).
    /// - Throws: `NodusError.format` with the checker's message when the model fails it.
    func check() throws -> Bool {
        var message = [CChar](repeating: 0, count: 4096)
        let result = nodus_onnx_model_check(handle, &message, message.count)
        let text = String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if result < 0 {
            throw NodusError.format("ONNX file '\(path)' fails ONNX's model checker (onnx 1.12): \(text)")
        }
        return result == 1
    }
}

extension nodus_onnx_string {
    /// The bytes as a Swift string (invalid UTF-8 becomes U+FFFD).
    var string: String {
        guard let data, size > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
    }
}
