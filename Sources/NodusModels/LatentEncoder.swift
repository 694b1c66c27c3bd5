import NodusCore

/// A model that turns images into latents (the VAE encoder).
public protocol LatentEncoder: AnyObject {
    /// The shape of the posterior's mean and logvar for an image of `shape`.
    /// - Throws: when the image does not fit, or the model cannot encode.
    func encodedShape(forImage shape: [Int]) throws -> [Int]
    /// `vae.encode(image).latent_dist`.
    func encode(_ image: Tensor) throws -> DiagonalGaussian
    /// The latent a pipeline feeds the denoiser: `latent_dist.sample()` (with
    /// `noise` as the draw) or `latent_dist.mode()` (noise nil), minus the
    /// config's `shift_factor` if any, times its `scaling_factor`.
    func encodeLatent(_ image: Tensor, noise: Tensor?) throws -> Tensor
}
