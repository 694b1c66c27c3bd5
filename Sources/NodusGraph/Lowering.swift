import NodusCore

/// Binds each node to a kernel with the buffer addresses of the memory plan.
struct Lowering {
    let graph: Graph
    let plan: MemoryPlan
    let arena: UnsafeMutableRawPointer
    let packedWeights: PackedWeights?
    var indexLimits: [(input: String, rows: Int, table: String)] = []

    init(graph: Graph, plan: MemoryPlan, arena: UnsafeMutableRawPointer, packedWeights: PackedWeights?) {
        self.graph = graph
        self.plan = plan
        self.arena = arena
        self.packedWeights = packedWeights
    }

    func address(_ value: ValueID) throws -> UnsafeMutableRawPointer {
        switch graph[value].origin {
        case .constant(_, let tensor):
            return tensor.bytes
        case .input, .node:
            guard let offset = plan.offsets[value.index] else {
                throw NodusError(.internal, "value \(value) has no buffer")
            }
            return arena + offset
        }
    }

    func floats(_ value: ValueID) throws -> UnsafeMutablePointer<Float> {
        try address(value).assumingMemoryBound(to: Float.self)
    }

    /// The packed form of a weight constant, when the plan has packed weights and it is one.
    private func packed(_ value: ValueID, _ pack: (PackedWeights, Tensor) throws -> UnsafePointer<Float>?)
        throws -> UnsafePointer<Float>? {
        guard let packedWeights, case .constant(_, let tensor) = graph[value].origin else { return nil }
        return try pack(packedWeights, tensor)
    }

    /// The bf16 form of a weight constant, when the plan computes in bf16 and it is one.
    private func bfloat16(_ value: ValueID, role: PackedBFloat16Weight.Role,
                          layout: WeightLayout = .outputsByInputs) throws -> PackedBFloat16Weight? {
        guard let packedWeights, case .constant(_, let tensor) = graph[value].origin else { return nil }
        return try packedWeights.bfloat16(tensor, role: role, layout: layout)
    }

    func optionalFloats(_ value: ValueID?) throws -> UnsafePointer<Float>? {
        guard let value else { return nil }
        return UnsafePointer(try floats(value))
    }

