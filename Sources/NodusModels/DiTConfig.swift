import NodusCore
import NodusFormats

/// The config.json fields of diffusers' `DiTTransformer2DModel` that shape the network.
public struct DiTConfig: Sendable {
    public var heads: Int
    public var headWidth: Int
    public var inChannels: Int
    public var outChannels: Int
    public var layers: Int
    public var sampleSize: Int
    public var patchSize: Int
    public var classCount: Int
    public var attentionBias: Bool
    public var approximateGELU: Bool
    public var normEps: Float

    public var hiddenWidth: Int { heads * headWidth }

    public init(_ reader: JSONObjectReader) throws {
        heads = try reader.int("num_attention_heads", default: 16)
        headWidth = try reader.int("attention_head_dim", default: 72)
        inChannels = try reader.int("in_channels", default: 4)
        outChannels = try reader.optionalInt("out_channels") ?? inChannels
        layers = try reader.int("num_layers", default: 28)
        sampleSize = try reader.int("sample_size", default: 32)
        patchSize = try reader.int("patch_size", default: 2)
        classCount = try reader.int("num_embeds_ada_norm", default: 1000)
        attentionBias = try reader.bool("attention_bias", default: true)
        normEps = Float(try reader.double("norm_eps", default: 1e-5))
        guard normEps.isFinite, normEps > 0 else {
            throw NodusError.format("\(reader.context): 'norm_eps' = \(normEps) must be a positive number")
        }
        let activation = try reader.choice("activation_fn", default: "gelu-approximate",
                                           allowed: ["gelu-approximate", "gelu"])
        approximateGELU = activation == "gelu-approximate"
        _ = try reader.choice("norm_type", default: "ada_norm_zero", allowed: ["ada_norm_zero"])
        if try reader.bool("norm_elementwise_affine", default: false) {
            throw NodusError.unsupported("\(reader.context): norm_elementwise_affine = true is not supported for DiT")
        }
        for (name, value) in [("num_attention_heads", heads), ("attention_head_dim", headWidth),
                              ("in_channels", inChannels), ("out_channels", outChannels), ("num_layers", layers),
                              ("sample_size", sampleSize), ("patch_size", patchSize),
                              ("num_embeds_ada_norm", classCount)] where value <= 0 || value > 1 << 20 {
            throw NodusError.format("\(reader.context): '\(name)' = \(value) is out of range")
        }
        guard hiddenWidth % 4 == 0 else {
            throw NodusError.format("\(reader.context): hidden width \(hiddenWidth) must be a multiple of 4 for the sin-cos position embedding")
        }
    }
}
