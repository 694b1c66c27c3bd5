#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// DPM-Solver (arXiv 2206.00927) and DPM-Solver++ (arXiv 2211.01095) multistep
/// solvers of orders 1 to 3, and their SDE variants: "DPM++ 2M" with the
/// default config.
///
/// Matches diffusers 0.42.1 `DPMSolverMultistepScheduler` (`set_timesteps`,
/// `convert_model_output`, the first / second / third order updates, `step`,
/// `add_noise`) in float32 as torch computes it, with sigmas in float64 as numpy
/// computes them, and honours `num_train_timesteps`, `beta_start`, `beta_end`,
/// `beta_schedule` (linear, scaled_linear, squaredcos_cap_v2), `trained_betas`,
/// `solver_order`, `prediction_type` (epsilon, sample, v_prediction,
/// flow_prediction), `thresholding`, `dynamic_thresholding_ratio`,
/// `sample_max_value`, `algorithm_type` (dpmsolver++, dpmsolver,
/// sde-dpmsolver++, sde-dpmsolver; "deis" read as dpmsolver++ as diffusers
/// does), `solver_type` (midpoint, heun; logrho / bh1 / bh2 read as midpoint),
/// `lower_order_final`, `euler_at_final`, `use_karras_sigmas`,
/// `use_exponential_sigmas`, `use_lu_lambdas`, `use_flow_sigmas`, `flow_shift`,
/// `final_sigmas_type` (zero, sigma_min), `lambda_min_clipped`,
/// `variance_type`, `timestep_spacing`, `steps_offset`,
/// `rescale_betas_zero_snr`, `use_dynamic_shifting` (flow shift exp(mu) from
/// `setTimesteps(count, mu:)`), `sigma_min` and `sigma_max`. The model input is
/// not scaled and `initNoiseSigma` is 1. Past converted model outputs are kept
/// in the value; `setTimesteps` clears them.
///
/// Limitations: `use_beta_sigmas` is refused (diffusers needs scipy); custom
/// timestep lists are not offered; the SDE variants take their noise from the
/// caller at every step. With `variance_type` learned / learned_range the first
/// C channels of a 2C-channel output are the prediction (diffusers keeps the
/// first 3 channels, which is the same for 3-channel models).
public struct DPMSolverMultistepScheduler: Scheduler {
    public enum Algorithm: String, Sendable {
        case dpmSolverPlusPlus = "dpmsolver++"
        case dpmSolver = "dpmsolver"
        case sdeDPMSolverPlusPlus = "sde-dpmsolver++"
        case sdeDPMSolver = "sde-dpmsolver"

        /// The data-prediction (++) variants.
        var predictsData: Bool { self == .dpmSolverPlusPlus || self == .sdeDPMSolverPlusPlus }
        var isStochastic: Bool { self == .sdeDPMSolverPlusPlus || self == .sdeDPMSolver }
    }

    public let className = "DPMSolverMultistepScheduler"
    public let schedule: NoiseSchedule
    public let solverOrder: Int
    /// epsilon, sample, v_prediction or flow_prediction.
    public let predictionType: String
    public let sampleLimit: NoiseSchedule.SampleLimit
    public let algorithm: Algorithm
    /// "midpoint" or "heun".
    public let solverType: String
    public let lowerOrderFinal: Bool
    public let eulerAtFinal: Bool
    public let conversion: SigmaConversion
    public let useFlowSigmas: Bool
    public let flowShift: Double
    public let useDynamicShifting: Bool
    /// "zero" or "sigma_min".
    public let finalSigmasType: String
    public let lambdaMinClipped: Double
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    public private(set) var timesteps: [Double]
    /// The float32 sigmas of the schedule, the final sigma appended.
    public private(set) var sigmas: [Float]
    var cursor = StepCursor()
    private let trainingSigmas: [Float]
    /// The last `solverOrder` converted model outputs, oldest first (nil before they exist).
    private var modelOutputs: [Tensor?]
    private var lowerOrderCount = 0
    private var inferenceStepCount: Int?

