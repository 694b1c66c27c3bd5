import NodusCore
import NodusFormats

/// The config.json fields of transformers' `CLIPTextConfig` that shape the
/// network (a diffusers pipeline's `text_encoder/config.json`).
public struct CLIPTextConfig: Sendable {
    public var vocabularySize: Int
    public var hiddenWidth: Int
    public var intermediateWidth: Int
    public var layers: Int
    public var heads: Int
    public var maxPositions: Int
    public var layerNormEps: Float
    /// `hidden_act`: "quick_gelu" (OpenAI CLIP, SD 1.x) or "gelu" (OpenCLIP, SD 2.x).
    public var quickGELU: Bool
    /// The pooled output's token: the first `eos_token_id` of each row, or the
    /// largest id when `eos_token_id` is 2 (configs from before transformers PR #24773).
    public var eosTokenID: Int64
    /// `CLIPTextModelWithProjection`'s `text_projection` width, nil for `CLIPTextModel`.
    public var projectionWidth: Int?

    public var headWidth: Int { hiddenWidth / heads }

    /// - Parameter withProjection: the config names `CLIPTextModelWithProjection`.
    public init(_ reader: JSONObjectReader, withProjection: Bool) throws {
        vocabularySize = try reader.int("vocab_size", default: 49408)
        hiddenWidth = try reader.int("hidden_size", default: 512)
        intermediateWidth = try reader.int("intermediate_size", default: 2048)
        layers = try reader.int("num_hidden_layers", default: 12)
        heads = try reader.int("num_attention_heads", default: 8)
        maxPositions = try reader.int("max_position_embeddings", default: 77)
        layerNormEps = Float(try reader.double("layer_norm_eps", default: 1e-5))
        quickGELU = try reader.choice("hidden_act", default: "quick_gelu", allowed: ["quick_gelu", "gelu"]) == "quick_gelu"
        eosTokenID = Int64(try reader.int("eos_token_id", default: 49407))
        projectionWidth = withProjection ? try reader.int("projection_dim", default: 512) : nil
        for (name, value) in [("vocab_size", vocabularySize), ("hidden_size", hiddenWidth),
                              ("intermediate_size", intermediateWidth), ("num_hidden_layers", layers),
                              ("num_attention_heads", heads), ("max_position_embeddings", maxPositions),
                              ("projection_dim", projectionWidth ?? 1)] where value <= 0 || value > 1 << 20 {
            throw NodusError.format("\(reader.context): '\(name)' = \(value) is out of range")
        }
        guard hiddenWidth % heads == 0 else {
            throw NodusError.format("\(reader.context): hidden_size \(hiddenWidth) is not a multiple of num_attention_heads \(heads)")
        }
        guard layerNormEps.isFinite, layerNormEps > 0 else {
            throw NodusError.format("\(reader.context): layer_norm_eps must be a positive number, got \(layerNormEps)")
        }
    }
}
