import NodusCore

/// Writes a graph op by op, inferring and checking every shape. Model builders
/// (DiT, VAE, ...) call these; a shape mismatch throws `NodusError.shape`
/// naming the values involved.
public struct GraphBuilder {
    public private(set) var graph = Graph()

    public init() {}

    public func shape(of value: ValueID) -> [Int] { graph[value].shape }

    // MARK: Values

    public mutating func input(_ name: String, shape: [Int], dtype: DType = .float32) -> ValueID {
        let id = addValue(ValueInfo(shape: shape, dtype: dtype, origin: .input(name: name)))
        graph.inputs[name] = id
        return id
    }

    /// A weight (float32) used by the graph, under its source name.
    public mutating func constant(_ name: String, _ tensor: Tensor) throws -> ValueID {
        guard tensor.dtype == .float32 else {
            throw NodusError(.internal, "constant '\(name)' must be float32, not \(tensor.dtype.name)")
        }
        return addValue(ValueInfo(shape: tensor.shape, dtype: .float32, origin: .constant(name: name, tensor: tensor)))
    }

    /// Makes `value` the graph's only output.
    public mutating func setOutput(_ value: ValueID, name: String = "sample") {
        graph.outputs = [GraphOutput(name: name, value: value)]
    }

    /// Appends `value` to the graph's outputs.
    public mutating func addOutput(_ value: ValueID, name: String) {
        graph.outputs.append(GraphOutput(name: name, value: value))
    }

    public func finish() -> Graph { graph }

    // MARK: Operations

    public mutating func linear(_ x: ValueID, weight: ValueID, bias: ValueID?,
                                layout: WeightLayout = .outputsByInputs) throws -> ValueID {
        let xShape = shape(of: x), wShape = shape(of: weight)
        guard wShape.count == 2, let inFeatures = xShape.last, layout.features(of: wShape).inFeatures == inFeatures else {
            throw mismatch("linear", "input \(xShape) does not fit weight \(describe(weight)) \(wShape)")
        }
        let outFeatures = layout.features(of: wShape).outFeatures
        if let bias, shape(of: bias) != [outFeatures] {
            throw mismatch("linear", "bias \(describe(bias)) has shape \(shape(of: bias)), expected [\(outFeatures)]")
        }
        return append(.linear(layout), [x, weight, bias], shape: Array(xShape.dropLast()) + [outFeatures])
    }

    public mutating func layerNorm(_ x: ValueID, eps: Float, weight: ValueID? = nil, bias: ValueID? = nil) throws -> ValueID {
        let width = shape(of: x).last ?? 0
        for parameter in [weight, bias].compactMap({ $0 }) where shape(of: parameter) != [width] {
            throw mismatch("layer_norm", "\(describe(parameter)) has shape \(shape(of: parameter)), expected [\(width)]")
        }
        return append(.layerNorm(eps: eps), [x, weight, bias], shape: shape(of: x))
    }

    public mutating func rmsNorm(_ x: ValueID, eps: Float, weight: ValueID? = nil) throws -> ValueID {
        let width = shape(of: x).last ?? 0
        if let weight, shape(of: weight) != [width] {
            throw mismatch("rms_norm", "\(describe(weight)) has shape \(shape(of: weight)), expected [\(width)]")
        }
        return append(.rmsNorm(eps: eps), [x, weight], shape: shape(of: x))
    }

    /// Depthwise "same" convolution of tokens x [B, D H W, C] on their grid (D, H, W), channels-last.
    public mutating func tokenDepthwiseConvolution(_ x: ValueID, weight: ValueID, bias: ValueID?,
                                                   grid: [Int]) throws -> ValueID {
        let s = shape(of: x), w = shape(of: weight)
        guard s.count == 3, grid.count == 3, s[1] == grid.reduce(1, *), w.count == 5, w[0] == s[2], w[1] == 1,
              w[2...].allSatisfy({ $0 % 2 == 1 }), bias.map({ shape(of: $0) == [s[2]] }) ?? true else {
            throw mismatch("token_depthwise_convolution", "x \(s) on grid \(grid) does not fit weight \(w)")
        }
        return append(.tokenDepthwiseConvolution(grid: grid), [x, weight, bias], shape: s)
    }

