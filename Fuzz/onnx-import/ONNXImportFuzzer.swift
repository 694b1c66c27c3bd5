import FuzzSupport
import NodusCore
import NodusFormats
import NodusModels

/// libFuzzer target: an `.onnx` file loaded as a model (import, graph passes, memory plan), then
/// run once on zero inputs of its declared shapes (symbolic axes 1) when those are small.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNXImport(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let path = ScratchFolder.write(input.bytes, to: "onnx/model.onnx")
        let model = try ONNXGraphModel(path: path, options: ModelOptions(threads: 1, fileAccess: .read))
        var inputs: [String: Tensor] = [:]
        var elements = 0
        for value in model.file.graph.inputs {
            let shape = (value.shape ?? []).map { dimension -> Int in
                if case .fixed(let size) = dimension { return size }
                return 1
            }
            elements += shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            guard elements <= 1 << 16 else { return }
            inputs[value.name] = try Tensor(zeros: shape, dtype: value.dtype ?? .float32)
        }
        for output in try model.forwardAll(inputs) { _ = output.floatArray() }
    }
}
