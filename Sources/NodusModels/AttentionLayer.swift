import NodusCore
import NodusGraph

/// Multi-head attention with q/k/v/out projections: diffusers' `Attention` as
/// DiT, the UNet's transformers and the VAE use it (`to_q`, `to_k`, `to_v`,
/// `to_out.0`), and transformers' `CLIPAttention` (`q_proj`, `k_proj`,
/// `v_proj`, `out_proj`, causal in the text encoder). Self-attention without a
/// context, else keys and values from the context [B, L, context width].
/// Gated attention (Qiu et al. 2025; diffusers' `Krea2Attention`, MedSyn2)
/// adds two optional parts: q and k RMS-normed over each head (`norm_q`,
/// `norm_k`), and the attention output times `sigmoid(to_gate(x))` before
/// `to_out`. Rotary angles (a table [tokens, head width], `rotaryEmbedding`)
/// rotate q and k after their norms.
///
/// Limitations: no attention mask beyond the causal one, no `norm_cross`;
/// the inner width is the input's.
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
    /// The eps of the per-head RMSNorm of q and k (`norm_q`, `norm_k`); nil: no norm.
    var queryKeyNormEps: Float?
    /// Whether the output is gated by `sigmoid(to_gate(x))`.
    var outputGate = false

    func callAsFunction(_ x: ValueID, context: ValueID? = nil, rotaryAngles: ValueID? = nil,
                        in model: inout WeightedGraphBuilder) throws -> ValueID {
        let width = model.graph.shape(of: x)[2]
        let source = context ?? x
        var query = try model.linear(x, "\(prefix).\(names.query)", outWidth: width, bias: projectionBias)
        var key = try model.linear(source, "\(prefix).\(names.key)", outWidth: width, bias: projectionBias)
        let value = try model.linear(source, "\(prefix).\(names.value)", outWidth: width, bias: projectionBias)
        if let eps = queryKeyNormEps {
            query = try headNorm(query, "\(prefix).norm_q", eps: eps, in: &model)
            key = try headNorm(key, "\(prefix).norm_k", eps: eps, in: &model)
        }
        if let rotaryAngles {
            query = try model.graph.rotaryEmbedding(query, angles: rotaryAngles, heads: heads)
            key = try model.graph.rotaryEmbedding(key, angles: rotaryAngles, heads: heads)
        }
        var attended = try model.graph.attention(query: query, key: key, value: value, heads: heads, causal: causal)
        if outputGate {
            let gate = try model.linear(x, "\(prefix).to_gate", outWidth: width, bias: projectionBias)
            attended = try model.graph.binary(.multiply, attended, model.graph.map(.sigmoid, gate))
        }
        return try model.linear(attended, "\(prefix).\(names.output)", outWidth: width)
    }

    /// RMSNorm over each head's values of [B, N, heads x head width].
    private func headNorm(_ x: ValueID, _ name: String, eps: Float, in model: inout WeightedGraphBuilder) throws -> ValueID {
        let shape = model.graph.shape(of: x)
        let headWidth = shape[2] / heads
        let split = try model.graph.reshape(x, to: [shape[0], shape[1], heads, headWidth])
        let normed = try model.graph.rmsNorm(split, eps: eps, weight: model.weight(name + ".weight", [headWidth]))
        return try model.graph.reshape(normed, to: shape)
    }
}
