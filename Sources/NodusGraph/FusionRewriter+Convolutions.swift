import NodusCore

/// Convolution patterns on tokens.
extension FusionRewriter {
    /// Tokens [B, N, C] moved to a volume, a depthwise "same" convolution, optionally a pointwise
    /// (1x1x1) one, and back to tokens, as a 3D DiT writes its depthwise-separable convolution:
    ///
    ///     transpose(0, 2, 1) -> reshape [B, C, D, H, W] -> Conv(groups C) [-> Conv 1x1x1]
    ///       -> reshape [B, O, N] -> transpose(0, 2, 1)
    ///
    /// becomes `token_depthwise_convolution` on the tokens where they are (channels-last, no
    /// transposes) and the pointwise convolution a `linear`, as the native MedSyn2 builder writes
    /// it. Grids of one or two axes run as volumes of depth 1.
    mutating func tokenConvolution(_ node: Node) throws -> ValueID? {
        guard case .transpose(let back) = node.operation, back == [0, 2, 1],
              let flattened = interior(node.inputs[0]), case .reshape = flattened.operation,
              var convolution = interior(flattened.inputs[0]) else { return nil }
        var pointwise: (weight: Tensor, bias: ValueID?, name: String)?
        if let weight = pointwiseWeight(convolution), let inner = interior(convolution.inputs[0]) {
            pointwise = (weight, convolution.inputs[2], constantName(convolution.inputs[1]!, fallback: "pointwise.weight"))
            convolution = inner
        }
        guard case .convolution(let geometry) = convolution.operation,
              let volume = interior(convolution.inputs[0]), case .reshape = volume.operation,
              let toChannels = interior(volume.inputs[0]), case .transpose(let forth) = toChannels.operation,
              forth == [0, 2, 1], let x = toChannels.inputs[0] else { return nil }
        let tokens = shape(x), spatial = Array(shape(volume.output).dropFirst(2))
        guard result[x].dtype == .float32, tokens.count == 3, (1...3).contains(spatial.count),
              Array(shape(volume.output).prefix(2)) == [tokens[0], tokens[2]], spatial.reduce(1, *) == tokens[1],
              let weight = tensor(convolution.inputs[1]), isDepthwiseSame(geometry, weight: weight, channels: tokens[2]),
              convolution.inputs[2].map({ tensor($0)?.shape == [tokens[2]] }) ?? true else { return nil }
        let outputs = pointwise?.weight.shape[0] ?? tokens[2]
        guard shape(flattened.output) == [tokens[0], outputs, tokens[1]],
              shape(node.output) == [tokens[0], tokens[1], outputs] else { return nil }
        let padding = [Int](repeating: 1, count: 3 - spatial.count)
        let kernel = padding + Array(weight.shape.dropFirst(2))
        let depthwiseWeight = constant(constantName(convolution.inputs[1]!, fallback: "depthwise.weight"),
                                       try weight.reshaped([tokens[2], 1] + kernel))
        var output = emit(.tokenDepthwiseConvolution(grid: padding + spatial),
                          [x, depthwiseWeight, convolution.inputs[2]], like: x, name: "token_depthwise_convolution")
        if let pointwise {
            let matrix = constant(pointwise.name, try pointwise.weight.reshaped(Array(pointwise.weight.shape.prefix(2))))
            output = emit(.linear(.outputsByInputs), [output, matrix, pointwise.bias], like: node.output, name: "linear")
        }
        return output
    }

    /// The constant weight [O, C, 1, ...] of a 1x1x1 convolution (one group, stride 1, no
    /// padding) with a constant bias [O] or none.
    private func pointwiseWeight(_ node: Node) -> Tensor? {
        guard case .convolution(let geometry) = node.operation, geometry.groups == 1,
              let weight = tensor(node.inputs[1]), weight.dtype == .float32, weight.rank >= 3,
              weight.shape.dropFirst(2).allSatisfy({ $0 == 1 }), isUnitStep(geometry),
              (geometry.padsBefore + geometry.padsAfter).allSatisfy({ $0 == 0 }),
              node.inputs[2].map({ tensor($0)?.shape == [weight.shape[0]] }) ?? true else { return nil }
        return weight
    }

    /// A convolution of `channels` groups of one channel, odd kernels, padded by half a kernel
    /// on each side, stride 1: every output position sees its own neighbourhood.
    private func isDepthwiseSame(_ geometry: ConvolutionGeometry, weight: Tensor, channels: Int) -> Bool {
        let kernel = Array(weight.shape.dropFirst(2))
        return weight.dtype == .float32 && geometry.groups == channels && Array(weight.shape.prefix(2)) == [channels, 1]
            && isUnitStep(geometry) && kernel.allSatisfy({ $0 % 2 == 1 })
            && geometry.padsBefore == kernel.map { $0 / 2 } && geometry.padsAfter == geometry.padsBefore
    }

    private func isUnitStep(_ geometry: ConvolutionGeometry) -> Bool {
        (geometry.strides + geometry.dilations).allSatisfy { $0 == 1 }
    }
}
