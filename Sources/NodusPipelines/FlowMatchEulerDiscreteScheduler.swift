#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Euler sampling of a rectified-flow model (SD3, Flux, ...): the model predicts
/// the velocity and `x_next = x + (sigma_next - sigma) * v`.
///
/// Matches diffusers 0.42.1 `FlowMatchEulerDiscreteScheduler` (`__init__`,
/// `set_timesteps(count, mu:)`, `step`): sigmas in float64 as numpy computes
/// them, then float32 as torch does, and honours `num_train_timesteps`, `shift`,
/// `use_dynamic_shifting` (with `mu`), `time_shift_type` (exponential, linear),
/// `shift_terminal`, `invert_sigmas`, `use_karras_sigmas`,
/// `use_exponential_sigmas` (with `sigma_min` / `sigma_max` when the config holds
/// them, as diffusers reads them), and `stochastic_sampling`. `base_shift`,
/// `max_shift`, `base_image_seq_len` and `max_image_seq_len` are what pipelines
/// compute `mu` from: see `mu(imageSequenceLength:)`. The step index starts at
/// the first step's timestep and then advances by one per step, as in diffusers.
///
/// Two Nodus config fields extend it for x-prediction rectified flow (MedSyn2):
/// `prediction_type` "sample" with `sample_clamp_min` (`FlowPrediction`: x0
/// turned into the velocity as diffusers' PRX pipeline does), and MONAI's
/// voxel-count shift (`VoxelCountShift`: `use_timestep_transform`, ...), which
/// needs the latent's size in `setTimesteps(_:mu:spatialSize:)`.
///
/// Limitations: `use_beta_sigmas` is rejected (diffusers needs scipy's beta
/// distribution for it); custom sigma / timestep lists, `per_token_timesteps`,
/// `set_begin_index` and the `s_churn` arguments are not offered; stochastic
/// sampling takes its noise from the caller. A model output with twice the
/// sample's channels has its second half ignored.
public struct FlowMatchEulerDiscreteScheduler: Scheduler {
    public let className = "FlowMatchEulerDiscreteScheduler"
    public let trainTimesteps: Int
    public let shift: Double
    public let useDynamicShifting: Bool
    public let baseShift: Double?
    public let maxShift: Double?
    public let baseImageSequenceLength: Int
    public let maxImageSequenceLength: Int
    public let invertSigmas: Bool
    public let shiftTerminal: Double?
    public let useKarrasSigmas: Bool
    public let useExponentialSigmas: Bool
    /// "exponential" or "linear" (`time_shift_type`).
    public let timeShiftType: String
    public let stochasticSampling: Bool
    /// `sigma_min` / `sigma_max` from the config, when present (used by the Karras and exponential sigmas).
    public let configSigmaMin: Double?
    public let configSigmaMax: Double?
    let prediction: FlowPrediction
    let voxelShift: VoxelCountShift?

    public private(set) var timesteps: [Double]
    /// The float32 sigmas of the schedule, with the final 0 (or 1 with `invert_sigmas`) appended.
    public private(set) var sigmas: [Float]
    /// The index of the next step's sigma; nil until the first `step` after `setTimesteps`.
    public private(set) var stepIndex: Int?
    /// The schedule entry the first step starts at (`set_begin_index`); nil: found from the timestep.
    public private(set) var beginIndex: Int?
    private let sigmaMin: Double
    private let sigmaMax: Double

    public var timestepsAreIntegers: Bool { false }
    public var initNoiseSigma: Float { 1 }

    /// Reads a diffusers `FlowMatchEulerDiscreteScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept or `use_beta_sigmas`.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        (trainTimesteps, shift) = try Self.trainingSchedule(reader)
        useDynamicShifting = try reader.bool("use_dynamic_shifting", default: false)
        baseShift = try reader.members["base_shift"] == nil ? 0.5 : reader.optionalDouble("base_shift")
        maxShift = try reader.members["max_shift"] == nil ? 1.15 : reader.optionalDouble("max_shift")
        baseImageSequenceLength = try reader.int("base_image_seq_len", default: 256)
        maxImageSequenceLength = try reader.int("max_image_seq_len", default: 4096)
        invertSigmas = try reader.bool("invert_sigmas", default: false)
        shiftTerminal = try reader.optionalDouble("shift_terminal")
        useKarrasSigmas = try reader.bool("use_karras_sigmas", default: false)
        useExponentialSigmas = try reader.bool("use_exponential_sigmas", default: false)
        let useBetaSigmas = try reader.bool("use_beta_sigmas", default: false)
        timeShiftType = try reader.choice("time_shift_type", default: "exponential", allowed: ["exponential", "linear"])
        stochasticSampling = try reader.bool("stochastic_sampling", default: false)
        configSigmaMin = try reader.optionalDouble("sigma_min")
        configSigmaMax = try reader.optionalDouble("sigma_max")
        prediction = try FlowPrediction(reader: reader)
        voxelShift = try VoxelCountShift(reader: reader)
        if voxelShift != nil && useDynamicShifting {
            throw NodusError.unsupported("\(context): 'use_timestep_transform' (MONAI's voxel-count shift) and 'use_dynamic_shifting' cannot both be true")
        }
        if [useKarrasSigmas, useExponentialSigmas, useBetaSigmas].filter({ $0 }).count > 1 {
            throw NodusError.unsupported(
                "\(context): only one of 'use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas' can be true")
        }
        if useBetaSigmas {
            throw NodusError.unsupported(
                "\(context): 'use_beta_sigmas' = true is not supported (diffusers needs scipy's beta distribution)")
        }

