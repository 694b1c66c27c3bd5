#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Raises the primitive patterns of an exported graph to the fused ops the
/// native builders write, so an ONNX model runs on the same kernels:
/// * `linear`: MatMul by a constant matrix, plus a constant bias;
/// * `attention`: the head split (reshape / transpose), q kᵀ with its scales,
///   softmax, the product with v and the head merge, as one streaming
///   attention that never holds the N x N scores;
/// * activations: an elementwise subgraph of one variable that computes GELU
///   (erf or tanh) or SiLU, recognised by its values, whatever the order its
///   exporter wrote the arithmetic in; GEGLU (a halves split, one half times
///   the GELU of the other);
/// * `group_norm`: reshape to groups, InstanceNormalization (scale 1, bias 0),
///   reshape back, per-channel scale and shift; and the SiLU after it.
///
/// Each rule only takes intermediate values no other node reads, and checks
/// layouts and constants exactly, so a graph that differs in any way keeps its
/// primitives (and stays right).
public struct OperatorFusion: GraphPass {
    public init() {}

    public func apply(to graph: Graph) throws -> Graph { try fuse(graph).graph }

    /// The fused graph and how many times each rule fired (by fused op name).
    /// Rounds repeat until nothing fuses: a fusion can leave a value with one
    /// reader where it had several (SiLU after a group norm, GELU inside GEGLU).
    public func fuse(_ graph: Graph) throws -> (graph: Graph, fused: [String: Int]) {
        var current = graph
        var total: [String: Int] = [:]
        for _ in 0..<4 {
            var rewriter = FusionRewriter(current)
            for node in current.nodes { try rewriter.visit(node) }
            current = DeadCodeElimination().apply(to: rewriter.finish())
            total.merge(rewriter.fused, uniquingKeysWith: +)
            if rewriter.rewrites == 0 { break }
        }
        return (current, total.filter { $0.value != 0 })
    }
}

/// The graph being rebuilt node by node, with each node's producer in it.
struct FusionRewriter {
    private let source: Graph
    private var result: Graph
    /// Value index -> index of the node producing it in `result`.
    private var producers: [Int: Int] = [:]
    /// Readers of each value in the source graph (graph outputs count as readers).
    private let uses: [Int]
    private var replacement: [ValueID: ValueID] = [:]
    private(set) var fused: [String: Int] = [:]
    /// Fused nodes written this round (a bias or weight joining its op counts here, not in `fused`).
    private(set) var rewrites = 0

    init(_ graph: Graph) {
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
            { try $0.rmsNormWeight($1) },
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

    private mutating func append(_ node: Node) {
        result.values[node.output.index].origin = .node(result.nodes.count)
        producers[node.output.index] = result.nodes.count
        result.nodes.append(node)
    }

    /// Appends a fused node computing a new value.
    private mutating func emit(_ operation: Operation, _ inputs: [ValueID?], like value: ValueID, name: String)
        -> ValueID {
        let output = result.appendValue(ValueInfo(shape: result[value].shape, dtype: result[value].dtype,
                                                  origin: .node(result.nodes.count)))
        append(Node(operation: operation, inputs: inputs, output: output))
        fused[name, default: 0] += 1
        rewrites += 1
        return output
    }

    private mutating func constant(_ name: String, _ tensor: Tensor) -> ValueID {
        result.appendValue(ValueInfo(shape: tensor.shape, dtype: tensor.dtype, origin: .constant(name: name, tensor: tensor)))
    }

    private func producer(_ value: ValueID?) -> Node? {
        guard let value, let index = producers[value.index] else { return nil }
        return result.nodes[index]
    }

    /// The producer of `value` when nothing but the pattern reads it.
    private func interior(_ value: ValueID?) -> Node? {
        guard let value, value.index < uses.count, uses[value.index] == 1 else { return nil }
        return producer(value)
    }

    private func tensor(_ value: ValueID?) -> Tensor? {
        guard let value, case .constant(_, let tensor) = result[value].origin else { return nil }
        return tensor
    }

    private func shape(_ value: ValueID) -> [Int] { result[value].shape }

    /// The value of a one-element float32 constant.
    private func scalar(_ value: ValueID?) -> Float? {
        guard let tensor = tensor(value), tensor.dtype == .float32, tensor.elementCount == 1 else { return nil }
        return tensor.floats[0]
    }

    // MARK: Linear

    /// MatMul(x, W) with W a constant [in, out] -> linear.
    private mutating func linear(_ node: Node) throws -> ValueID? {
        guard case .matMul = node.operation, let x = node.inputs[0], let weight = node.inputs[1],
              let matrix = tensor(weight), matrix.rank == 2, matrix.dtype == .float32, shape(x).count >= 2 else { return nil }
        return emit(.linear(.inputsByOutputs), [x, weight, nil], like: node.output, name: "linear")
    }

    /// linear(x, W) + b with b a constant [out] -> linear(x, W, b).
    private mutating func linearBias(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation else { return nil }
        for (product, bias) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let linear = interior(product), case .linear = linear.operation, linear.inputs.count == 3,
                  linear.inputs[2] == nil, let values = tensor(bias), values.dtype == .float32,
                  let width = shape(linear.output).last, values.elementCount == width,
                  shape(node.output) == shape(linear.output) else { continue }
            let vector = try constant(constantName(bias!, fallback: "bias"), values.reshaped([width]))
            fused["linear", default: 0] -= 1  // the same linear, now with its bias
            return emit(linear.operation, [linear.inputs[0], linear.inputs[1], vector], like: node.output, name: "linear")
        }
        return nil
    }

