import FuzzSupport
import NodusFormats

/// libFuzzer target: an `.onnx` file through the protobuf reader and the graph checks
/// (tensors, value infos, attributes, topological order, ONNX's checker).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNXModel(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let path = ScratchFolder.write(input.bytes, to: "onnx/model.onnx")
        let model = try ONNXModel.load(path, access: .read)
        for tensor in model.graph.initializers.values { _ = tensor.floatArray() }
    }
}
