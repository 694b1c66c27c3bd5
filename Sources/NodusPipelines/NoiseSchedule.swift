#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// The training noise schedule of the DDPM family (betas and cumulative alpha
/// products), shared by `DDIMScheduler` and `DDPMScheduler`, plus the parts of
/// their `step` that are the same: the prediction type and the clipping or
/// dynamic thresholding of the predicted original sample.
///
/// Matches diffusers 0.42.1 `__init__` of `DDIMScheduler` / `DDPMScheduler` in
/// float32 as torch computes it: `torch.linspace` (scalar, fused multiply-add
/// as the CPU kernel is compiled), `torch.cumprod` (accumulated in float64),
/// `betas_for_alpha_bar` (float64, then float32) and
/// `rescale_zero_terminal_snr`.
///
/// The same training schedule serves the sigma-based schedulers (Euler, Heun,
/// LMS, DPM-Solver, UniPC, PNDM, LCM): each passes the beta schedules and
/// defaults its diffusers class has, and how it treats `rescale_betas_zero_snr`
/// (see `ZeroTerminalSNR`).
///
/// Limitations: `beta_schedule` "sigmoid" and "laplace" are DDPM-only, "exp"
/// Heun-only (as in diffusers); `trained_betas` must have at least
/// `num_train_timesteps` values.
public struct NoiseSchedule: Sendable {
    /// What a class does with `rescale_betas_zero_snr` (arXiv 2305.08891).
    public enum ZeroTerminalSNR: Sendable {
        /// The class has no such field: the key is ignored, as diffusers' `from_config` does.
        case ignored
        /// Rescale the betas (DDIM, DDPM, LCM).
        case rescaleBetas
        /// Rescale the betas, then set the last `alphas_cumprod` to 2^-24 so that its sigma
        /// stays finite (Euler, Euler ancestral, DPM-Solver, UniPC).
        case rescaleBetasAndClampLastAlpha
    }

    /// The `alpha_transform_type` of diffusers `betas_for_alpha_bar`.
    public enum AlphaBarTransform: Sendable {
        case cosine
        case laplace
        case exp
    }

    /// What the model predicts (`prediction_type`).
    public enum PredictionType: String, Sendable, CaseIterable {
        case epsilon
        case sample
        case vPrediction = "v_prediction"

        /// The config's `prediction_type` (default "epsilon").
        init(reader: JSONObjectReader) throws {
            let name = try reader.choice("prediction_type", default: "epsilon", allowed: Self.allCases.map(\.rawValue))
            self = Self(rawValue: name) ?? .epsilon
        }
    }

    /// How the predicted original sample is limited before it is used
    /// (`thresholding`, `dynamic_thresholding_ratio`, `sample_max_value`,
    /// `clip_sample`, `clip_sample_range`).
    public struct SampleLimit: Sendable {
        public var thresholding: Bool
        public var dynamicThresholdingRatio: Double
        public var sampleMaxValue: Double
        public var clipSample: Bool
        public var clipSampleRange: Double

        init(reader: JSONObjectReader) throws {
            thresholding = try reader.bool("thresholding", default: false)
            dynamicThresholdingRatio = try reader.double("dynamic_thresholding_ratio", default: 0.995)
            sampleMaxValue = try reader.double("sample_max_value", default: 1.0)
            clipSample = try reader.bool("clip_sample", default: true)
            clipSampleRange = try reader.double("clip_sample_range", default: 1.0)
            if thresholding && !(dynamicThresholdingRatio >= 0 && dynamicThresholdingRatio <= 1) {
                throw NodusError.unsupported(
                    "\(reader.context): 'dynamic_thresholding_ratio' = \(dynamicThresholdingRatio) must be in [0, 1]")
            }
        }