    private func constantName(_ value: ValueID, fallback: String) -> String {
        if case .constant(let name, _) = result[value].origin { return name }
        return fallback
    }

    // MARK: Activations

    private static let probe: [Float] = (0...96).map { Float($0 - 48) / 6 }  // -8 ... 8

    /// An elementwise subgraph of one variable that computes GELU or SiLU.
    private mutating func activation(_ node: Node) throws -> ValueID? {
        guard isElementwise(node), result[node.output].dtype == .float32 else { return nil }
        var region: [Node] = []
        var variable: ValueID?
        func gather(_ current: Node) -> Bool {
            guard region.count < 16 else { return false }
            region.append(current)
            for input in current.inputs {
                guard let input else { return false }
                if scalar(input) != nil { continue }
                if let inner = interior(input), isElementwise(inner), shape(inner.output) == shape(node.output) {
                    if !gather(inner) { return false }
                } else {
                    guard variable == nil || variable == input, shape(input) == shape(node.output),
                          result[input].dtype == .float32 else { return false }
                    variable = input
                }
            }
            return true
        }
        guard gather(node), region.count >= 2, let variable else { return nil }
        let values = try evaluate(region.reversed(), variable: variable, output: node.output)
        let candidates: [(Operation, String, (Double) -> Double)] = [
            (.gelu, "gelu", { x in 0.5 * x * erfc(-x / 2.0.squareRoot()) }),
            (.geluTanh, "gelu_tanh", { x in 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }),
            (.silu, "silu", { x in x / (1 + exp(-x)) }),
        ]
        for (operation, name, function) in candidates {
            let matches = zip(FusionRewriter.probe, values).allSatisfy { x, y in
                let expected = function(Double(x))
                return abs(Double(y) - expected) <= 1e-5 * max(1, abs(expected))
            }
            if matches { return emit(operation, [variable], like: node.output, name: name) }
        }
        return nil
    }

    private func isElementwise(_ node: Node) -> Bool {
        switch node.operation {
        case .binary(let function): [.add, .subtract, .multiply, .divide, .power].contains(function)
        case .map(let function): function != .not
        default: false
        }
    }

    /// The region's values on the probe points, the variable replaced by them.
    private func evaluate(_ region: [Node], variable: ValueID, output: ValueID) throws -> [Float] {
        var builder = GraphBuilder()
        var values: [ValueID: ValueID] = [
            variable: try builder.typedConstant("x", Tensor(shape: [FusionRewriter.probe.count], floats: FusionRewriter.probe)),
        ]
        func value(_ id: ValueID?) throws -> ValueID {
            guard let id else { throw NodusError(.internal, "fusion probe lost an input") }
            if let known = values[id] { return known }
            guard let number = scalar(id) else { throw NodusError(.internal, "fusion probe lost an input") }
            return try builder.typedConstant("scalar", Tensor(shape: [], floats: [number]))
        }
        for node in region {
            switch node.operation {
            case .binary(let function): values[node.output] = try builder.binary(function, value(node.inputs[0]), value(node.inputs[1]))
            case .map(let function): values[node.output] = try builder.map(function, value(node.inputs[0]))
            default: throw NodusError(.internal, "fusion probe met \(node.operation.name)")
            }
        }
        guard let result = values[output], let folded = builder.constantTensor(result),
              folded.elementCount == FusionRewriter.probe.count else {
            throw NodusError(.internal, "fusion probe did not fold")
        }
        return folded.floatArray()
    }

