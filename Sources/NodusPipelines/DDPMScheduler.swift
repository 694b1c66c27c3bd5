#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Denoising diffusion probabilistic models (arXiv 2006.11239): ancestral
/// sampling from the posterior q(x_{t-1} | x_t, x_0), formulas 6 and 7.
///
/// Matches diffusers 0.42.1 `DDPMScheduler` (`set_timesteps`, `step`) in float32
/// arithmetic, operation by operation as torch evaluates it, and honours every
/// field of its config: `num_train_timesteps`, `beta_start`, `beta_end`,
/// `beta_schedule` (linear, scaled_linear, squaredcos_cap_v2, sigmoid, laplace),
/// `trained_betas`, `variance_type`, `clip_sample`, `clip_sample_range`,
/// `prediction_type`, `thresholding`, `dynamic_thresholding_ratio`,
/// `sample_max_value`, `timestep_spacing`, `steps_offset` and
/// `rescale_betas_zero_snr`. With `learned` / `learned_range` and a model
/// output of twice the sample's channels, the second half is the predicted
/// variance (as diffusers splits it); other variance types ignore that half.
///
/// Limitations: the noise diffusers draws inside `step` comes from the caller
/// (needed at every timestep > 0); `variance_type` "fixed_large_log" is rejected,
/// because diffusers takes the square root of log(beta) < 0 there and every
/// noisy step is NaN; custom timestep lists are not offered.
public struct DDPMScheduler: Scheduler {
    /// `variance_type`: how the posterior variance of a step is chosen.
    public enum VarianceType: String, Sendable, CaseIterable {
        case fixedSmall = "fixed_small"
        case fixedSmallLog = "fixed_small_log"
        case fixedLarge = "fixed_large"
        case learned
        case learnedRange = "learned_range"
    }

    public let className = "DDPMScheduler"
    public let schedule: NoiseSchedule
    public let varianceType: VarianceType
    public let predictionType: NoiseSchedule.PredictionType
    public let sampleLimit: NoiseSchedule.SampleLimit
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    public private(set) var timesteps: [Double]
    /// The step count of the last `setTimesteps`, nil before it (then the previous timestep is t - 1).
    public private(set) var inferenceStepCount: Int?

    public var timestepsAreIntegers: Bool { true }
    /// diffusers draws `variance_noise` in every step but the last (t = 0).
    public var drawsStepNoise: Bool { true }
    public var initNoiseSigma: Float { 1 }

    /// Reads a diffusers `DDPMScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept (or "fixed_large_log").
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(
            reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2", "laplace", "sigmoid"])
        let variance = try reader.string("variance_type", default: "fixed_small")
        if variance == "fixed_large_log" {
            throw NodusError.unsupported(
                "\(context): 'variance_type' = 'fixed_large_log' is not supported: diffusers 0.42.1 takes "
                    + "sqrt(log(beta)) there, which is NaN for every step with timestep > 0")
        }
        guard let parsedVariance = VarianceType(rawValue: variance) else {
            throw NodusError.unsupported(
                "\(context): 'variance_type' = '\(variance)' is not supported (expected one of "
                    + VarianceType.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        varianceType = parsedVariance
        predictionType = try NoiseSchedule.PredictionType(reader: reader)
        sampleLimit = try NoiseSchedule.SampleLimit(reader: reader)
        timestepSpacing = try TimestepSpacing(reader: reader)
        stepsOffset = try reader.int("steps_offset", default: 0)
        timesteps = (0..<schedule.trainTimesteps).reversed().map { Double($0) }
    }

    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        let values = try timestepSpacing.timesteps(
            count: count, trainTimesteps: schedule.trainTimesteps, stepsOffset: stepsOffset, className: className)
        timesteps = values.map { Double($0) }
        inferenceStepCount = count
    }

    /// diffusers `previous_timestep`: the next entry of `timesteps` (-1 after the last).
    func previousTimestep(_ t: Int) throws -> Int {
        guard inferenceStepCount != nil else { return t - 1 }
        guard let index = timesteps.firstIndex(of: Double(t)) else {
            throw NodusError.invalidArgument("\(className).step: timestep \(t) is not in the current schedule")
        }
        return index == timesteps.count - 1 ? -1 : Int(timesteps[index + 1])
    }

    /// One ancestral step.
    /// - Parameter noise: needed at every timestep > 0.
    /// - Throws: `NodusError.invalidArgument` for a timestep outside the schedule or when noise is
    ///   needed and missing; `NodusError.shape` for mismatched tensors, or a learned variance type
    ///   without the model output's variance channels.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let (t, index) = try Self.integerTimestep(
            timestep, trainTimesteps: schedule.trainTimesteps, className: className)
        let previous = try previousTimestep(t)
        let learned = varianceType == .learned || varianceType == .learnedRange
        if learned && t > 0 && inputs.extra == nil {
            throw NodusError.shape(
                "\(className).step: variance_type '\(varianceType.rawValue)' needs a model output with twice the "
                    + "sample's channels, got \(modelOutput.shape) for sample \(sample.shape)")
        }
        if t > 0 && inputs.noise == nil {
            throw Self.missingNoise(className: className, timestep: timestep)
        }

