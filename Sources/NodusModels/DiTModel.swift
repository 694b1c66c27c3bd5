import NodusCore
import NodusFormats
import NodusGraph

/// diffusers' `DiTTransformer2DModel` (DiT with AdaLN-Zero, class-conditional).
///
/// Matches diffusers 0.42 `DiTTransformer2DModel.forward(...).sample`: a patch
/// embedding plus the computed 2-D sin-cos position embedding; per block its
/// own timestep/label embedding (`norm1.emb`), AdaLN-Zero modulation, self
/// attention and a GELU feed-forward, each gated into the residual; the final
/// AdaLN (`proj_out_1`) conditioned on block 0's embedding; unpatchify to
/// `out_channels` channels (eps then learned variance when that is twice the
/// latent channels). The class table has `num_embeds_ada_norm + 1` rows: the
/// last is the classifier-free-guidance null class.
///
/// Limitations: `norm_type` must be "ada_norm_zero" with
/// `norm_elementwise_affine` false (every published DiT). Non-square inputs
/// are supported (diffusers itself assumes square when unpatchifying), with
/// the position embedding computed for the actual grid as `PatchEmbed` does.
public final class DiTModel: ContextualModel, ClassConditionedModel, AdaptableModel {
    public let kind = ModelKind.dit
    public let config: JSONValue
    public let settings: DiTConfig
    private let weights: Weights
    private let options: ModelOptions
    private let packedWeights: PackedWeights
    public let lora: LoRAController
    public let defaultContext: RunContext

    static let inputNames: Set<String> = ["sample", "timestep", "class_labels"]
    static let timeProjectionWidth = 256

    public init(directory: String, config: JSONValue, options: ModelOptions) throws {
        let settings = try DiTConfig(JSONObjectReader(config, context: "config.json of '\(directory)'"))
        let store = try WeightStore(directory: directory, access: options.fileAccess)
        self.config = config
        self.settings = settings
        self.options = options
        let packedWeights = PackedWeights(precision: try options.precision())
        self.packedWeights = packedWeights
        let weights = Weights(store: store)
        self.weights = weights
        // Building the graph once reads and checks every weight, so a wrong file fails here;
        // its Linears are what LoRA adapters can target.
        let nominal = try DiTModel.buildGraph(settings: settings, weights: weights,
                                              sampleShape: [1, settings.inChannels, settings.sampleSize, settings.sampleSize])
        let controller = LoRAController(weights: weights, targets: nominal.linearWeights,
                              aliases: DiTModel.originalNames(layers: settings.layers), options: options)
        lora = controller
        defaultContext = try RunContext(RunContext.Settings(threads: options.threads), packedWeights: packedWeights,
                                        strengths: controller.defaultStrengths)
    }

    /// Original-DiT (facebookresearch/DiT) module names -> diffusers names, so
    /// LoRAs trained on original checkpoints apply (`qkv` is split by the matcher).
    static func originalNames(layers: Int) -> [String: String] {
        var names = ["final_layer.linear": "proj_out_2", "final_layer.adaLN_modulation.1": "proj_out_1"]
        for layer in 0..<layers {
            let (original, block) = ("blocks.\(layer).", "transformer_blocks.\(layer).")
            names[original + "attn.qkv"] = block + "attn1.qkv"
            names[original + "attn.proj"] = block + "attn1.to_out.0"
            names[original + "mlp.fc1"] = block + "ff.net.0.proj"
            names[original + "mlp.fc2"] = block + "ff.net.2"
            names[original + "adaLN_modulation.1"] = block + "norm1.linear"
        }
        return names
    }

    public var nullClassLabel: Int64 { Int64(settings.classCount) }

    public var inputSignatures: [TensorSignature] {
        [TensorSignature(name: "sample", dtype: .float32, shape: [nil, settings.inChannels, nil, nil]),
         TensorSignature(name: "timestep", dtype: .float32, shape: [nil]),
         TensorSignature(name: "class_labels", dtype: .int64, shape: [nil])]
    }

    public func outputShape(for inputs: [String: Tensor]) throws -> [Int] {
        let sample = try ModelInputs(inputs, known: DiTModel.inputNames)
            .image("sample", channels: settings.inChannels, multiple: settings.patchSize)
        return [sample.shape[0], settings.outChannels, sample.shape[2], sample.shape[3]]
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
        let checked = try ModelInputs(inputs, known: DiTModel.inputNames)
        let sample = try checked.image("sample", channels: settings.inChannels, multiple: settings.patchSize)
        let batch = sample.shape[0]
        let feeds = [
            "sample": sample,
            "timestep": try checked.timesteps("timestep", batch: batch),
            "class_labels": try checked.labels("class_labels", batch: batch),
        ]
        let executable = try plans.executable(for: sample.shape, generation: lora.generation) {
            try lora.apply(to: DiTModel.buildGraph(settings: settings, weights: weights, sampleShape: sample.shape), strengths: strengths)
        }
        return (executable, feeds)
    }

