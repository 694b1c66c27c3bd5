import NodusCore
import NodusFormats

/// The config.json fields of diffusers' `UNet2DConditionModel` that shape the
/// network, with per-block lists expanded as its constructor expands them.
///
/// SD semantics kept on purpose: `attention_head_dim` is the number of HEADS
/// per block (diffusers renames it `num_attention_heads` internally and
/// refuses a config that sets `num_attention_heads`); the head width is
/// channels / heads. Configs that need blocks or embeddings Nodus does not
/// have (class / addition embeddings, scale-shift resnets, dual or simple
/// cross-attention, ...) are refused with the field's name.
public struct UNetConfig: Sendable {
    public enum DownBlock: String, Sendable { case crossAttention = "CrossAttnDownBlock2D", plain = "DownBlock2D" }
    public enum UpBlock: String, Sendable { case crossAttention = "CrossAttnUpBlock2D", plain = "UpBlock2D" }

    public var inChannels: Int
    public var outChannels: Int
    public var blockOutChannels: [Int]
    public var downBlocks: [DownBlock]
    public var upBlocks: [UpBlock]
    /// Whether the `UNetMidBlock2DCrossAttn` exists (`mid_block_type` null removes it).
    public var hasMidBlock: Bool
    public var layersPerBlock: [Int]
    public var transformerLayersPerBlock: [Int]
    /// Attention heads per down block (from `attention_head_dim`, see above).
    public var heads: [Int]
    /// The width of `encoder_hidden_states` (one for every block).
    public var crossAttentionWidth: Int
    public var onlyCrossAttention: [Bool]
    public var useLinearProjection: Bool
    public var groups: Int
    public var normEps: Float
    public var flipSinToCos: Bool
    public var freqShift: Float
    public var timeEmbeddingWidth: Int
    public var downsamplePadding: Int
    public var convInKernel: Int
    public var convOutKernel: Int
    public var resnetOutScale: Float
    public var midBlockScale: Float
    public var sampleSize: Int

    /// Latent cells per side of the smallest feature map: 2^(down samplers).
    public var downscale: Int { 1 << (blockOutChannels.count - 1) }

    public init(_ reader: JSONObjectReader) throws {
        inChannels = try reader.int("in_channels", default: 4)
        outChannels = try reader.int("out_channels", default: 4)
        blockOutChannels = reader.has("block_out_channels") ? try reader.intArray("block_out_channels") : [320, 640, 1280, 1280]
        let levels = blockOutChannels.count
        guard (1...8).contains(levels) else {
            throw NodusError.format("\(reader.context): block_out_channels must list 1 to 8 widths, found \(levels)")
        }
        let downNames = reader.has("down_block_types") ? try reader.stringArray("down_block_types")
            : ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
        let upNames = reader.has("up_block_types") ? try reader.stringArray("up_block_types")
            : ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
        downBlocks = try downNames.map { name in
            guard let block = DownBlock(rawValue: name) else { throw UNetConfig.unsupported(reader, "down block '\(name)'") }
            return block
        }
        upBlocks = try upNames.map { name in
            guard let block = UpBlock(rawValue: name) else { throw UNetConfig.unsupported(reader, "up block '\(name)'") }
            return block
        }
        guard downBlocks.count == levels, upBlocks.count == levels else {
            throw NodusError.format("\(reader.context): \(downBlocks.count) down and \(upBlocks.count) up block types for \(levels) block_out_channels")
        }
        let midType = try reader.optionalString("mid_block_type") ?? (reader.members["mid_block_type"] == nil ? "UNetMidBlock2DCrossAttn" : nil)
        guard midType == nil || midType == "UNetMidBlock2DCrossAttn" else {
            throw UNetConfig.unsupported(reader, "mid_block_type '\(midType ?? "")'")
        }
        hasMidBlock = midType != nil

        layersPerBlock = try UNetConfig.perBlock(reader, "layers_per_block", levels: levels, default: 2)
        transformerLayersPerBlock = try UNetConfig.perBlock(reader, "transformer_layers_per_block", levels: levels, default: 1)
        if reader.has("num_attention_heads") {
            throw NodusError.format("\(reader.context): 'num_attention_heads' is set; UNet2DConditionModel takes the head count from 'attention_head_dim' (diffusers refuses this config too)")
        }
        heads = try UNetConfig.perBlock(reader, "attention_head_dim", levels: levels, default: 8)
        let crossWidths = try UNetConfig.perBlock(reader, "cross_attention_dim", levels: levels, default: 1280)
        guard Set(crossWidths).count == 1 else {
            throw UNetConfig.unsupported(reader, "cross_attention_dim per block \(crossWidths) (one context width for every block)")
        }
        crossAttentionWidth = crossWidths[0]
        onlyCrossAttention = try UNetConfig.perBlockFlags(reader, "only_cross_attention", levels: levels)
        useLinearProjection = try reader.bool("use_linear_projection", default: false)
        guard reader.has("norm_num_groups") || reader.members["norm_num_groups"] == nil else {
            throw UNetConfig.unsupported(reader, "norm_num_groups null")
        }
        groups = try reader.int("norm_num_groups", default: 32)
        normEps = Float(try reader.double("norm_eps", default: 1e-5))
        guard normEps.isFinite, normEps > 0 else {
            throw NodusError.format("\(reader.context): 'norm_eps' = \(normEps) must be a positive number")
        }
        flipSinToCos = try reader.bool("flip_sin_to_cos", default: true)
        freqShift = Float(try reader.double("freq_shift", default: 0))
        timeEmbeddingWidth = try reader.optionalInt("time_embedding_dim") ?? blockOutChannels[0] * 4
        downsamplePadding = try reader.int("downsample_padding", default: 1)
        convInKernel = try reader.int("conv_in_kernel", default: 3)
        convOutKernel = try reader.int("conv_out_kernel", default: 3)
        resnetOutScale = Float(try reader.double("resnet_out_scale_factor", default: 1))
        midBlockScale = Float(try reader.double("mid_block_scale_factor", default: 1))
        sampleSize = try reader.int("sample_size", default: 64)

        _ = try reader.choice("act_fn", default: "silu", allowed: ["silu"])
        _ = try reader.choice("time_embedding_type", default: "positional", allowed: ["positional"])
        _ = try reader.choice("resnet_time_scale_shift", default: "default", allowed: ["default"])
        _ = try reader.choice("attention_type", default: "default", allowed: ["default"])
        for field in ["class_embed_type", "addition_embed_type", "encoder_hid_dim", "encoder_hid_dim_type",
                      "num_class_embeds", "time_cond_proj_dim", "timestep_post_act", "time_embedding_act_fn",
                      "cross_attention_norm", "reverse_transformer_layers_per_block", "addition_time_embed_dim",
                      "projection_class_embeddings_input_dim"] where reader.has(field) {
            throw UNetConfig.unsupported(reader, "'\(field)' = \(reader.members[field]?.serialized() ?? "")")
        }
        for field in ["dual_cross_attention", "center_input_sample", "resnet_skip_time_act", "class_embeddings_concat"]
            where try reader.bool(field, default: false) {
            throw UNetConfig.unsupported(reader, "'\(field)' = true")
        }
        try validate(reader)
    }

