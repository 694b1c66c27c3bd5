import NodusCore
import NodusFormats
import NodusGraph

/// A model conditioned on a sequence of embeddings (`encoder_hidden_states`):
/// text-encoder or LLM tokens, with SD's guidance order [uncond, cond].
public protocol ContextConditionedModel: DiffusionModel {
    /// The width of each context token (`cross_attention_dim`).
    var contextWidth: Int { get }
}

/// diffusers' `UNet2DConditionModel` (the Stable Diffusion UNet).
///
/// Matches diffusers 0.42 `UNet2DConditionModel.forward(sample, timestep,
/// encoder_hidden_states).sample`: sinusoidal time projection and the
/// `time_embedding` MLP; conv_in; down blocks of time-embedded resnets (with a
/// `Transformer2DModel` after each in CrossAttnDownBlock2D) and a stride-2
/// conv downsampler, every output kept as a skip; the cross-attention mid
/// block; up blocks that concatenate the skips in reverse order, with a
/// nearest-2x + conv upsampler; GroupNorm + SiLU; conv_out. Any in_channels
/// (4; 8 with a baseline latent; 9 for inpainting) and any context length.
///
/// Sample sides need not be multiples of 2^(blocks - 1): as diffusers does,
/// each upsampler then resizes to the size of the skip it meets.
///
/// Limitations: the configurations `UNetConfig` refuses (class / addition
/// embeddings, scale-shift resnets, ...).
public final class UNetModel: ContextualModel, ContextConditionedModel, AdaptableModel {
    public let kind = ModelKind.unet
    public let config: JSONValue
    public let settings: UNetConfig
    private let weights: Weights
    private let options: ModelOptions
    private let packedWeights: PackedWeights
    public let lora: LoRAController
    public let defaultContext: RunContext

    static let inputNames: Set<String> = ["sample", "timestep", "encoder_hidden_states"]

    public var contextWidth: Int { settings.crossAttentionWidth }

    public var inputSignatures: [TensorSignature] {
        [TensorSignature(name: "sample", dtype: .float32, shape: [nil, settings.inChannels, nil, nil]),
         TensorSignature(name: "timestep", dtype: .float32, shape: [nil]),
         TensorSignature(name: "encoder_hidden_states", dtype: .float32, shape: [nil, nil, contextWidth])]
    }

    public init(directory: String, config: JSONValue, options: ModelOptions) throws {
        let settings = try UNetConfig(JSONObjectReader(config, context: "config.json of '\(directory)'"))
        self.config = config
        self.settings = settings
        self.options = options
        let packedWeights = PackedWeights(precision: try options.precision())
        self.packedWeights = packedWeights
        let weights = Weights(store: try WeightStore(directory: directory, access: options.fileAccess))
        self.weights = weights
        // Building the graph once reads and checks every weight; its Linears are the LoRA targets.
        let side = settings.downscale
        let nominal = try UNetModel.buildGraph(settings: settings, weights: weights,
                                               sampleShape: [1, settings.inChannels, side, side],
                                               contextShape: [1, 1, settings.crossAttentionWidth])
        let controller = LoRAController(weights: weights, targets: nominal.linearWeights, aliases: [:], options: options)
        lora = controller
        defaultContext = try RunContext(RunContext.Settings(threads: options.threads), packedWeights: packedWeights,
                                        strengths: controller.defaultStrengths)
    }

    public func outputShape(for inputs: [String: Tensor]) throws -> [Int] {
        let sample = try checkedInputs(inputs).sample.shape
        return [sample[0], settings.outChannels, sample[2], sample[3]]
    }

    public func forward(_ inputs: [String: Tensor]) throws -> Tensor {
        try forwardAll(inputs, in: defaultContext)[0]
    }

    public func forwardAll(_ inputs: [String: Tensor], in context: RunContext) throws -> [Tensor] {
        try context.run(structure: lora.structure) { plans in
            let (executable, feeds) = try plan(for: inputs, plans: &plans, strengths: context.strengths)
            return [try executable.run(feeds)]
        }
    }

    public func makeContext(_ settings: RunContext.Settings) throws -> RunContext {
        try lora.makeContext(settings, packedWeights: packedWeights)
    }

    public func profile(_ inputs: [String: Tensor], rounds: Int) throws -> ExecutionProfile {
        try defaultContext.run(structure: lora.structure) { plans in
            let (executable, feeds) = try plan(for: inputs, plans: &plans, strengths: defaultContext.strengths)
            return try executable.profile(feeds, rounds: rounds)
        }
    }

    /// The plan for these inputs' shapes (built on their first use) and the graph's checked feeds.
    private func plan(for inputs: [String: Tensor], plans: inout ExecutableCache,
                      strengths: AdapterWeights) throws -> (Executable, feeds: [String: Tensor]) {
        let (sample, context, feeds) = try checkedInputs(inputs)
        let executable = try plans.executable(for: sample.shape + context.shape, generation: lora.generation) {
            try lora.apply(to: UNetModel.buildGraph(settings: settings, weights: weights, sampleShape: sample.shape,
                                                    contextShape: context.shape), strengths: strengths)
        }
        return (executable, feeds)
    }

