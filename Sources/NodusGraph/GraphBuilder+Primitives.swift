import NodusCore

/// The primitive ops, with their shapes and dtypes inferred and checked, and
/// folded on the spot when every input is a constant: the shape arithmetic of
/// an exported graph (Shape -> Gather -> Concat -> Reshape) becomes plain
/// constants, so only the data path is planned.
extension GraphBuilder {
    public func dtype(of value: ValueID) -> DType { graph[value].dtype }

    /// The tensor of a constant value (a weight or a folded result), or nil.
    public func constantTensor(_ value: ValueID) -> Tensor? {
        if case .constant(_, let tensor) = graph[value].origin { return tensor }
        return nil
    }

    /// A constant of any dtype the primitive ops compute with (float32, int64, bool).
    public mutating func typedConstant(_ name: String, _ tensor: Tensor) throws -> ValueID {
        guard [.float32, .int64, .bool].contains(tensor.dtype) else {
            throw NodusError(.internal, "constant '\(name)' must be float32, int64 or bool, not \(tensor.dtype.name)")
        }
        return addValue(ValueInfo(shape: tensor.shape, dtype: tensor.dtype, origin: .constant(name: name, tensor: tensor)))
    }

    // MARK: Elementwise

    public mutating func binary(_ function: BinaryFunction, _ a: ValueID, _ b: ValueID) throws -> ValueID {
        let op = function.rawValue
        guard dtype(of: a) == dtype(of: b) else {
            throw mismatch(op, "operands are \(dtype(of: a).name) and \(dtype(of: b).name)")
        }
        if function.isLogical && dtype(of: a) != .bool { throw mismatch(op, "operands must be bool") }
        if !function.isLogical && dtype(of: a) == .bool && function != .equal {
            throw mismatch(op, "operands must be numbers, not bool")
        }
        let shape = try broadcastShape([shape(of: a), shape(of: b)], op: op)
        return try primitive(.binary(function), [a, b], shape: shape,
                             dtype: function.isComparison || function.isLogical ? .bool : dtype(of: a))
    }

    public mutating func map(_ function: UnaryFunction, _ x: ValueID) throws -> ValueID {
        let type = dtype(of: x)
        switch function {
        case .not: guard type == .bool else { throw mismatch("not", "operand must be bool") }
        case .negate, .absolute, .relu, .identity: break
        default: guard type == .float32 else { throw mismatch(function.rawValue, "operand must be float32, not \(type.name)") }
        }
        return try primitive(.map(function), [x], shape: shape(of: x), dtype: type)
    }

    public mutating func select(_ condition: ValueID, _ a: ValueID, _ b: ValueID) throws -> ValueID {
        guard dtype(of: condition) == .bool, dtype(of: a) == dtype(of: b) else {
            throw mismatch("select", "condition \(dtype(of: condition).name), values \(dtype(of: a).name) and \(dtype(of: b).name)")
        }
        let shape = try broadcastShape([shape(of: condition), shape(of: a), shape(of: b)], op: "select")
        return try primitive(.select, [condition, a, b], shape: shape, dtype: dtype(of: a))
    }

    public mutating func cast(_ x: ValueID, to type: DType) throws -> ValueID {
        guard [.float32, .int64, .bool].contains(type) else {
            throw NodusError.unsupported("cast to \(type.name): Nodus computes in float32, int64 and bool")
        }
        if dtype(of: x) == type { return x }
        return try primitive(.cast, [x], shape: shape(of: x), dtype: type)
    }

    // MARK: Products and reductions

