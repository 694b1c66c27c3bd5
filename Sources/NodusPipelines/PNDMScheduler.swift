import NodusCore
import NodusFormats

/// Pseudo numerical methods for diffusion models (arXiv 2202.09778): a
/// Runge-Kutta warm-up (PRK, three steps of four model calls) then linear
/// multistep (PLMS) steps; Stable Diffusion 1.x's default scheduler, there with
/// `skip_prk_steps` (PLMS from the start, warmed up by a repeated timestep).
///
/// Matches diffusers 0.42.1 `PNDMScheduler` (`set_timesteps`, `step_prk`,
/// `step_plms`, `_get_prev_sample`, `add_noise`) in float32 as torch computes it,
/// and honours `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`
/// (linear, scaled_linear, squaredcos_cap_v2), `trained_betas`,
/// `skip_prk_steps`, `set_alpha_to_one`, `prediction_type` (epsilon,
/// v_prediction), `timestep_spacing` and `steps_offset`. As in diffusers,
/// `timesteps` holds N + 1 entries with `skip_prk_steps` (the second-to-last
/// timestep repeated) and N + 9 without (12 PRK entries, then N - 3 PLMS); the
/// model runs once per entry and `step` follows diffusers' call counter, so the
/// entries must be stepped in order. The past model outputs are kept in the
/// value; `setTimesteps` clears them.
///
/// Limitations: without `skip_prk_steps` at least 4 steps are needed (diffusers
/// fails with fewer); `prediction_type` "sample" is refused at load, where
/// diffusers fails in `step`. A model output with twice the sample's channels
/// has its second half ignored.
public struct PNDMScheduler: Scheduler {
    public let className = "PNDMScheduler"
    public let schedule: NoiseSchedule
    public let predictionType: NoiseSchedule.PredictionType
    public let skipPRKSteps: Bool
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    /// `alphas_cumprod` after the last step: 1 with `set_alpha_to_one`, else `alphas_cumprod[0]`.
    public let finalAlphaCumprod: Float
    public private(set) var timesteps: [Double]
    /// The Runge-Kutta warm-up entries of `timesteps` (empty with `skip_prk_steps`).
    public private(set) var prkTimesteps: [Int] = []
    private var inferenceStepCount: Int?
    private var counter = 0
    private var accumulatedOutput: Tensor?
    private var currentSample: Tensor?
    /// Past model outputs (diffusers `ets`), oldest first.
    private var pastOutputs: [Tensor] = []

    public var timestepsAreIntegers: Bool { true }
    public var initNoiseSigma: Float { 1 }