    mutating func kernel(for node: Node) throws -> any Kernel {
        let inputs = node.inputs
        func input(_ index: Int) throws -> ValueID {
            guard index < inputs.count, let value = inputs[index] else {
                throw NodusError(.internal, "\(node.operation.name) is missing input \(index)")
            }
            return value
        }
        func shape(_ index: Int) throws -> [Int] { graph[try input(index)].shape }
        let output = try floats(node.output)
        let outputShape = graph[node.output].shape
        let outputCount = outputShape.reduce(1, *)

        switch node.operation {
        case .linear(let layout):
            return try linear(x: input(0), weight: input(1), bias: inputs[safe: 2] ?? nil, layout: layout,
                              activation: nil, name: node.operation.name, outputCount: outputCount, output: output)
        case .activatedLinear(let layout, let activation):
            return try linear(x: input(0), weight: input(1), bias: inputs[safe: 2] ?? nil, layout: layout,
                              activation: activation, name: node.operation.name, outputCount: outputCount,
                              output: output)
        case .rmsNorm(let eps):
            let width = outputShape.last ?? 1
            return RMSNormStep(input: try floats(input(0)), output: output, weight: try optionalFloats(inputs[safe: 1] ?? nil),
                               rows: outputCount / max(width, 1), width: width, eps: eps)
        case .layerNorm(let eps):
            let width = outputShape.last ?? 1
            return LayerNormStep(input: try floats(input(0)), output: output,
                                 weight: try optionalFloats(inputs[safe: 1] ?? nil),
                                 bias: try optionalFloats(inputs[safe: 2] ?? nil),
                                 rows: outputCount / width, width: width, eps: eps)
        case .modulatedLayerNorm(let eps, let scaleColumn, let shiftColumn):
            let modulation = try floats(input(1))
            return ModulatedLayerNormStep(input: try floats(input(0)), output: output, scale: modulation + scaleColumn,
                                          shift: modulation + shiftColumn, modulationStride: try shape(1)[1],
                                          batch: outputShape[0], tokens: outputShape[1], width: outputShape[2], eps: eps)
        case .gatedResidual(let gateColumn):
            return GatedResidualStep(residual: try floats(input(0)), update: try floats(input(1)),
                                     gate: try floats(input(2)) + gateColumn, gateStride: try shape(2)[1],
                                     output: output, batch: outputShape[0], tokens: outputShape[1], width: outputShape[2])
        case .attention(let heads, let causal):
            let q = try shape(0), k = try shape(1)
            let attentionShape = AttentionShape(batch: q[0], queryTokens: q[1], keyTokens: k[1], heads: heads,
                                                headWidth: q[2] / heads, causal: causal)
            return AttentionStep(shape: attentionShape, query: try floats(input(0)), key: try floats(input(1)),
                                 value: try floats(input(2)), output: output)
        case .geluTanh:
            return ActivationStep(function: .geluTanh, input: try floats(input(0)), output: output, count: outputCount)
        case .gelu:
            return ActivationStep(function: .gelu, input: try floats(input(0)), output: output, count: outputCount)
        case .silu:
            return ActivationStep(function: .silu, input: try floats(input(0)), output: output, count: outputCount)
        case .quickGELU:
            return ActivationStep(function: .quickGELU, input: try floats(input(0)), output: output, count: outputCount)
        case .tokenDepthwiseConvolution(let grid):
            let weightShape = try shape(1)
            return TokenDepthwiseStep(input: try floats(input(0)), weight: try floats(input(1)),
                                      bias: try optionalFloats(inputs[safe: 2] ?? nil), output: output,
                                      batch: outputShape[0], grid: grid, kernel: Array(weightShape[2...]),
                                      channels: outputShape[2])
        case .rotaryEmbedding(let heads):
            return RotaryEmbeddingStep(input: try floats(input(0)), angles: try floats(input(1)), output: output,
                                       batch: outputShape[0], tokens: outputShape[1], heads: heads,
                                       headWidth: outputShape[2] / heads)
        case .add:
            return AddStep(a: try floats(input(0)), b: try floats(input(1)), output: output, blockCount: outputCount, batch: 1)
        case .addBroadcast:
            let blockCount = try shape(1).reduce(1, *)
            return AddStep(a: try floats(input(0)), b: try floats(input(1)), output: output, blockCount: blockCount,
                           batch: outputCount / max(blockCount, 1))
        case .scale(let factor):
            return ScaleStep(input: try floats(input(0)), output: output, count: outputCount, factor: factor)
        case .timestepEmbedding(let dim, let flip, let shift, let scale, let maxPeriod):
            return TimestepEmbeddingStep(timesteps: try floats(input(0)), output: output, batch: outputShape[0], dim: dim,
                                         flipSinToCos: flip, downscaleFreqShift: shift, scale: scale, maxPeriod: maxPeriod)
        case .embeddingLookup:
            let table = try input(0), indices = try input(1)
            let tableShape = graph[table].shape
            if case .input(let name) = graph[indices].origin, case .constant(let tableName, _) = graph[table].origin {
                indexLimits.append((input: name, rows: tableShape[0], table: tableName))
            } else {
                throw NodusError(.internal, "embedding_lookup needs graph-input indices and a constant table")
            }
            return EmbeddingLookupStep(table: try floats(table), rows: tableShape[0], width: tableShape[1],
                                       indices: try address(indices).assumingMemoryBound(to: Int64.self),
                                       count: outputShape[0], output: output)
        case .patchify(let patch):
            let s = try shape(0)
            return PatchifyStep(input: try floats(input(0)), output: output, batch: s[0], channels: s[1], height: s[2],
                                width: s[3], patch: patch)
        case .unpatchify(let patch, let rows, let columns):
            return UnpatchifyStep(input: try floats(input(0)), output: output, batch: outputShape[0],
                                  channels: outputShape[1], rows: rows, columns: columns, patch: patch)
        case .conv2d(let stride, let padding):
            return try convolution(node, stride: stride, padding: padding, trailingPadding: padding)
        case .groupNorm(let groups, let eps, let silu):
            return GroupNormStep(input: try floats(input(0)), output: output,
                                 weight: try optionalFloats(inputs[safe: 1] ?? nil),
                                 bias: try optionalFloats(inputs[safe: 2] ?? nil), batch: outputShape[0],
                                 channels: outputShape[1], spatial: outputCount / (outputShape[0] * outputShape[1]),
                                 groups: groups, eps: eps, silu: silu)
        case .upsampleNearest2x:
            let s = try shape(0)
            return UpsampleStep(input: try floats(input(0)), output: output, planes: s[0] * s[1], height: s[2], width: s[3])
        case .channelsToTokens:
            let s = try shape(0)
            return TransposeStep(name: "channels_to_tokens", input: try floats(input(0)), output: output, batch: s[0],
                                 rows: s[1], columns: s[2] * s[3])
        case .tokensToChannels:
            let s = try shape(0)
            return TransposeStep(name: "tokens_to_channels", input: try floats(input(0)), output: output, batch: s[0],
                                 rows: s[1], columns: s[2])
        case .lowRankUpdate(let parts, let weights):
            let inShape = try shape(1)
            let inFeatures = inShape.last ?? 0, outFeatures = outputShape.last ?? 0
            let linearOutput = try floats(input(0))
            let bound = try parts.enumerated().map { index, part in
                (down: UnsafePointer(try floats(input(2 + 2 * index))), up: UnsafePointer(try floats(input(3 + 2 * index))),
                 part: part)
            }
            return LowRankStep(linearOutput: linearOutput == output ? nil : UnsafePointer(linearOutput),
                               input: try floats(input(1)), output: output, parts: bound, weights: weights,
                               rows: outputCount / max(outFeatures, 1), inFeatures: inFeatures, outFeatures: outFeatures)
        case .concatChannels:
            let parts = try inputs.map { value -> (pointer: UnsafePointer<Float>, channels: Int) in
                guard let value else { throw NodusError(.internal, "concat_channels has an empty input") }
                return (UnsafePointer(try floats(value)), graph[value].shape[1])
            }
            return ConcatChannelsStep(parts: parts, output: output, batch: outputShape[0],
                                      spatial: outputCount / max(1, outputShape[0] * outputShape[1]))
        case .geglu:
            let width = outputShape.last ?? 1
            return GEGLUStep(input: try floats(input(0)), output: output, rows: outputCount / max(width, 1), width: width)
        case .gegluProjection(let layout):
            let (outFeatures, inFeatures) = layout.features(of: try shape(1))
            let width = outFeatures / 2, rows = outputCount / max(width, 1)
            // `output` stands in for the scratch the chunks are computed into: only row ranges run.
            let projection = try linearProduct(x: input(0), weight: input(1), bias: inputs[safe: 2] ?? nil,
                                               layout: layout, rows: rows, output: output)
            return GEGLUProjectionStep(projection: projection, output: output, rows: rows, inFeatures: inFeatures,
                                       width: width)
        case .addPerChannel:
            let planes = outputShape[0] * outputShape[1]
            return AddPerChannelStep(input: try floats(input(0)), values: try floats(input(1)), output: output,
                                     planes: planes, planeSize: outputCount / max(planes, 1))
        case .conv2dAsymmetric(let stride, let padding, let trailingPadding):
            return try convolution(node, stride: stride, padding: padding, trailingPadding: trailingPadding)
        case .resizeNearest(let height, let width):
            let s = try shape(0)
            return ResizeStep(input: try floats(input(0)), output: output, planes: s[0] * s[1], height: s[2], width: s[3],
                              outHeight: height, outWidth: width)
                case .binary, .map, .select, .matMul, .reshape, .transpose, .slice, .concat, .gather, .expand, .cast, .softmax,
             .reduce, .convolution, .resize, .pad, .instanceNorm, .argExtremum, .gatherND, .cumulativeSum, .scatterND:
            return try primitiveKernel(for: node)
        }
    }

