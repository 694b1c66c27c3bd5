#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Heun's second-order method on the probability-flow ODE (Karras et al.,
/// arXiv 2206.00364, Algorithm 1 without churn): an Euler step, then a
/// correction with the average of both derivatives.
///
/// Matches diffusers 0.42.1 `HeunDiscreteScheduler` (`set_timesteps`,
/// `scale_model_input`, `step`, `add_noise`, `init_noise_sigma`) in float32 as
/// torch computes it, and honours `num_train_timesteps`, `beta_start` (default
/// 0.00085), `beta_end` (0.012), `beta_schedule` (linear, scaled_linear,
/// squaredcos_cap_v2, exp), `trained_betas`, `prediction_type` (epsilon,
/// v_prediction, sample), `use_karras_sigmas`, `use_exponential_sigmas`,
/// `sigma_min`, `sigma_max`, `clip_sample`, `clip_sample_range`,
/// `timestep_spacing` and `steps_offset`. As in diffusers, `timesteps` holds
/// 2N - 1 entries for N steps (every timestep after the first twice) and the
/// model runs once per entry: even entries take the first-order (Euler) step,
/// odd entries the second-order correction, so `order` is 2.
///
/// Limitations: `use_beta_sigmas` is refused (diffusers needs scipy); custom
/// timestep lists are not offered. A model output with twice the sample's
/// channels has its second half ignored.
public struct HeunDiscreteScheduler: Scheduler {
    public let className = "HeunDiscreteScheduler"
    public let schedule: NoiseSchedule
    public let predictionType: NoiseSchedule.PredictionType
    public let conversion: SigmaConversion
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    public let clipSample: Bool
    public let clipSampleRange: Float
    public private(set) var timesteps: [Double]
    /// The float32 sigmas, every inner sigma twice, 0 appended (2N entries).
    public private(set) var sigmas: [Float]
    var cursor = StepCursor()
    private let trainingSigmas: [Float]
    /// The first-order half's derivative, step size and sample, kept for the correction.
    private var firstOrder: (derivative: Tensor, dt: Float, sample: Tensor)?

    public var timestepsAreIntegers: Bool { false }
    public var order: Int { 2 }

    public var initNoiseSigma: Float {
        let maximum = sigmas.max() ?? 0
        return timestepSpacing == .leading ? (maximum * maximum + 1).squareRoot() : maximum
    }

    /// Reads a diffusers `HeunDiscreteScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept, or `use_beta_sigmas`.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2", "exp"],
                                     defaults: (0.00085, 0.012, "linear"), zeroTerminalSNR: .ignored)
        predictionType = try NoiseSchedule.PredictionType(reader: reader)
        conversion = try SigmaConversion(reader: reader)
        let spacing = try reader.choice("timestep_spacing", default: "linspace",
                                        allowed: TimestepSpacing.allCases.map(\.rawValue))
        timestepSpacing = TimestepSpacing(rawValue: spacing) ?? .linspace
        stepsOffset = try reader.int("steps_offset", default: 0)
        clipSample = try reader.bool("clip_sample", default: false)
        clipSampleRange = Float(try reader.double("clip_sample_range", default: 1.0))
        trainingSigmas = DiscreteSigmas.training(schedule.alphasCumprod)
        timesteps = []
        sigmas = []
        // diffusers' __init__ runs set_timesteps(num_train_timesteps).
        try setTimesteps(schedule.trainTimesteps, mu: nil)
    }

    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        var steps = try DiscreteSigmas.eulerTimesteps(
            timestepSpacing, count: count, trainTimesteps: schedule.trainTimesteps, stepsOffset: stepsOffset,
            className: className
        ).map { Double($0) }
        var values = DiscreteSigmas.interpolate(steps, trainingSigmas)
        if let converted = conversion.convert(values, count: count) {
            let logSigmas = DiscreteSigmas.logarithms(trainingSigmas)
            values = converted
            steps = converted.map { DiscreteSigmas.timestep(forSigma: $0, logSigmas: logSigmas) }
        }
        let single = values.map { Float($0) } + [0]
        var doubled = [single[0]]
        for sigma in single.dropFirst().dropLast() { doubled += [sigma, sigma] }
        doubled.append(0)
        sigmas = doubled
        let floatSteps = steps.map { Double(Float($0)) }
        var doubledSteps = [floatSteps[0]]
        for step in floatSteps.dropFirst() { doubledSteps += [step, step] }
        timesteps = doubledSteps
        firstOrder = nil
        cursor.reset()
    }

    public mutating func setBeginIndex(_ index: Int) {
        cursor.beginIndex = index
    }

    private func index(for timestep: Double) throws -> Int {
        try cursor.sigmaIndex(for: timestep, in: timesteps, sigmaCount: sigmas.count, className: className)
    }

    /// `sample / sqrt(sigma^2 + 1)` with the sigma of the current entry.
    public func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor {
        try DiscreteSigmas.scaledInput(sample, sigma: sigmas[try index(for: timestep)])
    }

    /// One entry of the schedule: the Euler half, or the correction that completes it.
    /// - Throws: `NodusError.invalidArgument` for a first timestep not in the schedule or an
    ///   exhausted schedule; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let index = try index(for: timestep)
        let inFirstOrder = firstOrder == nil
        let sigma = inFirstOrder ? sigmas[index] : sigmas[index - 1]
        let sigmaNext = inFirstOrder ? sigmas[index + 1] : sigmas[index]
        let sigmaHat = sigma
        let sigmaInput = inFirstOrder ? sigmaHat : sigmaNext
        let count = sample.elementCount
        let x = inputs.sample.floats, output = inputs.modelOutput.floats
        let derivative = try Tensor(zeros: sample.shape)
        let slope = derivative.floats
        let outputScale = -sigmaInput / (sigmaInput * sigmaInput + 1).squareRoot()
        let sampleDivisor = sigmaInput * sigmaInput + 1
        let divisor = inFirstOrder ? sigmaHat : sigmaNext
        for i in 0..<count {
            var original: Float
            switch predictionType {
            case .epsilon: original = x[i] - sigmaInput * output[i]
            case .vPrediction: original = output[i] * outputScale + x[i] / sampleDivisor
            case .sample: original = output[i]
            }
            if clipSample { original = min(max(original, -clipSampleRange), clipSampleRange) }
            slope[i] = (x[i] - original) / divisor
        }
        let result = try Tensor(zeros: sample.shape)
        let previous = result.floats
        if let saved = firstOrder {
            let first = saved.derivative.floats, start = saved.sample.floats
            for i in 0..<count {
                let average = (first[i] + slope[i]) / 2
                previous[i] = start[i] + average * saved.dt
            }
            firstOrder = nil
        } else {
            let dt = sigmaNext - sigmaHat
            for i in 0..<count { previous[i] = x[i] + slope[i] * dt }
            firstOrder = (derivative, dt, try Self.copied(inputs.sample))
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
