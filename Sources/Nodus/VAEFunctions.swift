import CNodus
import NodusCore
import NodusModels

// VAE encoding and tiling: `nodus_model_encode`, `nodus_model_encode_latent`,
// `nodus_model_set_vae_tiling`.

/// The model behind `model` as a VAE encoder, or an error naming `function`.
private func encoder(_ model: OpaquePointer?, in function: String) throws -> any LatentEncoder {
    let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
    guard let encoder = handle.model as? LatentEncoder else {
        throw NodusError.invalidArgument("\(function): a '\(handle.model.kind.name)' model cannot encode images (load a VAE)")
    }
    return encoder
}

/// `nodus_status nodus_model_encode(nodus_model *, const nodus_tensor *image, nodus_tensor *mean, nodus_tensor *logvar)`.
@_cdecl("nodus_model_encode")
public func nodusModelEncode(_ model: OpaquePointer?, _ image: UnsafePointer<nodus_tensor>?,
                             _ mean: UnsafeMutablePointer<nodus_tensor>?,
                             _ logvar: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_model_encode"
    return Status.run(function) {
        let vae = try encoder(model, in: function)
        let source = try Argument.required(image, "image", in: function)
        let meanTarget = try Argument.required(mean, "mean", in: function)
        let logvarTarget = try Argument.required(logvar, "logvar", in: function)
        guard meanTarget != logvarTarget else {
            throw NodusError.invalidArgument("\(function): `mean` and `logvar` are the same tensor")
        }
        let tensor = try TensorBridge.input(source.pointee, label: "\(function): image", copy: false)
        let shape = try vae.encodedShape(forImage: tensor.shape)
        let meanLabel = "\(function): mean", logvarLabel = "\(function): logvar"
        let meanReady = try TensorBridge.prepareOutput(meanTarget, shape: shape, dtype: .float32, label: meanLabel)
        let logvarReady = try TensorBridge.prepareOutput(logvarTarget, shape: shape, dtype: .float32, label: logvarLabel)
        guard meanReady && logvarReady else { return }
        let posterior = try vae.encode(tensor)
        try TensorBridge.write(posterior.mean, to: meanTarget, shape: shape, dtype: .float32, label: meanLabel)
        try TensorBridge.write(posterior.logvar, to: logvarTarget, shape: shape, dtype: .float32, label: logvarLabel)
    }
}

/// `nodus_status nodus_model_encode_latent(nodus_model *, const nodus_tensor *image, const nodus_tensor *noise,
/// nodus_tensor *latent)`: `noise` may be NULL (the mode).
@_cdecl("nodus_model_encode_latent")
public func nodusModelEncodeLatent(_ model: OpaquePointer?, _ image: UnsafePointer<nodus_tensor>?,
                                   _ noise: UnsafePointer<nodus_tensor>?,
                                   _ latent: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_model_encode_latent"
    return Status.run(function) {
        let vae = try encoder(model, in: function)
        let source = try Argument.required(image, "image", in: function)
        let target = try Argument.required(latent, "latent", in: function)
        let tensor = try TensorBridge.input(source.pointee, label: "\(function): image", copy: false)
        let draw = try noise.map { try TensorBridge.input($0.pointee, label: "\(function): noise", copy: false) }
        let shape = try vae.encodedShape(forImage: tensor.shape)
        if let draw, draw.shape != shape {
            throw NodusError.shape("\(function): noise must have the latent's shape \(shape), got \(draw.shape)")
        }
        let label = "\(function): latent"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        let result = try vae.encodeLatent(tensor, noise: draw)
        try TensorBridge.write(result, to: target, shape: shape, dtype: .float32, label: label)
    }
}

/// `nodus_status nodus_model_set_vae_tiling(nodus_model *, int32_t enabled, int32_t tile_sample_size)`.
@_cdecl("nodus_model_set_vae_tiling")
public func nodusModelSetVAETiling(_ model: OpaquePointer?, _ enabled: Int32, _ tileSampleSize: Int32) -> nodus_status {
    let function = "nodus_model_set_vae_tiling"
    return Status.run(function) {
        let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        guard let vae = handle.model as? AutoencoderKLModel else {
            throw NodusError.invalidArgument("\(function): a '\(handle.model.kind.name)' model has no VAE tiling (load a VAE)")
        }
        do {
            try vae.setTiling(enabled: enabled != 0, sampleTileSize: Int(tileSampleSize))
        } catch let error as NodusError {
            throw NodusError(error.code, "\(function): \(error.message)")
        }
    }
}
