import NodusCore
import NodusFormats
import NodusGraph

/// transformers' `CLIPTextModel` (and `CLIPTextModelWithProjection`): the text
/// encoder of a diffusers pipeline's `text_encoder/` folder.
///
/// Matches transformers 5 `CLIPTextModel.forward(input_ids)`: token plus
/// position embeddings; per layer, a causal self-attention and an MLP
/// (`fc1`, quick-GELU or GELU, `fc2`), each after its own LayerNorm and added
/// to the residual; `final_layer_norm`. Outputs `last_hidden_state`
/// [B, N, width] and `pooler_output` [B, width], the final state at each
/// row's first `eos_token_id` (at its largest id when `eos_token_id` is 2, as
/// transformers does for old configs); with a projection, `text_embeds` =
/// `text_projection(pooler_output)`.
///
/// `clip_skip` (an int64 scalar input, 0 when absent) is diffusers'
/// `StableDiffusionPipeline.encode_prompt`: `hidden_states[-(clip_skip + 1)]`,
/// the state after `layers - clip_skip` layers, through `final_layer_norm`.
///
/// Weights are read as hub files hold them (`text_model.` before every key, as
/// SD-1.5's `model.safetensors`) or as transformers 5's `save_pretrained`
/// writes them (no prefix). A LoRA's layers name either form.
///
/// Limitations: no `attention_mask` (SD pipelines pass none: their encoders
/// attend to the padding too, causally); no `position_ids` input.
public final class CLIPTextModel: ContextualModel, AdaptableModel {
    public let kind = ModelKind.clipText
    public let config: JSONValue
    public let settings: CLIPTextConfig
    private let weights: Weights
    private let options: ModelOptions
    /// "text_model." or "": the key prefix of the weights file.
    private let prefix: String
    private let packedWeights: PackedWeights
    public let lora: LoRAController
    public let defaultContext: RunContext

    static let inputNames: Set<String> = ["input_ids", "clip_skip"]

    public init(directory: String, config: JSONValue, options: ModelOptions, withProjection: Bool) throws {
        let context = "config.json of '\(directory)'"
        let settings = try CLIPTextConfig(JSONObjectReader(config, context: context), withProjection: withProjection)
        let store = try WeightStore(directory: directory, baseName: "model", access: options.fileAccess)
        self.config = config
        self.settings = settings
        self.options = options
        let weights = Weights(store: store)
        self.weights = weights
        prefix = store.contains("text_model.embeddings.token_embedding.weight") ? "text_model." : ""
        let packedWeights = PackedWeights(precision: try options.precision())
        self.packedWeights = packedWeights
        // Building the graph once reads and checks every weight, so a wrong file fails here.
        let nominal = try CLIPTextModel.buildGraph(settings: settings, weights: weights, prefix: prefix,
                                                   batch: 1, tokens: settings.maxPositions, clipSkip: 0)
        let controller = LoRAController(weights: weights, targets: nominal.linearWeights,
                              aliases: CLIPTextModel.otherPrefixNames(layers: settings.layers, prefix: prefix),
                              options: options)
        lora = controller
        defaultContext = try RunContext(RunContext.Settings(threads: options.threads), packedWeights: packedWeights,
                                        strengths: controller.defaultStrengths)
    }

