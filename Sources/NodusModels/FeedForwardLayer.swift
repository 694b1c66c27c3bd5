import NodusCore
import NodusGraph

/// diffusers' `FeedForward`: `net.0` (a projection and its activation) and
/// the output projection `net.2`, back to the input width.
struct FeedForwardLayer {
    enum Activation {
        /// `GELU` (`activation_fn` "gelu"): exact erf GELU.
        case gelu
        /// `GELU(approximate="tanh")` ("gelu-approximate", DiT).
        case geluTanh
        /// `GEGLU` ("geglu", the SD UNet): the projection is twice as wide,
        /// half of it gated by the GELU of the other half.
        case geglu
    }

    let prefix: String
    /// The width between the two projections (`inner_dim`, 4x the input's in diffusers' models).
    let innerWidth: Int
    let activation: Activation

    func callAsFunction(_ x: ValueID, in model: inout WeightedGraphBuilder) throws -> ValueID {
        let width = model.graph.shape(of: x).last ?? 0
        var hidden: ValueID
        switch activation {
        case .geglu:
            hidden = try model.graph.geglu(model.linear(x, prefix + ".net.0.proj", outWidth: 2 * innerWidth))
        case .gelu, .geluTanh:
            hidden = try model.linear(x, prefix + ".net.0.proj", outWidth: innerWidth)
            hidden = model.graph.unary(activation == .gelu ? .gelu : .geluTanh, hidden)
        }
        return try model.linear(hidden, prefix + ".net.2", outWidth: width)
    }
}
