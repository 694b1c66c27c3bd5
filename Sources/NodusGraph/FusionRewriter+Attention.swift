#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// The attention pattern: head split, scaled q kᵀ, softmax, · v, head merge.
extension FusionRewriter {

    /// The head merge (a reshape or transpose chain) of softmax(q kᵀ s + causal mask) v with
    /// q, k and v split into heads by layout chains -> attention.
    mutating func attention(_ node: Node) throws -> ValueID? {
        guard isLayout(node) else { return nil }
        let (merged, mergeChain) = layoutChain(ending: node)
        guard let product = interior(merged), case .matMul = product.operation, shape(merged).count >= 3,
              let probabilities = softmaxProbabilities(product.inputs[0]),
              case .softmax(let axis) = probabilities.operation,
              axis == shape(probabilities.output).count - 1 else { return nil }
        var scale: Float = 1
        var scores = probabilities.inputs[0]
        // A constant causal mask added to the scores (CLIP's text encoder) -> the causal kernel.
        var causal = false
        if let masked = interior(scores), let inner = causallyMasked(masked) { scores = inner; causal = true }
        if let scaled = interior(scores), let (inner, factor) = scaledBy(scaled) { scores = inner; scale *= factor }
        guard let qk = interior(scores), case .matMul = qk.operation else { return nil }
        var queryHeads = qk.inputs[0], keyHeads = qk.inputs[1]
        if let scaled = interior(queryHeads), let (inner, factor) = scaledBy(scaled) { queryHeads = inner; scale *= factor }
        if let scaled = interior(keyHeads), let (inner, factor) = scaledBy(scaled) { keyHeads = inner; scale *= factor }
        guard let queryHeads, let keyHeads, let valueHeads = product.inputs[1] else { return nil }
        let match = Match(output: node.output, merged: merged, mergeChain: mergeChain, queryHeads: queryHeads,
                          keyHeads: keyHeads, valueHeads: valueHeads, scale: scale, causal: causal)
        if let fused = try chainedAttention(match) { return fused }
        return fallbacks ? headLayoutAttention(match) : nil
    }

    /// softmax(q kᵀ s) v found from its head merge: the heads of q, kᵀ and v, and the merge.
    private struct Match {
        let output: ValueID
        let merged: ValueID
        let mergeChain: [Node]
        let queryHeads: ValueID, keyHeads: ValueID, valueHeads: ValueID
        let scale: Float
        let causal: Bool
    }

    /// q, k and v split into heads by layout chains from [B, N, H D] values (a q / k norm over each
    /// head may sit in the chain): the fused kernel reads those values themselves.
    private mutating func chainedAttention(_ match: Match) throws -> ValueID? {
        let (query, queryChain, queryNorm) = normedLayoutChain(from: match.queryHeads)
        let (key, keyChain, keyNorm) = normedLayoutChain(from: match.keyHeads)
        let (value, valueChain) = layoutChain(from: match.valueHeads)
        let q = shape(query), k = shape(key), out = shape(match.output)
        guard q.count == 3, k.count == 3, shape(value) == k, q[0] == k[0], q[2] == k[2], out == q else { return nil }
        // Heads from the split of q: [B, H, N, D] or [B H, N, D].
        let split = shape(match.queryHeads)
        let width = q[2], headWidth = split[split.count - 1]
        guard headWidth > 0, width % headWidth == 0 else { return nil }
        let heads = width / headWidth
        let headsFirst = [Axis.batch, Axis.head, Axis.token, Axis.depth]
        guard layout(queryChain, from: q, order: headsFirst, heads: heads),
              layout(keyChain, from: k, order: [Axis.batch, Axis.head, Axis.depth, Axis.token], heads: heads),
              layout(valueChain, from: k, order: headsFirst, heads: heads),
              merges(match.mergeChain, from: shape(match.merged), to: out, heads: heads) else { return nil }
        // A q / k norm over each head (3D DiTs) is taken before the split: the same rows, in [B, N, H, D].
        for (norm, chain, source) in [(queryNorm, queryChain, q), (keyNorm, keyChain, k)] {
            if let norm, !layout(Array(chain.prefix(norm.chainBefore)), from: source, order: headsFirst, heads: heads) {
                return nil
            }
        }
        let normedQuery = try queryNorm.map { try normed(query, $0.node, heads: heads) } ?? query
        let normedKey = try keyNorm.map { try normed(key, $0.node, heads: heads) } ?? key
        return emitAttention(match, query: normedQuery, key: normedKey, value: value, heads: heads, headWidth: headWidth)
    }

    /// q [B, H, N, D], kᵀ [B, H, D, M] and v [B, H, M, D] that no layout chain leads back to a
    /// [B, N, H D] value (q and k rotated by RoPE in their head layout, say): each is moved to
    /// [B, N, H D] by a transpose and a reshape, which costs a pass over q, k and v, not N x M.
    private mutating func headLayoutAttention(_ match: Match) -> ValueID? {
        let q = shape(match.queryHeads), k = shape(match.keyHeads), v = shape(match.valueHeads)
        let out = shape(match.output)
        guard q.count == 4, k.count == 4, v.count == 4, k[0] == q[0], k[1] == q[1], k[2] == q[3],
              v == [q[0], q[1], k[3], q[3]], out == [q[0], q[2], q[1] * q[3]],
              merges(match.mergeChain, from: shape(match.merged), to: out, heads: q[1]) else { return nil }
        let query = tokenMajor(match.queryHeads, permutation: [0, 2, 1, 3])
        let key = tokenMajor(match.keyHeads, permutation: [0, 3, 1, 2])
        let value = tokenMajor(match.valueHeads, permutation: [0, 2, 1, 3])
        return emitAttention(match, query: query, key: key, value: value, heads: q[1], headWidth: q[3])
    }