        /// Applies dynamic thresholding (diffusers `_threshold_sample`) or clipping, in place.
        func apply(to sample: Tensor) {
            let values = sample.floats
            if thresholding {
                let batch = sample.shape[0]
                let itemCount = sample.elementCount / max(batch, 1)
                guard itemCount > 0 else { return }
                var sorted = [Float](repeating: 0, count: itemCount)
                for item in 0..<batch {
                    let row = values + item * itemCount
                    for index in 0..<itemCount { sorted[index] = abs(row[index]) }
                    sorted.sort()
                    // torch.quantile(abs, q, dim=1), linear interpolation, q as a float32 tensor.
                    let rank = Float(dynamicThresholdingRatio) * Float(itemCount - 1)
                    let below = Int(rank)
                    let above = Int(rank.rounded(.up))
                    let weight = rank - Float(below)
                    let low = sorted[below]
                    let high = sorted[min(above, itemCount - 1)]
                    let difference = high - low
                    var threshold = abs(weight) < 0.5
                        ? low.addingProduct(weight, difference)
                        : high.addingProduct(-difference, 1 - weight)
                    // torch.clamp(s, min=1, max=sample_max_value)
                    threshold = min(max(threshold, 1), Float(sampleMaxValue))
                    for index in 0..<itemCount {
                        row[index] = min(max(row[index], -threshold), threshold) / threshold
                    }
                }
            } else if clipSample {
                let bound = Float(clipSampleRange)
                for index in 0..<sample.elementCount {
                    values[index] = min(max(values[index], -bound), bound)
                }
            }
        }
    }

    public let trainTimesteps: Int
    /// The config's `beta_schedule` as written (DPM-Solver rounds its Karras timesteps unless it is
    /// "squaredcos_cap_v2", even with `trained_betas`).
    public let betaScheduleName: String
    public let betas: [Float]
    /// `alphas_cumprod`: the product of `1 - beta` up to each training timestep.
    public let alphasCumprod: [Float]

    /// The most training timesteps a config may give (diffusers' models use 1000; 4000 at most
    /// in the literature): a bound, so a config cannot make the schedule allocate gigabytes.
    public static let maximumTrainTimesteps = 1_000_000

    /// Reads `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`,
    /// `trained_betas` and `rescale_betas_zero_snr`.
    /// - Parameters:
    ///   - schedules: the `beta_schedule` values the class accepts.
    ///   - defaults: the class's defaults of `beta_start`, `beta_end` and `beta_schedule`.
    ///   - zeroTerminalSNR: what the class does with `rescale_betas_zero_snr`.
    init(reader: JSONObjectReader, schedules: [String],
         defaults: (start: Double, end: Double, schedule: String) = (0.0001, 0.02, "linear"),
         zeroTerminalSNR: ZeroTerminalSNR = .rescaleBetas) throws {
        let count = try reader.int("num_train_timesteps", default: 1000)
        guard (1...NoiseSchedule.maximumTrainTimesteps).contains(count) else {
            throw NodusError.unsupported("\(reader.context): 'num_train_timesteps' = \(count) is out of range (1...\(NoiseSchedule.maximumTrainTimesteps))")
        }
        trainTimesteps = count
        betaScheduleName = try reader.string("beta_schedule", default: defaults.schedule)
        var betas: [Float]
        if let trained = try reader.optionalDoubleArray("trained_betas") {
            guard trained.count >= count else {
                throw NodusError.format(
                    "\(reader.context): 'trained_betas' has \(trained.count) values, fewer than num_train_timesteps = \(count)")
            }
            betas = trained.map { Float($0) }
        } else {
            let start = try reader.double("beta_start", default: defaults.start)
            let end = try reader.double("beta_end", default: defaults.end)
            let schedule = try reader.choice("beta_schedule", default: defaults.schedule, allowed: schedules)
            switch schedule {
            case "linear":
                betas = NoiseSchedule.linspace(Float(start), Float(end), count: count)
            case "scaled_linear":
                betas = NoiseSchedule.linspace(Float(start.squareRoot()), Float(end.squareRoot()), count: count)
                    .map { $0 * $0 }
            case "squaredcos_cap_v2":
                betas = NoiseSchedule.betasForAlphaBar(count: count, transform: .cosine)
            case "laplace":
                betas = NoiseSchedule.betasForAlphaBar(count: count, transform: .laplace)
            case "exp":
                betas = NoiseSchedule.betasForAlphaBar(count: count, transform: .exp)
            default:  // "sigmoid": torch.sigmoid(torch.linspace(-6, 6, n)) * (end - start) + start
                let scale = Float(end - start)
                let offset = Float(start)
                betas = NoiseSchedule.linspace(-6, 6, count: count).map { 1 / (1 + expf(-$0)) * scale + offset }
            }
        }
        // Betas are variances of noise added per step: outside [0, 1) the schedule's square roots are NaN.
        if let bad = betas.firstIndex(where: { !($0.isFinite && $0 >= 0 && $0 < 1) }) {
            throw NodusError.format("\(reader.context): beta \(bad) of the schedule is \(betas[bad]); betas must lie in [0, 1) (check beta_start, beta_end or trained_betas)")
        }
        let rescale = try zeroTerminalSNR != .ignored && reader.bool("rescale_betas_zero_snr", default: false)
        if rescale {
            betas = NoiseSchedule.rescaleZeroTerminalSnr(betas)
        }
        self.betas = betas
        var products = NoiseSchedule.cumulativeProduct(betas.map { 1 - $0 })
        if rescale && zeroTerminalSNR == .rescaleBetasAndClampLastAlpha, !products.isEmpty {
            products[products.count - 1] = 0x1p-24
        }
        alphasCumprod = products
    }