    /// hidden * GELU(gate), hidden and gate the two halves of one tensor's last axis -> geglu.
    private mutating func geglu(_ node: Node) throws -> ValueID? {
        guard case .binary(.multiply) = node.operation else { return nil }
        for (hiddenValue, gateValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let gelu = interior(gateValue), case .gelu = gelu.operation,
                  let gateSlice = interior(gelu.inputs[0]), let hiddenSlice = interior(hiddenValue),
                  case .slice(let gateStarts, let gateSteps) = gateSlice.operation,
                  case .slice(let hiddenStarts, let hiddenSteps) = hiddenSlice.operation,
                  let whole = gateSlice.inputs[0], hiddenSlice.inputs[0] == whole,
                  let width = shape(node.output).last, shape(whole).last == 2 * width,
                  (gateSteps + hiddenSteps).allSatisfy({ $0 == 1 }),
                  hiddenStarts.allSatisfy({ $0 == 0 }), gateStarts.dropLast().allSatisfy({ $0 == 0 }),
                  gateStarts.last == width, shape(whole).dropLast() == shape(node.output).dropLast() else { continue }
            return emit(.geglu, [whole], like: node.output, name: "geglu")
        }
        return nil
    }

    // MARK: Group norm

    /// reshape -> instance norm (1, 0) -> reshape back -> * weight + bias -> group_norm.
    private mutating func groupNorm(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation else { return nil }
        for (scaled, biasValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let multiply = interior(scaled), case .binary(.multiply) = multiply.operation else { continue }
            for (restored, weightValue) in [(multiply.inputs[0], multiply.inputs[1]), (multiply.inputs[1], multiply.inputs[0])] {
                guard let back = interior(restored), case .reshape = back.operation,
                      let norm = interior(back.inputs[0]), case .instanceNorm(let eps) = norm.operation,
                      let grouped = interior(norm.inputs[0]), case .reshape = grouped.operation,
                      let x = grouped.inputs[0], shape(x) == shape(node.output), shape(x).count >= 3 else { continue }
                let channels = shape(x)[1], groups = shape(grouped.output)[1]
                guard shape(grouped.output).count == 3, shape(grouped.output)[0] == shape(x)[0],
                      let unitScale = tensor(norm.inputs[1]), unitScale.floatArray().allSatisfy({ $0 == 1 }),
                      let zeroBias = tensor(norm.inputs[2]), zeroBias.floatArray().allSatisfy({ $0 == 0 }),
                      let weight = tensor(weightValue), weight.elementCount == channels,
                      let bias = tensor(biasValue), bias.elementCount == channels,
                      perChannel(weight, rank: shape(x).count), perChannel(bias, rank: shape(x).count) else { continue }
                let weightConstant = constant(constantName(weightValue!, fallback: "group_norm.weight"),
                                              try weight.reshaped([channels]))
                let biasConstant = constant(constantName(biasValue!, fallback: "group_norm.bias"), try bias.reshaped([channels]))
                return emit(.groupNorm(groups: groups, eps: eps, silu: false), [x, weightConstant, biasConstant],
                            like: node.output, name: "group_norm")
            }
        }
        return nil
    }

    /// A [C, 1, ...] (or [C]) constant broadcast over the channels axis of a rank-`rank` tensor.
    private func perChannel(_ tensor: Tensor, rank: Int) -> Bool {
        let trailing = tensor.shape.drop { $0 == 1 && tensor.shape.count > rank - 1 }
        return trailing.count == rank - 1 && trailing.dropFirst().allSatisfy { $0 == 1 }
    }

