import NodusCore
import NodusGraph

/// diffusers' `Attention` as DiT, the UNet's transformers and the VAE use it:
/// `to_q`, `to_k`, `to_v` (with a bias or not), multi-head scaled dot-product
/// attention, and a biased `to_out.0`. Self-attention without a context, else
/// keys and values from the context [B, L, context width].
///
/// Limitations: no attention mask, no `norm_cross`, no query/key norms; the
/// inner width is the input's.
struct AttentionLayer {
    let prefix: String
    let heads: Int
    /// Whether `to_q` / `to_k` / `to_v` have biases (`attention_bias`; true in the VAE).
    let projectionBias: Bool

    func callAsFunction(_ x: ValueID, context: ValueID? = nil, in model: inout WeightedGraphBuilder) throws -> ValueID {
        let width = model.graph.shape(of: x)[2]
        let source = context ?? x
        let query = try model.linear(x, prefix + ".to_q", outWidth: width, bias: projectionBias)
        let key = try model.linear(source, prefix + ".to_k", outWidth: width, bias: projectionBias)
        let value = try model.linear(source, prefix + ".to_v", outWidth: width, bias: projectionBias)
        let attended = try model.graph.attention(query: query, key: key, value: value, heads: heads)
        return try model.linear(attended, prefix + ".to_out.0", outWidth: width)
    }
}