    /// diffusers `add_noise`: sqrt(a) x + sqrt(1 - a) noise with a = alphas_cumprod[index],
    /// in float32 as torch evaluates it (no fused multiply-add).
    func addNoise(to original: Tensor, noise: Tensor, index: Int) throws -> Tensor {
        let alpha = alphasCumprod[index]
        let signal = alpha.squareRoot(), spread = (1 - alpha).squareRoot()
        let result = try Tensor(zeros: original.shape)
        let x = original.floats, z = noise.floats, y = result.floats
        for i in 0..<original.elementCount {
            let kept = signal * x[i], added = spread * z[i]
            y[i] = kept + added
        }
        return result
    }

    /// `torch.linspace(start, end, count, dtype=float32)` on the CPU.
    static func linspace(_ start: Float, _ end: Float, count: Int) -> [Float] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (end - start) / Float(count - 1)
        let halfway = count / 2
        return (0..<count).map { index in
            index < halfway
                ? start.addingProduct(step, Float(index))
                : end.addingProduct(-step, Float(count - index - 1))
        }
    }

    /// `torch.cumprod` of float32 values (the CPU kernel accumulates in float64).
    static func cumulativeProduct(_ values: [Float]) -> [Float] {
        var product = 1.0
        return values.map { value in
            product *= Double(value)
            return Float(product)
        }
    }

    /// diffusers `betas_for_alpha_bar` (cosine, laplace or exp), max_beta 0.999, in float64.
    static func betasForAlphaBar(count: Int, transform: AlphaBarTransform) -> [Float] {
        func alphaBar(_ t: Double) -> Double {
            if transform == .exp { return exp(t * -12.0) }
            if transform == .laplace {
                let lambda = -0.5 * Double(signOf: 0.5 - t, magnitudeOf: 1) * log(1 - 2 * abs(0.5 - t) + 1e-6)
                let snr = exp(lambda)
                return (snr / (1 + snr)).squareRoot()
            }
            let angle = cos((t + 0.008) / 1.008 * Double.pi / 2)
            return angle * angle
        }
        return (0..<count).map { index in
            let t1 = Double(index) / Double(count)
            let t2 = Double(index + 1) / Double(count)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
        }
    }

    /// diffusers `rescale_zero_terminal_snr` (arXiv 2305.08891, Algorithm 1), in float32.
    static func rescaleZeroTerminalSnr(_ betas: [Float]) -> [Float] {
        var roots = cumulativeProduct(betas.map { 1 - $0 }).map { $0.squareRoot() }
        guard let first = roots.first, let last = roots.last else { return betas }
        let scale = first / (first - last)
        for index in roots.indices { roots[index] = (roots[index] - last) * scale }
        let bars = roots.map { $0 * $0 }
        var result = [Float](repeating: 0, count: bars.count)
        result[0] = 1 - bars[0]
        for index in 1..<bars.count { result[index] = 1 - bars[index] / bars[index - 1] }
        return result
    }
}
