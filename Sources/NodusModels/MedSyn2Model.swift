import NodusCore
import NodusFormats
import NodusGraph

/// `MedSyn2Transformer3DModel` (tests/reference/medsyn2.py): a MedSyn2-style
/// DiT over 3-D latent patches with cross-attention to text tokens.
///
/// Matches the reference's `forward(sample, timestep, encoder_hidden_states).sample`:
/// a Conv3d patchify (kernel = stride = `patch_size`) as one GEMM over patches
/// plus the computed 3-D sin-cos position embedding (or, with `pos_embed_type`
/// "rope", 3-D rotary angles on the self-attention's q and k); diffusers' timestep
/// sinusoids (256, flip_sin_to_cos, shift 0) and `TimestepEmbedding`; text
/// projected by `context_embedder`; per block PixArt-style AdaLN (one shared
/// `adaln_single` Linear to 9 x width plus the block's `scale_shift_table`)
/// around gated self-attention, gated cross-attention and a GELU (tanh)
/// feed-forward, then a depthwise-separable Conv3d over the token grid added to
/// the residual; PixArt's modulated final norm, `proj_out` and the 3-D
/// unpatchify. The noisy latent and any conditioning latents (a mask latent)
/// come channel-concatenated in `sample`: the pipeline concatenates, the model
/// does not guess.
///
/// Limitations: no attention mask over the text tokens (pass them unpadded, or
/// padded as the model was trained); positions are integer grid indices (no
/// interpolation to `sample_size`).
public final class MedSyn2Model: ContextualModel, ContextConditionedModel, AdaptableModel {
    public let kind = ModelKind.volumeTransformer
    public let config: JSONValue
    public let settings: MedSyn2Config
    private let weights: Weights
    private let options: ModelOptions
    private let packedWeights: PackedWeights
    public let lora: LoRAController
    public let defaultContext: RunContext

    static let inputNames: Set<String> = ["sample", "timestep", "encoder_hidden_states"]
    static let timeProjectionWidth = 256

    public var contextWidth: Int { settings.crossAttentionWidth }

    public var inputSignatures: [TensorSignature] {
        [TensorSignature(name: "sample", dtype: .float32, shape: [nil, settings.inChannels, nil, nil, nil]),
         TensorSignature(name: "timestep", dtype: .float32, shape: [nil]),
         TensorSignature(name: "encoder_hidden_states", dtype: .float32, shape: [nil, nil, contextWidth])]
    }

    public init(directory: String, config: JSONValue, options: ModelOptions) throws {
        let settings = try MedSyn2Config(JSONObjectReader(config, context: "config.json of '\(directory)'"))
        self.config = config
        self.settings = settings
        self.options = options
        let packedWeights = PackedWeights(precision: try options.precision())
        self.packedWeights = packedWeights
        let weights = Weights(store: try WeightStore(directory: directory, access: options.fileAccess))
        self.weights = weights
        // Building the graph once reads and checks every weight; its Linears are the LoRA targets.
        let patch = settings.patchSize
        let nominal = try MedSyn2Model.buildGraph(settings: settings, weights: weights,
                                                  sampleShape: [1, settings.inChannels, patch, patch, patch],
                                                  contextShape: [1, 1, settings.crossAttentionWidth])
        let controller = LoRAController(weights: weights, targets: nominal.linearWeights, aliases: [:], options: options)
        lora = controller
        defaultContext = try RunContext(RunContext.Settings(threads: options.threads), packedWeights: packedWeights,
                                        strengths: controller.defaultStrengths)
    }

