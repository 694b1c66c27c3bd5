#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Euler's method on the probability-flow ODE in sigma space (Karras et al.,
/// arXiv 2206.00364, Algorithm 2), with optional churn.
///
/// Matches diffusers 0.42.1 `EulerDiscreteScheduler` (`set_timesteps`,
/// `scale_model_input`, `step`, `add_noise`, `init_noise_sigma`) in float32 as
/// torch computes it, with sigmas in float64 as numpy computes them, and honours
/// `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule` (linear,
/// scaled_linear, squaredcos_cap_v2), `trained_betas`, `prediction_type`
/// (epsilon, v_prediction, sample, original_sample), `interpolation_type`
/// (linear, log_linear), `use_karras_sigmas`, `use_exponential_sigmas`,
/// `sigma_min`, `sigma_max`, `timestep_spacing`, `timestep_type` (discrete,
/// continuous), `steps_offset`, `rescale_betas_zero_snr` and
/// `final_sigmas_type` (zero, sigma_min). The model input is divided by
/// sqrt(sigma^2 + 1); `initNoiseSigma` is the largest sigma ("linspace",
/// "trailing") or sqrt(max^2 + 1) ("leading"). The step index comes from the
/// first timestep (or `setBeginIndex`) and then advances by one per step.
///
/// Limitations: `use_beta_sigmas` is refused (diffusers needs scipy); custom
/// timestep / sigma lists are not offered. The `step` arguments `s_churn`,
/// `s_tmin`, `s_tmax` and `s_noise` are the properties `churn`,
/// `churnMinimumSigma`, `churnMaximumSigma` and `noiseScale`; with churn the
/// noise diffusers draws comes from the caller. A model output with twice the
/// sample's channels has its second half ignored.
public struct EulerDiscreteScheduler: Scheduler {
    public let className = "EulerDiscreteScheduler"
    public let schedule: NoiseSchedule
    /// epsilon, v_prediction, or sample (the config's "sample" or "original_sample").
    public let predictionType: NoiseSchedule.PredictionType
    /// "linear" or "log_linear".
    public let interpolationType: String
    public let conversion: SigmaConversion
    public let timestepSpacing: TimestepSpacing
    /// "discrete" or "continuous" (continuous timesteps 0.25 log sigma, with v_prediction only).
    public let timestepType: String
    public let stepsOffset: Int
    /// "zero" or "sigma_min": the sigma after the last step.
    public let finalSigmasType: String
    /// diffusers' `s_churn` (0: plain Euler), `s_tmin`, `s_tmax`, `s_noise`.
    public var churn: Float = 0
    public var churnMinimumSigma: Float = 0
    public var churnMaximumSigma: Float = .infinity
    public var noiseScale: Float = 1

    public private(set) var timesteps: [Double]
    /// The float32 sigmas of the schedule, the final sigma appended.
    public private(set) var sigmas: [Float]
    var cursor = StepCursor()
    private let trainingSigmas: [Float]

    public var timestepsAreIntegers: Bool { false }
    /// diffusers draws noise in every step; it is used only with churn.
    public var drawsStepNoise: Bool { churn > 0 }

    public var initNoiseSigma: Float {
        let maximum = sigmas.max() ?? 0
        return timestepSpacing == .leading ? (maximum * maximum + 1).squareRoot() : maximum
    }

