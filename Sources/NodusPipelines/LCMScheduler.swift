import NodusCore
import NodusFormats

/// Latent consistency model sampling (arXiv 2310.04378): each step maps the
/// sample to the consistency function's estimate of x0 (with the boundary
/// condition's c_skip and c_out), then noises it again to the next timestep.
///
/// Matches diffusers 0.42.1 `LCMScheduler` (`set_timesteps`,
/// `get_scalings_for_boundary_condition_discrete`, `step`, `add_noise`) in
/// float32 as torch computes it (the timestep being a torch tensor, as the
/// pipelines pass it), and honours `num_train_timesteps`, `beta_start` (default
/// 0.00085), `beta_end` (0.012), `beta_schedule` (default scaled_linear; linear,
/// squaredcos_cap_v2), `trained_betas`, `original_inference_steps`,
/// `clip_sample`, `clip_sample_range`, `set_alpha_to_one`, `prediction_type`,
/// `thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`,
/// `timestep_scaling` and `rescale_betas_zero_snr`. `timestep_spacing` and
/// `steps_offset` are read and, as in diffusers, unused. The model input is not
/// scaled and `initNoiseSigma` is 1.
///
/// Limitations: the noise diffusers draws in every step but the last comes from
/// the caller; custom timestep lists and `set_timesteps`' `strength` are not
/// offered. A model output with twice the sample's channels has its second half
/// ignored.
public struct LCMScheduler: Scheduler {
    public let className = "LCMScheduler"
    public let schedule: NoiseSchedule
    public let predictionType: NoiseSchedule.PredictionType
    public let sampleLimit: NoiseSchedule.SampleLimit
    public let originalInferenceSteps: Int
    public let timestepScaling: Double
    public let finalAlphaCumprod: Float
    public private(set) var timesteps: [Double]
    var cursor = StepCursor()
    private var inferenceStepCount: Int?

    public var timestepsAreIntegers: Bool { true }
    /// diffusers draws noise in every step but the last.
    public var drawsStepNoise: Bool { true }
    public var initNoiseSigma: Float { 1 }

    /// Reads a diffusers `LCMScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"],
                                     defaults: (0.00085, 0.012, "scaled_linear"), zeroTerminalSNR: .rescaleBetas)
        predictionType = try NoiseSchedule.PredictionType(reader: reader)
        var limit = try NoiseSchedule.SampleLimit(reader: reader)
        limit.clipSample = try reader.bool("clip_sample", default: false)
        sampleLimit = limit
        originalInferenceSteps = try reader.int("original_inference_steps", default: 50)
        guard originalInferenceSteps >= 1 else {
            throw NodusError.unsupported("\(context): 'original_inference_steps' = \(originalInferenceSteps) must be at least 1")
        }
        timestepScaling = try reader.double("timestep_scaling", default: 10.0)
        finalAlphaCumprod = try reader.bool("set_alpha_to_one", default: true) ? 1 : schedule.alphasCumprod[0]
        _ = try reader.choice("timestep_spacing", default: "leading", allowed: TimestepSpacing.allCases.map(\.rawValue))
        _ = try reader.int("steps_offset", default: 0)
        timesteps = (0..<schedule.trainTimesteps).reversed().map { Double($0) }
    }

    /// - Throws: `NodusError.invalidArgument` for a count below 1 or above
    ///   `original_inference_steps`, or an `original_inference_steps` above `num_train_timesteps`.
    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        let trainCount = schedule.trainTimesteps
        let original = originalInferenceSteps
        guard original <= trainCount else {
            throw NodusError.invalidArgument(
                "\(className).setTimesteps: original_inference_steps = \(original) cannot be larger than "
                    + "num_train_timesteps = \(trainCount)")
        }
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        guard count <= original else {
            throw NodusError.invalidArgument(
                "\(className).setTimesteps: \(count) steps cannot be more than original_inference_steps = \(original)")
        }
        // The distillation schedule: every (N / original)-th training timestep, descending.
        let stride = trainCount / original
        let origin = (1...original).map { $0 * stride - 1 }.reversed().map { $0 }
        let spacing = Double(origin.count) / Double(count)
        timesteps = (0..<count).map { index in
            Double(origin[Int((Double(index) * spacing).rounded(.down))])
        }
        inferenceStepCount = count
        cursor.reset()
    }

    public mutating func setBeginIndex(_ index: Int) {
        cursor.beginIndex = index
    }

    /// One consistency step.
    /// - Parameter noise: needed at every step but the last.
    /// - Throws: `NodusError.invalidArgument` before `setTimesteps`, for a timestep not in the
    ///   schedule, an exhausted schedule or missing noise; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        guard let count = inferenceStepCount else {
            throw NodusError.invalidArgument("\(className).step: call setTimesteps before step")
        }
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let (t, index) = try Self.integerTimestep(timestep, trainTimesteps: schedule.trainTimesteps, className: className)
        let position = try cursor.index(for: timestep, in: timesteps, className: className)
        let isLast = position == count - 1
        if !isLast && inputs.noise == nil {
            throw Self.missingNoise(className: className, timestep: timestep)
        }
        let previousTimestep = position + 1 < timesteps.count ? Int(timesteps[position + 1]) : t
        let alpha = schedule.alphasCumprod[index]
        let alphaPrevious = previousTimestep >= 0 ? schedule.alphasCumprod[previousTimestep] : finalAlphaCumprod
        let beta = 1 - alpha, betaPrevious = 1 - alphaPrevious

        // Boundary condition scalings (sigma_data = 0.5), the timestep a float32 tensor times the scaling.
        let scaled = Float(t) * Float(timestepScaling)
        let squared = scaled * scaled
        let skip = (1 / (squared + 0.25)) * 0.25
        let out = scaled / (squared + 0.25).squareRoot()

        let elementCount = sample.elementCount
        let original = try Tensor(zeros: sample.shape)
        let x = inputs.sample.floats, m = inputs.modelOutput.floats, x0 = original.floats
        let rootAlpha = alpha.squareRoot(), rootBeta = beta.squareRoot()
        switch predictionType {
        case .epsilon: for i in 0..<elementCount { x0[i] = (x[i] - rootBeta * m[i]) / rootAlpha }
        case .sample: for i in 0..<elementCount { x0[i] = m[i] }
        case .vPrediction: for i in 0..<elementCount { x0[i] = rootAlpha * x[i] - rootBeta * m[i] }
        }
        sampleLimit.apply(to: original)
        let result = try Tensor(zeros: sample.shape)
        let y = result.floats
        for i in 0..<elementCount {
            let denoised = out * x0[i] + skip * x[i]
            y[i] = denoised
        }
        if !isLast, let noise = inputs.noise {
            let z = noise.floats
            let keep = alphaPrevious.squareRoot(), spread = betaPrevious.squareRoot()
            for i in 0..<elementCount { y[i] = keep * y[i] + spread * z[i] }
        }
        cursor.stepIndex = position + 1
        return result
    }

    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        let (_, index) = try Self.integerTimestep(timestep, trainTimesteps: schedule.trainTimesteps, className: className)
        return try schedule.addNoise(to: inputs.original, noise: inputs.noise, index: index)
    }
}