    /// numpy `matmul`; rank-1 operands are promoted and the added axis removed after.
    public mutating func matMul(_ a: ValueID, _ b: ValueID) throws -> ValueID {
        var left = a, right = b
        let aRank = shape(of: a).count, bRank = shape(of: b).count
        guard aRank >= 1, bRank >= 1, dtype(of: a) == .float32, dtype(of: b) == .float32 else {
            throw mismatch("mat_mul", "operands \(shape(of: a)) and \(shape(of: b)) must be float32 of rank >= 1")
        }
        if aRank == 1 { left = try reshape(a, to: [1] + shape(of: a)) }
        if bRank == 1 { right = try reshape(b, to: shape(of: b) + [1]) }
        let l = shape(of: left), r = shape(of: right)
        guard l[l.count - 1] == r[r.count - 2] else {
            throw mismatch("mat_mul", "\(shape(of: a)) x \(shape(of: b)): inner sizes differ")
        }
        let batch = try broadcastShape([Array(l.dropLast(2)), Array(r.dropLast(2))], op: "mat_mul")
        var result = try primitive(.matMul, [left, right], shape: batch + [l[l.count - 2], r[r.count - 1]], dtype: .float32)
        var final = batch
        if aRank != 1 { final.append(l[l.count - 2]) }
        if bRank != 1 { final.append(r[r.count - 1]) }
        if final != shape(of: result) { result = try reshape(result, to: final) }
        return result
    }

    public mutating func softmax(_ x: ValueID, axis: Int) throws -> ValueID {
        let axis = try normalized(axis, rank: shape(of: x).count, op: "softmax")
        guard dtype(of: x) == .float32 else { throw mismatch("softmax", "operand must be float32") }
        return try primitive(.softmax(axis: axis), [x], shape: shape(of: x), dtype: .float32)
    }

    /// Reduces over `axes` (every axis when empty), keeping them as 1 or dropping them.
    public mutating func reduce(_ function: ReductionFunction, _ x: ValueID, axes: [Int], keepDims: Bool) throws -> ValueID {
        let s = shape(of: x)
        let op = "reduce_" + function.rawValue
        let chosen = axes.isEmpty ? Array(s.indices) : try Set(axes.map { try normalized($0, rank: s.count, op: op) }).sorted()
        guard dtype(of: x) == .float32 else {
            if dtype(of: x) == .int64 && function == .sum, let tensor = constantTensor(x) {
                // Shape arithmetic: an int64 sum of a constant, folded directly.
                let total = tensor.int64Array().reduce(0, +)
                guard chosen.count == s.count else { throw mismatch(op, "int64 reductions over some axes are not supported") }
                return try typedConstant("folded", Tensor(shape: keepDims ? s.map { _ in 1 } : [], int64s: [total]))
            }
            throw mismatch(op, "operand must be float32, not \(dtype(of: x).name)")
        }
        let kept = s.indices.map { chosen.contains($0) ? 1 : s[$0] }
        let output = keepDims ? kept : s.indices.filter { !chosen.contains($0) }.map { s[$0] }
        return try primitive(.reduce(function, axes: chosen), [x], shape: output, dtype: .float32)
    }

    /// ONNX ArgMax / ArgMin: int64 indices along `axis`, the axis kept as 1 or dropped.
    public mutating func argExtremum(_ x: ValueID, axis rawAxis: Int, keepDims: Bool, largest: Bool) throws -> ValueID {
        let s = shape(of: x)
        let axis = try normalized(rawAxis, rank: s.count, op: largest ? "arg_max" : "arg_min")
        guard s[axis] > 0 else { throw mismatch(largest ? "arg_max" : "arg_min", "axis \(axis) of \(s) is empty") }
        var result = s
        if keepDims { result[axis] = 1 } else { result.remove(at: axis) }
        return try primitive(.argExtremum(axis: axis, largest: largest), [x], shape: result, dtype: .int64)
    }

    /// ONNX CumSum along `axis` (negative from the end).
    public mutating func cumulativeSum(_ x: ValueID, axis rawAxis: Int, exclusive: Bool, reverse: Bool) throws -> ValueID {
        let s = shape(of: x)
        let axis = try normalized(rawAxis, rank: s.count, op: "cumulative_sum")
        guard dtype(of: x) == .float32 || dtype(of: x) == .int64 else {
            throw mismatch("cumulative_sum", "x must be float32 or int64, got \(dtype(of: x).name)")
        }
        return try primitive(.cumulativeSum(axis: axis, exclusive: exclusive, reverse: reverse), [x], shape: s,
                             dtype: dtype(of: x))
    }

