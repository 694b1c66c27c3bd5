#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// The posterior of a VAE encoder: diffusers' `DiagonalGaussianDistribution`,
/// what `vae.encode(x).latent_dist` returns.
///
/// Matches diffusers 0.42: the encoder's moments [B, 2C, h, w] split along
/// channels into `mean` (the first C) and `logvar` (the last C), logvar clamped
/// to [-30, 20]; `std = exp(0.5 * logvar)`; `sample()` is `mean + std * noise`
/// and `mode()` is `mean`.
///
/// Limitations: the noise of `sample` comes from the caller (diffusers draws it
/// with `randn_tensor`, i.e. `torch.randn(mean.shape, generator=g)` on CPU:
/// `TorchGenerator` gives the same values).
public struct DiagonalGaussian {
    public let mean: Tensor
    /// Clamped to `logvarRange`.
    public let logvar: Tensor

    /// The clamp diffusers applies to logvar.
    public static let logvarRange: ClosedRange<Float> = -30...20

    /// Splits `moments` [B, 2C, h, w] (the encoder's output after `quant_conv`).
    public init(moments: Tensor) throws {
        let shape = moments.shape
        guard shape.count == 4, shape[1] % 2 == 0, moments.dtype == .float32 else {
            throw NodusError(.internal, "encoder moments must be float32 [B, 2C, h, w], got \(moments.shape)")
        }
        let half = [shape[0], shape[1] / 2, shape[2], shape[3]]
        let block = half[1] * half[2] * half[3]
        mean = try Tensor(zeros: half)
        logvar = try Tensor(zeros: half)
        let source = moments.floats, range = DiagonalGaussian.logvarRange
        for item in 0..<shape[0] {
            (mean.floats + item * block).update(from: source + 2 * item * block, count: block)
            let logvarSource = source + (2 * item + 1) * block, logvarTarget = logvar.floats + item * block
            for index in 0..<block {
                logvarTarget[index] = min(max(logvarSource[index], range.lowerBound), range.upperBound)
            }
        }
    }

    /// `latent_dist.sample()` with `noise` as the normal draw: `mean + exp(0.5 * logvar) * noise`;
    /// `latent_dist.mode()` (the mean) when `noise` is nil.
    /// - Throws: `NodusError.shape` when `noise` does not have the mean's shape.
    public func sample(noise: Tensor?) throws -> Tensor {
        guard let noise else { return mean }
        guard noise.shape == mean.shape, noise.dtype == .float32 else {
            throw NodusError.shape("noise must be float32 \(mean.shape) (the latent's shape), got \(noise.dtype.name) \(noise.shape)")
        }
        let result = try Tensor(zeros: mean.shape)
        let mean = self.mean.floats, logvar = self.logvar.floats, draw = noise.floats, target = result.floats
        for index in 0..<result.elementCount {
            target[index] = mean[index] + exp(0.5 * logvar[index]) * draw[index]
        }
        return result
    }
}