    /// The step of a `linear` or an `activatedLinear` node (named `name`).
    private func linear(x: ValueID, weight: ValueID, bias: ValueID?, layout: WeightLayout,
                        activation: LinearActivation?, name: String, outputCount: Int,
                        output: UnsafeMutablePointer<Float>) throws -> any Kernel {
        let (outFeatures, inFeatures) = layout.features(of: graph[weight].shape)
        let rows = outputCount / outFeatures
        switch try linearProduct(x: x, weight: weight, bias: bias, layout: layout, activation: activation, rows: rows,
                                 output: output) {
        case .float32(let step): return step
        case .bfloat16(let product):
            return BFloat16ProductStep(name: name, product: product, flops: 2 * rows * inFeatures * outFeatures)
        }
    }

    /// A Linear's product (`x` · `weight` + `bias`, then `activation`) over `rows` rows into `output`:
    /// in bf16 when the plan computes in bf16, else in float32 on the weight packed once.
    private func linearProduct(x: ValueID, weight: ValueID, bias: ValueID?, layout: WeightLayout,
                               activation: LinearActivation? = nil, rows: Int,
                               output: UnsafeMutablePointer<Float>) throws -> LinearProduct {
        let (outFeatures, inFeatures) = layout.features(of: graph[weight].shape)
        let input = try floats(x), biasValues = try optionalFloats(bias)
        if let packed = try bfloat16(weight, role: .linear, layout: layout) {
            return .bfloat16(try BFloat16Gemm(linearInput: input, weight: packed, bias: biasValues,
                                              activation: activation, output: output, rows: rows))
        }
        return .float32(LinearStep(input: input, weight: try floats(weight), layout: layout,
                                   packedWeight: try packed(weight) { try $0.linear($1, layout: layout) },
                                   bias: biasValues, activation: activation, output: output, rows: rows,
                                   inFeatures: inFeatures, outFeatures: outFeatures))
    }

