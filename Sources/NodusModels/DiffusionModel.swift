import NodusCore
import NodusFormats

/// A loaded model that maps named input tensors to one output tensor, as
/// `model(**inputs).sample` does in diffusers.
public protocol DiffusionModel: AnyObject {
    var kind: ModelKind { get }
    /// The model's config.json.
    var config: JSONValue { get }
    /// The shape `forward` would return for these inputs, without running it.
    /// - Throws: `NodusError.shape` naming an input that is missing or does not fit.
    func outputShape(for inputs: [String: Tensor]) throws -> [Int]
    func forward(_ inputs: [String: Tensor]) throws -> Tensor
}

/// A model that turns latents into images (the VAE).
public protocol LatentDecoder: AnyObject {
    func decodedShape(forLatent shape: [Int]) throws -> [Int]
    /// `vae.decode(latent).sample`: the latent is z = latent / scaling_factor.
    func decode(_ latent: Tensor) throws -> Tensor
}
