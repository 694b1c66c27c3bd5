import NodusCore

/// Lowering of the primitive ops to PrimitiveSteps' kernels.
extension Lowering {
    private func buffer(_ value: ValueID) throws -> ElementBuffer {
        ElementBuffer(bytes: try address(value), dtype: graph[value].dtype)
    }

    mutating func primitiveKernel(for node: Node) throws -> any Kernel {
        let inputs = try node.inputs.enumerated().map { index, value -> ValueID in
            guard let value else { throw NodusError(.internal, "\(node.operation.name) is missing input \(index)") }
            return value
        }
        let output = try buffer(node.output)
        let outputShape = graph[node.output].shape
        let count = outputShape.reduce(1, *)
        func shape(_ index: Int) -> [Int] { graph[inputs[index]].shape }

        switch node.operation {
        case .binary(let function):
            return BinaryStep(function: function, walk: try BroadcastWalk(output: outputShape, operands: [shape(0), shape(1)]),
                              a: try buffer(inputs[0]), b: try buffer(inputs[1]), output: output)
        case .map(let function):
            return MapStep(function: function, input: try buffer(inputs[0]), output: output, count: count)
        case .select:
            return SelectStep(walk: try BroadcastWalk(output: outputShape, operands: [shape(0), shape(1), shape(2)]),
                              condition: try buffer(inputs[0]), a: try buffer(inputs[1]), b: try buffer(inputs[2]),
                              output: output)
        case .reshape:
            return CopyStep(name: "reshape", walk: BroadcastWalk(shape: [count], strides: [[1], [1]]),
                            input: try buffer(inputs[0]), output: output)
        case .expand:
            return CopyStep(name: "expand", walk: try BroadcastWalk(output: outputShape, operands: [shape(0)]),
                            input: try buffer(inputs[0]), output: output)
        case .transpose(let permutation):
            let inputStrides = BroadcastWalk.contiguousStrides(shape(0))
            return CopyStep(name: "transpose",
                            walk: BroadcastWalk(shape: outputShape, strides: [BroadcastWalk.contiguousStrides(outputShape),
                                                                              permutation.map { inputStrides[$0] }]),
                            input: try buffer(inputs[0]), output: output)
        case .slice(let starts, let steps):
            let inputStrides = BroadcastWalk.contiguousStrides(shape(0))
            let first = zip(starts, inputStrides).reduce(0) { $0 + $1.0 * $1.1 }
            let source = try buffer(inputs[0])
            let shifted = ElementBuffer(bytes: source.bytes + first * source.dtype.byteSize, dtype: source.dtype)
            return CopyStep(name: "slice",
                            walk: BroadcastWalk(shape: outputShape, strides: [BroadcastWalk.contiguousStrides(outputShape),
                                                                              zip(steps, inputStrides).map { $0 * $1 }]),
                            input: shifted, output: output)
        case .pad(let before, _, let value):
            // Copy the kept block: for each axis, skip cropped input (negative pad) or padded output (positive).
            let inputShape = shape(0)
            let inputStrides = BroadcastWalk.contiguousStrides(inputShape)
            let outputStrides = BroadcastWalk.contiguousStrides(outputShape)
            let kept = inputShape.indices.map { min(inputShape[$0] + min(before[$0], 0), outputShape[$0] - max(before[$0], 0)) }
            let inputOffset = inputShape.indices.reduce(0) { $0 + max(-before[$1], 0) * inputStrides[$1] }
            let outputOffset = inputShape.indices.reduce(0) { $0 + max(before[$1], 0) * outputStrides[$1] }
            return PadStep(walk: BroadcastWalk(shape: kept.map { max($0, 0) }, strides: [outputStrides, inputStrides]),
                           input: try buffer(inputs[0]), output: output, count: count, value: value,
                           inputOffset: inputOffset, outputOffset: outputOffset)
        case .concat(let axis):
            let outer = outputShape[..<axis].reduce(1, *), inner = outputShape[(axis + 1)...].reduce(1, *)
            return ConcatStep(parts: try inputs.map { (try buffer($0), graph[$0].shape[axis] * inner) },
                              output: output, outer: outer)
        case .gather(let axis):
            let data = shape(0)
            if case .input(let name) = graph[inputs[1]].origin {
                indexLimits.append((input: name, rows: data[axis], table: graph.describe(inputs[0])))
            }
            return GatherStep(data: try buffer(inputs[0]), indices: UnsafePointer(try buffer(inputs[1]).int64s),
                              output: output, outer: data[..<axis].reduce(1, *), axisLength: data[axis],
                              inner: data[(axis + 1)...].reduce(1, *), indexCount: shape(1).reduce(1, *))
        case .cast:
            return CastStep(input: try buffer(inputs[0]), output: output, count: count)
        case .softmax(let axis):
            return SoftmaxStep(input: try floats(inputs[0]), output: output.floats,
                               outer: outputShape[..<axis].reduce(1, *), length: outputShape[axis],
                               inner: outputShape[(axis + 1)...].reduce(1, *))
        case .reduce(let function, let axes):
            var remaining = shape(0)
            var passes: [(outer: Int, length: Int, inner: Int)] = []
            for axis in axes.sorted(by: >) {
                passes.append((remaining[..<axis].reduce(1, *), remaining[axis], remaining[(axis + 1)...].reduce(1, *)))
                remaining[axis] = 1
            }
            let kind: PrimitiveMath.ReductionKind
            switch function {
            case .sum: kind = .sum
            case .mean: kind = .mean
            case .max: kind = .max
            case .min: kind = .min
            case .product: kind = .product
            case .sumOfSquares: kind = .sumOfSquares
            }
            return ReduceStep(name: node.operation.name, kind: kind, input: try floats(inputs[0]), output: output.floats,
                              passes: passes)
        case .matMul:
            return try matMul(inputs[0], inputs[1], output: output.floats, outputShape: outputShape)
        case .convolution(let geometry):
            return ConvolutionNDStep(input: try floats(inputs[0]), weight: try floats(inputs[1]),
                                     bias: inputs.count > 2 ? UnsafePointer(try floats(inputs[2])) : nil,
                                     output: output.floats, inputShape: shape(0), weightShape: shape(1),
                                     outputShape: outputShape, geometry: geometry)
        case .resize(let mode):
            return ResizeNDStep(input: try floats(inputs[0]), output: output.floats, inputShape: shape(0),
                                outputShape: outputShape, mode: mode)
        case .instanceNorm(let eps):
            // Instance norm is group norm with one channel per group.
            return GroupNormStep(input: try floats(inputs[0]), output: output.floats,
                                 weight: UnsafePointer(try floats(inputs[1])), bias: UnsafePointer(try floats(inputs[2])),
                                 batch: outputShape[0], channels: outputShape[1],
                                 spatial: count / max(1, outputShape[0] * outputShape[1]), groups: outputShape[1],
                                 eps: eps, silu: false)
        case .argExtremum(let axis, let largest):
            let input = shape(0)
            return ArgExtremumStep(name: node.operation.name, input: try buffer(inputs[0]), output: output.int64s,
                                   outer: input[..<axis].reduce(1, *), length: input[axis],
                                   inner: input[(axis + 1)...].reduce(1, *), largest: largest)
        case .cumulativeSum(let axis, let exclusive, let reverse):
            let input = shape(0)
            return CumulativeSumStep(input: try buffer(inputs[0]), output: output,
                                     outer: input[..<axis].reduce(1, *), length: input[axis],
                                     inner: input[(axis + 1)...].reduce(1, *), exclusive: exclusive, reverse: reverse)
        case .scatterND(let reduction):
            let data = shape(0), indexShape = shape(1)
            let depth = indexShape.last ?? 0
            return ScatterNDStep(data: try buffer(inputs[0]), indices: UnsafePointer(try buffer(inputs[1]).int64s),
                                 updates: try buffer(inputs[2]), output: output, dataShape: Array(data.prefix(depth)),
                                 sliceCount: data.dropFirst(depth).reduce(1, *),
                                 tupleCount: indexShape.dropLast().reduce(1, *), totalCount: data.reduce(1, *),
                                 reduction: reduction)
        case .gatherND:
            let data = shape(0), indexShape = shape(1)
            let depth = indexShape.last ?? 0
            return GatherNDStep(data: try buffer(inputs[0]), indices: UnsafePointer(try buffer(inputs[1]).int64s),
                                output: output, dataShape: Array(data.prefix(depth)),
                                sliceCount: data.dropFirst(depth).reduce(1, *),
                                tupleCount: indexShape.dropLast().reduce(1, *))
        default:
            throw NodusError(.internal, "\(node.operation.name) is not a primitive op")
        }
    }

    /// numpy matmul of operands already promoted to rank >= 2 by the builder.
    private func matMul(_ a: ValueID, _ b: ValueID, output: UnsafeMutablePointer<Float>, outputShape: [Int]) throws
        -> any Kernel {
        let aShape = graph[a].shape, bShape = graph[b].shape
        let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1], n = bShape[bShape.count - 1]
        let batchShape = Array(outputShape.dropLast(2))
        let walk = try BroadcastWalk(output: batchShape.isEmpty ? [1] : batchShape,
                                     operands: [Array(aShape.dropLast(2)), Array(bShape.dropLast(2))])
        var offsets: [(a: Int, b: Int)] = []
        walk.forEachRun { starts, length, steps in
            for index in 0..<length { offsets.append((a: (starts[1] + index * steps[1]) * m * k, b: (starts[2] + index * steps[2]) * k * n)) }
        }
        return BatchedMatMulStep(a: try floats(a), b: try floats(b), output: output, offsets: offsets, m: m, n: n, k: k)
    }
}
