import NodusCore
import NodusFormats
import NodusGraph

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
    /// Times each step of the plan for these inputs over `rounds` runs, after
    /// one untimed warm-up (see `Executable.profile`). The inputs are those of
    /// `forward`; a VAE takes "latent" (its decoder) or "image" (its encoder).
    /// - Throws: as `forward`; `NodusError.invalidArgument` when `rounds` < 1.
    func profile(_ inputs: [String: Tensor], rounds: Int) throws -> ExecutionProfile
    /// What `forward` takes, in order.
    var inputSignatures: [TensorSignature] { get }
    /// What `forwardAll` returns, in order (`forward` returns the first).
    var outputSignatures: [TensorSignature] { get }
    /// The shapes `forwardAll` would return for these inputs, without running it.
    func outputShapes(for inputs: [String: Tensor]) throws -> [[Int]]
    /// Every output, in `outputSignatures` order.
    func forwardAll(_ inputs: [String: Tensor]) throws -> [Tensor]
}

/// A diffusers model has one output, `sample`.
extension DiffusionModel {
    public var outputSignatures: [TensorSignature] { [TensorSignature(name: "sample", dtype: .float32, shape: nil)] }
    public func outputShapes(for inputs: [String: Tensor]) throws -> [[Int]] { [try outputShape(for: inputs)] }
    public func forwardAll(_ inputs: [String: Tensor]) throws -> [Tensor] { [try forward(inputs)] }
}

/// A model that turns latents into images (the VAE).
public protocol LatentDecoder: AnyObject {
    func decodedShape(forLatent shape: [Int]) throws -> [Int]
    /// `vae.decode(latent).sample`: the latent is z = latent / scaling_factor.
    func decode(_ latent: Tensor) throws -> Tensor
}