    /// silu(group_norm(x)) -> group_norm(x, silu: true).
    private mutating func groupNormSiLU(_ node: Node) throws -> ValueID? {
        guard case .silu = node.operation, let norm = interior(node.inputs[0]),
              case .groupNorm(let groups, let eps, false) = norm.operation else { return nil }
        return emit(.groupNorm(groups: groups, eps: eps, silu: true), norm.inputs, like: node.output, name: "group_norm_silu")
    }

    // MARK: RMSNorm

    /// x * 1 / sqrt(mean(x², last axis) + eps), or x / sqrt(...) -> rms_norm (no weight yet).
    private mutating func rmsNorm(_ node: Node) throws -> ValueID? {
        let x: ValueID?, root: Node?
        switch node.operation {
        case .binary(.multiply):
            // 1 / sqrt(...) as Reciprocal (dynamo) or Div(1, ...) (TorchScript).
            func inverse(_ value: ValueID?) -> Node? {
                guard let candidate = interior(value) else { return nil }
                switch candidate.operation {
                case .map(.reciprocal): return interior(candidate.inputs[0])
                case .binary(.divide) where scalar(candidate.inputs[0]) == 1: return interior(candidate.inputs[1])
                default: return nil
                }
            }
            if let found = inverse(node.inputs[1]) {
                (x, root) = (node.inputs[0], found)
            } else if let found = inverse(node.inputs[0]) {
                (x, root) = (node.inputs[1], found)
            } else {
                return nil
            }
        case .binary(.divide):
            x = node.inputs[0]
            root = interior(node.inputs[1])
        default:
            return nil
        }
        guard let x, let squareRoot = root, case .map(.sqrt) = squareRoot.operation,
              let sum = interior(squareRoot.inputs[0]), case .binary(.add) = sum.operation else { return nil }
        for (meanValue, epsValue) in [(sum.inputs[0], sum.inputs[1]), (sum.inputs[1], sum.inputs[0])] {
            guard let eps = scalar(epsValue), let mean = interior(meanValue),
                  case .reduce(.mean, let axes) = mean.operation, axes == [shape(x).count - 1],
                  shape(mean.output).count == shape(x).count, let square = interior(mean.inputs[0]),
                  isSquare(of: x, square) else { continue }
            return emit(.rmsNorm(eps: eps), [x, nil], like: node.output, name: "rms_norm")
        }
        return nil
    }

    private func isSquare(of x: ValueID, _ node: Node) -> Bool {
        switch node.operation {
        case .binary(.power): node.inputs[0] == x && scalar(node.inputs[1]) == 2
        case .binary(.multiply): node.inputs[0] == x && node.inputs[1] == x
        default: false
        }
    }

    /// rms_norm(x) * weight [D] -> rms_norm(x, weight).
    private mutating func rmsNormWeight(_ node: Node) throws -> ValueID? {
        guard case .binary(.multiply) = node.operation else { return nil }
        for (normed, weightValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let norm = interior(normed), case .rmsNorm = norm.operation, norm.inputs[1] == nil,
                  let weight = tensor(weightValue), let width = shape(norm.output).last, weight.elementCount == width,
                  weight.shape.dropLast().allSatisfy({ $0 == 1 }), shape(node.output) == shape(norm.output) else { continue }
            let vector = constant(constantName(weightValue!, fallback: "rms_norm.weight"), try weight.reshaped([width]))
            fused["rms_norm", default: 0] -= 1  // the same norm, now with its weight
            return emit(norm.operation, [norm.inputs[0], vector], like: node.output, name: "rms_norm")
        }
        return nil
    }

    // MARK: AdaLN

    /// (modulation [B, M], first column) when `value` is columns c..<c+D of a
    /// [B, M] value reshaped to [B, 1, D] (a Split output unsqueezed).
    private func modulationColumns(_ value: ValueID?, width: Int) -> (ValueID, Int)? {
        guard let unsqueezed = interior(value), case .reshape = unsqueezed.operation,
              let slice = interior(unsqueezed.inputs[0]), case .slice(let starts, let steps) = slice.operation,
              let modulation = slice.inputs[0], shape(modulation).count == 2, steps == [1, 1], starts[0] == 0,
              shape(slice.output) == [shape(modulation)[0], width],
              shape(unsqueezed.output) == [shape(modulation)[0], 1, width] else { return nil }
        return (modulation, starts[1])
    }