    /// Rotary embedding of x [B, N, heads x D] by `angles` [N, D] (cos then sin halves).
    public mutating func rotaryEmbedding(_ x: ValueID, angles: ValueID, heads: Int) throws -> ValueID {
        let s = shape(of: x), table = shape(of: angles)
        guard s.count == 3, heads > 0, s[2] % heads == 0, (s[2] / heads) % 2 == 0, table == [s[1], s[2] / heads] else {
            throw mismatch("rotary_embedding", "x \(s) with \(heads) heads does not fit angles \(table) ([tokens, head width], head width even)")
        }
        return append(.rotaryEmbedding(heads: heads), [x, angles], shape: s)
    }

    public mutating func modulatedLayerNorm(_ x: ValueID, modulation: ValueID, scaleColumn: Int, shiftColumn: Int,
                                            eps: Float) throws -> ValueID {
        try checkModulation(x, modulation, columns: [scaleColumn, shiftColumn], op: "modulated_layer_norm")
        return append(.modulatedLayerNorm(eps: eps, scaleColumn: scaleColumn, shiftColumn: shiftColumn),
                      [x, modulation], shape: shape(of: x))
    }

    public mutating func gatedResidual(_ residual: ValueID, update: ValueID, modulation: ValueID,
                                       gateColumn: Int) throws -> ValueID {
        guard shape(of: residual) == shape(of: update) else {
            throw mismatch("gated_residual", "residual \(shape(of: residual)) and update \(shape(of: update)) differ")
        }
        try checkModulation(residual, modulation, columns: [gateColumn], op: "gated_residual")
        return append(.gatedResidual(gateColumn: gateColumn), [residual, update, modulation], shape: shape(of: residual))
    }

    public mutating func attention(query: ValueID, key: ValueID, value: ValueID, heads: Int,
                                   causal: Bool = false) throws -> ValueID {
        let q = shape(of: query), k = shape(of: key), v = shape(of: value)
        guard q.count == 3, k.count == 3, k == v, q[0] == k[0], q[2] == k[2], heads > 0, q[2] % heads == 0 else {
            throw mismatch("attention", "q \(q), k \(k), v \(v) with \(heads) heads")
        }
        return append(.attention(heads: heads, causal: causal), [query, key, value], shape: q)
    }

    public mutating func unary(_ operation: Operation, _ x: ValueID) -> ValueID {
        append(operation, [x], shape: shape(of: x))
    }

    public mutating func add(_ a: ValueID, _ b: ValueID) throws -> ValueID {
        guard shape(of: a) == shape(of: b) else {
            throw mismatch("add", "\(shape(of: a)) and \(shape(of: b)) differ")
        }
        return append(.add, [a, b], shape: shape(of: a))
    }

    /// a [B, rest...] + b [rest...].
    public mutating func addBroadcast(_ a: ValueID, _ b: ValueID) throws -> ValueID {
        guard Array(shape(of: a).dropFirst()) == shape(of: b) else {
            throw mismatch("add_broadcast", "\(shape(of: b)) does not broadcast over \(shape(of: a))")
        }
        return append(.addBroadcast, [a, b], shape: shape(of: a))
    }

    public mutating func timestepEmbedding(_ timesteps: ValueID, dim: Int, flipSinToCos: Bool,
                                           downscaleFreqShift: Float, scale: Float = 1,
                                           maxPeriod: Float = 10_000) throws -> ValueID {
        guard shape(of: timesteps).count == 1, graph[timesteps].dtype == .float32 else {
            throw mismatch("timestep_embedding", "timesteps must be float32 [B], found \(shape(of: timesteps))")
        }
        return append(.timestepEmbedding(dim: dim, flipSinToCos: flipSinToCos, downscaleFreqShift: downscaleFreqShift,
                                         scale: scale, maxPeriod: maxPeriod),
                      [timesteps], shape: [shape(of: timesteps)[0], dim])
    }