    /// The forward graph for one input shape (before LoRA side paths).
    static func buildGraph(settings config: DiTConfig, weights: Weights, sampleShape: [Int]) throws -> Graph {
        let width = config.hiddenWidth
        let batch = sampleShape[0]
        let rows = sampleShape[2] / config.patchSize, columns = sampleShape[3] / config.patchSize
        var model = WeightedGraphBuilder(weights: weights)

        let sample = model.graph.input("sample", shape: sampleShape)
        let timestep = model.graph.input("timestep", shape: [batch])
        let labels = model.graph.input("class_labels", shape: [batch], dtype: .int64)

        // 1. Patch embedding: the k=stride=p conv as one GEMM over patches, plus positions.
        let patches = try model.graph.patchify(sample, patch: config.patchSize)
        let patchWidth = config.inChannels * config.patchSize * config.patchSize
        let projectionWeight = try weights.tensor("pos_embed.proj.weight",
                                                  shape: [width, config.inChannels, config.patchSize, config.patchSize])
            .reshaped([width, patchWidth])
        var hidden = try model.graph.linear(patches, weight: model.graph.constant("pos_embed.proj.weight", projectionWeight),
                                            bias: model.weight("pos_embed.proj.bias", [width]))
        let positions = try PositionEmbedding.sinCos2D(width: width, rows: rows, columns: columns,
                                                       baseSize: config.sampleSize / config.patchSize)
        hidden = try model.graph.addBroadcast(hidden, model.graph.constant("pos_embed.pos_embed", positions))

        // 2. Timestep sinusoids, shared by every block's embedding MLP.
        let timeProjection = try model.graph.timestepEmbedding(timestep, dim: DiTModel.timeProjectionWidth,
                                                               flipSinToCos: true, downscaleFreqShift: 1)
        var firstConditioning: ValueID?
        for layer in 0..<config.layers {
            let block = "transformer_blocks.\(layer)."
            // 3. This block's conditioning: timestep MLP + class embedding, then AdaLN-Zero's six rows.
            var timeEmbedding = try model.linear(timeProjection, block + "norm1.emb.timestep_embedder.linear_1",
                                                 outWidth: width)
            timeEmbedding = model.graph.unary(.silu, timeEmbedding)
            timeEmbedding = try model.linear(timeEmbedding, block + "norm1.emb.timestep_embedder.linear_2", outWidth: width)
            let classEmbedding = try model.graph.embeddingLookup(
                table: model.weight(block + "norm1.emb.class_embedder.embedding_table.weight",
                                    [config.classCount + 1, width]),
                indices: labels)
            let conditioning = try model.graph.add(timeEmbedding, classEmbedding)
            if layer == 0 { firstConditioning = conditioning }
            let modulation = try model.linear(model.graph.unary(.silu, conditioning), block + "norm1.linear",
                                              outWidth: 6 * width)
            // Columns of `modulation`: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.

            // 4. Self-attention.
            let attention = AttentionLayer(prefix: block + "attn1", heads: config.heads,
                                           projectionBias: config.attentionBias)
            var normed = try model.graph.modulatedLayerNorm(hidden, modulation: modulation, scaleColumn: width,
                                                            shiftColumn: 0, eps: 1e-6)
            hidden = try model.graph.gatedResidual(hidden, update: attention(normed, in: &model), modulation: modulation,
                                                   gateColumn: 2 * width)

            // 5. Feed-forward.
            let feedForward = FeedForwardLayer(prefix: block + "ff", innerWidth: 4 * width,
                                               activation: config.approximateGELU ? .geluTanh : .gelu)
            normed = try model.graph.modulatedLayerNorm(hidden, modulation: modulation, scaleColumn: 4 * width,
                                                        shiftColumn: 3 * width, eps: config.normEps)
            hidden = try model.graph.gatedResidual(hidden, update: feedForward(normed, in: &model), modulation: modulation,
                                                   gateColumn: 5 * width)
        }

        // 6. Final AdaLN from block 0's conditioning, projection, unpatchify.
        guard let firstConditioning else { throw NodusError.format("DiT config has no layers") }
        let finalModulation = try model.linear(model.graph.unary(.silu, firstConditioning), "proj_out_1",
                                               outWidth: 2 * width)
        hidden = try model.graph.modulatedLayerNorm(hidden, modulation: finalModulation, scaleColumn: width,
                                                    shiftColumn: 0, eps: 1e-6)
        hidden = try model.linear(hidden, "proj_out_2", outWidth: config.patchSize * config.patchSize * config.outChannels)
        model.graph.setOutput(try model.graph.unpatchify(hidden, patch: config.patchSize, rows: rows, columns: columns))
        return model.graph.finish()
    }
}
