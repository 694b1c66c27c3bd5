#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Linear multistep sampling in sigma space (k-diffusion's `sample_lms`): the
/// next sample from up to four past derivatives, weighted by the integrals of
/// their Lagrange polynomials over the step.
///
/// Matches diffusers 0.42.1 `LMSDiscreteScheduler` (`set_timesteps`,
/// `scale_model_input`, `step` with its default order 4, `add_noise`,
/// `init_noise_sigma`) in float32 as torch computes it, and honours
/// `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule` (linear,
/// scaled_linear, squaredcos_cap_v2), `trained_betas`, `prediction_type`
/// (epsilon, v_prediction, sample), `timestep_spacing`, `steps_offset`,
/// `use_karras_sigmas`, `use_exponential_sigmas`, `sigma_min` and `sigma_max`.
/// The model input is divided by sqrt(sigma^2 + 1); `initNoiseSigma` is the
/// largest sigma ("linspace", "trailing") or sqrt(max^2 + 1) ("leading"). The
/// past derivatives are kept in the value; `setTimesteps` clears them.
///
/// Limitations: the coefficients are the exact integrals of the Lagrange
/// polynomials in float64, where diffusers calls scipy's `quad` on their
/// float32 evaluation (they agree to about 1e-7 relative); `use_beta_sigmas` is
/// refused; `step`'s `order` argument is the property `lmsOrder`. A model
/// output with twice the sample's channels has its second half ignored.
public struct LMSDiscreteScheduler: Scheduler {
    public let className = "LMSDiscreteScheduler"
    public let schedule: NoiseSchedule
    public let predictionType: NoiseSchedule.PredictionType
    public let conversion: SigmaConversion
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    /// diffusers `step(order=4)`: how many past derivatives are combined.
    public var lmsOrder = 4
    public private(set) var timesteps: [Double]
    /// The float32 sigmas of the schedule, 0 appended.
    public private(set) var sigmas: [Float]
    var cursor = StepCursor()
    private let trainingSigmas: [Float]
    /// The last `lmsOrder` derivatives, oldest first.
    private var derivatives: [Tensor] = []

    public var timestepsAreIntegers: Bool { false }

    public var initNoiseSigma: Float {
        let maximum = sigmas.max() ?? 0
        return timestepSpacing == .leading ? (maximum * maximum + 1).squareRoot() : maximum
    }

    /// Reads a diffusers `LMSDiscreteScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept, or `use_beta_sigmas`.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"],
                                     zeroTerminalSNR: .ignored)
        predictionType = try NoiseSchedule.PredictionType(reader: reader)
        conversion = try SigmaConversion(reader: reader)
        let spacing = try reader.choice("timestep_spacing", default: "linspace",
                                        allowed: TimestepSpacing.allCases.map(\.rawValue))
        timestepSpacing = TimestepSpacing(rawValue: spacing) ?? .linspace
        stepsOffset = try reader.int("steps_offset", default: 0)
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
        sigmas = values.map { Float($0) } + [0]
        timesteps = steps.map { Double(Float($0)) }
        derivatives = []
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

    /// diffusers `get_lms_coefficient`: the integral over [sigma_t, sigma_t+1] of the
    /// Lagrange basis polynomial of derivative `current` among the last `order` sigmas.
    func coefficient(order: Int, index t: Int, current: Int) -> Double {
        // The product as a polynomial in tau (coefficients by ascending power), in float64.
        var polynomial = [1.0]
        for k in 0..<order where k != current {
            let root = Double(sigmas[t - k])
            let scale = Double(sigmas[t - current]) - root
            var next = [Double](repeating: 0, count: polynomial.count + 1)
            for (power, value) in polynomial.enumerated() {
                next[power + 1] += value / scale
                next[power] -= value * root / scale
            }
            polynomial = next
        }
        func primitive(_ x: Double) -> Double {
            var total = 0.0
            for (power, value) in polynomial.enumerated().reversed() {
                total += value * pow(x, Double(power + 1)) / Double(power + 1)
            }
            return total
        }
        return primitive(Double(sigmas[t + 1])) - primitive(Double(sigmas[t]))
    }

    /// One linear multistep step.
    /// - Throws: `NodusError.invalidArgument` for a first timestep not in the schedule or an
    ///   exhausted schedule; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let index = try index(for: timestep)
        let sigma = sigmas[index]
        let count = sample.elementCount
        let x = inputs.sample.floats, output = inputs.modelOutput.floats
        let derivative = try Tensor(zeros: sample.shape)
        let slope = derivative.floats
        let outputScale = -sigma / (sigma * sigma + 1).squareRoot(), sampleDivisor = sigma * sigma + 1
        for i in 0..<count {
            let original: Float
            switch predictionType {
            case .epsilon: original = x[i] - sigma * output[i]
            case .vPrediction: original = output[i] * outputScale + x[i] / sampleDivisor
            case .sample: original = output[i]
            }
            slope[i] = (x[i] - original) / sigma
        }
        derivatives.append(derivative)
        if derivatives.count > lmsOrder { derivatives.removeFirst() }
        let order = min(index + 1, max(lmsOrder, 1))
        let coefficients = (0..<order).map { Float(coefficient(order: order, index: index, current: $0)) }
        // sample + sum(coefficient * derivative, newest derivative first), the sum starting at 0.
        var total = [Float](repeating: 0, count: count)
        for (coefficient, past) in zip(coefficients, derivatives.reversed()) {
            let values = past.floats
            for i in 0..<count { total[i] = total[i] + coefficient * values[i] }
        }
        let result = try Tensor(zeros: sample.shape)
        let previous = result.floats
        for i in 0..<count { previous[i] = x[i] + total[i] }
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