    public mutating func embeddingLookup(table: ValueID, indices: ValueID) throws -> ValueID {
        let tableShape = shape(of: table)
        guard tableShape.count == 2, shape(of: indices).count == 1, graph[indices].dtype == .int64 else {
            throw mismatch("embedding_lookup", "table \(tableShape), indices \(shape(of: indices))")
        }
        return append(.embeddingLookup, [table, indices], shape: [shape(of: indices)[0], tableShape[1]])
    }

    public mutating func patchify(_ x: ValueID, patch: Int) throws -> ValueID {
        let s = shape(of: x)
        guard s.count == 4, patch > 0, s[2] % patch == 0, s[3] % patch == 0 else {
            throw mismatch("patchify", "input \(s) is not divisible into \(patch)x\(patch) patches")
        }
        return append(.patchify(patch: patch), [x], shape: [s[0], (s[2] / patch) * (s[3] / patch), s[1] * patch * patch])
    }

    public mutating func unpatchify(_ x: ValueID, patch: Int, rows: Int, columns: Int) throws -> ValueID {
        let s = shape(of: x)
        guard s.count == 3, s[1] == rows * columns, s[2] % (patch * patch) == 0 else {
            throw mismatch("unpatchify", "input \(s) is not \(rows)x\(columns) tokens of \(patch)x\(patch) patches")
        }
        let channels = s[2] / (patch * patch)
        return append(.unpatchify(patch: patch, rows: rows, columns: columns), [x],
                      shape: [s[0], channels, rows * patch, columns * patch])
    }

