#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// UniPC (arXiv 2302.04867): a unified predictor-corrector multistep solver,
/// UniP-p predictor and UniC corrector of the B(h) families bh1 / bh2.
///
/// Matches diffusers 0.42.1 `UniPCMultistepScheduler` (`set_timesteps`,
/// `convert_model_output`, `multistep_uni_p_bh_update`,
/// `multistep_uni_c_bh_update`, `step`, `add_noise`) in float32 as torch
/// computes it, with sigmas in float64 as numpy computes them, and honours
/// `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule` (linear,
/// scaled_linear, squaredcos_cap_v2), `trained_betas`, `solver_order`,
/// `prediction_type` (epsilon, sample, v_prediction, flow_prediction),
/// `thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`,
/// `predict_x0`, `solver_type` (bh1, bh2; midpoint / heun / logrho read as bh2
/// as diffusers does), `lower_order_final`, `disable_corrector`,
/// `use_karras_sigmas`, `use_exponential_sigmas`, `use_flow_sigmas`,
/// `flow_shift`, `use_dynamic_shifting` (with `mu`), `time_shift_type`,
/// `shift_terminal`, `sigma_min`, `sigma_max`, `timestep_spacing`,
/// `steps_offset`, `final_sigmas_type` (zero, sigma_min) and
/// `rescale_betas_zero_snr`. The model input is not scaled and `initNoiseSigma`
/// is 1. Past converted model outputs and the last sample are kept in the value;
/// `setTimesteps` clears them.
///
/// As in diffusers, `solver_type` bh1 or `predict_x0` = false with
/// `final_sigmas_type` "zero" give NaN at the last step (B(h) or h phi_1 is
/// infinite there); use "sigma_min" with them.
///
/// Limitations: `solver_p` (another scheduler as predictor) and
/// `use_beta_sigmas` are refused; the small linear systems diffusers hands to
/// `torch.linalg.solve` (orders above 2) are solved here in float64 and rounded,
/// which can differ from LAPACK's float32 answer in the last place (steps then
/// agree to about 1e-5 relative instead of 1e-6). A model
/// output with twice the sample's channels has its second half ignored.
public struct UniPCMultistepScheduler: Scheduler {
    public let className = "UniPCMultistepScheduler"
    public let schedule: NoiseSchedule
    public let solverOrder: Int
    /// epsilon, sample, v_prediction or flow_prediction.
    public let predictionType: String
    public let sampleLimit: NoiseSchedule.SampleLimit
    public let predictX0: Bool
    /// "bh1" or "bh2".
    public let solverType: String
    public let lowerOrderFinal: Bool
    /// Step indices whose following step skips the corrector.
    public let disableCorrector: [Int]
    public let conversion: SigmaConversion
    public let useFlowSigmas: Bool
    public let flowShift: Double
    public let useDynamicShifting: Bool
    public let timeShiftType: String
    public let shiftTerminal: Double?
    public let timestepSpacing: TimestepSpacing
    public let stepsOffset: Int
    public let finalSigmasType: String
    public private(set) var timesteps: [Double]
    /// The float32 sigmas of the schedule, the final sigma appended.
    public private(set) var sigmas: [Float]
    var cursor = StepCursor()
    private let trainingSigmas: [Float]
    private var modelOutputs: [Tensor?]
    private var lowerOrderCount = 0
    private var lastSample: Tensor?
    private var thisOrder = 1
    private var inferenceStepCount: Int?

    public var timestepsAreIntegers: Bool { true }
    public var initNoiseSigma: Float { 1 }

