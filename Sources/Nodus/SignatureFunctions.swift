#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore
import NodusModels

/// `nodus_model_forward_all` and the `nodus_model_{input,output}_{count,info}` functions.

/// `nodus_status nodus_model_forward_all(nodus_model *, const nodus_tensor *inputs, size_t,
/// nodus_tensor *outputs, size_t)`.
@_cdecl("nodus_model_forward_all")
public func nodusModelForwardAll(_ model: OpaquePointer?, _ inputs: UnsafePointer<nodus_tensor>?, _ inputCount: Int,
                                 _ outputs: UnsafeMutablePointer<nodus_tensor>?, _ outputCount: Int) -> nodus_status {
    let function = "nodus_model_forward_all"
    return Status.run(function) {
        let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        try ForwardCall(function: function, signatures: handle.model.outputSignatures, inputs: inputs,
                        inputCount: inputCount, outputs: outputs, outputCount: outputCount)
            .run(shapes: handle.model.outputShapes, forward: handle.model.forwardAll)
    }
}

/// The shared body of the entry points that run a model on named inputs into caller outputs.
struct ForwardCall {
    let function: String
    let signatures: [TensorSignature]
    let inputs: UnsafePointer<nodus_tensor>?
    let inputCount: Int
    let outputs: UnsafeMutablePointer<nodus_tensor>?
    let outputCount: Int

    /// Checks the outputs, reports their shapes (computing nothing while any data is NULL), else
    /// runs `forward` and writes every output.
    func run(shapes: ([String: Tensor]) throws -> [[Int]],
             forward: ([String: Tensor]) throws -> [Tensor]) throws {
        guard outputCount == signatures.count else {
            throw NodusError.invalidArgument("\(function): output_count is \(outputCount), but the model has \(signatures.count) outputs")
        }
        let targets = try Argument.required(outputs, "outputs", in: function)
        let named = try TensorBridge.namedInputs(inputs, count: inputCount, in: function)
        let outputShapes = try shapes(named)
        var ready = true
        for (index, signature) in signatures.enumerated() {
            let label = "\(function): output '\(signature.name)'"
            ready = try TensorBridge.prepareOutput(targets + index, shape: outputShapes[index], dtype: signature.dtype,
                                                   label: label) && ready
        }
        guard ready else { return }
        let results = try forward(named)
        for (index, signature) in signatures.enumerated() {
            try TensorBridge.write(results[index], to: targets + index, shape: outputShapes[index], dtype: signature.dtype,
                                   label: "\(function): output '\(signature.name)'")
        }
    }
}

/// `size_t nodus_model_input_count(const nodus_model *)`.
@_cdecl("nodus_model_input_count")
public func nodusModelInputCount(_ model: OpaquePointer?) -> Int {
    guard let handle = ModelHandle.lookup(model, "model", in: "nodus_model_input_count") else { return 0 }
    return handle.inputSignatures.count
}

/// `size_t nodus_model_output_count(const nodus_model *)`.
@_cdecl("nodus_model_output_count")
public func nodusModelOutputCount(_ model: OpaquePointer?) -> Int {
    guard let handle = ModelHandle.lookup(model, "model", in: "nodus_model_output_count") else { return 0 }
    return handle.outputSignatures.count
}

/// `nodus_status nodus_model_input_info(const nodus_model *, size_t, nodus_tensor_info *)`.
@_cdecl("nodus_model_input_info")
public func nodusModelInputInfo(_ model: OpaquePointer?, _ index: Int,
                                _ outInfo: UnsafeMutablePointer<nodus_tensor_info>?) -> nodus_status {
    SignatureInfo.describe(model, index, outInfo, outputs: false, in: "nodus_model_input_info")
}

/// `nodus_status nodus_model_output_info(const nodus_model *, size_t, nodus_tensor_info *)`.
@_cdecl("nodus_model_output_info")
public func nodusModelOutputInfo(_ model: OpaquePointer?, _ index: Int,
                                 _ outInfo: UnsafeMutablePointer<nodus_tensor_info>?) -> nodus_status {
    SignatureInfo.describe(model, index, outInfo, outputs: true, in: "nodus_model_output_info")
}

enum SignatureInfo {
    static func describe(_ model: OpaquePointer?, _ index: Int, _ outInfo: UnsafeMutablePointer<nodus_tensor_info>?,
                         outputs: Bool, in function: String) -> nodus_status {
        Status.run(function) {
            let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
            let target = try Argument.required(outInfo, "out_info", in: function)
            let signatures = outputs ? handle.outputSignatures : handle.inputSignatures
            guard index >= 0, index < signatures.count else {
                throw NodusError.invalidArgument("\(function): index \(index) is out of range (the model has \(signatures.count))")
            }
            let signature = signatures[index].signature
            var info = nodus_tensor_info()
            info.name = UnsafePointer(signatures[index].name)
            info.dtype = signature.dtype.rawValue
            if let shape = signature.shape {
                guard shape.count <= TensorBridge.maximumDimensions else {
                    throw NodusError.unsupported("\(function): '\(signature.name)' has \(shape.count) dimensions, more than \(TensorBridge.maximumDimensions)")
                }
                info.ndim = Int32(shape.count)
                withUnsafeMutableBytes(of: &info.shape) { bytes in
                    for (axis, size) in shape.enumerated() { bytes.storeBytes(of: Int64(size ?? -1), toByteOffset: axis * 8, as: Int64.self) }
                }
            } else {
                info.ndim = -1
            }
            target.pointee = info
        }
    }
}
