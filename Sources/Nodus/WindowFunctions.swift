import CNodus
import NodusCore
import NodusModels
import NodusPipelines

enum WindowParameters {
    static var defaults: nodus_window_params {
        var params = nodus_window_params()
        params.struct_size = UInt32(MemoryLayout<nodus_window_params>.stride)
        params.overlap = 0.25
        params.blend = Int32(NODUS_BLEND_GAUSSIAN)
        params.sigma_scale = 0.125
        return params
    }
}

/// `void nodus_window_params_init(nodus_window_params *)`: overlap 0.25, Gaussian blend with sigma scale 0.125.
@_cdecl("nodus_window_params_init")
public func nodusWindowParamsInit(_ params: UnsafeMutablePointer<nodus_window_params>?) {
    guard let params else { return }
    params.pointee = WindowParameters.defaults
}

/// `nodus_status nodus_model_forward_windowed(nodus_model *, const nodus_tensor *input,
/// const nodus_window_params *, nodus_tensor *output)`: MONAI-style sliding-window inference.
@_cdecl("nodus_model_forward_windowed")
public func nodusModelForwardWindowed(_ model: OpaquePointer?, _ input: UnsafePointer<nodus_tensor>?,
                                     _ params: UnsafePointer<nodus_window_params>?,
                                     _ output: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_model_forward_windowed"
    return Status.run(function) {
        let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        let source = try Argument.required(input, "input", in: function)
        let paramsPointer = try Argument.required(params, "params", in: function)
        let target = try Argument.required(output, "output", in: function)
        let settings = try Argument.params(paramsPointer, defaults: WindowParameters.defaults,
                                           initializer: "nodus_window_params_init", in: function)
        guard (1...3).contains(settings.ndim) else {
            throw NodusError.invalidArgument("\(function): params.ndim is \(settings.ndim); it must be 1, 2 or 3")
        }
        _ = try Argument.finite(settings.overlap, "params.overlap", in: function)
        _ = try Argument.finite(settings.sigma_scale, "params.sigma_scale", in: function)
        let sizes = withUnsafeBytes(of: settings.window_size) { Array($0.bindMemory(to: Int64.self)) }
        let blend: SlidingWindowInference.Blend
        switch settings.blend {
        case Int32(NODUS_BLEND_GAUSSIAN): blend = .gaussian(sigmaScale: Double(settings.sigma_scale))
        case Int32(NODUS_BLEND_CONSTANT): blend = .constant
        default: throw NodusError.invalidArgument("\(function): params.blend is \(settings.blend); use NODUS_BLEND_GAUSSIAN or NODUS_BLEND_CONSTANT")
        }
        let inference = try SlidingWindowInference(
            windowSize: sizes.prefix(Int(settings.ndim)).map { Int(clamping: $0) },
            overlap: Double(settings.overlap), blend: blend)
        let outputName = try settings.output_name.map { try Argument.string($0, "params.output_name", in: function) }
        let predictor = try WindowPredictor(model: handle.model, outputName: outputName)
        let tensor = try TensorBridge.input(source.pointee, label: "\(function): input", copy: false)
        let shape = try inference.outputShape(for: tensor.shape, windowOutputShape: { try predictor.outputShape(for: $0) })
        let label = "\(function): output"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        var progress: ((Int, Int) -> Bool)?
        if let callback = settings.progress {
            let userData = settings.progress_user_data
            progress = { done, total in callback(Int32(clamping: done), Int32(clamping: total), userData) == 0 }
        }
        let result = try inference.run(tensor, progress: progress) { try predictor($0) }
        try TensorBridge.write(result, to: target, shape: shape, dtype: .float32, label: label)
    }
}