    /// The Linears' module names with the other key prefix -> this file's names,
    /// so a LoRA saved from either form of the model applies.
    static func otherPrefixNames(layers: Int, prefix: String) -> [String: String] {
        let other = prefix.isEmpty ? "text_model." : ""
        var names: [String: String] = [:]
        for layer in 0..<layers {
            for module in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                           "mlp.fc1", "mlp.fc2"] {
                let path = "encoder.layers.\(layer).\(module)"
                names[other + path] = prefix + path
            }
        }
        return names
    }

    public var inputSignatures: [TensorSignature] {
        [TensorSignature(name: "input_ids", dtype: .int64, shape: [nil, nil]),
         TensorSignature(name: "clip_skip", dtype: .int64, shape: [])]
    }

    public var outputSignatures: [TensorSignature] {
        var outputs = [TensorSignature(name: "last_hidden_state", dtype: .float32, shape: [nil, nil, settings.hiddenWidth]),
                       TensorSignature(name: "pooler_output", dtype: .float32, shape: [nil, settings.hiddenWidth])]
        if let projection = settings.projectionWidth {
            outputs.append(TensorSignature(name: "text_embeds", dtype: .float32, shape: [nil, projection]))
        }
        return outputs
    }

    public func outputShape(for inputs: [String: Tensor]) throws -> [Int] {
        let (ids, _) = try checkedInputs(inputs)
        return ids.shape + [settings.hiddenWidth]
    }

    public func outputShapes(for inputs: [String: Tensor]) throws -> [[Int]] {
        let (ids, _) = try checkedInputs(inputs)
        var shapes = [ids.shape + [settings.hiddenWidth], [ids.shape[0], settings.hiddenWidth]]
        if let projection = settings.projectionWidth { shapes.append([ids.shape[0], projection]) }
        return shapes
    }

    public func forward(_ inputs: [String: Tensor]) throws -> Tensor {
        try defaultContext.run(structure: lora.structure) { plans in
            let (executable, feeds) = try plan(for: inputs, plans: &plans, strengths: defaultContext.strengths)
            return try executable.run(feeds)
        }
    }

    public func forwardAll(_ inputs: [String: Tensor]) throws -> [Tensor] {
        try forwardAll(inputs, in: defaultContext)
    }

    public func makeContext(_ settings: RunContext.Settings) throws -> RunContext {
        try lora.makeContext(settings, packedWeights: packedWeights)
    }

    public func forwardAll(_ inputs: [String: Tensor], in context: RunContext) throws -> [Tensor] {
        try context.run(structure: lora.structure) { plans in
            let (executable, feeds) = try plan(for: inputs, plans: &plans, strengths: context.strengths)
            let hidden = try executable.run(feeds)
            let pooled = try pooledRows(hidden, ids: feeds)
            guard let projectionWidth = settings.projectionWidth else { return [hidden, pooled] }
            // `text_projection` sits beside the text model in both key forms.
            let projection = try weights.tensor("text_projection.weight", shape: [projectionWidth, settings.hiddenWidth])
            let embeds = try Tensor(zeros: [pooled.shape[0], projectionWidth])
            Gemm.multiply(transposeA: false, transposeB: true, m: pooled.shape[0], n: projectionWidth,
                          k: settings.hiddenWidth, a: pooled.floats, lda: settings.hiddenWidth, b: projection.floats,
                          ldb: settings.hiddenWidth, c: embeds.floats, ldc: projectionWidth)
            return [hidden, pooled, embeds]
        }
    }

    public func profile(_ inputs: [String: Tensor], rounds: Int) throws -> ExecutionProfile {
        try defaultContext.run(structure: lora.structure) { plans in
            let (executable, feeds) = try plan(for: inputs, plans: &plans, strengths: defaultContext.strengths)
            return try executable.profile(feeds, rounds: rounds)
        }
    }

    /// `input_ids` as int64 [B, N] and `clip_skip`, checked.
    private func checkedInputs(_ inputs: [String: Tensor]) throws -> (ids: Tensor, clipSkip: Int) {
        let checked = try ModelInputs(inputs, known: CLIPTextModel.inputNames)
        let ids = try checked.required("input_ids")
        guard !ids.dtype.isFloatingPoint, ids.rank == 2, ids.shape[0] > 0, ids.shape[1] > 0 else {
            throw NodusError.shape("'input_ids' must be integer token ids [batch, tokens], got \(ids.dtype.name) \(ids.shape)")
        }
        guard ids.shape[1] <= settings.maxPositions else {
            throw NodusError.shape("'input_ids' has \(ids.shape[1]) tokens; this text encoder takes at most \(settings.maxPositions) (max_position_embeddings)")
        }
        var clipSkip = 0
        if let skip = inputs["clip_skip"] {
            let values = skip.int64Array()
            guard !skip.dtype.isFloatingPoint, values.count == 1, values[0] >= 0, values[0] < settings.layers else {
                throw NodusError.invalidArgument("'clip_skip' must be one integer in 0..<\(settings.layers) (the encoder's layers), got \(skip.dtype.name) \(values.prefix(4))")
            }
            clipSkip = Int(values[0])
        }
        return (try Tensor(shape: ids.shape, int64s: ids.int64Array()), clipSkip)
    }

    /// The plan for these inputs (built on their first use) and the graph's feeds.
    private func plan(for inputs: [String: Tensor], plans: inout ExecutableCache,
                      strengths: AdapterWeights) throws -> (Executable, feeds: [String: Tensor]) {
        let (ids, clipSkip) = try checkedInputs(inputs)
        let (batch, tokens) = (ids.shape[0], ids.shape[1])
        let executable = try plans.executable(for: [batch, tokens, clipSkip], generation: lora.generation) {
            try lora.apply(to: CLIPTextModel.buildGraph(settings: settings, weights: weights, prefix: prefix,
                                                        batch: batch, tokens: tokens, clipSkip: clipSkip),
                               strengths: strengths)
        }
        return (executable, ["input_ids": try ids.reshaped([batch * tokens])])
    }

    /// The final state at each row's pooling token (`feeds` holds the ids, flattened).
    private func pooledRows(_ hidden: Tensor, ids feeds: [String: Tensor]) throws -> Tensor {
        let (batch, tokens, width) = (hidden.shape[0], hidden.shape[1], hidden.shape[2])
        let values = feeds["input_ids"]?.int64Array() ?? []
        guard values.count == batch * tokens else { throw NodusError(.internal, "CLIP pooling: the ids were not fed") }
        let pooled = try Tensor(zeros: [batch, width])
        for row in 0..<batch {
            let rowIDs = values[(row * tokens)..<((row + 1) * tokens)]
            let position: Int
            if settings.eosTokenID == 2 {
                // torch argmax: the first position of the largest id.
                position = rowIDs.indices.reduce(rowIDs.startIndex) { rowIDs[$1] > rowIDs[$0] ? $1 : $0 }
                    - rowIDs.startIndex
            } else {
                // The first eos; argmax of an all-zero row is 0.
                position = (rowIDs.firstIndex(of: settings.eosTokenID) ?? rowIDs.startIndex) - rowIDs.startIndex
            }
            (pooled.floats + row * width).update(from: hidden.floats + (row * tokens + position) * width, count: width)
        }
        return pooled
    }

    /// The graph of `last_hidden_state` (after `layers - clipSkip` layers) for [batch, tokens] ids.
    static func buildGraph(settings config: CLIPTextConfig, weights: Weights, prefix: String, batch: Int, tokens: Int,
                           clipSkip: Int) throws -> Graph {
        let width = config.hiddenWidth
        var model = WeightedGraphBuilder(weights: weights)
        let ids = model.graph.input("input_ids", shape: [batch * tokens], dtype: .int64)

        // 1. Token embeddings plus the first `tokens` position embeddings.
        let tokenTable = try model.weight(prefix + "embeddings.token_embedding.weight", [config.vocabularySize, width])
        var hidden = try model.graph.reshape(model.graph.embeddingLookup(table: tokenTable, indices: ids),
                                             to: [batch, tokens, width])
        let positionName = prefix + "embeddings.position_embedding.weight"
        let positions = try weights.tensor(positionName, shape: [config.maxPositions, width])
        let firstPositions = Tensor(storage: positions.storage, byteOffset: positions.byteOffset, shape: [tokens, width],
                                    dtype: .float32)
        hidden = try model.graph.addBroadcast(hidden, model.graph.constant(positionName, firstPositions))

        // 2. Pre-norm layers: causal self-attention, then the MLP.
        for layer in 0..<(config.layers - clipSkip) {
            let block = prefix + "encoder.layers.\(layer)."
            let attention = AttentionLayer(prefix: block + "self_attn", heads: config.heads, projectionBias: true,
                                           names: .transformers, causal: true)
            var normed = try model.layerNorm(hidden, block + "layer_norm1", eps: config.layerNormEps)
            hidden = try model.graph.add(hidden, attention(normed, in: &model))
            normed = try model.layerNorm(hidden, block + "layer_norm2", eps: config.layerNormEps)
            var inner = try model.linear(normed, block + "mlp.fc1", outWidth: config.intermediateWidth)
            inner = model.graph.unary(config.quickGELU ? .quickGELU : .gelu, inner)
            hidden = try model.graph.add(hidden, model.linear(inner, block + "mlp.fc2", outWidth: width))
        }

        // 3. The final LayerNorm (diffusers applies it to a clip-skipped state too).
        model.graph.setOutput(try model.layerNorm(hidden, prefix + "final_layer_norm", eps: config.layerNormEps),
                              name: "last_hidden_state")
        return model.graph.finish()
    }
}
