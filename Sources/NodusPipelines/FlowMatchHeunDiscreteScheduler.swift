import NodusCore
import NodusFormats

/// Heun's second-order method on a rectified-flow ODE: an Euler step from
/// sigma to the next sigma, then a correction with the average of the two
/// velocities.
///
/// Matches diffusers 0.42.1 `FlowMatchHeunDiscreteScheduler` (`__init__`,
/// `set_timesteps`, `step` without churn, `scale_noise`): sigmas linspaced in
/// float64 between the shifted training sigmas' bounds, shifted, then float32;
/// `timesteps` holds 2N - 1 entries for N steps (every one after the first
/// twice) and the model runs once per entry, so `order` is 2. It honours
/// `num_train_timesteps` and `shift`, plus the Nodus fields of
/// `FlowMatchEulerDiscreteScheduler`: `prediction_type` "sample" with
/// `sample_clamp_min` (x0 turned into the velocity at each of the two model
/// calls, each at its own timestep) and MONAI's voxel-count shift.
///
/// Limitations: `s_churn` (and so the noise it draws) is not offered; a model
/// output with twice the sample's channels has its second half ignored.
public struct FlowMatchHeunDiscreteScheduler: Scheduler {
    public let className = "FlowMatchHeunDiscreteScheduler"
    public let trainTimesteps: Int
    public let shift: Double
    let prediction: FlowPrediction
    let voxelShift: VoxelCountShift?
    public private(set) var timesteps: [Double]
    /// The float32 sigmas, every inner sigma twice, 0 appended (2N entries).
    public private(set) var sigmas: [Float]
    var cursor = StepCursor()
    /// The first-order half's derivative, step size and sample, kept for the correction.
    private var firstOrder: (derivative: Tensor, dt: Float, sample: Tensor)?

    public var timestepsAreIntegers: Bool { false }
    public var initNoiseSigma: Float { 1 }
    public var order: Int { 2 }

    /// Reads a diffusers `FlowMatchHeunDiscreteScheduler` config; keys it does not know are ignored.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        (trainTimesteps, shift) = try FlowMatchEulerDiscreteScheduler.trainingSchedule(reader)
        prediction = try FlowPrediction(reader: reader)
        voxelShift = try VoxelCountShift(reader: reader)
        sigmas = FlowMatchEulerDiscreteScheduler.trainingSigmas(trainTimesteps: trainTimesteps, shift: shift)
        let count = Float(trainTimesteps)
        timesteps = sigmas.map { Double($0 * count) }
    }

    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        try setTimesteps(count, mu: mu, spatialSize: nil)
    }

    /// - Parameter spatialSize: the latent's elements per channel; required with `use_timestep_transform`.
    public mutating func setTimesteps(_ count: Int, mu: Double?, spatialSize: Int?) throws {
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        var shift = self.shift
        if let voxelShift {
            guard let spatialSize, spatialSize > 0 else {
                throw NodusError.invalidArgument("\(className).setTimesteps: 'use_timestep_transform' needs the latent's size (input_img_size_numel)")
            }
            shift *= voxelShift.shift(spatialSize: spatialSize)
        }
        let training = FlowMatchEulerDiscreteScheduler.trainingSigmas(trainTimesteps: trainTimesteps, shift: shift)
        let trainCount = Double(trainTimesteps)
        let high = Double(training[0]) * trainCount, low = Double(training[training.count - 1]) * trainCount
        // np.linspace in float64, / N, shifted, then float32.
        let values: [Float] = (0..<count).map { index in
            let t = count == 1 ? high : (index == count - 1 ? low : Double(index) * ((low - high) / Double(count - 1)) + high)
            let sigma = t / trainCount
            return Float(shift * sigma / (1 + (shift - 1) * sigma))
        }
        let floatCount = Float(trainTimesteps)
        let base = values.map { Double($0 * floatCount) }
        timesteps = [base[0]] + base.dropFirst().flatMap { [$0, $0] }
        sigmas = [values[0]] + values.dropFirst().flatMap { [$0, $0] } + [0]
        cursor.reset()
        firstOrder = nil
    }

    public mutating func setBeginIndex(_ index: Int) {
        cursor.beginIndex = index
    }

    /// diffusers `scale_noise`: sigma noise + (1 - sigma) x at the current (or begin, or the timestep's) index.
    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        let index = try cursor.index(for: timestep, in: timesteps, className: className)
        guard index < sigmas.count else {
            throw NodusError.invalidArgument("\(className).scale_noise: schedule index \(index) is past the end")
        }
        return try FlowMatchEulerDiscreteScheduler.scaleNoise(inputs.original, noise: inputs.noise, sigma: sigmas[index])
    }

    /// The Euler half (first order) or the correction (second order) of one Heun step.
    /// - Throws: `NodusError.invalidArgument` for a timestep not in the schedule or an exhausted one;
    ///   `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: nil)
        let index = try cursor.sigmaIndex(for: timestep, in: timesteps, sigmaCount: sigmas.count, className: className)
        let velocity = try prediction.velocity(inputs.modelOutput, sample: inputs.sample, timestep: timestep,
                                               trainTimesteps: trainTimesteps)
        let result = try Tensor(zeros: sample.shape)
        let x = inputs.sample.floats, v = velocity.floats, output = result.floats
        // diffusers' float32 arithmetic: denoised = x - v sigma, derivative = (x - denoised) / sigma.
        if let (previousDerivative, dt, start) = firstOrder {
            let sigmaNext = sigmas[index], first = previousDerivative.floats, origin = start.floats
            for i in 0..<sample.elementCount {
                let denoised = x[i] - v[i] * sigmaNext
                let derivative = 0.5 * (first[i] + (x[i] - denoised) / sigmaNext)
                output[i] = origin[i] + derivative * dt
            }
            firstOrder = nil
        } else {
            let sigma = sigmas[index], dt = sigmas[index + 1] - sigma
            let derivative = try Tensor(zeros: sample.shape)
            let slope = derivative.floats
            for i in 0..<sample.elementCount {
                let denoised = x[i] - v[i] * sigma
                slope[i] = (x[i] - denoised) / sigma
                output[i] = x[i] + slope[i] * dt
            }
            firstOrder = (derivative, dt, try Self.copied(inputs.sample))
        }
        cursor.stepIndex = index + 1
        return result
    }
}