    /// Reads a diffusers `UniPCMultistepScheduler` config; keys it does not know are ignored.
    /// - Throws: `NodusError.format` for a field of the wrong type,
    ///   `NodusError.unsupported` for a value or combination diffusers does not accept,
    ///   `solver_p` or `use_beta_sigmas`.
    public init(config: JSONValue, context: String) throws {
        let reader = try JSONObjectReader(config, context: context)
        schedule = try NoiseSchedule(reader: reader, schedules: ["linear", "scaled_linear", "squaredcos_cap_v2"],
                                     zeroTerminalSNR: .rescaleBetasAndClampLastAlpha)
        solverOrder = try reader.int("solver_order", default: 2)
        guard (1...8).contains(solverOrder) else {
            throw NodusError.unsupported("\(context): 'solver_order' = \(solverOrder) is not supported (expected 1 to 8)")
        }
        predictionType = try reader.choice("prediction_type", default: "epsilon",
                                           allowed: ["epsilon", "sample", "v_prediction", "flow_prediction"])
        var limit = try NoiseSchedule.SampleLimit(reader: reader)
        limit.clipSample = false
        sampleLimit = limit
        predictX0 = try reader.bool("predict_x0", default: true)
        if predictionType == "flow_prediction" && !predictX0 {
            throw NodusError.unsupported("\(context): 'prediction_type' = 'flow_prediction' needs 'predict_x0' = true")
        }
        let solver = try reader.choice("solver_type", default: "bh2", allowed: ["bh1", "bh2", "midpoint", "heun", "logrho"])
        solverType = solver == "bh1" ? "bh1" : "bh2"
        lowerOrderFinal = try reader.bool("lower_order_final", default: true)
        disableCorrector = reader.has("disable_corrector") ? try reader.intArray("disable_corrector") : []
        if reader.has("solver_p") {
            throw NodusError.unsupported("\(context): 'solver_p' (another scheduler as predictor) is not supported")
        }
        conversion = try SigmaConversion(reader: reader)
        useFlowSigmas = try reader.bool("use_flow_sigmas", default: false)
        flowShift = try reader.double("flow_shift", default: 1.0)
        useDynamicShifting = try reader.bool("use_dynamic_shifting", default: false)
        timeShiftType = try reader.choice("time_shift_type", default: "exponential", allowed: ["exponential", "linear"])
        shiftTerminal = try reader.optionalDouble("shift_terminal")
        if shiftTerminal != nil && !useFlowSigmas {
            throw NodusError.unsupported("\(context): 'shift_terminal' needs 'use_flow_sigmas' = true")
        }
        let spacing = try reader.choice("timestep_spacing", default: "linspace",
                                        allowed: TimestepSpacing.allCases.map(\.rawValue))
        timestepSpacing = TimestepSpacing(rawValue: spacing) ?? .linspace
        stepsOffset = try reader.int("steps_offset", default: 0)
        finalSigmasType = try reader.choice("final_sigmas_type", default: "zero", allowed: ["zero", "sigma_min"])
        trainingSigmas = DiscreteSigmas.training(schedule.alphasCumprod)
        sigmas = trainingSigmas
        let count = schedule.trainTimesteps
        timesteps = DiscreteSigmas.linspace(0, Double(count - 1), count: count).reversed().map { Double(Float($0)) }
        modelOutputs = Array(repeating: nil, count: solverOrder)
    }

