import NodusCore

/// The graph being rebuilt node by node, with each node's producer in it.
struct FusionRewriter {
    private let source: Graph
    var result: Graph
    /// Value index -> index of the node producing it in `result`.
    private var producers: [Int: Int] = [:]
    /// Readers of each value in the source graph (graph outputs count as readers).
    let uses: [Int]
    private var replacement: [ValueID: ValueID] = [:]
    /// [B, K, D] modulations already seen as [B, K D] (`FusionRewriter+Norms`).
    var flattenedModulations: [ValueID: ValueID] = [:]
    var fused: [String: Int] = [:]
    /// Verdicts of the attention pattern's layout checks (`FusionRewriter+Attention`).
    var layoutVerdicts: [LayoutQuestion: Bool] = [:]
    /// Fused nodes written this round (a bias or weight joining its op counts here, not in `fused`).
    private(set) var rewrites = 0
    /// Whether fallback forms may fire (`OperatorFusion.fuse`).
    let fallbacks: Bool

    init(_ graph: Graph, fallbacks: Bool) {
        self.fallbacks = fallbacks
        source = graph
        result = graph
        result.nodes = []
        var uses = [Int](repeating: 0, count: graph.values.count)
        for node in graph.nodes { for input in node.inputs.compactMap({ $0 }) { uses[input.index] += 1 } }
        for output in graph.outputs { uses[output.value.index] += 1 }
        self.uses = uses
    }

    func finish() -> Graph {
        var graph = result
        graph.outputs = source.outputs.map { GraphOutput(name: $0.name, value: replacement[$0.value] ?? $0.value) }
        return graph
    }

    mutating func visit(_ original: Node) throws {
        var node = original
        node.inputs = node.inputs.map { $0.map { replacement[$0] ?? $0 } }
        let rules: [(inout FusionRewriter, Node) throws -> ValueID?] = [
            { try $0.linear($1) }, { try $0.linearBias($1) }, { try $0.activation($1) }, { try $0.geglu($1) },
            { try $0.groupNorm($1) }, { try $0.groupNormSiLU($1) }, { try $0.attention($1) },
            { try $0.modulatedLayerNorm($1) }, { try $0.gatedResidual($1) }, { try $0.rmsNorm($1) },
            { try $0.rmsNormWeight($1) }, { try $0.tokenConvolution($1) },
        ]
        for rule in rules {
            if let value = try rule(&self, node) {
                // The fused value stands for the original one everywhere after.
                replacement[original.output] = value
                return
            }
        }
        append(node)
    }

    // MARK: Graph access

    mutating func append(_ node: Node) {
        result.values[node.output.index].origin = .node(result.nodes.count)
        producers[node.output.index] = result.nodes.count
        result.nodes.append(node)
    }

    /// Appends a fused node computing a new value.
    mutating func emit(_ operation: Operation, _ inputs: [ValueID?], like value: ValueID, name: String)
        -> ValueID {
        let output = result.appendValue(ValueInfo(shape: result[value].shape, dtype: result[value].dtype,
                                                  origin: .node(result.nodes.count)))
        append(Node(operation: operation, inputs: inputs, output: output))
        fused[name, default: 0] += 1
        rewrites += 1
        return output
    }

    mutating func constant(_ name: String, _ tensor: Tensor) -> ValueID {
        result.appendValue(ValueInfo(shape: tensor.shape, dtype: tensor.dtype, origin: .constant(name: name, tensor: tensor)))
    }

    func producer(_ value: ValueID?) -> Node? {
        guard let value, let index = producers[value.index] else { return nil }
        return result.nodes[index]
    }

    /// The producer of `value` when nothing but the pattern reads it.
    func interior(_ value: ValueID?) -> Node? {
        guard let value, value.index < uses.count, uses[value.index] == 1 else { return nil }
        return producer(value)
    }

    func tensor(_ value: ValueID?) -> Tensor? {
        guard let value, case .constant(_, let tensor) = result[value].origin else { return nil }
        return tensor
    }

    func shape(_ value: ValueID) -> [Int] { result[value].shape }

    /// The value of a one-element float32 constant.
    func scalar(_ value: ValueID?) -> Float? {
        guard let tensor = tensor(value), tensor.dtype == .float32, tensor.elementCount == 1 else { return nil }
        return tensor.floats[0]
    }

    // MARK: Linear

    /// MatMul(x, W) with W a constant [in, out] -> linear.
    mutating func linear(_ node: Node) throws -> ValueID? {
        guard case .matMul = node.operation, let x = node.inputs[0], let weight = node.inputs[1],
              let matrix = tensor(weight), matrix.rank == 2, matrix.dtype == .float32, shape(x).count >= 2 else { return nil }
        return emit(.linear(.inputsByOutputs), [x, weight, nil], like: node.output, name: "linear")
    }

    /// linear(x, W) + b with b a constant [out] -> linear(x, W, b).
    mutating func linearBias(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation else { return nil }
        for (product, bias) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let linear = interior(product), case .linear = linear.operation, linear.inputs.count == 3,
                  linear.inputs[2] == nil, let values = tensor(bias), values.dtype == .float32,
                  let width = shape(linear.output).last, isLastAxisVector(values, width: width),
                  shape(node.output) == shape(linear.output) else { continue }
            let vector = try constant(constantName(bias!, fallback: "bias"), values.reshaped([width]))
            fused["linear", default: 0] -= 1  // the same linear, now with its bias
            return emit(linear.operation, [linear.inputs[0], linear.inputs[1], vector], like: node.output, name: "linear")
        }
        return nil
    }

    /// Whether `tensor` is [width], or [1, ..., 1, width]: one value per column of the last axis.
    /// Its element count alone does not say so: a [B, 1, 1] constant with B == width broadcasts
    /// one value per batch item instead.
    func isLastAxisVector(_ tensor: Tensor, width: Int) -> Bool {
        (tensor.shape.last ?? 1) == width && tensor.shape.dropLast().allSatisfy { $0 == 1 }
    }

    func constantName(_ value: ValueID, fallback: String) -> String {
        if case .constant(let name, _) = result[value].origin { return name }
        return fallback
    }
}