    public mutating func conv2d(_ x: ValueID, weight: ValueID, bias: ValueID?, stride: Int = 1, padding: Int) throws -> ValueID {
        try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, trailingPadding: padding)
    }

    public mutating func groupNorm(_ x: ValueID, groups: Int, eps: Float, weight: ValueID?, bias: ValueID?,
                                   silu: Bool) throws -> ValueID {
        let s = shape(of: x)
        guard s.count >= 2, groups > 0, s[1] % groups == 0 else {
            throw mismatch("group_norm", "\(s[safe: 1] ?? 0) channels are not divisible into \(groups) groups")
        }
        for parameter in [weight, bias].compactMap({ $0 }) where shape(of: parameter) != [s[1]] {
            throw mismatch("group_norm", "\(describe(parameter)) has shape \(shape(of: parameter)), expected [\(s[1])]")
        }
        return append(.groupNorm(groups: groups, eps: eps, silu: silu), [x, weight, bias], shape: s)
    }

    public mutating func upsampleNearest2x(_ x: ValueID) throws -> ValueID {
        let s = shape(of: x)
        guard s.count == 4 else { throw mismatch("upsample_nearest_2x", "input \(s) is not NCHW") }
        return append(.upsampleNearest2x, [x], shape: [s[0], s[1], s[2] * 2, s[3] * 2])
    }

    /// Nearest-neighbour resize to `height` x `width` (the 2x kernel when it is exactly twice).
    public mutating func resizeNearest(_ x: ValueID, height: Int, width: Int) throws -> ValueID {
        let s = shape(of: x)
        guard s.count == 4, height > 0, width > 0 else {
            throw mismatch("resize_nearest", "input \(s) to \(height)x\(width)")
        }
        if height == 2 * s[2] && width == 2 * s[3] { return try upsampleNearest2x(x) }
        return append(.resizeNearest(height: height, width: width), [x], shape: [s[0], s[1], height, width])
    }

    public mutating func channelsToTokens(_ x: ValueID) throws -> ValueID {
        let s = shape(of: x)
        guard s.count == 4 else { throw mismatch("channels_to_tokens", "input \(s) is not NCHW") }
        return append(.channelsToTokens, [x], shape: [s[0], s[2] * s[3], s[1]])
    }

    public mutating func tokensToChannels(_ x: ValueID, height: Int, width: Int) throws -> ValueID {
        let s = shape(of: x)
        guard s.count == 3, s[1] == height * width else {
            throw mismatch("tokens_to_channels", "input \(s) is not \(height)x\(width) tokens")
        }
        return append(.tokensToChannels(height: height, width: width), [x], shape: [s[0], s[2], height, width])
    }

    public mutating func concatChannels(_ parts: [ValueID]) throws -> ValueID {
        guard let first = parts.first else { throw mismatch("concat_channels", "no inputs") }
        let s = shape(of: first)
        var channels = 0
        for part in parts {
            let p = shape(of: part)
            guard p.count == s.count, p.count >= 2, p[0] == s[0], Array(p.dropFirst(2)) == Array(s.dropFirst(2)) else {
                throw mismatch("concat_channels", "\(p) does not fit \(s)")
            }
            channels += p[1]
        }
        var result = s
        result[1] = channels
        return append(.concatChannels, parts, shape: result)
    }

    /// x [..., 2D] -> x[..., :D] * GELU(x[..., D:]).
    public mutating func geglu(_ x: ValueID) throws -> ValueID {
        let s = shape(of: x)
        guard let width = s.last, width % 2 == 0 else { throw mismatch("geglu", "last dimension of \(s) is not even") }
        return append(.geglu, [x], shape: Array(s.dropLast()) + [width / 2])
    }

    /// x [B, C, ...] + values [B, C] broadcast over each plane.
    public mutating func addPerChannel(_ x: ValueID, _ values: ValueID) throws -> ValueID {
        let s = shape(of: x)
        guard s.count >= 2, shape(of: values) == [s[0], s[1]] else {
            throw mismatch("add_per_channel", "\(shape(of: values)) is not [batch, channels] of \(s)")
        }
        return append(.addPerChannel, [x, values], shape: s)
    }

    // MARK: Asymmetric padding

    /// A convolution zero-padded by `padding` before and `trailingPadding` after
    /// each spatial axis (`conv2d` when they are equal).
    public mutating func conv2d(_ x: ValueID, weight: ValueID, bias: ValueID?, stride: Int, padding: Int,
                                trailingPadding: Int) throws -> ValueID {
        let s = shape(of: x), w = shape(of: weight)
        let padded = padding + trailingPadding
        guard s.count == 4, w.count == 4, w[1] == s[1], stride > 0, padding >= 0, trailingPadding >= 0,
              s[2] + padded >= w[2], s[3] + padded >= w[3] else {
            throw mismatch("conv2d", "input \(s) does not fit weight \(describe(weight)) \(w)")
        }
        if let bias, shape(of: bias) != [w[0]] {
            throw mismatch("conv2d", "bias \(describe(bias)) has shape \(shape(of: bias)), expected [\(w[0])]")
        }
        let height = (s[2] + padded - w[2]) / stride + 1
        let width = (s[3] + padded - w[3]) / stride + 1
        let operation: Operation = padding == trailingPadding
            ? .conv2d(stride: stride, padding: padding)
            : .conv2dAsymmetric(stride: stride, padding: padding, trailingPadding: trailingPadding)
        return append(operation, [x, weight, bias], shape: [s[0], w[0], height, width])
    }

    // MARK: Helpers

    mutating func addValue(_ info: ValueInfo) -> ValueID {
        graph.values.append(info)
        return ValueID(index: graph.values.count - 1)
    }

    mutating func append(_ operation: Operation, _ inputs: [ValueID?], shape: [Int], dtype: DType = .float32) -> ValueID {
        let output = addValue(ValueInfo(shape: shape, dtype: dtype, origin: .node(graph.nodes.count)))
        graph.nodes.append(Node(operation: operation, inputs: inputs, output: output))
        return output
    }

    private func checkModulation(_ x: ValueID, _ modulation: ValueID, columns: [Int], op: String) throws {
        let s = shape(of: x), m = shape(of: modulation)
        guard s.count == 3, m.count == 2, m[0] == s[0], columns.allSatisfy({ $0 >= 0 && $0 + s[2] <= m[1] }) else {
            throw mismatch(op, "modulation \(m) does not fit input \(s)")
        }
    }

    func describe(_ value: ValueID) -> String { graph.describe(value) }

    func mismatch(_ op: String, _ detail: String) -> NodusError {
        NodusError.shape("\(op): \(detail)")
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
