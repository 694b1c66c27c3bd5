import CNodus
import NodusCore
import NodusModels

// VAE decoding, encoding and tiling, on a model (its default context) or in a run context:
// `nodus_model_decode` / `nodus_context_decode`, `nodus_model_encode` / `nodus_context_encode`,
// `nodus_model_encode_latent` / `nodus_context_encode_latent`, `nodus_model_set_vae_tiling`.

/// A VAE and the run context one call runs in.
private struct VAECall {
    let vae: AutoencoderKLModel
    let context: RunContext

    /// The VAE behind a model handle, in its default context.
    static func model(_ pointer: OpaquePointer?, _ what: String, in function: String) throws -> VAECall {
        let handle = try Argument.handle(pointer, ModelHandle.self, "model", in: function)
        guard let vae = handle.model as? AutoencoderKLModel else {
            throw NodusError.invalidArgument("\(function): a '\(handle.model.kind.name)' model cannot \(what) (load a VAE)")
        }
        return VAECall(vae: vae, context: vae.defaultContext)
    }

    /// The VAE behind a context handle, in that context.
    static func context(_ pointer: OpaquePointer?, _ what: String, in function: String) throws -> VAECall {
        let handle = try Argument.handle(pointer, ContextHandle.self, "context", in: function)
        guard let vae = handle.model as? AutoencoderKLModel else {
            throw NodusError.invalidArgument("\(function): a context of a '\(handle.model.kind.name)' model cannot \(what) (make it from a VAE)")
        }
        return VAECall(vae: vae, context: handle.context)
    }

    func decode(_ latent: UnsafePointer<nodus_tensor>?, _ output: UnsafeMutablePointer<nodus_tensor>?,
                in function: String) throws {
        let source = try Argument.required(latent, "latent", in: function)
        let target = try Argument.required(output, "output", in: function)
        let tensor = try TensorBridge.input(source.pointee, label: "\(function): latent", copy: false)
        let shape = try vae.decodedShape(forLatent: tensor.shape)
        let label = "\(function): output"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        let image = try vae.decode(tensor, in: context)
        try TensorBridge.write(image, to: target, shape: shape, dtype: .float32, label: label)
    }

    func encode(_ image: UnsafePointer<nodus_tensor>?, _ mean: UnsafeMutablePointer<nodus_tensor>?,
                _ logvar: UnsafeMutablePointer<nodus_tensor>?, in function: String) throws {
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
        let posterior = try vae.encode(tensor, in: context)
        try TensorBridge.write(posterior.mean, to: meanTarget, shape: shape, dtype: .float32, label: meanLabel)
        try TensorBridge.write(posterior.logvar, to: logvarTarget, shape: shape, dtype: .float32, label: logvarLabel)
    }

    func encodeLatent(_ image: UnsafePointer<nodus_tensor>?, _ noise: UnsafePointer<nodus_tensor>?,
                      _ latent: UnsafeMutablePointer<nodus_tensor>?, in function: String) throws {
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
        let result = try vae.encodeLatent(tensor, noise: draw, in: context)
        try TensorBridge.write(result, to: target, shape: shape, dtype: .float32, label: label)
    }
}

/// `nodus_status nodus_model_decode(nodus_model *, const nodus_tensor *latent, nodus_tensor *output)`.
@_cdecl("nodus_model_decode")
public func nodusModelDecode(_ model: OpaquePointer?, _ latent: UnsafePointer<nodus_tensor>?,
                             _ output: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_model_decode"
    return Status.run(function) {
        try VAECall.model(model, "decode latents", in: function).decode(latent, output, in: function)
    }
}

/// `nodus_status nodus_context_decode(nodus_context *, const nodus_tensor *latent, nodus_tensor *output)`.
@_cdecl("nodus_context_decode")
public func nodusContextDecode(_ context: OpaquePointer?, _ latent: UnsafePointer<nodus_tensor>?,
                               _ output: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_context_decode"
    return Status.run(function) {
        try VAECall.context(context, "decode latents", in: function).decode(latent, output, in: function)
    }
}

/// `nodus_status nodus_model_encode(nodus_model *, const nodus_tensor *image, nodus_tensor *mean, nodus_tensor *logvar)`.
@_cdecl("nodus_model_encode")
public func nodusModelEncode(_ model: OpaquePointer?, _ image: UnsafePointer<nodus_tensor>?,
                             _ mean: UnsafeMutablePointer<nodus_tensor>?,
                             _ logvar: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_model_encode"
    return Status.run(function) {
        try VAECall.model(model, "encode images", in: function).encode(image, mean, logvar, in: function)
    }
}

/// `nodus_status nodus_context_encode(nodus_context *, const nodus_tensor *image, nodus_tensor *mean,
/// nodus_tensor *logvar)`.
@_cdecl("nodus_context_encode")
public func nodusContextEncode(_ context: OpaquePointer?, _ image: UnsafePointer<nodus_tensor>?,
                               _ mean: UnsafeMutablePointer<nodus_tensor>?,
                               _ logvar: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_context_encode"
    return Status.run(function) {
        try VAECall.context(context, "encode images", in: function).encode(image, mean, logvar, in: function)
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
        try VAECall.model(model, "encode images", in: function).encodeLatent(image, noise, latent, in: function)
    }
}

/// `nodus_status nodus_context_encode_latent(nodus_context *, const nodus_tensor *image, const nodus_tensor *noise,
/// nodus_tensor *latent)`.
@_cdecl("nodus_context_encode_latent")
public func nodusContextEncodeLatent(_ context: OpaquePointer?, _ image: UnsafePointer<nodus_tensor>?,
                                     _ noise: UnsafePointer<nodus_tensor>?,
                                     _ latent: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_context_encode_latent"
    return Status.run(function) {
        try VAECall.context(context, "encode images", in: function).encodeLatent(image, noise, latent, in: function)
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
