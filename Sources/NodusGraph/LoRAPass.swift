import NodusCore

/// One adapter's low-rank update of one Linear: `y += w[slot] * scale * B (A x)`.
public struct LowRankPath: Sendable {
    /// A, float32 [rank, in].
    public var down: Tensor
    /// B, float32 [out, rank] (a row range of a fused qkv B is a view).
    public var up: Tensor
    /// The adapter's slot in `AdapterWeights`.
    public var slot: Int
    /// The per-layer scale (alpha / rank).
    public var scale: Float
    /// Names for the graph's constants, e.g. "transformer_blocks.0.attn1.to_q.lora_A.A".
    public var downName: String
    public var upName: String

    public init(down: Tensor, up: Tensor, slot: Int, scale: Float, downName: String, upName: String) {
        self.down = down
        self.up = up
        self.slot = slot
        self.scale = scale
        self.downName = downName
        self.upName = upName
    }
}

/// Gives every Linear whose weight has adapter paths a low-rank side path
/// (the unfused LoRA form): the Linear's output feeds a `lowRankUpdate` that
/// adds `sum_i w_i s_i B_i (A_i x)`, reading the weights w_i from
/// `AdapterWeights` at run time.
public struct LoRAPass: GraphPass {
    /// Paths by the Linear weight's name ("transformer_blocks.0.attn1.to_q.weight").
    public let paths: [String: [LowRankPath]]
    public let weights: AdapterWeights

    public init(paths: [String: [LowRankPath]], weights: AdapterWeights) {
        self.paths = paths
        self.weights = weights
    }

    public func apply(to graph: Graph) throws -> Graph {
        guard !paths.isEmpty else { return graph }
        var result = graph
        result.nodes = []
        var replacement: [ValueID: ValueID] = [:]
        for node in graph.nodes {
            var node = node
            node.inputs = node.inputs.map { input in input.map { replacement[$0] ?? $0 } }
            result.values[node.output.index].origin = .node(result.nodes.count)
            result.nodes.append(node)
            guard case .linear = node.operation, let input = node.inputs[0], let weight = node.inputs[1],
                  case .constant(let name, _) = graph[weight].origin, let layerPaths = paths[name] else { continue }
            var inputs: [ValueID?] = [node.output, input]
            var parts: [LowRankPart] = []
            for path in layerPaths {
                inputs.append(result.appendValue(ValueInfo(shape: path.down.shape, dtype: .float32,
                                                           origin: .constant(name: path.downName, tensor: path.down))))
                inputs.append(result.appendValue(ValueInfo(shape: path.up.shape, dtype: .float32,
                                                           origin: .constant(name: path.upName, tensor: path.up))))
                parts.append(LowRankPart(slot: path.slot, scale: path.scale, rank: path.down.shape[0]))
            }
            let updated = result.appendValue(ValueInfo(shape: graph[node.output].shape, dtype: .float32,
                                                       origin: .node(result.nodes.count)))
            result.nodes.append(Node(operation: .lowRankUpdate(parts: parts, weights: weights), inputs: inputs,
                                     output: updated))
            replacement[node.output] = updated
        }
        result.outputs = graph.outputs.map { GraphOutput(name: $0.name, value: replacement[$0.value] ?? $0.value) }
        return result
    }
}