        // 1. alphas and betas.
        let alphaProduct = schedule.alphasCumprod[index]
        let alphaProductPrevious: Float = previous >= 0 ? schedule.alphasCumprod[previous] : 1
        let betaProduct = 1 - alphaProduct
        let betaProductPrevious = 1 - alphaProductPrevious
        let currentAlpha = alphaProduct / alphaProductPrevious
        let currentBeta = 1 - currentAlpha
        let rootAlpha = alphaProduct.squareRoot()
        let rootBeta = betaProduct.squareRoot()

        // 2. predicted original sample x0 (formula 15).
        let elementCount = sample.elementCount
        let original = try Tensor(zeros: sample.shape)
        let x = inputs.sample.floats, output = inputs.modelOutput.floats, x0 = original.floats
        switch predictionType {
        case .epsilon:
            for i in 0..<elementCount { x0[i] = (x[i] - rootBeta * output[i]) / rootAlpha }
        case .sample:
            for i in 0..<elementCount { x0[i] = output[i] }
        case .vPrediction:
            for i in 0..<elementCount { x0[i] = rootAlpha * x[i] - rootBeta * output[i] }
        }

        // 3. clip or threshold x0.
        sampleLimit.apply(to: original)

        // 4. posterior mean mu_t (formula 7).
        let originalCoefficient = (alphaProductPrevious.squareRoot() * currentBeta) / betaProduct
        let sampleCoefficient = currentAlpha.squareRoot() * betaProductPrevious / betaProduct
        let result = try Tensor(zeros: sample.shape)
        let previousSample = result.floats
        for i in 0..<elementCount {
            previousSample[i] = originalCoefficient * x0[i] + sampleCoefficient * x[i]
        }

        // 5. add the posterior noise (diffusers `_get_variance`).
        guard t > 0, let noise = inputs.noise else { return result }
        let z = noise.floats
        let posteriorBeta = 1 - alphaProduct / alphaProductPrevious
        let variance = max((1 - alphaProductPrevious) / (1 - alphaProduct) * posteriorBeta, Float(1e-20))
        switch varianceType {
        case .fixedSmall:
            let scale = variance.squareRoot()
            for i in 0..<elementCount { previousSample[i] = previousSample[i] + scale * z[i] }
        case .fixedSmallLog:
            let scale = expf(0.5 * logf(variance))
            for i in 0..<elementCount { previousSample[i] = previousSample[i] + scale * z[i] }
        case .fixedLarge:
            let scale = posteriorBeta.squareRoot()
            for i in 0..<elementCount { previousSample[i] = previousSample[i] + scale * z[i] }
        case .learned:
            guard let predicted = inputs.extra?.floats else { return result }
            for i in 0..<elementCount {
                previousSample[i] = previousSample[i] + predicted[i].squareRoot() * z[i]
            }
        case .learnedRange:
            guard let predicted = inputs.extra?.floats else { return result }
            let minLog = logf(variance)
            let maxLog = logf(posteriorBeta)
            for i in 0..<elementCount {
                let fraction = (predicted[i] + 1) / 2
                let logVariance = fraction * maxLog + (1 - fraction) * minLog
                previousSample[i] = previousSample[i] + expf(0.5 * logVariance) * z[i]
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
