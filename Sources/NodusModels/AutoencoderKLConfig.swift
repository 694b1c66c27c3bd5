import NodusCore
import NodusFormats

/// The config.json fields of diffusers' `AutoencoderKL`.
public struct AutoencoderKLConfig: Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var latentChannels: Int
    public var blockOutChannels: [Int]
    public var layersPerBlock: Int
    public var groups: Int
    public var scalingFactor: Double
    public var shiftFactor: Double?
    public var usePostQuantConv: Bool
    public var useQuantConv: Bool
    public var midBlockAttention: Bool
    /// `sample_size`: the tile side tiled encoding and decoding use by default
    /// (the first entry when the config gives a list, as diffusers reads it).
    public var sampleSize: Int
    /// `down_block_types` of the encoder (one per entry of `blockOutChannels`).
    public var downBlockTypes: [String]

    /// Pixels per latent cell: 2^(number of blocks - 1).
    public var downscale: Int { 1 << (blockOutChannels.count - 1) }

    public init(_ reader: JSONObjectReader) throws {
        inChannels = try reader.int("in_channels", default: 3)
        outChannels = try reader.int("out_channels", default: 3)
        latentChannels = try reader.int("latent_channels", default: 4)
        blockOutChannels = reader.has("block_out_channels") ? try reader.intArray("block_out_channels") : [64]
        layersPerBlock = try reader.int("layers_per_block", default: 1)
        groups = try reader.int("norm_num_groups", default: 32)
        scalingFactor = try reader.double("scaling_factor", default: 0.18215)
        guard scalingFactor.isFinite, scalingFactor > 0 else {
            throw NodusError.format("\(reader.context): 'scaling_factor' = \(scalingFactor) must be a positive number (latents are divided by it)")
        }
        shiftFactor = try reader.optionalDouble("shift_factor")
        if let shiftFactor, !shiftFactor.isFinite {
            throw NodusError.format("\(reader.context): 'shift_factor' = \(shiftFactor) is not finite")
        }
        usePostQuantConv = try reader.bool("use_post_quant_conv", default: true)
        useQuantConv = try reader.bool("use_quant_conv", default: true)
        midBlockAttention = try reader.bool("mid_block_add_attention", default: true)
        sampleSize = reader.members["sample_size"]?.arrayValue != nil
            ? try reader.intArray("sample_size").first ?? 0 : try reader.int("sample_size", default: 32)
        downBlockTypes = reader.has("down_block_types")
            ? try reader.stringArray("down_block_types") : ["DownEncoderBlock2D"]
        _ = try reader.choice("act_fn", default: "silu", allowed: ["silu"])
        if reader.has("up_block_types") {
            for type in try reader.stringArray("up_block_types") where type != "UpDecoderBlock2D" {
                throw NodusError.unsupported("\(reader.context): up block '\(type)' is not supported (UpDecoderBlock2D only)")
            }
        }
        guard !blockOutChannels.isEmpty, blockOutChannels.count <= 8,
              blockOutChannels.allSatisfy({ $0 > 0 && $0 % max(groups, 1) == 0 && $0 <= 1 << 16 }),
              groups > 0, layersPerBlock >= 0, layersPerBlock < 64,
              [inChannels, outChannels, latentChannels].allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
            throw NodusError.format("\(reader.context): block_out_channels \(blockOutChannels), norm_num_groups \(groups) and layers_per_block \(layersPerBlock) do not describe a valid AutoencoderKL")
        }
    }
}
