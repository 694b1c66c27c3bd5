import CNodus
import NodusCore
import NodusFormats

/// One guided sampling run through `nodus_sample`, with a progress bar, and the
/// VAE decode of its result: what `nodus sample` and `nodus demo` share.
struct SamplingJob {
    var model: ModelHandle
    var scheduler: SchedulerHandle
    var steps: Int
    var guidance: Float
    /// DiT class labels.
    var labels: [Int64] = []
    /// The starting noise, unscaled: nodus_sample multiplies it by the scheduler's
    /// init_noise_sigma (with `imageLatents` it is added to the image instead).
    var initNoise: Tensor
    var stepNoise: Tensor?
    /// Channels concatenated after the noisy latent at every step.
    var conditioning: Tensor?
    /// UNet context, [uncond..., cond...] under guidance.
    var encoderHiddenStates: Tensor?
    var imageLatents: Tensor?
    var strength = 1.0
    var mask: Tensor?
    var progressLabel = "sampling"

    init(model: ModelHandle, scheduler: SchedulerHandle, steps: Int, guidance: Float, initNoise: Tensor) {
        self.model = model
        self.scheduler = scheduler
        self.steps = steps
        self.guidance = guidance
        self.initNoise = initNoise
    }

    /// The final latent.
    func run() throws -> Tensor {
        let progress = ProgressBar(label: progressLabel)
        let latent = try Tensor(zeros: initNoise.shape)
        let tensors = [initNoise, stepNoise, conditioning, encoderHiddenStates, imageLatents, mask]
        // The descriptions live at fixed addresses for the duration of the call.
        let descriptions = UnsafeMutablePointer<nodus_tensor>.allocate(capacity: tensors.count)
        defer { descriptions.deallocate() }
        for (index, tensor) in tensors.enumerated() {
            (descriptions + index).initialize(to: try tensor.map { try TensorArgument.make($0) } ?? nodus_tensor())
        }
        func described(_ index: Int) -> UnsafePointer<nodus_tensor>? {
            tensors[index] == nil ? nil : UnsafePointer(descriptions + index)
        }
        var output = try TensorArgument.make(latent)
        try labels.withUnsafeBufferPointer { labelBuffer in
            var params = nodus_sample_params()
            nodus_sample_params_init(&params)
            params.steps = Int32(steps)
            params.guidance_scale = guidance
            params.init_noise = described(0)
            params.class_labels = labelBuffer.baseAddress
            params.class_label_count = labelBuffer.count
            params.step_noise = described(1)
            params.conditioning = described(2)
            params.encoder_hidden_states = described(3)
            params.image_latents = described(4)
            params.mask = described(5)
            params.strength = strength
            params.progress = { done, total, userData in
                guard let userData else { return 0 }
                Unmanaged<ProgressBar>.fromOpaque(userData).takeUnretainedValue().update(done: Int(done), total: Int(total))
                return 0
            }
            params.progress_user_data = Unmanaged.passUnretained(progress).toOpaque()
            try check(nodus_sample(model.pointer, scheduler.pointer, &params, &output), "sampling")
        }
        withExtendedLifetime((tensors, progress)) {}
        return latent
    }

    /// `vae.decode(latent / scaling_factor).sample`.
    static func decode(_ latent: Tensor, with vae: ModelHandle) throws -> Tensor {
        let scaling = try vae.config()["scaling_factor"]?.doubleValue ?? 0.18215
        let scaled = try Tensor(zeros: latent.shape)
        for index in 0..<latent.elementCount { scaled.floats[index] = latent.floats[index] / Float(scaling) }
        var description = try TensorArgument.make(scaled)
        return try TensorArgument.output("VAE decode") { target in
            nodus_model_decode(vae.pointer, &description, target)
        }
    }
}