    /// ONNX ScatterND: indices [..., k] pick slices of data; updates has shape indices[:-1] + data[k:].
    public mutating func scatterND(_ data: ValueID, indices: ValueID, updates: ValueID,
                                   reduction: ScatterReduction) throws -> ValueID {
        let s = shape(of: data), index = shape(of: indices)
        guard dtype(of: indices) == .int64, let depth = index.last, depth >= 1, depth <= s.count,
              shape(of: updates) == Array(index.dropLast()) + Array(s.dropFirst(depth)),
              dtype(of: updates) == dtype(of: data) else {
            throw mismatch("scatter_nd", "indices \(index) and updates \(shape(of: updates)) do not fit data \(s)")
        }
        guard reduction == .none || dtype(of: data) != .bool else {
            throw mismatch("scatter_nd", "reduction '\(reduction.rawValue)' on bool data")
        }
        return try primitive(.scatterND(reduction), [data, indices, updates], shape: s, dtype: dtype(of: data))
    }

    /// ONNX GatherND with batch_dims 0.
    public mutating func gatherND(_ data: ValueID, indices: ValueID) throws -> ValueID {
        let s = shape(of: data), index = shape(of: indices)
        guard dtype(of: indices) == .int64, let depth = index.last, depth >= 1, depth <= s.count else {
            throw mismatch("gather_nd", "indices \(index) do not index data \(s)")
        }
        if let tensor = constantTensor(indices) {
            let values = tensor.int64Array()
            for (position, value) in values.enumerated() {
                let size = Int64(s[position % depth])
                guard value >= -size && value < size else {
                    throw mismatch("gather_nd", "index \(value) is outside axis \(position % depth) of \(s)")
                }
            }
        }
        return try primitive(.gatherND, [data, indices], shape: Array(index.dropLast()) + Array(s.dropFirst(depth)),
                             dtype: dtype(of: data))
    }

    // MARK: Layout

    public mutating func reshape(_ x: ValueID, to newShape: [Int]) throws -> ValueID {
        try checkSize(newShape, op: "reshape")
        guard newShape.allSatisfy({ $0 >= 0 }), newShape.reduce(1, *) == shape(of: x).reduce(1, *) else {
            throw mismatch("reshape", "cannot reshape \(shape(of: x)) to \(newShape)")
        }
        if newShape == shape(of: x) { return x }
        if let tensor = constantTensor(x) {
            return addValue(ValueInfo(shape: newShape, dtype: tensor.dtype, origin: .constant(
                name: constantName(x), tensor: try tensor.reshaped(newShape))))
        }
        return append(.reshape, [x], shape: newShape, dtype: dtype(of: x))
    }

    public mutating func transpose(_ x: ValueID, permutation: [Int]) throws -> ValueID {
        let s = shape(of: x)
        guard permutation.sorted() == Array(s.indices) else {
            throw mismatch("transpose", "\(permutation) is not a permutation of the axes of \(s)")
        }
        if permutation == Array(s.indices) { return x }
        return try primitive(.transpose(permutation: permutation), [x], shape: permutation.map { s[$0] }, dtype: dtype(of: x))
    }

