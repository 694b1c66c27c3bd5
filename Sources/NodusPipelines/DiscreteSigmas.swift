#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// The numpy arithmetic the sigma-based diffusers schedulers (Euler, Euler
/// ancestral, Heun, LMS, DPM-Solver, UniPC) share in `set_timesteps`: the
/// training sigmas sqrt((1 - a) / a), `np.interp`, `_sigma_to_t`, the Karras,
/// exponential and Lu conversions, numpy's `linspace` / `arange`, and the
/// timestep spacings of both families.
///
/// Matches diffusers 0.42.1 as numpy 2 computes it: float32 where diffusers holds
/// a float32 array, float64 where numpy promotes, round half to even.
///
/// The logarithm of a float32 array is numpy's own float32 `log` kernel
/// (`simd_log_FLOAT` of `loops_exponent_log.dispatch.c.src`, used on AVX2 + FMA3
/// and AVX-512 CPUs), not glibc's `logf`: the two differ in the last place for a
/// fifth of the training sigmas, which moves Karras and exponential timesteps.
///
/// Limitations: torch takes the square root of the 1000 training sigmas
/// (`((1 - a) / a) ** 0.5`) with MKL's vector square root, which is one ulp
/// off for about a fifth of them; here it is the exact square root, so sigmas can
/// differ in the last place, and Karras / exponential timesteps (fractional for
/// Euler, Heun, LMS) by one float32 ulp (about 1e-7 relative). numpy on a CPU
/// without FMA3 uses a plain loop over `logf` for `log`.
enum DiscreteSigmas {
    /// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32 (torch).
    static func training(_ alphasCumprod: [Float]) -> [Float] {
        alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
    }

    /// `np.log` of a float32 array (float32 result).
    static func logarithms(_ sigmas: [Float]) -> [Float] {
        sigmas.map(numpyLog)
    }

    /// numpy's float32 `log` (AVX2 / AVX-512 kernel), one lane: x = 2^e m with m in
    /// (sqrt(1/2), sqrt(2)], log(m) from a 5/5 rational minimax polynomial in m - 1
    /// evaluated with fused multiply-adds, plus e ln 2.
    static func numpyLog(_ value: Float) -> Float {
        if value.isNaN { return .nan }
        if value < 0 { return -.nan }
        if value == 0 { return -.infinity }
        if value == .infinity { return .infinity }
        let isSubnormal = value < Float.leastNormalMagnitude
        let normal = isSubnormal ? value * Float(bitPattern: 0x7180_0000) : value
        var exponent = Float(Int32(normal.bitPattern >> 23) - 0x7E) - (isSubnormal ? 100 : 0)
        var mantissa = Float(bitPattern: (normal.bitPattern & 0x7F_FFFF) | (126 << 23))
        if mantissa <= Float(0.707106781186547524400844362104849039) {
            mantissa = mantissa + mantissa
            exponent = exponent - 1
        }
        let x = mantissa - 1
        let p: [Float] = [0, 9.999999999999998702752e-01, 2.112677543073053063722e+00, 1.480000633576506585156e+00,
                          3.808837741388407920751e-01, 2.589979117907922693523e-02]
        let q: [Float] = [1, 2.612677543073109236779e+00, 2.453006071784736363091e+00, 9.864942958519418960339e-01,
                          1.546476374983906719538e-01, 5.875095403124574342950e-03]
        var numerator = p[4].addingProduct(p[5], x)
        var denominator = q[4].addingProduct(q[5], x)
        for degree in stride(from: 3, through: 0, by: -1) {
            numerator = p[degree].addingProduct(numerator, x)
            denominator = q[degree].addingProduct(denominator, x)
        }
        return (numerator / denominator).addingProduct(exponent, Float(0.693147180559945309417232121458176568))
    }

    /// `np.interp(x, np.arange(len(values)), values)` in float64.
    static func interpolate(_ positions: [Double], _ values: [Float]) -> [Double] {
        let last = values.count - 1
        return positions.map { x in
            guard last > 0 else { return Double(values[0]) }
            if x.isNaN { return x }
            if x <= 0 { return Double(values[0]) }
            if x >= Double(last) { return Double(values[last]) }
            let low = Int(x.rounded(.down))
            if Double(low) == x { return Double(values[low]) }
            let slope = (Double(values[low + 1]) - Double(values[low])) / 1.0
            return slope * (x - Double(low)) + Double(values[low])
        }
    }

    /// diffusers `_sigma_to_t`: the fractional training timestep of `sigma`,
    /// interpolated linearly in log sigma.
    static func timestep(forSigma sigma: Double, logSigmas: [Float]) -> Double {
        guard logSigmas.count >= 2 else { return 0 }
        let logSigma = log(max(sigma, 1e-10))
        var low = 0
        for index in logSigmas.indices where logSigma - Double(logSigmas[index]) >= 0 { low = index }
        low = min(low, logSigmas.count - 2)
        let high = low + 1
        // low - log_sigma is float64; low - high subtracts two float32 array elements in float32.
        let lowValue = Double(logSigmas[low])
        var weight = (lowValue - logSigma) / Double(logSigmas[low] - logSigmas[high])
        weight = min(max(weight, 0), 1)
        return (1 - weight) * Double(low) + weight * Double(high)
    }