    /// - Parameter mu: required with `use_dynamic_shifting` (flow sigmas shifted by exp(mu) or mu).
    public mutating func setTimesteps(_ count: Int, mu: Double?) throws {
        if useDynamicShifting && mu == nil {
            throw NodusError.invalidArgument("\(className).setTimesteps: mu must be given when use_dynamic_shifting is true")
        }
        let trainCount = schedule.trainTimesteps
        var steps = try DiscreteSigmas.multistepTimesteps(
            timestepSpacing, count: count, last: trainCount, trainTimesteps: trainCount, stepsOffset: stepsOffset,
            className: className
        ).map { Double($0) }
        let logSigmas = DiscreteSigmas.logarithms(trainingSigmas)
        let descending = trainingSigmas.reversed().map { Double($0) }
        var values: [Double]
        var finalSigma: Double
        if conversion.kind == .karras, let converted = conversion.convert(descending, count: count) {
            values = converted
            if useFlowSigmas {
                values = values.map { $0 / ($0 + 1) }
                steps = values.map { $0 * Double(trainCount) }
            } else {
                steps = values.map { DiscreteSigmas.timestep(forSigma: $0, logSigmas: logSigmas).rounded(.toNearestOrEven) }
            }
            finalSigma = finalSigmasType == "sigma_min" ? values[values.count - 1] : 0
        } else if conversion.kind == .exponential, let converted = conversion.convert(descending, count: count) {
            values = converted
            steps = values.map { DiscreteSigmas.timestep(forSigma: $0, logSigmas: logSigmas) }
            finalSigma = finalSigmasType == "sigma_min" ? values[values.count - 1] : 0
        } else if useFlowSigmas {
            values = Array(DiscreteSigmas.linspace(1, 1 / Double(trainCount), count: count + 1).dropLast())
            if useDynamicShifting, let mu {
                values = timeShiftType == "exponential"
                    ? values.map { exp(mu) / (exp(mu) + (1 / $0 - 1)) }
                    : values.map { mu / (mu + (1 / $0 - 1)) }
            } else {
                values = values.map { flowShift * $0 / (1 + (flowShift - 1) * $0) }
            }
            if let terminal = shiftTerminal, terminal != 0, let last = values.last {
                let scale = (1 - last) / (1 - terminal)
                values = values.map { 1 - ((1 - $0) / scale) }
            }
            if abs(values[0] - 1) < 1e-6 { values[0] -= 1e-6 }
            steps = values.map { $0 * Double(trainCount) }
            finalSigma = finalSigmasType == "sigma_min" ? values[values.count - 1] : 0
        } else {
            values = DiscreteSigmas.interpolate(steps, trainingSigmas)
            finalSigma = finalSigmasType == "sigma_min" ? Double(trainingSigmas[0]) : 0
        }
        sigmas = (values + [finalSigma]).map { Float($0) }
        timesteps = try DiscreteSigmas.truncatedTimesteps(steps, className: className)
        inferenceStepCount = timesteps.count
        modelOutputs = Array(repeating: nil, count: solverOrder)
        lowerOrderCount = 0
        lastSample = nil
        cursor.reset()
    }

    public mutating func setBeginIndex(_ index: Int) {
        cursor.beginIndex = index
    }

    private func lambda(_ sigma: Float) -> (alpha: Float, sigma: Float, lambda: Float) {
        let (alpha, sigmaT) = DiscreteSigmas.alphaSigma(sigma, flow: useFlowSigmas)
        return (alpha, sigmaT, logf(alpha) - logf(sigmaT))
    }

