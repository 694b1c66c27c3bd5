import NodusCore
import NodusFormats

/// Denoising diffusion implicit models (arXiv 2010.02502): deterministic for
/// `eta` = 0, with `eta` times the DDPM posterior standard deviation of noise
/// otherwise.
///
/// Matches diffusers 0.42.1 `DDIMScheduler` (`set_timesteps`, `step`) in float32
/// arithmetic, operation by operation as torch evaluates it, and honours every
/// field of its config: `num_train_timesteps`, `beta_start`, `beta_end`,
/// `beta_schedule` (linear, scaled_linear, squaredcos_cap_v2), `trained_betas`,
/// `clip_sample`, `clip_sample_range`, `set_alpha_to_one`, `steps_offset`,
/// `prediction_type`, `thresholding`, `dynamic_thresholding_ratio`,
/// `sample_max_value`, `timestep_spacing` and `rescale_betas_zero_snr`.
/// The previous timestep is `t - num_train_timesteps / count`, for every
/// spacing, as in diffusers.
///
/// Limitations: the noise for `eta` > 0 comes from the caller (diffusers'
/// `variance_noise`); `use_clipped_model_output` is not offered; a model output
/// with twice the sample's channels (learned variance) is accepted and its second
/// half ignored, where diffusers would fail to broadcast.
public struct DDIMScheduler: Scheduler {
    public let className = "DDIMScheduler"
    public let schedule: NoiseSchedule
    public let predictionType: NoiseSchedule.PredictionType
    public let sampleLimit: NoiseSchedule.SampleLimit
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    /// `alphas_cumprod` used after the last step: 1 with `set_alpha_to_one`, else `alphas_cumprod[0]`.
    public let finalAlphaCumprod: Float
    /// The weight of the noise added in each step (diffusers passes it to `step`); 0 = deterministic DDIM.
    public var eta: Float = 0

    /// With `eta` > 0, diffusers draws `variance_noise` in every step.
    public var drawsStepNoise: Bool { eta > 0 }
    public private(set) var timesteps: [Double]
    /// The step count of the last `setTimesteps`, nil before it.
    public private(set) var inferenceStepCount: Int?

    public var timestepsAreIntegers: Bool { true }
    public var initNoiseSigma: Float { 1 }

    /// Reads a diffusers `DDIMScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"])
        predictionType = try NoiseSchedule.PredictionType(reader: reader)
        sampleLimit = try NoiseSchedule.SampleLimit(reader: reader)
        timestepSpacing = try TimestepSpacing(reader: reader)
        stepsOffset = try reader.int("steps_offset", default: 0)
        finalAlphaCumprod = try reader.bool("set_alpha_to_one", default: true) ? 1 : schedule.alphasCumprod[0]
        timesteps = (0..<schedule.trainTimesteps).reversed().map { Double($0) }
    }

    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        let values = try timestepSpacing.timesteps(
            count: count, trainTimesteps: schedule.trainTimesteps, stepsOffset: stepsOffset, className: className)
        timesteps = values.map { Double($0) }
        inferenceStepCount = count
    }

    /// One DDIM step (formula 12 of the paper).
    /// - Parameter noise: needed when `eta` > 0 and the step's standard deviation is not 0.
    /// - Throws: `NodusError.invalidArgument` before `setTimesteps`, for a timestep outside the
    ///   training range, or when noise is needed and missing; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        guard let count = inferenceStepCount else {
            throw NodusError.invalidArgument("\(className).step: call setTimesteps before step")
        }
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let trainCount = schedule.trainTimesteps
        let (t, index) = try Self.integerTimestep(timestep, trainTimesteps: trainCount, className: className)
        let previous = t - trainCount / count

        // 1. alpha and beta products of this and the previous timestep.
        let alphaProduct = schedule.alphasCumprod[index]
        let alphaProductPrevious = previous >= 0 ? schedule.alphasCumprod[previous] : finalAlphaCumprod
        let betaProduct = 1 - alphaProduct
        let rootAlpha = alphaProduct.squareRoot()
        let rootBeta = betaProduct.squareRoot()

        // 2. predicted original sample x0 and predicted noise.
        let elementCount = sample.elementCount
        let original = try Tensor(zeros: sample.shape)
        let epsilon = try Tensor(zeros: sample.shape)
        let x = inputs.sample.floats, output = inputs.modelOutput.floats
        let x0 = original.floats, eps = epsilon.floats
        switch predictionType {
        case .epsilon:
            for i in 0..<elementCount {
                x0[i] = (x[i] - rootBeta * output[i]) / rootAlpha
                eps[i] = output[i]
            }
        case .sample:
            for i in 0..<elementCount {
                x0[i] = output[i]
                eps[i] = (x[i] - rootAlpha * output[i]) / rootBeta
            }
        case .vPrediction:
            for i in 0..<elementCount {
                x0[i] = rootAlpha * x[i] - rootBeta * output[i]
                eps[i] = rootAlpha * output[i] + rootBeta * x[i]
            }
        }

        // 3. clip or threshold x0.
        sampleLimit.apply(to: original)

        // 4. sigma_t(eta) = eta * sqrt(variance); direction pointing to x_t.
        let betaProductPrevious = 1 - alphaProductPrevious
        let variance = (betaProductPrevious / betaProduct) * (1 - alphaProduct / alphaProductPrevious)
        let standardDeviation = eta * variance.squareRoot()
        let directionScale = (1 - alphaProductPrevious - standardDeviation * standardDeviation).squareRoot()
        let rootAlphaPrevious = alphaProductPrevious.squareRoot()

        // 5. x_{t-1} = sqrt(alpha_prev) x0 + direction (+ sigma_t noise).
        let result = try Tensor(zeros: sample.shape)
        let previousSample = result.floats
        for i in 0..<elementCount {
            previousSample[i] = rootAlphaPrevious * x0[i] + directionScale * eps[i]
        }
        if eta > 0 {
            if let noise = inputs.noise {
                let z = noise.floats
                for i in 0..<elementCount { previousSample[i] = previousSample[i] + standardDeviation * z[i] }
            } else if standardDeviation != 0 {
                throw Self.missingNoise(className: className, timestep: timestep)
            }
        }
        return result
    }

    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        let (_, index) = try Self.integerTimestep(timestep, trainTimesteps: schedule.trainTimesteps, className: className)
        return try schedule.addNoise(to: inputs.original, noise: inputs.noise, index: index)
    }
}