    public var timestepsAreIntegers: Bool { true }
    /// The SDE variants draw noise in every step.
    public var drawsStepNoise: Bool { algorithm.isStochastic }
    public var initNoiseSigma: Float { 1 }

    /// Reads a diffusers `DPMSolverMultistepScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value or combination diffusers does not accept, or `use_beta_sigmas`.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"],
                                     zeroTerminalSNR: .rescaleBetasAndClampLastAlpha)
        solverOrder = try reader.int("solver_order", default: 2)
        guard (1...3).contains(solverOrder) else {
            throw NodusError.unsupported("\(context): 'solver_order' = \(solverOrder) is not supported (expected 1, 2 or 3)")
        }
        predictionType = try reader.choice("prediction_type", default: "epsilon",
                                           allowed: ["epsilon", "sample", "v_prediction", "flow_prediction"])
        var limit = try NoiseSchedule.SampleLimit(reader: reader)
        limit.clipSample = false
        sampleLimit = limit
        var algorithmName = try reader.choice(
            "algorithm_type", default: "dpmsolver++",
            allowed: ["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++", "deis"])
        if algorithmName == "deis" { algorithmName = "dpmsolver++" }
        algorithm = Algorithm(rawValue: algorithmName) ?? .dpmSolverPlusPlus
        let solver = try reader.choice("solver_type", default: "midpoint",
                                       allowed: ["midpoint", "heun", "logrho", "bh1", "bh2"])
        solverType = solver == "heun" ? "heun" : "midpoint"
        lowerOrderFinal = try reader.bool("lower_order_final", default: true)
        eulerAtFinal = try reader.bool("euler_at_final", default: false)
        conversion = try SigmaConversion(reader: reader, allowsLu: true)
        useFlowSigmas = try reader.bool("use_flow_sigmas", default: false)
        flowShift = try reader.double("flow_shift", default: 1.0)
        useDynamicShifting = try reader.bool("use_dynamic_shifting", default: false)
        _ = try reader.choice("time_shift_type", default: "exponential", allowed: ["exponential"])
        finalSigmasType = try reader.choice("final_sigmas_type", default: "zero", allowed: ["zero", "sigma_min"])
        if !algorithm.predictsData && finalSigmasType == "zero" {
            throw NodusError.unsupported(
                "\(context): 'final_sigmas_type' = 'zero' is not supported with 'algorithm_type' = '\(algorithmName)' "
                    + "(diffusers refuses it); use 'sigma_min'")
        }
        if predictionType == "flow_prediction" && !algorithm.predictsData {
            throw NodusError.unsupported(
                "\(context): 'prediction_type' = 'flow_prediction' needs 'algorithm_type' dpmsolver++ or sde-dpmsolver++")
        }
        lambdaMinClipped = try reader.double("lambda_min_clipped", default: -.infinity)
        _ = try reader.optionalString("variance_type")
        let spacing = try reader.choice("timestep_spacing", default: "linspace",
                                        allowed: TimestepSpacing.allCases.map(\.rawValue))
        timestepSpacing = TimestepSpacing(rawValue: spacing) ?? .linspace
        stepsOffset = try reader.int("steps_offset", default: 0)
        trainingSigmas = DiscreteSigmas.training(schedule.alphasCumprod)
        sigmas = trainingSigmas
        let count = schedule.trainTimesteps
        timesteps = DiscreteSigmas.linspace(0, Double(count - 1), count: count).reversed().map { Double(Float($0)) }
        modelOutputs = Array(repeating: nil, count: solverOrder)
    }

    /// - Parameter mu: with `use_dynamic_shifting`, the flow shift is exp(mu).
    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        let trainCount = schedule.trainTimesteps
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        var shift = flowShift
        if let mu {
            guard useDynamicShifting else {
                throw NodusError.invalidArgument("\(className).setTimesteps: mu needs use_dynamic_shifting = true")
            }
            shift = exp(mu)
        }
        // lambda_t = log(alpha_t) - log(sigma_t); searchsorted on its flip gives how many are clipped.
        let lambdas = schedule.alphasCumprod.map { logf($0.squareRoot()) - logf((1 - $0).squareRoot()) }
        let clippedCount = lambdas.reversed().filter { $0 < Float(lambdaMinClipped) }.count
        let last = trainCount - clippedCount
        var steps = try DiscreteSigmas.multistepTimesteps(
            timestepSpacing, count: count, last: last, trainTimesteps: trainCount, stepsOffset: stepsOffset,
            className: className
        ).map { Double($0) }
        let logSigmas = DiscreteSigmas.logarithms(trainingSigmas)
        let descending = trainingSigmas.reversed().map { Double($0) }
        var values: [Double]
        if conversion.kind == .karras, let converted = conversion.convert(descending, count: count) {
            values = converted
            steps = converted.map { DiscreteSigmas.timestep(forSigma: $0, logSigmas: logSigmas) }
            if schedule.betaScheduleName != "squaredcos_cap_v2" {
                steps = steps.map { $0.rounded(.toNearestOrEven) }
            }
        } else if conversion.kind == .lu {
            let logs = logSigmas.reversed().map { Double($0) }
            values = DiscreteSigmas.lu(minimum: logs[logs.count - 1], maximum: logs[0], count: count).map { exp($0) }
            steps = values.map { DiscreteSigmas.timestep(forSigma: $0, logSigmas: logSigmas) }
            if schedule.betaScheduleName != "squaredcos_cap_v2" {
                steps = steps.map { $0.rounded(.toNearestOrEven) }
            }
        } else if conversion.kind == .exponential, let converted = conversion.convert(descending, count: count) {
            values = converted
            steps = converted.map { DiscreteSigmas.timestep(forSigma: $0, logSigmas: logSigmas) }
        } else if useFlowSigmas {
            let alphas = DiscreteSigmas.linspace(1, 1 / Double(trainCount), count: count + 1)
            let shifted = alphas.map { 1.0 - $0 }.map { shift * $0 / (1 + (shift - 1) * $0) }
            values = Array(shifted.reversed().dropLast())
            steps = values.map { $0 * Double(trainCount) }
        } else {
            values = DiscreteSigmas.interpolate(steps, trainingSigmas)
        }
        let finalSigma: Float = finalSigmasType == "sigma_min" ? trainingSigmas[0] : 0
        sigmas = values.map { Float($0) } + [finalSigma]
        timesteps = try DiscreteSigmas.truncatedTimesteps(steps, className: className)
        inferenceStepCount = timesteps.count
        modelOutputs = Array(repeating: nil, count: solverOrder)
        lowerOrderCount = 0
        cursor.reset()
    }

    public mutating func setBeginIndex(_ index: Int) {
        cursor.beginIndex = index
    }

    private func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        DiscreteSigmas.alphaSigma(sigma, flow: useFlowSigmas)
    }

    /// diffusers `convert_model_output`: x0 (++ variants) or epsilon, thresholded if configured.
    private func convert(_ output: Tensor, sample: Tensor, index: Int) throws -> Tensor {
        let sigma = sigmas[index]
        let (alpha, sigmaT) = alphaSigma(sigma)
        let count = sample.elementCount
        let result = try Tensor(zeros: sample.shape)
        let x = sample.floats, m = output.floats, y = result.floats
        if algorithm.predictsData {
            switch predictionType {
            case "epsilon": for i in 0..<count { y[i] = (x[i] - sigmaT * m[i]) / alpha }
            case "sample": for i in 0..<count { y[i] = m[i] }
            case "v_prediction": for i in 0..<count { y[i] = alpha * x[i] - sigmaT * m[i] }
            default: for i in 0..<count { y[i] = x[i] - sigma * m[i] }  // flow_prediction
            }
            if sampleLimit.thresholding { sampleLimit.apply(to: result) }
            return result
        }
        switch predictionType {
        case "epsilon": for i in 0..<count { y[i] = m[i] }
        case "sample": for i in 0..<count { y[i] = (x[i] - alpha * m[i]) / sigmaT }
        default: for i in 0..<count { y[i] = alpha * m[i] + sigmaT * x[i] }  // v_prediction
        }
        if sampleLimit.thresholding {
            let original = try Tensor(zeros: sample.shape)
            let x0 = original.floats
            for i in 0..<count { x0[i] = (x[i] - sigmaT * y[i]) / alpha }
            sampleLimit.apply(to: original)
            for i in 0..<count { y[i] = (x[i] - alpha * x0[i]) / sigmaT }
        }
        return result
    }

    /// One multistep step.
    /// - Parameter noise: needed by the SDE variants at every step.
    /// - Throws: `NodusError.invalidArgument` before `setTimesteps`, for an exhausted schedule or
    ///   missing noise; `NodusError.shape` for mismatched tensors.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor {
        guard inferenceStepCount != nil else {
            throw NodusError.invalidArgument("\(className).step: call setTimesteps before step")
        }
        let inputs = try Self.stepInputs(modelOutput: modelOutput, sample: sample, noise: noise)
        let index = try cursor.index(for: timestep, in: timesteps, lastWhenMissing: true, className: className)
        guard index + 1 < sigmas.count else {
            throw NodusError.invalidArgument(
                "\(className).step: the schedule of \(timesteps.count) steps is exhausted; call setTimesteps again")
        }
        if algorithm.isStochastic && inputs.noise == nil {
            throw Self.missingNoise(className: className, timestep: timestep)
        }
        let count = timesteps.count
        let lowerOrderFinalStep = index == count - 1
            && (eulerAtFinal || (lowerOrderFinal && count < 15) || finalSigmasType == "zero")
        let lowerOrderSecond = index == count - 2 && lowerOrderFinal && count < 15
        let converted = try convert(inputs.modelOutput, sample: inputs.sample, index: index)
        modelOutputs.removeFirst()
        modelOutputs.append(converted)
        let result: Tensor
        if solverOrder == 1 || lowerOrderCount < 1 || lowerOrderFinalStep {
            result = try firstOrderUpdate(converted, sample: inputs.sample, noise: inputs.noise, index: index)
        } else if solverOrder == 2 || lowerOrderCount < 2 || lowerOrderSecond {
            result = try secondOrderUpdate(sample: inputs.sample, noise: inputs.noise, index: index)
        } else {
            result = try thirdOrderUpdate(sample: inputs.sample, noise: inputs.noise, index: index)
        }
        if lowerOrderCount < solverOrder { lowerOrderCount += 1 }
        cursor.stepIndex = index + 1
        return result
    }

    /// log(alpha) - log(sigma) of a schedule sigma, with its alpha and sigma_t.
    private func lambda(_ sigma: Float) -> (alpha: Float, sigma: Float, lambda: Float) {
        let (alpha, sigmaT) = alphaSigma(sigma)
        return (alpha, sigmaT, logf(alpha) - logf(sigmaT))
    }

    /// diffusers `dpm_solver_first_order_update` (DDIM in the lambda domain).
    private func firstOrderUpdate(_ output: Tensor, sample: Tensor, noise: Tensor?, index: Int) throws -> Tensor {
        let t = lambda(sigmas[index + 1]), s = lambda(sigmas[index])
        let h = t.lambda - s.lambda
        let count = sample.elementCount
        let result = try Tensor(zeros: sample.shape)
        let x = sample.floats, m = output.floats, y = result.floats
        let z = noise?.floats
        switch algorithm {
        case .dpmSolverPlusPlus:
            let a = t.sigma / s.sigma, b = t.alpha * (expf(-h) - 1)
            for i in 0..<count { y[i] = a * x[i] - b * m[i] }
        case .dpmSolver:
            let a = t.alpha / s.alpha, b = t.sigma * (expf(h) - 1)
            for i in 0..<count { y[i] = a * x[i] - b * m[i] }
        case .sdeDPMSolverPlusPlus:
            guard let z else { throw Self.missingNoise(className: className, timestep: timesteps[index]) }
            let a = t.sigma / s.sigma * expf(-h), b = t.alpha * (1 - expf(-2 * h))
            let c = t.sigma * (1 - expf(-2 * h)).squareRoot()
            for i in 0..<count { y[i] = a * x[i] + b * m[i] + c * z[i] }
        case .sdeDPMSolver:
            guard let z else { throw Self.missingNoise(className: className, timestep: timesteps[index]) }
            let a = t.alpha / s.alpha, b = 2 * (t.sigma * (expf(h) - 1))
            let c = t.sigma * (expf(2 * h) - 1).squareRoot()
            for i in 0..<count { y[i] = a * x[i] - b * m[i] + c * z[i] }
        }
        return result
    }

    /// diffusers `multistep_dpm_solver_second_order_update`.
    private func secondOrderUpdate(sample: Tensor, noise: Tensor?, index: Int) throws -> Tensor {
        guard let m0Tensor = modelOutputs[solverOrder - 1], let m1Tensor = modelOutputs[solverOrder - 2] else {
            throw NodusError.invalidArgument("\(className).step: missing earlier model outputs")
        }
        let t = lambda(sigmas[index + 1]), s0 = lambda(sigmas[index]), s1 = lambda(sigmas[index - 1])
        let h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda
        let r0 = h0 / h
        let inverse = 1 / r0
        let count = sample.elementCount
        let result = try Tensor(zeros: sample.shape)
        let x = sample.floats, m0 = m0Tensor.floats, m1 = m1Tensor.floats, y = result.floats
        let z = noise?.floats
        for i in 0..<count {
            let d0 = m0[i], d1 = inverse * (m0[i] - m1[i])
            switch (algorithm, solverType) {
            case (.dpmSolverPlusPlus, "midpoint"):
                let b = t.alpha * (expf(-h) - 1)
                y[i] = (t.sigma / s0.sigma) * x[i] - b * d0 - (0.5 * b) * d1
            case (.dpmSolverPlusPlus, _):
                let b = t.alpha * (expf(-h) - 1), c = t.alpha * ((expf(-h) - 1) / h + 1)
                y[i] = (t.sigma / s0.sigma) * x[i] - b * d0 + c * d1
            case (.dpmSolver, "midpoint"):
                let b = t.sigma * (expf(h) - 1)
                y[i] = (t.alpha / s0.alpha) * x[i] - b * d0 - (0.5 * b) * d1
            case (.dpmSolver, _):
                let b = t.sigma * (expf(h) - 1), c = t.sigma * ((expf(h) - 1) / h - 1)
                y[i] = (t.alpha / s0.alpha) * x[i] - b * d0 - c * d1
            case (.sdeDPMSolverPlusPlus, let type):
                let a = t.sigma / s0.sigma * expf(-h), b = t.alpha * (1 - expf(-2 * h))
                let c = type == "midpoint" ? 0.5 * b : t.alpha * ((1 - expf(-2 * h)) / (-2 * h) + 1)
                let e = t.sigma * (1 - expf(-2 * h)).squareRoot()
                y[i] = a * x[i] + b * d0 + c * d1 + e * (z?[i] ?? 0)
            case (.sdeDPMSolver, let type):
                let b = 2 * (t.sigma * (expf(h) - 1))
                let c = type == "midpoint" ? t.sigma * (expf(h) - 1) : 2 * (t.sigma * ((expf(h) - 1) / h - 1))
                let e = t.sigma * (expf(2 * h) - 1).squareRoot()
                y[i] = (t.alpha / s0.alpha) * x[i] - b * d0 - c * d1 + e * (z?[i] ?? 0)
            }
        }
        return result
    }

    /// diffusers `multistep_dpm_solver_third_order_update`.
    private func thirdOrderUpdate(sample: Tensor, noise: Tensor?, index: Int) throws -> Tensor {
        guard let m0Tensor = modelOutputs[2], let m1Tensor = modelOutputs[1], let m2Tensor = modelOutputs[0] else {
            throw NodusError.invalidArgument("\(className).step: missing earlier model outputs")
        }
        if algorithm == .sdeDPMSolver {
            throw NodusError.unsupported("\(className): solver_order 3 with 'sde-dpmsolver' (diffusers has no such update)")
        }
        let t = lambda(sigmas[index + 1]), s0 = lambda(sigmas[index])
        let s1 = lambda(sigmas[index - 1]), s2 = lambda(sigmas[index - 2])
        let h = t.lambda - s0.lambda, h0 = s0.lambda - s1.lambda, h1 = s1.lambda - s2.lambda
        let r0 = h0 / h, r1 = h1 / h
        let inverse0 = 1 / r0, inverse1 = 1 / r1
        let weight = r0 / (r0 + r1), inverseSum = 1 / (r0 + r1)
        let count = sample.elementCount
        let result = try Tensor(zeros: sample.shape)
        let x = sample.floats, m0 = m0Tensor.floats, m1 = m1Tensor.floats, m2 = m2Tensor.floats, y = result.floats
        let z = noise?.floats
        for i in 0..<count {
            let d0 = m0[i]
            let d10 = inverse0 * (m0[i] - m1[i]), d11 = inverse1 * (m1[i] - m2[i])
            let d1 = d10 + weight * (d10 - d11)
            let d2 = inverseSum * (d10 - d11)
            switch algorithm {
            case .dpmSolverPlusPlus:
                let b = t.alpha * (expf(-h) - 1), c = t.alpha * ((expf(-h) - 1) / h + 1)
                let e = t.alpha * ((expf(-h) - 1 + h) / (h * h) - 0.5)
                y[i] = (t.sigma / s0.sigma) * x[i] - b * d0 + c * d1 - e * d2
            case .dpmSolver:
                let b = t.sigma * (expf(h) - 1), c = t.sigma * ((expf(h) - 1) / h - 1)
                let e = t.sigma * ((expf(h) - 1 - h) / (h * h) - 0.5)
                y[i] = (t.alpha / s0.alpha) * x[i] - b * d0 - c * d1 - e * d2
            default:  // sde-dpmsolver++
                let a = t.sigma / s0.sigma * expf(-h), b = t.alpha * (1 - expf(-2 * h))
                let c = t.alpha * ((1 - expf(-2 * h)) / (-2 * h) + 1)
                let e = t.alpha * ((1 - expf(-2 * h) - 2 * h) / ((2 * h) * (2 * h)) - 0.5)
                let f = t.sigma * (1 - expf(-2 * h)).squareRoot()
                y[i] = a * x[i] + b * d0 + c * d1 + e * d2 + f * (z?[i] ?? 0)
            }
        }
        return result
    }

    /// diffusers `add_noise`: alpha_t x + sigma_t noise at the schedule's sigma.
    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        var lookup = cursor
        if lookup.beginIndex == nil { lookup.stepIndex = nil }
        let index = try lookup.index(for: timestep, in: timesteps, lastWhenMissing: true, className: className)
        let (alpha, sigma) = alphaSigma(sigmas[index])
        let result = try Tensor(zeros: original.shape)
        let x = inputs.original.floats, z = inputs.noise.floats, y = result.floats
        for i in 0..<original.elementCount {
            let kept = alpha * x[i], added = sigma * z[i]
            y[i] = kept + added
        }
        return result
    }
}