    /// ONNX `Slice` semantics per axis: starts and ends clamped (negative from the end), any non-zero step.
    public mutating func slice(_ x: ValueID, starts: [Int], ends: [Int], axes: [Int], steps: [Int]) throws -> ValueID {
        let s = shape(of: x)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw mismatch("slice", "starts, ends, axes and steps differ in length")
        }
        var first = [Int](repeating: 0, count: s.count), step = [Int](repeating: 1, count: s.count), outShape = s
        for (index, rawAxis) in axes.enumerated() {
            let axis = try normalized(rawAxis, rank: s.count, op: "slice")
            let size = s[axis], stride = steps[index]
            guard stride != 0 else { throw mismatch("slice", "step 0 on axis \(axis)") }
            func resolve(_ value: Int) -> Int { value < 0 ? value + size : value }
            var start = resolve(starts[index]), end = resolve(ends[index])
            if stride > 0 {
                start = min(max(start, 0), size)
                end = min(max(end, 0), size)
                outShape[axis] = max(0, (end - start + stride - 1) / stride)
            } else {
                start = min(max(start, -1), size - 1)
                end = min(max(end, -1), size - 1)
                outShape[axis] = max(0, (start - end - stride - 1) / -stride)
            }
            first[axis] = outShape[axis] == 0 ? 0 : start
            step[axis] = stride
        }
        if outShape == s && step.allSatisfy({ $0 == 1 }) { return x }
        return try primitive(.slice(starts: first, steps: step), [x], shape: outShape, dtype: dtype(of: x))
    }

    public mutating func concat(_ parts: [ValueID], axis rawAxis: Int) throws -> ValueID {
        guard let first = parts.first else { throw mismatch("concat", "no inputs") }
        let s = shape(of: first)
        let axis = try normalized(rawAxis, rank: s.count, op: "concat")
        var result = s
        result[axis] = 0
        for part in parts {
            let p = shape(of: part)
            guard p.count == s.count, dtype(of: part) == dtype(of: first),
                  p.indices.allSatisfy({ $0 == axis || p[$0] == s[$0] }) else {
                throw mismatch("concat", "\(p) does not join \(s) along axis \(axis)")
            }
            result[axis] += p[axis]
        }
        if parts.count == 1 { return first }
        return try primitive(.concat(axis: axis), parts, shape: result, dtype: dtype(of: first))
    }

    public mutating func gather(_ data: ValueID, indices: ValueID, axis rawAxis: Int) throws -> ValueID {
        let s = shape(of: data)
        let axis = try normalized(rawAxis, rank: s.count, op: "gather")
        guard dtype(of: indices) == .int64 else { throw mismatch("gather", "indices must be int64") }
        if let tensor = constantTensor(indices) {
            for index in tensor.int64Array() where index < -Int64(s[axis]) || index >= Int64(s[axis]) {
                throw mismatch("gather", "index \(index) is outside axis \(axis) of \(s)")
            }
        }
        let result = Array(s[..<axis]) + shape(of: indices) + Array(s[(axis + 1)...])
        return try primitive(.gather(axis: axis), [data, indices], shape: result, dtype: dtype(of: data))
    }

    /// ONNX `Expand`: broadcast `x` and `shape` together.
    public mutating func expand(_ x: ValueID, to target: [Int]) throws -> ValueID {
        try checkSize(target, op: "expand")
        let result = try broadcastShape([shape(of: x), target], op: "expand")
        if result == shape(of: x) { return x }
        return try primitive(.expand, [x], shape: result, dtype: dtype(of: x))
    }

    /// Pads (positive) or crops (negative) each axis by `before` and `after`.
    public mutating func pad(_ x: ValueID, before: [Int], after: [Int], value: Float) throws -> ValueID {
        let s = shape(of: x)
        guard before.count == s.count, after.count == s.count else {
            throw mismatch("pad", "\(before.count) + \(after.count) pads for rank \(s.count)")
        }
        let result = s.indices.map { s[$0] + before[$0] + after[$0] }
        try checkSize(result.map { max($0, 0) }, op: "pad")
        guard result.allSatisfy({ $0 >= 0 }) else { throw mismatch("pad", "pads \(before), \(after) crop \(s) below 0") }
        if before.allSatisfy({ $0 == 0 }) && after.allSatisfy({ $0 == 0 }) { return x }
        return try primitive(.pad(before: before, after: after, value: value), [x], shape: result, dtype: dtype(of: x))
    }

    // MARK: Convolution, resize, normalisation

    public mutating func convolution(_ x: ValueID, weight: ValueID, bias: ValueID?, geometry: ConvolutionGeometry) throws
        -> ValueID {
        let s = shape(of: x), w = shape(of: weight)
        let spatial = s.count - 2
        guard spatial >= 1, w.count == s.count, geometry.groups >= 1, s[1] % geometry.groups == 0,
              w[0] % geometry.groups == 0, w[1] * geometry.groups == s[1],
              [geometry.strides, geometry.dilations, geometry.padsBefore, geometry.padsAfter].allSatisfy({ $0.count == spatial }) else {
            throw mismatch("convolution", "input \(s) does not fit weight \(describe(weight)) \(w) in \(geometry.groups) groups")
        }
        if let bias, shape(of: bias) != [w[0]] {
            throw mismatch("convolution", "bias \(describe(bias)) has shape \(shape(of: bias)), expected [\(w[0])]")
        }
        var result = [s[0], w[0]]
        for axis in 0..<spatial {
            let extent = s[axis + 2] + geometry.padsBefore[axis] + geometry.padsAfter[axis]
            let reach = geometry.dilations[axis] * (w[axis + 2] - 1) + 1
            guard geometry.strides[axis] > 0, extent >= reach else {
                throw mismatch("convolution", "kernel \(w) does not fit input \(s) padded by \(geometry.padsBefore), \(geometry.padsAfter)")
            }
            result.append((extent - reach) / geometry.strides[axis] + 1)
        }
        return try primitive(.convolution(geometry), [x, weight] + (bias.map { [$0] } ?? []), shape: result, dtype: .float32)
    }

    public mutating func resize(_ x: ValueID, to target: [Int], mode: ResizeMode) throws -> ValueID {
        try checkSize(target.map { max($0, 0) }, op: "resize")
        let s = shape(of: x)
        guard target.count == s.count, target.allSatisfy({ $0 > 0 }), dtype(of: x) == .float32 else {
            throw mismatch("resize", "cannot resize \(s) to \(target)")
        }
        if target == s { return x }
        return try primitive(.resize(mode), [x], shape: target, dtype: .float32)
    }

    public mutating func instanceNorm(_ x: ValueID, scale: ValueID, bias: ValueID, eps: Float) throws -> ValueID {
        let s = shape(of: x)
        guard s.count >= 3, shape(of: scale) == [s[1]], shape(of: bias) == [s[1]] else {
            throw mismatch("instance_norm", "input \(s), scale \(shape(of: scale)), bias \(shape(of: bias))")
        }
        return try primitive(.instanceNorm(eps: eps), [x, scale, bias], shape: s, dtype: .float32)
    }

    // MARK: Helpers

    /// Shapes a graph file asks for are checked before anything multiplies them:
    /// no negative size, and at most 2^40 elements.
    func checkSize(_ shape: [Int], op: String) throws {
        var count = 1
        for size in shape {
            guard size >= 0 else { throw mismatch(op, "shape \(shape) has a negative size") }
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, product <= 1 << 40 else { throw mismatch(op, "shape \(shape) is too large") }
            count = product
        }
    }

    /// numpy broadcasting of several shapes.
    func broadcastShape(_ shapes: [[Int]], op: String) throws -> [Int] {
        let rank = shapes.map(\.count).max() ?? 0
        var result = [Int](repeating: 1, count: rank)
        for shape in shapes {
            let padded = [Int](repeating: 1, count: rank - shape.count) + shape
            for axis in 0..<rank where padded[axis] != 1 {
                guard result[axis] == 1 || result[axis] == padded[axis] else {
                    throw mismatch(op, "shapes \(shapes) do not broadcast")
                }
                result[axis] = padded[axis]
            }
        }
        return result
    }

    func normalized(_ axis: Int, rank: Int, op: String) throws -> Int {
        let result = axis < 0 ? axis + rank : axis
        guard result >= 0 && result < max(rank, 1) else { throw mismatch(op, "axis \(axis) is outside rank \(rank)") }
        return result
    }

    private func constantName(_ value: ValueID) -> String {
        if case .constant(let name, _) = graph[value].origin { return name }
        return "folded"
    }

    /// Appends a primitive node, or computes it now when every input is a constant.
    private mutating func primitive(_ operation: Operation, _ inputs: [ValueID], shape: [Int], dtype: DType) throws
        -> ValueID {
        try checkSize(shape, op: operation.name)
        guard inputs.allSatisfy({ constantTensor($0) != nil }) else {
            return append(operation, inputs, shape: shape, dtype: dtype)
        }
        var single = GraphBuilder()
        let constants = try inputs.map { try single.typedConstant(constantName($0), constantTensor($0)!) }
        let output = single.append(operation, constants, shape: shape, dtype: dtype)
        single.setOutput(output)
        let folded = try Executable(graph: single.finish()).runAll([:])[0]
        return try typedConstant("folded", folded)
    }
}