    public func outputShape(for inputs: [String: Tensor]) throws -> [Int] {
        let sample = try checkedInputs(inputs).sample.shape
        return [sample[0], settings.outChannels] + sample[2...]
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
            try lora.apply(to: MedSyn2Model.buildGraph(settings: settings, weights: weights, sampleShape: sample.shape,
                                                       contextShape: context.shape), strengths: strengths)
        }
        return (executable, feeds)
    }

    private func checkedInputs(_ inputs: [String: Tensor]) throws
        -> (sample: Tensor, context: Tensor, feeds: [String: Tensor]) {
        let checked = try ModelInputs(inputs, known: MedSyn2Model.inputNames)
        let sample = try checked.volume("sample", channels: settings.inChannels, multiple: settings.patchSize)
        let batch = sample.shape[0]
        let context = try checked.sequence("encoder_hidden_states", batch: batch, width: settings.crossAttentionWidth)
        let feeds = ["sample": sample, "timestep": try checked.timesteps("timestep", batch: batch),
                     "encoder_hidden_states": context]
        return (sample, context, feeds)
    }

    /// The forward graph for one sample and context shape (before LoRA side paths).
    static func buildGraph(settings config: MedSyn2Config, weights: Weights, sampleShape: [Int],
                           contextShape: [Int]) throws -> Graph {
        let width = config.hiddenWidth, patch = config.patchSize
        let batch = sampleShape[0]
        let grid = sampleShape[2...].map { $0 / patch }
        var model = WeightedGraphBuilder(weights: weights)
        let sample = model.graph.input("sample", shape: sampleShape)
        let timestep = model.graph.input("timestep", shape: [batch])
        let text = model.graph.input("encoder_hidden_states", shape: contextShape)

        // 1. Patch embedding: the Conv3d with kernel = stride = p as one GEMM over patches, plus positions.
        let patchWidth = config.inChannels * patch * patch * patch
        let projection = try weights.tensor("pos_embed.proj.weight", shape: [width, config.inChannels, patch, patch, patch])
            .reshaped([width, patchWidth])
        var hidden = try model.graph.linear(model.graph.patchifyVolume(sample, patch: patch),
                                            weight: model.graph.constant("pos_embed.proj.weight", projection),
                                            bias: model.weight("pos_embed.proj.bias", [width]))
        var rotaryAngles: ValueID?
        if config.rotaryPositions {
            rotaryAngles = try model.graph.constant("pos_embed.rope_3d", PositionEmbedding.rotary3D(
                headWidth: config.headWidth, grid: grid, theta: config.ropeTheta))
        } else {
            let positions = try PositionEmbedding.sinCos3D(width: width, grid: grid)
            hidden = try model.graph.addBroadcast(hidden, model.graph.constant("pos_embed.sincos_3d", positions))
        }

        // 2. Timestep embedding, the shared AdaLN modulation, and the text projection.
        var time = try model.graph.timestepEmbedding(timestep, dim: timeProjectionWidth, flipSinToCos: true,
                                                     downscaleFreqShift: 0)
        time = try model.linear(time, "time_embed.linear_1", outWidth: width)
        time = try model.linear(model.graph.unary(.silu, time), "time_embed.linear_2", outWidth: width)
        let sharedModulation = try model.linear(model.graph.unary(.silu, time), "adaln_single.linear", outWidth: 9 * width)
        let context = try model.linear(text, "context_embedder", outWidth: width)

        for layer in 0..<config.layers {
            hidden = try block(hidden, "transformer_blocks.\(layer).", sharedModulation: sharedModulation,
                               context: context, rotaryAngles: rotaryAngles, grid: grid, config: config, in: &model)
        }

        // 3. PixArt's final layer: shift and scale are scale_shift_table [2, D] + the timestep embedding.
        let finalModulation = try model.graph.addBroadcast(model.graph.concat([time, time], axis: 1),
                                                           model.weight("scale_shift_table", [2, width]).flattened(in: &model))
        hidden = try model.graph.modulatedLayerNorm(hidden, modulation: finalModulation, scaleColumn: width,
                                                    shiftColumn: 0, eps: 1e-6)
        hidden = try model.linear(hidden, "proj_out", outWidth: patch * patch * patch * config.outChannels)
        model.graph.setOutput(try model.graph.unpatchifyVolume(hidden, patch: patch, grid: grid,
                                                               channels: config.outChannels))
        return model.graph.finish()
    }

    /// One block: modulated gated self-attention, gated cross-attention and feed-forward, each
    /// gated into the residual, then the depthwise-separable Conv3d over the token grid.
    private static func block(_ x: ValueID, _ prefix: String, sharedModulation: ValueID, context: ValueID,
                              rotaryAngles: ValueID?, grid: [Int], config: MedSyn2Config,
                              in model: inout WeightedGraphBuilder) throws -> ValueID {
        let width = config.hiddenWidth
        // Columns: shift, scale, gate of the self-attention, the cross-attention and the feed-forward.
        let modulation = try model.graph.addBroadcast(
            sharedModulation, model.weight(prefix + "scale_shift_table", [9, width]).flattened(in: &model))
        func modulated(_ x: ValueID, part: Int) throws -> ValueID {
            try model.graph.modulatedLayerNorm(x, modulation: modulation, scaleColumn: (3 * part + 1) * width,
                                               shiftColumn: 3 * part * width, eps: 1e-6)
        }
        func attention(_ name: String) -> AttentionLayer {
            AttentionLayer(prefix: prefix + name, heads: config.heads, projectionBias: config.attentionBias,
                           queryKeyNormEps: config.queryKeyNormEps, outputGate: true)
        }
        var hidden = x
        let selfAttention = try attention("attn1")(modulated(hidden, part: 0), rotaryAngles: rotaryAngles, in: &model)
        hidden = try model.graph.gatedResidual(hidden, update: selfAttention, modulation: modulation, gateColumn: 2 * width)
        hidden = try model.graph.gatedResidual(
            hidden, update: attention("attn2")(modulated(hidden, part: 1), context: context, in: &model),
            modulation: modulation, gateColumn: 5 * width)
        let feedForward = FeedForwardLayer(prefix: prefix + "ff", innerWidth: config.feedForwardMultiple * width,
                                           activation: .geluTanh)
        hidden = try model.graph.gatedResidual(hidden, update: feedForward(modulated(hidden, part: 2), in: &model),
                                               modulation: modulation, gateColumn: 8 * width)

        // Depthwise 3x3x3 over the token grid (channels-last), then the pointwise 1x1x1 as a Linear.
        let depthwise = try model.graph.tokenDepthwiseConvolution(
            hidden, weight: model.weight(prefix + "conv.depthwise.weight", [width, 1, 3, 3, 3]),
            bias: model.weight(prefix + "conv.depthwise.bias", [width]), grid: grid)
        let pointwiseWeight = try model.weights.tensor(prefix + "conv.pointwise.weight", shape: [width, width, 1, 1, 1])
            .reshaped([width, width])
        let pointwise = try model.graph.linear(depthwise,
                                               weight: model.graph.constant(prefix + "conv.pointwise.weight", pointwiseWeight),
                                               bias: model.weight(prefix + "conv.pointwise.bias", [width]))
        return try model.graph.add(hidden, pointwise)
    }
}

private extension ValueID {
    /// A constant table [rows, width] as one row [rows x width] (reshape folds constants).
    func flattened(in model: inout WeightedGraphBuilder) throws -> ValueID {
        try model.graph.reshape(self, to: [model.graph.shape(of: self).reduce(1, *)])
    }
}