    /// Heads [B, H, N, D] (or [B, H, D, N] with `permutation` [0, 3, 1, 2]) as [B, N, H D].
    private mutating func tokenMajor(_ heads: ValueID, permutation: [Int]) -> ValueID {
        let s = shape(heads)
        let moved = permutation.map { s[$0] }
        let transposed = result.appendValue(ValueInfo(shape: moved, dtype: .float32, origin: .node(result.nodes.count)))
        append(Node(operation: .transpose(permutation: permutation), inputs: [heads], output: transposed))
        let merged = result.appendValue(ValueInfo(shape: [moved[0], moved[1], moved[2] * moved[3]], dtype: .float32,
                                                  origin: .node(result.nodes.count)))
        append(Node(operation: .reshape, inputs: [transposed], output: merged))
        return merged
    }

    /// The fused attention node; a scale other than the kernel's 1/sqrt(D) goes onto q.
    private mutating func emitAttention(_ match: Match, query: ValueID, key: ValueID, value: ValueID, heads: Int,
                                        headWidth: Int) -> ValueID {
        var scaledQuery = query
        let expected = 1 / Float(headWidth).squareRoot()
        if abs(match.scale - expected) > 1e-6 * expected {
            scaledQuery = emit(.scale(match.scale / expected), [query], like: query, name: "attention_scale")
        }
        return emit(.attention(heads: heads, causal: match.causal), [scaledQuery, key, value], like: match.output,
                    name: "attention")
    }

    /// The softmax node behind `value`: its producer, or through `where(isnan(p), 0, p)`, the guard
    /// the dynamo exporter writes after a masked softmax (a no-op here: every row of a causal or
    /// unmasked softmax has a finite score, so no row is NaN).
    private func softmaxProbabilities(_ value: ValueID?) -> Node? {
        guard let node = interior(value) else { return nil }
        guard case .select = node.operation else { return node }
        guard let probabilities = node.inputs[2], scalar(node.inputs[1]) == 0,
              let negation = interior(node.inputs[0]), case .map(.not) = negation.operation,
              let equality = interior(negation.inputs[0]), case .binary(.equal) = equality.operation,
              equality.inputs[0] == probabilities, equality.inputs[1] == probabilities,
              probabilities.index < uses.count, uses[probabilities.index] == 3,  // the guard's three reads
              let softmax = producer(probabilities), case .softmax = softmax.operation else { return nil }
        return softmax
    }

    /// The scores inside `scores + mask` when the mask is a constant causal one: 0 where key j <= query i,
    /// and -inf or a float32 minimum (below -1e30: e^x is 0) above, the same for every leading index.
    private func causallyMasked(_ node: Node) -> ValueID? {
        guard case .binary(.add) = node.operation else { return nil }
        let target = shape(node.output)
        guard target.count >= 2, target[target.count - 1] == target[target.count - 2] else { return nil }
        for (scores, mask) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let scores, shape(scores) == target, let values = tensor(mask), values.dtype == .float32,
                  values.rank >= 2, Array(values.shape.suffix(2)) == Array(target.suffix(2)) else { continue }
            let tokens = target[target.count - 1]
            let floats = values.floats
            let isCausal = (0..<(values.elementCount / (tokens * tokens))).allSatisfy { slice in
                (0..<tokens).allSatisfy { i in
                    (0..<tokens).allSatisfy { j in
                        let value = floats[(slice * tokens + i) * tokens + j]
                        return j <= i ? value == 0 : value < -1e30
                    }
                }
            }
            if isCausal { return scores }
        }
        return nil
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
    /// checked on the element indices, once per distinct question.
    private mutating func layout(_ chain: [Node], from source: [Int], order: [Int], heads: Int) -> Bool {
        let question = LayoutQuestion(steps: chain.map(layoutStep), source: source, target: order, heads: heads,
                                      merging: false)
        if let known = layoutVerdicts[question] { return known }
        let verdict = computeLayout(chain, from: source, order: order, heads: heads)
        layoutVerdicts[question] = verdict
        return verdict
    }

    /// Whether the chain takes [B, H, N, D] (or [B H, N, D]) back to [B, N, H D], once per distinct question.
    private mutating func merges(_ chain: [Node], from source: [Int], to target: [Int], heads: Int) -> Bool {
        let question = LayoutQuestion(steps: chain.map(layoutStep), source: source, target: target, heads: heads,
                                      merging: true)
        if let known = layoutVerdicts[question] { return known }
        let verdict = computeMerges(chain, from: source, to: target, heads: heads)
        layoutVerdicts[question] = verdict
        return verdict
    }

    private func layoutStep(_ node: Node) -> LayoutQuestion.Step {
        if case .transpose(let permutation) = node.operation { return .transpose(permutation) }
        return .reshape(shape(node.output))
    }

    private func computeLayout(_ chain: [Node], from source: [Int], order: [Int], heads: Int) -> Bool {
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

    private func computeMerges(_ chain: [Node], from source: [Int], to target: [Int], heads: Int) -> Bool {
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