        let initial = Self.trainingSigmas(trainTimesteps: trainTimesteps, shift: useDynamicShifting ? nil : shift)
        sigmas = initial
        let count = Float(trainTimesteps)
        timesteps = initial.map { Double($0 * count) }
        sigmaMax = Double(initial[0])
        sigmaMin = Double(initial[initial.count - 1])
    }

    /// `num_train_timesteps` and `shift`, checked: the fields both flow-matching schedulers share.
    static func trainingSchedule(_ reader: JSONObjectReader) throws -> (trainTimesteps: Int, shift: Double) {
        let context = reader.context
        let trainTimesteps = try reader.int("num_train_timesteps", default: 1000)
        guard (1...NoiseSchedule.maximumTrainTimesteps).contains(trainTimesteps) else {
            throw NodusError.unsupported("\(context): 'num_train_timesteps' = \(trainTimesteps) is out of range (1...\(NoiseSchedule.maximumTrainTimesteps))")
        }
        let shift = try reader.double("shift", default: 1.0)
        guard shift.isFinite, shift > 0 else {
            throw NodusError.format("\(context): 'shift' = \(shift) must be a positive number (sigmas are shifted by it)")
        }
        return (trainTimesteps, shift)
    }

    /// diffusers' `__init__` sigmas: timesteps N...1 in float32, sigmas = t / N, shifted (unless nil).
    static func trainingSigmas(trainTimesteps: Int, shift: Double?) -> [Float] {
        let count = Float(trainTimesteps)
        let initial = (0..<trainTimesteps).map { Float(trainTimesteps - $0) / count }
        guard let shift else { return initial }
        let shiftValue = Float(shift), shiftMinusOne = Float(shift - 1)
        return initial.map { shiftValue * $0 / (1 + shiftMinusOne * $0) }
    }

    /// diffusers pipelines' `calculate_shift`: `mu` for an image of `imageSequenceLength`
    /// tokens, interpolated between (`base_image_seq_len`, `base_shift`) and
    /// (`max_image_seq_len`, `max_shift`).
    public func mu(imageSequenceLength: Int) -> Double {
        let base = baseShift ?? 0.5, top = maxShift ?? 1.15
        let slope = (top - base) / Double(maxImageSequenceLength - baseImageSequenceLength)
        let intercept = base - slope * Double(baseImageSequenceLength)
        return Double(imageSequenceLength) * slope + intercept
    }

    /// `np.linspace(start, stop, count)` in float64.
    private static func linspace(_ start: Double, _ stop: Double, count: Int) -> [Double] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (stop - start) / Double(count - 1)
        return (0..<count).map { $0 == count - 1 ? stop : Double($0) * step + start }
    }

    /// - Parameter mu: required with `use_dynamic_shifting`, ignored otherwise.
    /// - Throws: `NodusError.invalidArgument` for a count below 1 or a missing `mu`, or when the
    ///   config's voxel-count shift needs `setTimesteps(_:mu:spatialSize:)`.
    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        try setTimesteps(count, mu: mu, spatialSize: nil)
    }

    /// - Parameter spatialSize: the latent's elements per channel; required with `use_timestep_transform`.
    public mutating func setTimesteps(_ count: Int, mu: Double?, spatialSize: Int?) throws {
        var shift = self.shift, sigmaMax = self.sigmaMax, sigmaMin = self.sigmaMin
        if let voxelShift {
            guard let spatialSize, spatialSize > 0 else {
                throw NodusError.invalidArgument("\(className).setTimesteps: 'use_timestep_transform' needs the latent's size (input_img_size_numel)")
            }
            // The scheduler diffusers would build with the combined shift: its __init__ bounds too.
            shift *= voxelShift.shift(spatialSize: spatialSize)
            let initial = Self.trainingSigmas(trainTimesteps: trainTimesteps, shift: shift)
            (sigmaMax, sigmaMin) = (Double(initial[0]), Double(initial[initial.count - 1]))
        }
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        if useDynamicShifting && mu == nil {
            throw NodusError.invalidArgument("\(className).setTimesteps: mu must be given when use_dynamic_shifting is true")
        }
        let trainCount = Double(trainTimesteps)
        var values = Self.linspace(sigmaMax * trainCount, sigmaMin * trainCount, count: count).map { $0 / trainCount }
        if useDynamicShifting, let mu {
            if timeShiftType == "exponential" {
                values = values.map { exp(mu) / (exp(mu) + (1 / $0 - 1)) }
            } else {
                values = values.map { mu / (mu + (1 / $0 - 1)) }
            }
        } else {
            values = values.map { shift * $0 / (1 + (shift - 1) * $0) }
        }
        if let terminal = shiftTerminal, terminal != 0, let last = values.last {
            let scale = (1 - last) / (1 - terminal)
            values = values.map { 1 - ((1 - $0) / scale) }
        }
        if useKarrasSigmas || useExponentialSigmas, let first = values.first, let last = values.last {
            let low = configSigmaMin ?? last
            let high = configSigmaMax ?? first
            if useKarrasSigmas {
                let rho = 7.0
                let lowRoot = pow(low, 1 / rho), highRoot = pow(high, 1 / rho)
                values = Self.linspace(0, 1, count: count).map { pow(highRoot + $0 * (lowRoot - highRoot), rho) }
            } else {
                values = Self.linspace(log(high), log(low), count: count).map { exp($0) }
            }
        }
        var floatSigmas = values.map { Float($0) }
        let floatCount = Float(trainTimesteps)
        if invertSigmas {
            floatSigmas = floatSigmas.map { 1 - $0 }
            timesteps = floatSigmas.map { Double($0 * floatCount) }
            floatSigmas.append(1)
        } else {
            timesteps = floatSigmas.map { Double($0 * floatCount) }
            floatSigmas.append(0)
        }
        sigmas = floatSigmas
        stepIndex = nil
        beginIndex = nil
    }

    /// diffusers `index_for_timestep`: the second match when the timestep appears more than once.
    private func scheduleIndex(of timestep: Double) throws -> Int {
        let matches = timesteps.indices.filter { Float(timesteps[$0]) == Float(timestep) }
        guard let first = matches.first else {
            throw NodusError.invalidArgument("\(className): timestep \(timestep) is not in the current schedule")
        }
        return matches.count > 1 ? matches[1] : first
    }

    public mutating func setBeginIndex(_ index: Int) {
        beginIndex = index
    }

    /// diffusers `scale_noise`: sigma noise + (1 - sigma) x, with sigma from the current step,
    /// the begin index, or the timestep's place in the schedule, in that order.
    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        let index = try stepIndex ?? beginIndex ?? scheduleIndex(of: timestep)
        guard index < sigmas.count else {
            throw NodusError.invalidArgument("\(className).scale_noise: schedule index \(index) is past the end")
        }
        return try Self.scaleNoise(inputs.original, noise: inputs.noise, sigma: sigmas[index])
    }

    /// `sigma * noise + (1 - sigma) * original` in float32, as torch computes diffusers' `scale_noise`.
    static func scaleNoise(_ original: Tensor, noise: Tensor, sigma: Float) throws -> Tensor {
        let keep = 1 - sigma
        let result = try Tensor(zeros: original.shape)
        let x = original.floats, z = noise.floats, y = result.floats
        for i in 0..<original.elementCount {
            let added = sigma * z[i], kept = keep * x[i]
            y[i] = added + kept
        }
        return result
    }

    /// One Euler step from `sigma` to the next sigma.
    /// - Parameter noise: needed with `stochastic_sampling` unless the next sigma is 0.
    /// - Throws: `NodusError.invalidArgument` when the first step's timestep is not in `timesteps`,
    ///   when the schedule is exhausted, or when noise is needed and missing;
    ///   `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let index = try stepIndex ?? beginIndex ?? scheduleIndex(of: timestep)
        guard index + 1 < sigmas.count else {
            throw NodusError.invalidArgument(
                "\(className).step: the schedule of \(sigmas.count - 1) steps is exhausted; call setTimesteps again")
        }
        let sigma = sigmas[index], sigmaNext = sigmas[index + 1]
        let elementCount = sample.elementCount
        let result = try Tensor(zeros: sample.shape)
        let velocityTensor = try prediction.velocity(inputs.modelOutput, sample: inputs.sample, timestep: timestep,
                                                     trainTimesteps: trainTimesteps)
        let x = inputs.sample.floats, velocity = velocityTensor.floats, previousSample = result.floats
        if stochasticSampling {
            // x0 = x - sigma v; x_next = (1 - sigma_next) x0 + sigma_next noise.
            let keep = 1 - sigmaNext
            if let noise = inputs.noise {
                let z = noise.floats
                for i in 0..<elementCount {
                    let original = x[i] - sigma * velocity[i]
                    previousSample[i] = keep * original + sigmaNext * z[i]
                }
            } else if sigmaNext == 0 {
                for i in 0..<elementCount { previousSample[i] = keep * (x[i] - sigma * velocity[i]) }
            } else {
                throw Self.missingNoise(className: className, timestep: timestep)
            }
        } else {
            let delta = sigmaNext - sigma
            for i in 0..<elementCount { previousSample[i] = x[i] + delta * velocity[i] }
        }
        stepIndex = index + 1
        return result
    }
}