    private func validate(_ reader: JSONObjectReader) throws {
        func check(_ condition: Bool, _ detail: String) throws {
            if !condition { throw NodusError.format("\(reader.context): \(detail)") }
        }
        try check(groups > 0 && blockOutChannels.allSatisfy({ $0 > 0 && $0 <= 1 << 16 && $0 % groups == 0 }),
                  "block_out_channels \(blockOutChannels) must be positive multiples of norm_num_groups \(groups)")
        try check(zip(heads, blockOutChannels).allSatisfy({ $0 > 0 && $0 <= $1 }),
                  "attention_head_dim (heads) \(heads) does not fit block_out_channels \(blockOutChannels)")
        for (name, value) in [("in_channels", inChannels), ("out_channels", outChannels),
                              ("cross_attention_dim", crossAttentionWidth), ("time_embedding_dim", timeEmbeddingWidth)] {
            try check(value > 0 && value <= 1 << 16, "'\(name)' = \(value) is out of range")
        }
        try check(layersPerBlock.allSatisfy({ (1...64).contains($0) }), "layers_per_block \(layersPerBlock) is out of range")
        try check(transformerLayersPerBlock.allSatisfy({ (1...64).contains($0) }),
                  "transformer_layers_per_block \(transformerLayersPerBlock) is out of range")
        try check([convInKernel, convOutKernel].allSatisfy({ $0 > 0 && $0 % 2 == 1 && $0 <= 15 }),
                  "conv_in_kernel \(convInKernel) and conv_out_kernel \(convOutKernel) must be odd")
        try check((0...4).contains(downsamplePadding), "downsample_padding \(downsamplePadding) is out of range")
        try check(resnetOutScale != 0 && midBlockScale != 0 && resnetOutScale.isFinite && midBlockScale.isFinite,
                  "resnet_out_scale_factor and mid_block_scale_factor must be finite and non-zero")
    }

    /// An integer or a list of one integer per block.
    private static func perBlock(_ reader: JSONObjectReader, _ key: String, levels: Int, default fallback: Int) throws -> [Int] {
        guard reader.has(key) else { return Array(repeating: fallback, count: levels) }
        if reader.members[key]?.arrayValue == nil { return Array(repeating: try reader.int(key), count: levels) }
        if reader.members[key]?.arrayValue?.contains(where: { $0.arrayValue != nil }) == true {
            throw unsupported(reader, "nested '\(key)'")
        }
        let values = try reader.intArray(key)
        guard values.count == levels else {
            throw NodusError.format("\(reader.context): '\(key)' lists \(values.count) values for \(levels) blocks")
        }
        return values
    }

    private static func perBlockFlags(_ reader: JSONObjectReader, _ key: String, levels: Int) throws -> [Bool] {
        guard let items = reader.members[key]?.arrayValue else {
            return Array(repeating: try reader.bool(key, default: false), count: levels)
        }
        let flags = items.compactMap(\.boolValue)
        guard flags.count == items.count, flags.count == levels else {
            throw NodusError.format("\(reader.context): '\(key)' must be true, false or \(levels) of them")
        }
        return flags
    }

    private static func unsupported(_ reader: JSONObjectReader, _ what: String) -> NodusError {
        NodusError.unsupported("\(reader.context): \(what) is not supported by Nodus' UNet2DConditionModel")
    }
}
