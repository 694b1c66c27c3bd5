#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Ancestral sampling with Euler steps (k-diffusion's `sample_euler_ancestral`):
/// an Euler step down to sigma_down, then fresh noise of standard deviation
/// sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2.
///
/// Matches diffusers 0.42.1 `EulerAncestralDiscreteScheduler` (`set_timesteps`,
/// `scale_model_input`, `step`, `add_noise`, `init_noise_sigma`) in float32 as
/// torch computes it, and honours `num_train_timesteps`, `beta_start`,
/// `beta_end`, `beta_schedule` (linear, scaled_linear, squaredcos_cap_v2),
/// `trained_betas`, `prediction_type` (epsilon, v_prediction),
/// `timestep_spacing`, `steps_offset` and `rescale_betas_zero_snr`. The model
/// input is divided by sqrt(sigma^2 + 1); `initNoiseSigma` is the largest sigma
/// ("linspace", "trailing") or sqrt(max^2 + 1) ("leading").
///
/// Limitations: the noise diffusers draws in every step comes from the caller
/// (one tensor of the sample's shape per step; the last step, with sigma_up = 0,
/// needs none). `prediction_type` "sample" is refused at load, where diffusers
/// fails in `step`. A model output with twice the sample's channels has its
/// second half ignored.
public struct EulerAncestralDiscreteScheduler: Scheduler {
    public let className = "EulerAncestralDiscreteScheduler"
    public let schedule: NoiseSchedule
    public let predictionType: NoiseSchedule.PredictionType
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    public private(set) var timesteps: [Double]
    /// The float32 sigmas of the schedule, 0 appended.
    public private(set) var sigmas: [Float]
    var cursor = StepCursor()
    private let trainingSigmas: [Float]

    public var timestepsAreIntegers: Bool { false }
    /// diffusers draws fresh noise in every step.
    public var drawsStepNoise: Bool { true }

    public var initNoiseSigma: Float {
        let maximum = sigmas.max() ?? 0
        return timestepSpacing == .leading ? (maximum * maximum + 1).squareRoot() : maximum
    }

    /// Reads a diffusers `EulerAncestralDiscreteScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept (or `prediction_type` "sample").
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"],
                                     zeroTerminalSNR: .rescaleBetasAndClampLastAlpha)
        let prediction = try reader.choice("prediction_type", default: "epsilon", allowed: ["epsilon", "v_prediction"])
        predictionType = prediction == "epsilon" ? .epsilon : .vPrediction
        let spacing = try reader.choice("timestep_spacing", default: "linspace",
                                        allowed: TimestepSpacing.allCases.map(\.rawValue))
        timestepSpacing = TimestepSpacing(rawValue: spacing) ?? .linspace
        stepsOffset = try reader.int("steps_offset", default: 0)
        trainingSigmas = DiscreteSigmas.training(schedule.alphasCumprod)
        sigmas = Array(trainingSigmas.reversed()) + [0]
        let count = schedule.trainTimesteps
        timesteps = DiscreteSigmas.linspace(0, Double(count - 1), count: count).reversed()
    }

    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        let steps = try DiscreteSigmas.eulerTimesteps(
            timestepSpacing, count: count, trainTimesteps: schedule.trainTimesteps, stepsOffset: stepsOffset,
            className: className)
        let values = DiscreteSigmas.interpolate(steps.map { Double($0) }, trainingSigmas)
        sigmas = values.map { Float($0) } + [0]
        timesteps = steps.map { Double($0) }
        cursor.reset()
    }

    public mutating func setBeginIndex(_ index: Int) {
        cursor.beginIndex = index
    }

    private func index(for timestep: Double) throws -> Int {
        try cursor.sigmaIndex(for: timestep, in: timesteps, sigmaCount: sigmas.count, className: className)
    }

    /// `sample / sqrt(sigma^2 + 1)` with the sigma of the current step.
    public func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor {
        try DiscreteSigmas.scaledInput(sample, sigma: sigmas[try index(for: timestep)])
    }

    /// One ancestral step.
    /// - Parameter noise: needed whenever sigma_up > 0 (every step but the last).
    /// - Throws: `NodusError.invalidArgument` for a first timestep not in the schedule,
    ///   an exhausted schedule or missing noise; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let index = try index(for: timestep)
        let sigma = sigmas[index]
        let sigmaFrom = sigma, sigmaTo = sigmas[index + 1]
        let fromSquared = sigmaFrom * sigmaFrom, toSquared = sigmaTo * sigmaTo
        let sigmaUp = (toSquared * (fromSquared - toSquared) / fromSquared).squareRoot()
        let sigmaDown = (toSquared - sigmaUp * sigmaUp).squareRoot()
        let dt = sigmaDown - sigma
        if sigmaUp != 0 && inputs.noise == nil {
            throw Self.missingNoise(className: className, timestep: timestep)
        }
        let count = sample.elementCount
        let x = inputs.sample.floats, output = inputs.modelOutput.floats
        let result = try Tensor(zeros: sample.shape)
        let previous = result.floats
        let outputScale = -sigma / (sigma * sigma + 1).squareRoot(), sampleDivisor = sigma * sigma + 1
        for i in 0..<count {
            let original = predictionType == .epsilon
                ? x[i] - sigma * output[i]
                : output[i] * outputScale + x[i] / sampleDivisor
            let derivative = (x[i] - original) / sigma
            previous[i] = x[i] + derivative * dt
        }
        if let noise = inputs.noise {
            let z = noise.floats
            for i in 0..<count { previous[i] = previous[i] + z[i] * sigmaUp }
        }
        cursor.stepIndex = index + 1
        return result
    }

    /// diffusers `add_noise`: original + noise sigma.
    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        var lookup = cursor
        if lookup.beginIndex == nil { lookup.stepIndex = nil }
        let index = try lookup.index(for: timestep, in: timesteps, className: className)
        return try DiscreteSigmas.noised(inputs.original, noise: inputs.noise, sigma: sigmas[index])
    }
}