    /// diffusers `convert_model_output`: x0 with `predict_x0`, otherwise epsilon.
    private func convert(_ output: Tensor, sample: Tensor, index: Int) throws -> Tensor {
        let sigma = sigmas[index]
        let (alpha, sigmaT) = DiscreteSigmas.alphaSigma(sigma, flow: useFlowSigmas)
        let count = sample.elementCount
        let result = try Tensor(zeros: sample.shape)
        let x = sample.floats, m = output.floats, y = result.floats
        if predictX0 {
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
        return result
    }

    /// The B(h) coefficients shared by the predictor and the corrector: the
    /// matrix rows rks^(i-1), the right-hand side b, h phi_1 and B(h).
    private func coefficients(rks: [Float], h: Float, order: Int)
        -> (matrix: [[Float]], rhs: [Float], hPhi1: Float, bh: Float)
    {
        let hh = predictX0 ? -h : h
        let hPhi1 = expm1f(hh)
        var hPhiK = hPhi1 / hh - 1
        var factorial = 1
        let bh = solverType == "bh1" ? hh : expm1f(hh)
        var matrix: [[Float]] = [], rhs: [Float] = []
        for i in 1...order {
            matrix.append(rks.map { value in
                switch i - 1 {
                case 0: return 1
                case 1: return value
                case 2: return value * value
                default: return powf(value, Float(i - 1))
                }
            })
            rhs.append(hPhiK * Float(factorial) / bh)
            factorial *= i + 1
            hPhiK = hPhiK / hh - Float(1.0 / Double(factorial))
        }
        return (matrix, rhs, hPhi1, bh)
    }

    /// `torch.linalg.solve` for a small float32 system: LU with partial pivoting, carried out
    /// in float64 and rounded to float32 (LAPACK's float32 answer is within an ulp or so of it).
    static func solve(_ matrix: [[Float]], _ rhs: [Float]) throws -> [Float] {
        let size = rhs.count
        var a = matrix.map { Array($0.prefix(size)).map { Double($0) } }
        var b = rhs.map { Double($0) }
        for column in 0..<size {
            var pivot = column
            for row in column..<size where abs(a[row][column]) > abs(a[pivot][column]) { pivot = row }
            guard a[pivot][column] != 0, a[pivot][column].isFinite else {
                throw NodusError.invalidArgument("UniPCMultistepScheduler.step: singular B(h) system")
            }
            if pivot != column { a.swapAt(pivot, column); b.swapAt(pivot, column) }
            for row in (column + 1)..<size {
                let factor = a[row][column] / a[column][column]
                for other in column..<size { a[row][other] -= factor * a[column][other] }
                b[row] -= factor * b[column]
            }
        }
        var solution = [Double](repeating: 0, count: size)
        for row in (0..<size).reversed() {
            var total = b[row]
            for other in (row + 1)..<size { total -= a[row][other] * solution[other] }
            solution[row] = total / a[row][row]
        }
        return solution.map { Float($0) }
    }

    /// `einsum("k,bkc...->bc...", weights, differences)` plus the rest of an update, per element.
    private static func weightedSum(_ weights: [Float], _ differences: [[Float]], at index: Int) -> Float {
        var total: Float = 0
        for (k, weight) in weights.enumerated() {
            total = k == 0 ? weight * differences[k][index] : total + weight * differences[k][index]
        }
        return total
    }

    /// diffusers `multistep_uni_p_bh_update`.
    private func predictor(sample: Tensor, index: Int, order: Int) throws -> Tensor {
        guard let m0Tensor = modelOutputs[solverOrder - 1] else {
            throw NodusError.invalidArgument("\(className).step: missing model output")
        }
        let t = lambda(sigmas[index + 1]), s0 = lambda(sigmas[index])
        let h = t.lambda - s0.lambda
        let count = sample.elementCount
        let m0 = m0Tensor.floats
        var rks: [Float] = [], differences: [[Float]] = []
        for i in 1..<max(order, 1) {
            guard let mi = modelOutputs[solverOrder - 1 - i]?.floats else {
                throw NodusError.invalidArgument("\(className).step: missing earlier model outputs")
            }
            let si = lambda(sigmas[index - i])
            let rk = (si.lambda - s0.lambda) / h
            rks.append(rk)
            differences.append((0..<count).map { (mi[$0] - m0[$0]) / rk })
        }
        rks.append(1)
        let (matrix, rhs, hPhi1, bh) = coefficients(rks: rks, h: h, order: order)
        var rhos: [Float] = []
        if !differences.isEmpty {
            rhos = order == 2 ? [0.5]
                : try Self.solve(Array(matrix.prefix(order - 1)), Array(rhs.prefix(order - 1)))
        }
        let x = sample.floats
        let result = try Tensor(zeros: sample.shape)
        let y = result.floats
        let (a, b, c): (Float, Float, Float) = predictX0
            ? (t.sigma / s0.sigma, t.alpha * hPhi1, t.alpha * bh)
            : (t.alpha / s0.alpha, t.sigma * hPhi1, t.sigma * bh)
        for i in 0..<count {
            let base = a * x[i] - b * m0[i]
            let residual: Float = differences.isEmpty ? c * 0 : c * Self.weightedSum(rhos, differences, at: i)
            y[i] = base - residual
        }
        return result
    }

    /// diffusers `multistep_uni_c_bh_update`: the corrected current sample.
    private func corrector(modelOutput: Tensor, lastSample: Tensor, sample: Tensor, index: Int,
                           order: Int) throws -> Tensor {
        guard let m0Tensor = modelOutputs[solverOrder - 1] else {
            throw NodusError.invalidArgument("\(className).step: missing model output")
        }
        let t = lambda(sigmas[index]), s0 = lambda(sigmas[index - 1])
        let h = t.lambda - s0.lambda
        let count = sample.elementCount
        let m0 = m0Tensor.floats
        var rks: [Float] = [], differences: [[Float]] = []
        for i in 1..<max(order, 1) {
            guard let mi = modelOutputs[solverOrder - 1 - i]?.floats else {
                throw NodusError.invalidArgument("\(className).step: missing earlier model outputs")
            }
            let si = lambda(sigmas[index - (i + 1)])
            let rk = (si.lambda - s0.lambda) / h
            rks.append(rk)
            differences.append((0..<count).map { (mi[$0] - m0[$0]) / rk })
        }
        rks.append(1)
        let (matrix, rhs, hPhi1, bh) = coefficients(rks: rks, h: h, order: order)
        let rhos = order == 1 ? [Float(0.5)] : try Self.solve(matrix, rhs)
        let x = lastSample.floats, model = modelOutput.floats
        let result = try Tensor(zeros: sample.shape)
        let y = result.floats
        let (a, b, c): (Float, Float, Float) = predictX0
            ? (t.sigma / s0.sigma, t.alpha * hPhi1, t.alpha * bh)
            : (t.alpha / s0.alpha, t.sigma * hPhi1, t.sigma * bh)
        let lastRho = rhos[rhos.count - 1]
        let leading = Array(rhos.dropLast())
        for i in 0..<count {
            let base = a * x[i] - b * m0[i]
            let difference = model[i] - m0[i]
            let correction = differences.isEmpty
                ? lastRho * difference
                : Self.weightedSum(leading, differences, at: i) + lastRho * difference
            y[i] = base - c * correction
        }
        return result
    }

    /// One predictor-corrector step.
    /// - Throws: `NodusError.invalidArgument` before `setTimesteps` or for an exhausted
    ///   schedule; `NodusError.shape` for mismatched tensors.
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
        let converted = try convert(inputs.modelOutput, sample: inputs.sample, index: index)
        var current = try Self.copied(inputs.sample)
        if index > 0 && !disableCorrector.contains(index - 1), let lastSample {
            current = try corrector(modelOutput: converted, lastSample: lastSample, sample: current, index: index,
                                    order: thisOrder)
        }
        modelOutputs.removeFirst()
        modelOutputs.append(converted)
        let order = lowerOrderFinal ? min(solverOrder, timesteps.count - index) : solverOrder
        thisOrder = min(order, lowerOrderCount + 1)
        lastSample = current
        let result = try predictor(sample: current, index: index, order: thisOrder)
        if lowerOrderCount < solverOrder { lowerOrderCount += 1 }
        cursor.stepIndex = index + 1
        return result
    }

    /// diffusers `add_noise`: alpha_t x + sigma_t noise at the schedule's sigma.
    public func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor {
        let inputs = try Self.noiseInputs(original, noise)
        var lookup = cursor
        if lookup.beginIndex == nil { lookup.stepIndex = nil }
        let index = try lookup.index(for: timestep, in: timesteps, lastWhenMissing: true, className: className)
        let (alpha, sigma) = DiscreteSigmas.alphaSigma(sigmas[index], flow: useFlowSigmas)
        let result = try Tensor(zeros: original.shape)
        let x = inputs.original.floats, z = inputs.noise.floats, y = result.floats
        for i in 0..<original.elementCount {
            let kept = alpha * x[i], added = sigma * z[i]
            y[i] = kept + added
        }
        return result
    }
}