    /// layer_norm(x) * (1 + scale) + shift, scale and shift columns of one
    /// modulation (a DiT block's AdaLN) -> modulated_layer_norm.
    private mutating func modulatedLayerNorm(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation, shape(node.output).count == 3 else { return nil }
        let width = shape(node.output)[2]
        for (scaled, shiftValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let multiply = interior(scaled), case .binary(.multiply) = multiply.operation,
                  let (shiftSource, shiftColumn) = modulationColumns(shiftValue, width: width) else { continue }
            for (normed, factor) in [(multiply.inputs[0], multiply.inputs[1]), (multiply.inputs[1], multiply.inputs[0])] {
                guard let norm = interior(normed), case .layerNorm(let eps) = norm.operation,
                      norm.inputs.count < 3 || norm.inputs[2] == nil
                        || tensor(norm.inputs[2])?.floatArray().allSatisfy({ $0 == 0 }) == true,
                      norm.inputs.count < 2 || norm.inputs[1] == nil
                        || tensor(norm.inputs[1])?.floatArray().allSatisfy({ $0 == 1 }) == true,
                      let onePlus = interior(factor), case .binary(.add) = onePlus.operation,
                      let x = norm.inputs[0], shape(x) == shape(node.output) else { continue }
                for (scaleValue, one) in [(onePlus.inputs[0], onePlus.inputs[1]), (onePlus.inputs[1], onePlus.inputs[0])] {
                    guard scalar(one) == 1, let (scaleSource, scaleColumn) = modulationColumns(scaleValue, width: width),
                          scaleSource == shiftSource, shape(scaleSource)[0] == shape(x)[0] else { continue }
                    return emit(.modulatedLayerNorm(eps: eps, scaleColumn: scaleColumn, shiftColumn: shiftColumn),
                                [x, scaleSource], like: node.output, name: "modulated_layer_norm")
                }
            }
        }
        return nil
    }

