import NodusCore
import NodusGraph

/// Multi-head attention with q/k/v/out projections: diffusers' `Attention` as
/// DiT, the UNet's transformers and the VAE use it (`to_q`, `to_k`, `to_v`,
/// `to_out.0`), and transformers' `CLIPAttention` (`q_proj`, `k_proj`,
/// `v_proj`, `out_proj`, causal in the text encoder). Self-attention without a
/// context, else keys and values from the context [B, L, context width].
///
/// Limitations: no attention mask beyond the causal one, no `norm_cross`, no
/// query/key norms; the inner width is the input's.
struct AttentionLayer {
    /// The projections' module names under the layer's prefix.
    struct ProjectionNames {
        let query, key, value, output: String

        static let diffusers = ProjectionNames(query: "to_q", key: "to_k", value: "to_v", output: "to_out.0")
        static let transformers = ProjectionNames(query: "q_proj", key: "k_proj", value: "v_proj", output: "out_proj")
    }

    let prefix: String
    let heads: Int
    /// Whether the q / k / v projections have biases (`attention_bias`; true in the VAE and CLIP).
    let projectionBias: Bool
    var names = ProjectionNames.diffusers
    /// Query i sees keys 0 ... i only (CLIP's text encoder).
    var causal = false

    func callAsFunction(_ x: ValueID, context: ValueID? = nil, in model: inout WeightedGraphBuilder) throws -> ValueID {
        let width = model.graph.shape(of: x)[2]
        let source = context ?? x
        let query = try model.linear(x, "\(prefix).\(names.query)", outWidth: width, bias: projectionBias)
        let key = try model.linear(source, "\(prefix).\(names.key)", outWidth: width, bias: projectionBias)
        let value = try model.linear(source, "\(prefix).\(names.value)", outWidth: width, bias: projectionBias)
        let attended = try model.graph.attention(query: query, key: key, value: value, heads: heads, causal: causal)
        return try model.linear(attended, "\(prefix).\(names.output)", outWidth: width)
    }
}