    /// Reads a diffusers `EulerDiscreteScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept, or `use_beta_sigmas`.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"],
                                     zeroTerminalSNR: .rescaleBetasAndClampLastAlpha)
        let prediction = try reader.choice("prediction_type", default: "epsilon",
                                           allowed: ["epsilon", "v_prediction", "sample", "original_sample"])
        predictionType = prediction == "v_prediction" ? .vPrediction : (prediction == "epsilon" ? .epsilon : .sample)
        interpolationType = try reader.choice("interpolation_type", default: "linear", allowed: ["linear", "log_linear"])
        conversion = try SigmaConversion(reader: reader)
        let spacing = try reader.choice("timestep_spacing", default: "linspace",
                                        allowed: TimestepSpacing.allCases.map(\.rawValue))
        timestepSpacing = TimestepSpacing(rawValue: spacing) ?? .linspace
        timestepType = try reader.choice("timestep_type", default: "discrete", allowed: ["discrete", "continuous"])
        stepsOffset = try reader.int("steps_offset", default: 0)
        finalSigmasType = try reader.choice("final_sigmas_type", default: "zero", allowed: ["zero", "sigma_min"])
        trainingSigmas = DiscreteSigmas.training(schedule.alphasCumprod)
        // __init__: the training sigmas, descending, then 0.
        let descending = Array(trainingSigmas.reversed())
        sigmas = descending + [0]
        if timestepType == "continuous" && predictionType == .vPrediction {
            timesteps = descending.map { Double(0.25 * logf($0)) }
        } else {
            let count = schedule.trainTimesteps
            timesteps = DiscreteSigmas.linspace(0, Double(count - 1), count: count).reversed().map { Double(Float($0)) }
        }
    }

    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        let trainCount = schedule.trainTimesteps
        var steps = try DiscreteSigmas.eulerTimesteps(
            timestepSpacing, count: count, trainTimesteps: trainCount, stepsOffset: stepsOffset, className: className
        ).map { Double($0) }
        var values: [Double]
        if interpolationType == "linear" {
            values = DiscreteSigmas.interpolate(steps, trainingSigmas)
        } else {
            let logs = NoiseSchedule.linspace(DiscreteSigmas.numpyLog(trainingSigmas[trainingSigmas.count - 1]),
                                              DiscreteSigmas.numpyLog(trainingSigmas[0]), count: count + 1)
            values = logs.map { Double(expf($0)) }
        }
        if let converted = conversion.convert(values, count: count) {
            let logSigmas = DiscreteSigmas.logarithms(trainingSigmas)
            values = converted
            steps = converted.map { DiscreteSigmas.timestep(forSigma: $0, logSigmas: logSigmas) }
        }
        let last: Float = finalSigmasType == "sigma_min" ? trainingSigmas[0] : 0
        sigmas = values.map { Float($0) } + [last]
        if timestepType == "continuous" && predictionType == .vPrediction {
            timesteps = sigmas.dropLast().map { Double(0.25 * logf($0)) }
        } else {
            timesteps = steps.map { Double(Float($0)) }
        }
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

    /// One Euler step from sigma (raised by churn) to the next sigma.
    /// - Parameter noise: needed when `churn` > 0 raises this step's sigma.
    /// - Throws: `NodusError.invalidArgument` for a first timestep not in the schedule,
    ///   an exhausted schedule or missing noise; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let index = try index(for: timestep)
        let sigma = sigmas[index]
        var gamma = 0.0
        if churnMinimumSigma <= sigma && sigma <= churnMaximumSigma {
            gamma = min(Double(churn) / Double(sigmas.count - 1), 2.0.squareRoot() - 1)
        }
        let sigmaHat = sigma * Float(gamma + 1)
        let count = sample.elementCount
        var x = inputs.sample.floats
        var churned: Tensor?
        if gamma > 0 {
            guard let noise = inputs.noise else { throw Self.missingNoise(className: className, timestep: timestep) }
            let raised = try Tensor(zeros: sample.shape)
            let spread = (sigmaHat * sigmaHat - sigma * sigma).squareRoot()
            let z = noise.floats, y = raised.floats
            for i in 0..<count {
                let epsilon = z[i] * noiseScale
                y[i] = x[i] + epsilon * spread
            }
            churned = raised
            x = raised.floats
        }
        let output = inputs.modelOutput.floats
        let result = try Tensor(zeros: sample.shape)
        let previous = result.floats
        let dt = sigmas[index + 1] - sigmaHat
        let outputScale = -sigma / (sigma * sigma + 1).squareRoot(), sampleDivisor = sigma * sigma + 1
        for i in 0..<count {
            let original: Float
            switch predictionType {
            case .epsilon: original = x[i] - sigmaHat * output[i]
            case .sample: original = output[i]
            case .vPrediction: original = output[i] * outputScale + x[i] / sampleDivisor
            }
            let derivative = (x[i] - original) / sigmaHat
            previous[i] = x[i] + derivative * dt
        }
        withExtendedLifetime(churned) {}
        cursor.stepIndex = index + 1
        return result
    }

    /// diffusers `add_noise`: original + noise sigma, sigma at the begin index (or the timestep's place).
    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        var lookup = cursor
        if lookup.beginIndex == nil { lookup.stepIndex = nil }
        let index = try lookup.index(for: timestep, in: timesteps, className: className)
        return try DiscreteSigmas.noised(inputs.original, noise: inputs.noise, sigma: sigmas[index])
    }
}