    /// `torch.from_numpy(timesteps).to(torch.int64)` (truncation toward zero), as float64 values.
    /// - Throws: `NodusError.invalidArgument` for a timestep that is not finite or out of int64 range
    ///   (a config whose sigmas are not numbers).
    static func truncatedTimesteps(_ values: [Double], className: String) throws -> [Double] {
        try values.map { value in
            guard value.isFinite, abs(value) < 9.2e18 else {
                throw NodusError.invalidArgument(
                    "\(className).setTimesteps: timestep \(value) is not a finite number (check the sigma settings)")
            }
            return Double(Int64(value.rounded(.towardZero)))
        }
    }

    /// `np.linspace(start, stop, count)` in float64.
    static func linspace(_ start: Double, _ stop: Double, count: Int) -> [Double] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (stop - start) / Double(count - 1)
        return (0..<count).map { $0 == count - 1 ? stop : Double($0) * step + start }
    }

    /// `np.arange(start, stop, step)` for a float step: ceil((stop - start) / step)
    /// values `start + i * ((start + step) - start)`.
    static func arange(_ start: Double, _ stop: Double, step: Double) -> [Double] {
        let length = Int(((stop - start) / step).rounded(.up))
        let second = start + step
        let filledDelta = second - start
        return (0..<max(length, 0)).map { index in
            index == 0 ? start : (index == 1 ? second : start + Double(index) * filledDelta)
        }
    }

    /// diffusers `_convert_to_karras` (rho = 7), in float64.
    static func karras(minimum: Double, maximum: Double, count: Int) -> [Double] {
        let rho = 7.0
        let minimumRoot = pow(minimum, 1 / rho), maximumRoot = pow(maximum, 1 / rho)
        return linspace(0, 1, count: count).map { pow(maximumRoot + $0 * (minimumRoot - maximumRoot), rho) }
    }

    /// diffusers `_convert_to_exponential`, in float64.
    static func exponential(minimum: Double, maximum: Double, count: Int) -> [Double] {
        linspace(log(maximum), log(minimum), count: count).map { exp($0) }
    }

    /// diffusers `_convert_to_lu` (rho = 1): log-SNR values evenly spaced, in float64.
    static func lu(minimum: Double, maximum: Double, count: Int) -> [Double] {
        linspace(0, 1, count: count).map { maximum + $0 * (minimum - maximum) }
    }

    /// The float32 descending timesteps of Euler, Euler ancestral, Heun and LMS:
    /// "linspace" is `np.linspace(0, N - 1, count, dtype=float32)` (not rounded);
    /// "leading" and "trailing" are `TimestepSpacing`'s integers.
    static func eulerTimesteps(_ spacing: TimestepSpacing, count: Int, trainTimesteps: Int, stepsOffset: Int,
                               className: String) throws -> [Float] {
        guard spacing == .linspace else {
            return try spacing.timesteps(count: count, trainTimesteps: trainTimesteps, stepsOffset: stepsOffset,
                                         className: className).map { Float($0) }
        }
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        return linspace(0, Double(trainTimesteps - 1), count: count).reversed().map { Float($0) }
    }

    /// The descending integer timesteps of DPM-Solver and UniPC: `count + 1`
    /// points with the last dropped ("linspace", "leading"), or numpy's `arange`
    /// from `last` ("trailing").
    /// - Parameter last: the schedule's end (`num_train_timesteps`, or less with
    ///   DPM-Solver's `lambda_min_clipped`).
    static func multistepTimesteps(_ spacing: TimestepSpacing, count: Int, last: Int, trainTimesteps: Int,
                                   stepsOffset: Int, className: String) throws -> [Int] {
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        switch spacing {
        case .linspace:
            let values = linspace(0, Double(last - 1), count: count + 1).map { $0.rounded(.toNearestOrEven) }
            return values.reversed().dropLast().map { Int($0) }
        case .leading:
            let ratio = last / (count + 1)
            return (0...count).reversed().dropLast().map { $0 * ratio + stepsOffset }
        case .trailing:
            let ratio = Double(trainTimesteps) / Double(count)
            return arange(Double(last), 0, step: -ratio).map { Int($0.rounded(.toNearestOrEven)) - 1 }
        }
    }
}

extension DiscreteSigmas {
    /// `sample / ((sigma ** 2 + 1) ** 0.5)` in float32: the k-diffusion model-input scaling.
    static func scaledInput(_ sample: Tensor, sigma: Float) throws -> Tensor {
        let input = try sample.asFloat32()
        let divisor = (sigma * sigma + 1).squareRoot()
        let result = try Tensor(zeros: sample.shape)
        let x = input.floats, y = result.floats
        for i in 0..<sample.elementCount { y[i] = x[i] / divisor }
        return result
    }

    /// `original + noise * sigma` in float32: `add_noise` of the k-diffusion schedulers.
    static func noised(_ original: Tensor, noise: Tensor, sigma: Float) throws -> Tensor {
        let result = try Tensor(zeros: original.shape)
        let x = original.floats, z = noise.floats, y = result.floats
        for i in 0..<original.elementCount { y[i] = x[i] + z[i] * sigma }
        return result
    }

    /// diffusers `_sigma_to_alpha_sigma_t`: (1 / sqrt(sigma^2 + 1), sigma alpha), or
    /// (1 - sigma, sigma) for flow-matching sigmas; float32.
    static func alphaSigma(_ sigma: Float, flow: Bool) -> (alpha: Float, sigma: Float) {
        if flow { return (1 - sigma, sigma) }
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }
}