    /// Every input checked and converted, and the graph's feeds made of them.
    private func checkedInputs(_ inputs: [String: Tensor]) throws
        -> (sample: Tensor, context: Tensor, feeds: [String: Tensor]) {
        let checked = try ModelInputs(inputs, known: UNetModel.inputNames)
        let sample = try checked.image("sample", channels: settings.inChannels, multiple: 1)
        let batch = sample.shape[0]
        let context = try checked.sequence("encoder_hidden_states", batch: batch, width: settings.crossAttentionWidth)
        let feeds = ["sample": sample, "timestep": try checked.timesteps("timestep", batch: batch),
                     "encoder_hidden_states": context]
        return (sample, context, feeds)
    }

    /// The forward graph for one sample and context shape (before LoRA side paths).
    static func buildGraph(settings config: UNetConfig, weights: Weights, sampleShape: [Int],
                           contextShape: [Int]) throws -> Graph {
        var model = WeightedGraphBuilder(weights: weights, groups: config.groups, eps: config.normEps)
        let sample = model.graph.input("sample", shape: sampleShape)
        let timestep = model.graph.input("timestep", shape: [sampleShape[0]])
        let context = model.graph.input("encoder_hidden_states", shape: contextShape)

        // 1. Time: sinusoids, the time_embedding MLP, and the SiLU every resnet applies to it.
        var time = try model.graph.timestepEmbedding(timestep, dim: config.blockOutChannels[0], flipSinToCos: config.flipSinToCos,
                                                 downscaleFreqShift: config.freqShift)
        time = try model.linear(time, "time_embedding.linear_1", outWidth: config.timeEmbeddingWidth)
        time = try model.linear(model.graph.unary(.silu, time), "time_embedding.linear_2", outWidth: config.timeEmbeddingWidth)
        let timeEmbedding = model.graph.unary(.silu, time)

        func transformer(_ heads: Int, _ layers: Int, onlyCross: Bool) -> SpatialTransformerShape {
            SpatialTransformerShape(heads: heads, layers: layers, linearProjection: config.useLinearProjection,
                                    onlyCrossAttention: onlyCross)
        }

        // 2. Down blocks, keeping every output for the skips.
        var x = try model.conv(sample, "conv_in", outChannels: config.blockOutChannels[0], kernel: config.convInKernel)
        var skips = [x]
        let levels = config.blockOutChannels.count
        for (level, block) in config.downBlocks.enumerated() {
            let prefix = "down_blocks.\(level)", channels = config.blockOutChannels[level]
            for layer in 0..<config.layersPerBlock[level] {
                x = try model.resnet(x, "\(prefix).resnets.\(layer)", outChannels: channels, timeEmbedding: timeEmbedding,
                                 outputScale: config.resnetOutScale)
                if block == .crossAttention {
                    x = try model.spatialTransformer(x, "\(prefix).attentions.\(layer)",
                                                 transformer(config.heads[level], config.transformerLayersPerBlock[level],
                                                             onlyCross: config.onlyCrossAttention[level]),
                                                 context: context)
                }
                skips.append(x)
            }
            if level < levels - 1 {
                x = try model.downsample(x, "\(prefix).downsamplers.0", padding: config.downsamplePadding)
                skips.append(x)
            }
        }

        // 3. Mid block: resnet, transformer, resnet.
        if config.hasMidBlock {
            let channels = config.blockOutChannels[levels - 1]
            x = try model.resnet(x, "mid_block.resnets.0", outChannels: channels, timeEmbedding: timeEmbedding,
                             outputScale: config.midBlockScale)
            x = try model.spatialTransformer(x, "mid_block.attentions.0",
                                         transformer(config.heads[levels - 1], config.transformerLayersPerBlock[levels - 1],
                                                     onlyCross: false),
                                         context: context)
            x = try model.resnet(x, "mid_block.resnets.1", outChannels: channels, timeEmbedding: timeEmbedding,
                             outputScale: config.midBlockScale)
        }

        // 4. Up blocks over the reversed per-block lists, each resnet taking the last skip.
        for (index, block) in config.upBlocks.enumerated() {
            let level = levels - 1 - index
            let prefix = "up_blocks.\(index)", channels = config.blockOutChannels[level]
            for layer in 0...config.layersPerBlock[level] {
                guard let skip = skips.popLast() else { throw NodusError.format("UNet up block \(index) has no skip left") }
                x = try model.graph.concatChannels([x, skip])
                x = try model.resnet(x, "\(prefix).resnets.\(layer)", outChannels: channels, timeEmbedding: timeEmbedding,
                                 outputScale: config.resnetOutScale)
                if block == .crossAttention {
                    x = try model.spatialTransformer(x, "\(prefix).attentions.\(layer)",
                                                 transformer(config.heads[level], config.transformerLayersPerBlock[level],
                                                             onlyCross: config.onlyCrossAttention[level]),
                                                 context: context)
                }
            }
            if index < levels - 1, let next = skips.last {
                // To the next skip's size: 2x, or one less where the downsampler rounded up.
                let size = model.graph.shape(of: next)
                x = try model.conv(model.graph.resizeNearest(x, height: size[2], width: size[3]), "\(prefix).upsamplers.0.conv",
                               outChannels: channels, kernel: 3)
            }
        }

        // 5. Output head.
        x = try model.groupNorm(x, "conv_norm_out", silu: true)
        x = try model.conv(x, "conv_out", outChannels: config.outChannels, kernel: config.convOutKernel)
        model.graph.setOutput(x)
        return model.graph.finish()
    }
}
