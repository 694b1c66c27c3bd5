import NodusCore
import NodusFormats

/// The config.json fields of `MedSyn2Transformer3DModel` (tests/reference/medsyn2.py) that shape the network.
public struct MedSyn2Config: Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var patchSize: Int
    public var layers: Int
    public var heads: Int
    public var headWidth: Int
    /// The width of each text token before `context_embedder`.
    public var crossAttentionWidth: Int
    public var feedForwardMultiple: Int
    public var attentionBias: Bool
    public var queryKeyNormEps: Float
    /// The nominal latent size (depth, height, width): any multiple of the patch size runs.
    public var sampleSize: [Int]
    /// "sincos" (an added 3-D sin-cos embedding) or "rope" (3-D rotary angles on the self-attention's q and k).
    public var rotaryPositions: Bool
    public var ropeTheta: Double

    public var hiddenWidth: Int { heads * headWidth }

    public init(_ reader: JSONObjectReader) throws {
        inChannels = try reader.int("in_channels", default: 8)
        outChannels = try reader.int("out_channels", default: 4)
        patchSize = try reader.int("patch_size", default: 2)
        layers = try reader.int("num_layers", default: 8)
        heads = try reader.int("num_attention_heads", default: 6)
        headWidth = try reader.int("attention_head_dim", default: 64)
        crossAttentionWidth = try reader.int("cross_attention_dim", default: 768)
        feedForwardMultiple = try reader.int("ff_mult", default: 4)
        attentionBias = try reader.bool("attention_bias", default: true)
        queryKeyNormEps = Float(try reader.double("qk_norm_eps", default: 1e-6))
        sampleSize = reader.has("sample_size") ? try reader.intArray("sample_size") : [16, 32, 32]
        rotaryPositions = try reader.choice("pos_embed_type", default: "sincos", allowed: ["sincos", "rope"]) == "rope"
        ropeTheta = try reader.double("rope_theta", default: 10_000)
        guard ropeTheta.isFinite, ropeTheta > 1 else {
            throw NodusError.format("\(reader.context): 'rope_theta' = \(ropeTheta) must be a number above 1")
        }
        guard queryKeyNormEps.isFinite, queryKeyNormEps > 0 else {
            throw NodusError.format("\(reader.context): 'qk_norm_eps' = \(queryKeyNormEps) must be a positive number")
        }
        for (name, value) in [("in_channels", inChannels), ("out_channels", outChannels), ("patch_size", patchSize),
                              ("num_layers", layers), ("num_attention_heads", heads), ("attention_head_dim", headWidth),
                              ("cross_attention_dim", crossAttentionWidth), ("ff_mult", feedForwardMultiple)]
        where value <= 0 || value > 1 << 16 {
            throw NodusError.format("\(reader.context): '\(name)' = \(value) is out of range")
        }
        guard sampleSize.count == 3, sampleSize.allSatisfy({ $0 > 0 && $0 % patchSize == 0 && $0 <= 1 << 12 }) else {
            throw NodusError.format("\(reader.context): 'sample_size' must be [depth, height, width], multiples of patch_size \(patchSize), got \(sampleSize)")
        }
        guard hiddenWidth <= 1 << 16, rotaryPositions ? headWidth % 2 == 0 : hiddenWidth % 6 == 0 else {
            throw NodusError.format(rotaryPositions
                ? "\(reader.context): attention_head_dim \(headWidth) must be even (RoPE rotates pairs of channels)"
                : "\(reader.context): hidden width \(hiddenWidth) must be a multiple of 6 (the 3D sin-cos position embedding gives each axis a third, in sin and cos halves)")
        }
    }
}