    /// Reads a diffusers `PNDMScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value diffusers does not accept (or `prediction_type` "sample").
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"],
                                     zeroTerminalSNR: .ignored)
        let prediction = try reader.choice("prediction_type", default: "epsilon", allowed: ["epsilon", "v_prediction"])
        predictionType = prediction == "epsilon" ? .epsilon : .vPrediction
        skipPRKSteps = try reader.bool("skip_prk_steps", default: false)
        finalAlphaCumprod = try reader.bool("set_alpha_to_one", default: false) ? 1 : schedule.alphasCumprod[0]
        timestepSpacing = try TimestepSpacing(reader: reader)
        stepsOffset = try reader.int("steps_offset", default: 0)
        timesteps = []
    }

    /// The ascending base timesteps (diffusers `_timesteps`).
    private func baseTimesteps(_ count: Int) throws -> [Int] {
        let trainCount = schedule.trainTimesteps
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        switch timestepSpacing {
        case .linspace:
            return DiscreteSigmas.linspace(0, Double(trainCount - 1), count: count).map { Int($0.rounded(.toNearestOrEven)) }
        case .leading:
            let ratio = trainCount / count
            return (0..<count).map { $0 * ratio + stepsOffset }
        case .trailing:
            let ratio = Double(trainCount) / Double(count)
            return DiscreteSigmas.arange(Double(trainCount), 0, step: -ratio).reversed()
                .map { Int($0.rounded(.toNearestOrEven)) - 1 }
        }
    }

    /// - Throws: `NodusError.invalidArgument` for a count below 1, or below 4 without `skip_prk_steps`.
    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        let base = try baseTimesteps(count)
        let trainCount = schedule.trainTimesteps
        if skipPRKSteps {
            prkTimesteps = []
            let plms = Array(base.dropLast()) + Array(base.dropLast().suffix(1)) + Array(base.suffix(1))
            timesteps = plms.reversed().map { Double($0) }
        } else {
            guard base.count >= 4 else {
                throw NodusError.invalidArgument(
                    "\(className).setTimesteps: \(count) steps are too few for the Runge-Kutta warm-up "
                        + "(at least 4 without skip_prk_steps)")
            }
            let half = trainCount / count / 2
            var warmUp: [Int] = []
            for value in base.suffix(4) { warmUp += [value, value + half] }
            var repeated: [Int] = []
            for value in warmUp.dropLast() { repeated += [value, value] }
            prkTimesteps = Array(repeated.dropFirst().dropLast().reversed())
            let plms = Array(base.dropLast(3).reversed())
            timesteps = (prkTimesteps + plms).map { Double($0) }
        }
        inferenceStepCount = count
        counter = 0
        accumulatedOutput = nil
        currentSample = nil
        pastOutputs = []
    }

    /// diffusers `_get_prev_sample` (formula 9 of the paper).
    private func previousSample(_ sample: Tensor, timestep: Int, previousTimestep: Int,
                                modelOutput: Tensor) throws -> Tensor {
        guard timestep >= 0, timestep < schedule.trainTimesteps, previousTimestep < schedule.trainTimesteps else {
            throw NodusError.invalidArgument(
                "\(className).step: timestep \(timestep) is not in 0..<\(schedule.trainTimesteps)")
        }
        let alpha = schedule.alphasCumprod[timestep]
        let alphaPrevious = previousTimestep >= 0 ? schedule.alphasCumprod[previousTimestep] : finalAlphaCumprod
        let beta = 1 - alpha, betaPrevious = 1 - alphaPrevious
        let sampleCoefficient = (alphaPrevious / alpha).squareRoot()
        let denominator = alpha * betaPrevious.squareRoot() + (alpha * beta * alphaPrevious).squareRoot()
        let difference = alphaPrevious - alpha
        let rootAlpha = alpha.squareRoot(), rootBeta = beta.squareRoot()
        let count = sample.elementCount
        let x = sample.floats, m = modelOutput.floats
        let result = try Tensor(zeros: sample.shape)
        let y = result.floats
        for i in 0..<count {
            let output = predictionType == .vPrediction ? rootAlpha * m[i] + rootBeta * x[i] : m[i]
            y[i] = sampleCoefficient * x[i] - difference * output / denominator
        }
        return result
    }

    /// `a * x + b * y` (with either scaled), elementwise in float32.
    private static func combine(_ terms: [(Float, Tensor)]) throws -> Tensor {
        let result = try Tensor(zeros: terms[0].1.shape)
        let y = result.floats
        for (index, (weight, tensor)) in terms.enumerated() {
            let x = tensor.floats
            for i in 0..<tensor.elementCount { y[i] = index == 0 ? weight * x[i] : y[i] + weight * x[i] }
        }
        return result
    }

    /// One entry of the schedule: a Runge-Kutta stage or a linear multistep step, by diffusers' counter.
    /// - Throws: `NodusError.invalidArgument` before `setTimesteps` or for a timestep outside the
    ///   training range; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        guard let count = inferenceStepCount else {
            throw NodusError.invalidArgument("\(className).step: call setTimesteps before step")
        }
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let (t, _) = try Self.integerTimestep(timestep, trainTimesteps: schedule.trainTimesteps, className: className)
        let output = try Self.copied(inputs.modelOutput)
        let trainCount = schedule.trainTimesteps
        if counter < prkTimesteps.count && !skipPRKSteps {
            let differenceToPrevious = counter % 2 == 1 ? 0 : trainCount / count / 2
            let previousTimestep = t - differenceToPrevious
            let stageTimestep = prkTimesteps[counter / 4 * 4]
            var used = output
            switch counter % 4 {
            case 0:
                accumulatedOutput = try accumulate(accumulatedOutput, output, weight: Float(1.0 / 6.0))
                pastOutputs.append(output)
                currentSample = try Self.copied(inputs.sample)
            case 1, 2:
                accumulatedOutput = try accumulate(accumulatedOutput, output, weight: Float(1.0 / 3.0))
            default:
                used = try accumulate(accumulatedOutput, output, weight: Float(1.0 / 6.0))
                accumulatedOutput = nil
            }
            let start = currentSample ?? inputs.sample
            let result = try previousSample(start, timestep: stageTimestep, previousTimestep: previousTimestep,
                                            modelOutput: used)
            counter += 1
            return result
        }
        if !skipPRKSteps && pastOutputs.count < 3 {
            throw NodusError.invalidArgument(
                "\(className).step: the linear multistep phase needs the 12 Runge-Kutta entries first")
        }
        var stepTimestep = t
        var previousTimestep = t - trainCount / count
        if counter != 1 {
            pastOutputs = Array(pastOutputs.suffix(3)) + [output]
        } else {
            previousTimestep = t
            stepTimestep = t + trainCount / count
        }
        var start = inputs.sample
        let combined: Tensor
        let past = pastOutputs
        if past.count == 1 && counter == 0 {
            combined = output
            currentSample = try Self.copied(inputs.sample)
        } else if past.count == 1 && counter == 1 {
            let summed = try Self.combine([(1, output), (1, past[0])])
            combined = try Self.divided(summed, by: 2)
            start = currentSample ?? inputs.sample
            currentSample = nil
        } else if past.count == 2 {
            combined = try Self.divided(try Self.combine([(3, past[1]), (-1, past[0])]), by: 2)
        } else if past.count == 3 {
            combined = try Self.divided(try Self.combine([(23, past[2]), (-16, past[1]), (5, past[0])]), by: 12)
        } else {
            let sum = try Self.combine([(55, past[3]), (-59, past[2]), (37, past[1]), (-9, past[0])])
            combined = try Self.combine([(Float(1.0 / 24.0), sum)])
        }
        let result = try previousSample(start, timestep: stepTimestep, previousTimestep: previousTimestep,
                                        modelOutput: combined)
        counter += 1
        return result
    }

    /// `accumulated + weight * output` (diffusers' `cur_model_output +=`), starting from 0.
    private func accumulate(_ accumulated: Tensor?, _ output: Tensor, weight: Float) throws -> Tensor {
        let result = try Tensor(zeros: output.shape)
        let y = result.floats, x = output.floats
        let previous = accumulated?.floats
        for i in 0..<output.elementCount {
            let scaled = weight * x[i]
            y[i] = previous.map { $0[i] + scaled } ?? scaled
        }
        return result
    }

    /// `tensor / divisor` elementwise.
    private static func divided(_ tensor: Tensor, by divisor: Float) throws -> Tensor {
        let result = try Tensor(zeros: tensor.shape)
        let x = tensor.floats, y = result.floats
        for i in 0..<tensor.elementCount { y[i] = x[i] / divisor }
        return result
    }

    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        let (_, index) = try Self.integerTimestep(timestep, trainTimesteps: schedule.trainTimesteps, className: className)
        return try schedule.addNoise(to: inputs.original, noise: inputs.noise, index: index)
    }
}
