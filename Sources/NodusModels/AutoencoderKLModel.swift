import NodusCore
import NodusFormats
import NodusGraph

/// diffusers' `AutoencoderKL` (the Stable Diffusion VAE).
///
/// Matches diffusers 0.42 `AutoencoderKL.decode(z).sample`: `post_quant_conv`,
/// then the `Decoder` (conv_in, a mid block of resnet / single-head spatial
/// attention / resnet, `UpDecoderBlock2D`s of layers_per_block + 1 resnets
/// with nearest-2x-and-conv upsamplers, GroupNorm + SiLU, conv_out). The
/// latent it takes is z = latent / scaling_factor; the image is about [-1, 1].
/// Encoding (`vae.encode(x).latent_dist`) is in `AutoencoderKLModel+Encoder`,
/// tiling (`vae.enable_tiling()`) in `AutoencoderKLModel+Tiling`.
///
/// Limitations: `UpDecoderBlock2D` / `DownEncoderBlock2D` blocks only; without
/// tiling, memory grows with the image area.
///
/// Run contexts: the decoder's and encoder's plans live in a `RunContext`, so
/// contexts of one VAE decode and encode from several threads at once over its
/// weights, stored once. Tiling is the model's setting (as diffusers'
/// `enable_tiling`): changing it waits for running calls.
public final class AutoencoderKLModel: ContextualModel, LatentDecoder {
    public let kind = ModelKind.vae
    public let config: JSONValue
    public let settings: AutoencoderKLConfig
    let directory: String
    let weights: Weights
    let options: ModelOptions
    /// The decoder's and the encoder's plans share one packing of the weights.
    let packedWeights: PackedWeights
    public let defaultContext: RunContext
    /// Held exclusively to change `tiling`, shared by every call.
    let structure = ReadWriteLock()
    /// Why this folder cannot encode (no encoder weights, an unsupported block), or nil.
    private(set) var encoderProblem: NodusError?
    /// Tiled encoding and decoding (`enable_tiling`), or nil (the default).
    public internal(set) var tiling: VAETiling?

    /// Plan names in a context's cache.
    static let decoderGraph = "decoder", encoderGraph = "encoder"

    public init(directory: String, config: JSONValue, options: ModelOptions) throws {
        settings = try AutoencoderKLConfig(JSONObjectReader(config, context: "config.json of '\(directory)'"))
        self.config = config
        self.directory = directory
        self.options = options
        packedWeights = PackedWeights(precision: try options.precision())
        defaultContext = try RunContext(RunContext.Settings(threads: options.threads), packedWeights: packedWeights)
        weights = Weights(store: try WeightStore(directory: directory, access: options.fileAccess))
        // Building the decoder graph once reads and checks every weight it uses.
        _ = try buildDecoder(latentShape: [1, settings.latentChannels, 1, 1])
        // The encoder is checked the same way, but a folder that cannot encode
        // (a decoder-only export) still loads: encoding then fails with the reason.
        encoderProblem = encoderAvailability()
    }

    /// None: a VAE decodes and encodes instead.
    public var inputSignatures: [TensorSignature] { [] }

    public func outputShape(for inputs: [String: Tensor]) throws -> [Int] {
        throw NodusError.invalidArgument("an AutoencoderKL has no forward pass here: call decode or encode")
    }

    public func forward(_ inputs: [String: Tensor]) throws -> Tensor {
        throw NodusError.invalidArgument("an AutoencoderKL has no forward pass here: call decode or encode")
    }

    public func forwardAll(_ inputs: [String: Tensor], in context: RunContext) throws -> [Tensor] {
        [try forward(inputs)]
    }

    public func makeContext(_ settings: RunContext.Settings) throws -> RunContext {
        try RunContext(settings, packedWeights: packedWeights)
    }

    public func decodedShape(forLatent shape: [Int]) throws -> [Int] {
        guard shape.count == 4, shape[0] > 0, shape[1] == settings.latentChannels, shape[2] > 0, shape[3] > 0 else {
            throw NodusError.shape("latent must be [batch, \(settings.latentChannels), height, width], got \(shape)")
        }
        return [shape[0], settings.outChannels, shape[2] * settings.downscale, shape[3] * settings.downscale]
    }

    public func decode(_ latent: Tensor) throws -> Tensor {
        try decode(latent, in: defaultContext)
    }

    /// `decode` in `context`: its plans, threads and memory budget.
    public func decode(_ latent: Tensor, in context: RunContext) throws -> Tensor {
        _ = try decodedShape(forLatent: latent.shape)
        let z = try ModelInputs(["latent": latent], known: ["latent"])
            .image("latent", channels: settings.latentChannels, multiple: 1)
        return try context.run(structure: structure) { plans in
            if let tiling, tiling.tilesLatent(z.shape) {
                return try tiledDecode(z, tiling: tiling, budget: context.settings.memoryBudget)
            }
            let executable = try plans.executable(for: z.shape, graph: Self.decoderGraph) {
                try buildDecoder(latentShape: z.shape)
            }
            return try executable.run(["latent": z])
        }
    }

    /// The decode graph for one latent shape.
    func buildDecoder(latentShape: [Int]) throws -> Graph {
        let config = settings
        var builder = WeightedGraphBuilder(weights: weights, groups: config.groups)
        var x = builder.graph.input("latent", shape: latentShape)
        if config.usePostQuantConv {
            x = try builder.conv(x, "post_quant_conv", outChannels: config.latentChannels, kernel: 1)
        }
        let top = config.blockOutChannels[config.blockOutChannels.count - 1]
        x = try builder.conv(x, "decoder.conv_in", outChannels: top, kernel: 3)

        x = try builder.midBlock(x, "decoder.mid_block", attention: config.midBlockAttention)

        let reversed = Array(config.blockOutChannels.reversed())
        for (index, channels) in reversed.enumerated() {
            let block = "decoder.up_blocks.\(index)"
            for layer in 0...config.layersPerBlock {
                x = try builder.resnet(x, "\(block).resnets.\(layer)", outChannels: channels)
            }
            if index < reversed.count - 1 {
                x = try builder.graph.upsampleNearest2x(x)
                x = try builder.conv(x, "\(block).upsamplers.0.conv", outChannels: channels, kernel: 3)
            }
        }
        x = try builder.groupNorm(x, "decoder.conv_norm_out", silu: true)
        x = try builder.conv(x, "decoder.conv_out", outChannels: config.outChannels, kernel: 3)
        builder.graph.setOutput(x)
        return builder.graph.finish()
    }
}