    /// residual + gate * update, the gate a column block of a modulation -> gated_residual.
    private mutating func gatedResidual(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation, shape(node.output).count == 3 else { return nil }
        let width = shape(node.output)[2]
        for (gatedValue, residual) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let residual, shape(residual) == shape(node.output), let multiply = interior(gatedValue),
                  case .binary(.multiply) = multiply.operation else { continue }
            for (gate, update) in [(multiply.inputs[0], multiply.inputs[1]), (multiply.inputs[1], multiply.inputs[0])] {
                guard let update, shape(update) == shape(node.output),
                      let (modulation, column) = modulationColumns(gate, width: width),
                      shape(modulation)[0] == shape(node.output)[0] else { continue }
                return emit(.gatedResidual(gateColumn: column), [residual, update, modulation], like: node.output,
                            name: "gated_residual")
            }
        }
        return nil
    }

    // MARK: Attention

    /// The head merge (a reshape or transpose chain) of softmax(q kᵀ s) v with
    /// q, k and v split into heads by layout chains -> attention.
    private mutating func attention(_ node: Node) throws -> ValueID? {
        guard isLayout(node) else { return nil }
        let (merged, mergeChain) = layoutChain(ending: node)
        guard let product = interior(merged), case .matMul = product.operation, shape(merged).count >= 3,
              let probabilities = interior(product.inputs[0]), case .softmax(let axis) = probabilities.operation,
              axis == shape(probabilities.output).count - 1 else { return nil }
        var scale: Float = 1
        var scores = probabilities.inputs[0]
        if let scaled = interior(scores), let (inner, factor) = scaledBy(scaled) { scores = inner; scale *= factor }
        guard let qk = interior(scores), case .matMul = qk.operation else { return nil }
        var queryHeads = qk.inputs[0], keyHeads = qk.inputs[1]
        if let scaled = interior(queryHeads), let (inner, factor) = scaledBy(scaled) { queryHeads = inner; scale *= factor }
        if let scaled = interior(keyHeads), let (inner, factor) = scaledBy(scaled) { keyHeads = inner; scale *= factor }
        guard let queryHeads, let keyHeads, let valueHeads = product.inputs[1] else { return nil }
        let (query, queryChain, queryNorm) = normedLayoutChain(from: queryHeads)
        let (key, keyChain, keyNorm) = normedLayoutChain(from: keyHeads)
        let (value, valueChain) = layoutChain(from: valueHeads)
        let q = shape(query), k = shape(key), out = shape(node.output)
        guard q.count == 3, k.count == 3, shape(value) == k, q[0] == k[0], q[2] == k[2], out == q else { return nil }
        // Heads from the split of q: [B, H, N, D] or [B H, N, D].
        let split = shape(queryHeads)
        let width = q[2], headWidth = split[split.count - 1]
        guard headWidth > 0, width % headWidth == 0 else { return nil }
        let heads = width / headWidth
        let headsFirst = [Axis.batch, Axis.head, Axis.token, Axis.depth]
        guard layout(queryChain, from: q, order: headsFirst, heads: heads),
              layout(keyChain, from: k, order: [Axis.batch, Axis.head, Axis.depth, Axis.token], heads: heads),
              layout(valueChain, from: k, order: headsFirst, heads: heads),
              merges(mergeChain, from: shape(merged), to: out, heads: heads) else { return nil }
        // A q / k norm over each head (3D DiTs) is taken before the split: the same rows, in [B, N, H, D].
        for (norm, chain, source) in [(queryNorm, queryChain, q), (keyNorm, keyChain, k)] {
            if let norm, !layout(Array(chain.prefix(norm.chainBefore)), from: source, order: headsFirst, heads: heads) {
                return nil
            }
        }
        let normedQuery = try queryNorm.map { try normed(query, $0.node, heads: heads) } ?? query
        let normedKey = try keyNorm.map { try normed(key, $0.node, heads: heads) } ?? key
        // The fused kernel scales by 1/sqrt(D); a different scale goes onto q.
        var scaledQuery = normedQuery
        let expected = 1 / Float(headWidth).squareRoot()
        if abs(scale - expected) > 1e-6 * expected {
            scaledQuery = emit(.scale(scale / expected), [query], like: query, name: "attention_scale")
        }
        return emit(.attention(heads: heads), [scaledQuery, normedKey, value], like: node.output, name: "attention")
    }

    /// `layoutChain(from:)`, also walking through one rms_norm of the head width: the
    /// chain without it, and the norm with the number of chain nodes before it.
    private func normedLayoutChain(from value: ValueID) -> (ValueID, [Node], (node: Node, chainBefore: Int)?) {
        let (afterNorm, chainAfter) = layoutChain(from: value)
        guard let norm = interior(afterNorm), case .rmsNorm = norm.operation, let input = norm.inputs[0] else {
            return (afterNorm, chainAfter, nil)
        }
        let (source, chainBefore) = layoutChain(from: input)
        guard !chainBefore.isEmpty else { return (afterNorm, chainAfter, nil) }
        return (source, chainBefore + chainAfter, (norm, chainBefore.count))
    }

    /// `norm` applied to the [B, N, H D] source of its head split: over each head's D values.
    private mutating func normed(_ source: ValueID, _ norm: Node, heads: Int) throws -> ValueID {
        let s = shape(source)
        let split = result.appendValue(ValueInfo(shape: [s[0], s[1], heads, s[2] / heads], dtype: .float32,
                                                 origin: .node(result.nodes.count)))
        append(Node(operation: .reshape, inputs: [source], output: split))
        let normalized = emit(norm.operation, [split] + norm.inputs.dropFirst(), like: split, name: "attention_norm")
        let merged = result.appendValue(ValueInfo(shape: s, dtype: .float32, origin: .node(result.nodes.count)))
        append(Node(operation: .reshape, inputs: [normalized], output: merged))
        return merged
    }

    private func isLayout(_ node: Node) -> Bool {
        switch node.operation {
        case .reshape, .transpose: true
        default: false
        }
    }

    /// (inner, factor) when `node` multiplies or divides by a scalar constant.
    private func scaledBy(_ node: Node) -> (ValueID?, Float)? {
        switch node.operation {
        case .binary(.multiply):
            if let factor = scalar(node.inputs[1]) { return (node.inputs[0], factor) }
            if let factor = scalar(node.inputs[0]) { return (node.inputs[1], factor) }
        case .binary(.divide):
            if let divisor = scalar(node.inputs[1]), divisor != 0 { return (node.inputs[0], 1 / divisor) }
        default: break
        }
        return nil
    }

    /// Walks back from `value` through single-reader reshapes and transposes:
    /// the source value and the chain from it, in order.
    private func layoutChain(from value: ValueID) -> (ValueID, [Node]) {
        var chain: [Node] = []
        var current = value
        while let node = interior(current), isLayout(node), let input = node.inputs[0] {
            chain.insert(node, at: 0)
            current = input
        }
        return (current, chain)
    }

    /// The chain ending at `node` (which may have other readers: it is replaced).
    private func layoutChain(ending node: Node) -> (ValueID, [Node]) {
        guard let input = node.inputs[0] else { return (node.output, []) }
        let (source, chain) = layoutChain(from: input)
        return (source, chain + [node])
    }

    /// Axes of a head layout: batch, token, head, within-head.
    private enum Axis { static let batch = 0, token = 1, head = 2, depth = 3 }

    /// Whether the chain takes [B, N, H D] to the head layout whose axes are `order`
    /// ([B, H, N, D] for q and v, [B, H, D, N] for kᵀ), or that with B and H merged:
    /// checked on the element indices.
    private func layout(_ chain: [Node], from source: [Int], order: [Int], heads: Int) -> Bool {
        guard let last = chain.last else { return false }
        let (batch, tokens, width) = (source[0], source[1], source[2]), headWidth = width / heads
        let sizes = [batch, tokens, heads, headWidth]
        let targetShape = order.map { sizes[$0] }
        let resultShape = shape(last.output)
        guard resultShape == targetShape || resultShape == [batch * heads] + Array(targetShape.dropFirst(2)),
              let actual = applyChain(chain, to: source) else { return false }
        // Source index of each target position, in the target's row-major order.
        var coordinates = [0, 0, 0, 0]
        var position = 0
        for first in 0..<targetShape[0] {
            coordinates[order[0]] = first
            for second in 0..<targetShape[1] {
                coordinates[order[1]] = second
                for third in 0..<targetShape[2] {
                    coordinates[order[2]] = third
                    for fourth in 0..<targetShape[3] {
                        coordinates[order[3]] = fourth
                        let expected = (coordinates[0] * tokens + coordinates[1]) * width + coordinates[2] * headWidth
                            + coordinates[3]
                        if actual[position] != Int32(truncatingIfNeeded: expected) { return false }
                        position += 1
                    }
                }
            }
        }
        return true
    }

    /// Whether the chain takes [B, H, N, D] (or [B H, N, D]) back to [B, N, H D].
    private func merges(_ chain: [Node], from source: [Int], to target: [Int], heads: Int) -> Bool {
        let (batch, tokens, width) = (target[0], target[1], target[2]), headWidth = width / heads
        guard source.reduce(1, *) == batch * tokens * width, source.last == headWidth,
              let actual = applyChain(chain, to: source) else { return false }
        var position = 0
        for b in 0..<batch { for n in 0..<tokens { for h in 0..<heads { for d in 0..<headWidth {
            if actual[position] != Int32(truncatingIfNeeded: ((b * heads + h) * tokens + n) * headWidth + d) { return false }
            position += 1
        } } } }
        return true
    }

    /// The element indices of a tensor of `shape` after the chain's reshapes and
    /// transposes (int32: fewer bytes to move; nil for a tensor past 2^31 elements).
    private func applyChain(_ chain: [Node], to shape: [Int]) -> [Int32]? {
        let count = shape.reduce(1, *)
        guard count < Int(Int32.max) else { return nil }
        var current = (0..<Int32(count)).map { $0 }
        var scratch = [Int32](repeating: 0, count: count)
        var currentShape = shape
        for node in chain {
            switch node.operation {
            case .transpose(let permutation):
                let strides = BroadcastWalk.contiguousStrides(currentShape)
                let outputShape = permutation.map { currentShape[$0] }
                let walk = BroadcastWalk(shape: outputShape, strides: [BroadcastWalk.contiguousStrides(outputShape),
                                                                       permutation.map { strides[$0] }])
                current.withUnsafeBufferPointer { source in
                    scratch.withUnsafeMutableBufferPointer { target in
                        walk.copy(source.baseAddress!, to: target.baseAddress!)
                    }
                }
                swap(&current, &scratch)
                currentShape = outputShape
            default:
                currentShape = self.shape(node.output)  // a reshape keeps the order
            }
        }
        return current
    }
}