    /// The kernel of a `conv2d` or `conv2dAsymmetric` node.
    private func convolution(_ node: Node, stride: Int, padding: Int, trailingPadding: Int) throws -> any Kernel {
        guard node.inputs.count >= 2, let x = node.inputs[0], let weight = node.inputs[1] else {
            throw NodusError(.internal, "\(node.operation.name) is missing its input or weight")
        }
        let s = graph[x].shape, w = graph[weight].shape
        let shape = ConvolutionShape(batch: s[0], inChannels: s[1], height: s[2], width: s[3], outChannels: w[0],
                                     kernelHeight: w[2], kernelWidth: w[3], stride: stride, padding: padding,
                                     trailingPadding: trailingPadding)
        let bias = try optionalFloats(node.inputs[safe: 2] ?? nil)
        // Winograd (float32 even in a bf16 plan: it does 2.25x fewer multiplications, so it beats the bf16
        // product) transforms the weights itself: a packed copy would go unused.
        if !shape.usesWinograd, let packed = try bfloat16(weight, role: .convolution) {
            let product = try BFloat16Gemm(convolution: shape, input: try floats(x), weight: packed, bias: bias,
                                           output: try floats(node.output))
            return BFloat16ProductStep(name: "conv2d", product: product, flops: shape.flops)
        }
        return ConvolutionStep(shape: shape, input: try floats(x), weight: try floats(weight),
                               packedWeight: shape.usesWinograd ? nil : try packed(weight) { try $0.convolution($1) },
                               bias: bias, output: try floats(node.output))
    }
}
