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
    var labels: [Int64]
    /// The starting latent, already scaled by the scheduler's init_noise_sigma.
    var initNoise: Tensor
    var stepNoise: Tensor?
    /// Channels concatenated after the noisy latent at every step.
    var conditioning: Tensor?
    var progressLabel = "sampling"

    /// The final latent.
    func run() throws -> Tensor {
        let progress = ProgressBar(label: progressLabel)
        let latent = try Tensor(zeros: initNoise.shape)
        var initDescription = try TensorArgument.make(initNoise)
        var stepNoiseDescription = try stepNoise.map { try TensorArgument.make($0) }
        var conditioningDescription = try conditioning.map { try TensorArgument.make($0) }
        var output = try TensorArgument.make(latent)
        try labels.withUnsafeBufferPointer { labelBuffer in
            try withUnsafeMutablePointer(to: &initDescription) { initPointer in
                try withOptionalPointer(to: &stepNoiseDescription) { stepNoisePointer in
                    try withOptionalPointer(to: &conditioningDescription) { conditioningPointer in
                        var params = nodus_sample_params()
                        nodus_sample_params_init(&params)
                        params.steps = Int32(steps)
                        params.guidance_scale = guidance
                        params.init_noise = UnsafePointer(initPointer)
                        params.class_labels = labelBuffer.baseAddress
                        params.class_label_count = labelBuffer.count
                        params.step_noise = stepNoisePointer.map { UnsafePointer($0) }
                        params.conditioning = conditioningPointer.map { UnsafePointer($0) }
                        params.progress = { done, total, userData in
                            guard let userData else { return 0 }
                            Unmanaged<ProgressBar>.fromOpaque(userData).takeUnretainedValue()
                                .update(done: Int(done), total: Int(total))
                            return 0
                        }
                        params.progress_user_data = Unmanaged.passUnretained(progress).toOpaque()
                        try check(nodus_sample(model.pointer, scheduler.pointer, &params, &output), "sampling")
                    }
                }
            }
        }
        withExtendedLifetime((initNoise, stepNoise, conditioning, progress)) {}
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

/// Runs `body` with a pointer to the wrapped value, or nil.
func withOptionalPointer<Value, Result>(to value: inout Value?,
                                        _ body: (UnsafeMutablePointer<Value>?) throws -> Result) rethrows -> Result {
    guard value != nil else { return try body(nil) }
    var unwrapped = value.unsafelyUnwrapped
    defer { value = unwrapped }
    return try withUnsafeMutablePointer(to: &unwrapped) { try body($0) }
}
