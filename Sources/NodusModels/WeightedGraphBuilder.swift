import NodusCore
import NodusGraph

/// A graph builder that reads weights by their source names: what every
/// native model builder (DiT, UNet, VAE) writes with. It holds the weight
/// layers (Linear, convolution, norms); the layers made of them
/// (`AttentionLayer`, `FeedForwardLayer`, resnets, ...) are written once, in
/// their own files, and shared by every model.
struct WeightedGraphBuilder {
    let weights: Weights
    /// GroupNorm groups (`norm_num_groups`).
    let groups: Int
    var graph = GraphBuilder()
    /// The resnets' GroupNorm eps: 1e-6 in the VAE, the config's `norm_eps` in the UNet.
    let eps: Float

    init(weights: Weights, groups: Int = 32, eps: Float = 1e-6) {
        self.weights = weights
        self.groups = groups
        self.eps = eps
    }

    mutating func weight(_ name: String, _ shape: [Int]) throws -> ValueID {
        try graph.constant(name, weights.tensor(name, shape: shape))
    }

    func channels(_ x: ValueID) -> Int { graph.shape(of: x)[1] }

    /// Conv2d with bias, "same" padding for odd kernels.
    mutating func conv(_ x: ValueID, _ prefix: String, outChannels: Int, kernel: Int) throws -> ValueID {
        let weightValue = try weight(prefix + ".weight", [outChannels, channels(x), kernel, kernel])
        let bias = try weight(prefix + ".bias", [outChannels])
        return try graph.conv2d(x, weight: weightValue, bias: bias, padding: kernel / 2)
    }

    /// Linear with bias (or without), reading the input width from `x`.
    mutating func linear(_ x: ValueID, _ prefix: String, outWidth: Int, bias: Bool = true) throws -> ValueID {
        let inWidth = graph.shape(of: x).last ?? 0
        return try graph.linear(x, weight: weight(prefix + ".weight", [outWidth, inWidth]),
                                bias: bias ? weight(prefix + ".bias", [outWidth]) : nil)
    }

    mutating func groupNorm(_ x: ValueID, _ prefix: String, silu: Bool, eps: Float? = nil) throws -> ValueID {
        let width = channels(x)
        return try graph.groupNorm(x, groups: groups, eps: eps ?? self.eps, weight: weight(prefix + ".weight", [width]),
                                   bias: weight(prefix + ".bias", [width]), silu: silu)
    }

    /// LayerNorm over the last axis with its affine weight and bias.
    mutating func layerNorm(_ x: ValueID, _ prefix: String, eps: Float = 1e-5) throws -> ValueID {
        let width = graph.shape(of: x).last ?? 0
        return try graph.layerNorm(x, eps: eps, weight: weight(prefix + ".weight", [width]),
                                   bias: weight(prefix + ".bias", [width]))
    }
}
