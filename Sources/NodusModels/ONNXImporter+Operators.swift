import NodusCore
import NodusFormats
import NodusGraph

/// The ONNX operators, each written with the IR's primitive (or fused) ops.
extension ONNXImporter {
    static let binaryOps: [String: BinaryFunction] = [
        "Add": .add, "Sub": .subtract, "Mul": .multiply, "Div": .divide, "Pow": .power, "Equal": .equal,
        "Less": .less, "Greater": .greater, "LessOrEqual": .lessOrEqual, "GreaterOrEqual": .greaterOrEqual,
        "And": .and, "Or": .or, "Mod": .modulo,
    ]
    static let unaryOps: [String: UnaryFunction] = [
        "Neg": .negate, "Abs": .absolute, "Exp": .exp, "Log": .log, "Sqrt": .sqrt, "Reciprocal": .reciprocal,
        "Tanh": .tanh, "Sigmoid": .sigmoid, "Erf": .erf, "Sin": .sin, "Cos": .cos, "Relu": .relu, "Floor": .floor,
        "Ceil": .ceil, "Not": .not, "Identity": .identity, "Dropout": .identity,
    ]
    static let variadicOps: [String: BinaryFunction] = ["Max": .maximum, "Min": .minimum, "Sum": .add]
    static let reductionOps: [String: ReductionFunction] = [
        "ReduceSum": .sum, "ReduceMean": .mean, "ReduceMax": .max, "ReduceMin": .min, "ReduceProd": .product,
        "ReduceSumSquare": .sumOfSquares,
    ]
    static let otherOps: Set<String> = [
        "MatMul", "Gemm", "Where", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Concat", "Split",
        "Gather", "Expand", "Cast", "CastLike", "Softmax", "Conv", "Resize", "Pad", "LayerNormalization",
        "InstanceNormalization", "GroupNormalization", "Shape", "Size", "Constant", "ConstantOfShape", "Range", "Clip",
        "Tile", "Trilu", "Gelu", "Einsum", "IsNaN", "IsInf", "ArgMax", "ArgMin", "GatherND",
        "CumSum", "ScatterND",
    ]

    /// Every op the importer writes.
    static let supportedOps: Set<String> = Set(binaryOps.keys).union(unaryOps.keys).union(variadicOps.keys)
        .union(reductionOps.keys).union(otherOps)

    mutating func importNode(_ node: ONNXNode) throws {
        guard node.domain.isEmpty || node.domain == "ai.onnx" else {
            throw error("op '\(node.opType)' of domain '\(node.domain)' is not supported (only the default ONNX domain)")
        }
        let op = node.opType
        if let function = ONNXImporter.binaryOps[op] {
            var (a, b) = (try input(0), try input(1))
            if builder.dtype(of: a) != builder.dtype(of: b) && function == .power {
                b = try builder.cast(b, to: builder.dtype(of: a))  // Pow takes any exponent type
            }
            if builder.dtype(of: a) != builder.dtype(of: b) {
                throw error("operands are \(builder.dtype(of: a).name) and \(builder.dtype(of: b).name)")
            }
            if function == .modulo, try int("fmod", default: 0) != 0 {
                throw error("Mod with fmod=1 is not supported")
            }
            a = try builder.binary(function, a, b)
            return try define(0, a)
        }
        if let function = ONNXImporter.unaryOps[op] { return try define(0, builder.map(function, input(0))) }
        if let function = ONNXImporter.variadicOps[op] {
            var result = try input(0)
            for index in 1..<node.inputs.count { result = try builder.binary(function, result, input(index)) }
            return try define(0, result)
        }
        if let function = ONNXImporter.reductionOps[op] { return try reduce(function) }
        switch op {
        case "MatMul": try define(0, builder.matMul(input(0), input(1)))
        case "Gemm": try gemm()
        case "Where": try define(0, builder.select(input(0), input(1), input(2)))
        case "Reshape": try reshape()
        case "Flatten": try flatten()
        case "Squeeze", "Unsqueeze": try squeeze(adding: op == "Unsqueeze")
        case "Transpose":
            let x = try input(0)
            let rank = builder.shape(of: x).count
            let permutation = try ints("perm") ?? Array((0..<rank).reversed())
            try define(0, builder.transpose(x, permutation: permutation.map { $0 < 0 ? $0 + rank : $0 }))
        case "Slice": try slice()
        case "Concat": try define(0, builder.concat(node.inputs.indices.map { try input($0) }, axis: int("axis", default: 0)))
        case "Split": try split()
        case "Gather":
            let indices = try builder.cast(input(1), to: .int64)
            try define(0, builder.gather(input(0), indices: indices, axis: int("axis", default: 0)))
        case "Expand":
            guard let shape = try integers(1) else { throw error("needs a shape") }
            try define(0, builder.expand(input(0), to: shape))
        case "Cast":
            guard let dtype = ONNXImporter.dtype(code: try int("to", default: 1)) else { throw error("unknown 'to' type") }
            try define(0, builder.cast(input(0), to: ONNXImporter.computeType(dtype)))
        case "CastLike": try define(0, builder.cast(input(0), to: builder.dtype(of: input(1))))
        case "Softmax":
            let x = try input(0)
            try define(0, builder.softmax(x, axis: int("axis", default: opset >= 13 ? -1 : 1)))
        case "Conv": try convolution()
        case "Resize": try resize()
        case "Pad": try pad()
        case "LayerNormalization": try layerNormalization()
        case "InstanceNormalization":
            try define(0, builder.instanceNorm(input(0), scale: input(1), bias: input(2), eps: float("epsilon", default: 1e-5)))
        case "GroupNormalization": try groupNormalization()
        case "Shape": try shape()
        case "Size":
            let count = builder.shape(of: try input(0)).reduce(1, *)
            try define(0, builder.typedConstant("size", Tensor(shape: [], int64s: [Int64(count)])))
        case "Constant": try constant()
        case "ConstantOfShape": try constantOfShape()
        case "Range": try range()
        case "Clip": try clip()
        case "Tile": try tile()
        case "Trilu": try trilu()
        case "Gelu": try gelu()
        case "Einsum": try einsum()
        case "IsNaN":
            let x = try input(0)
            try define(0, builder.map(.not, builder.binary(.equal, x, x)))  // only NaN differs from itself
        case "IsInf": try isInfinite()
        case "ArgMax", "ArgMin":
            guard try int("select_last_index", default: 0) == 0 else { throw error("select_last_index is not supported") }
            try define(0, builder.argExtremum(input(0), axis: int("axis", default: 0),
                                              keepDims: int("keepdims", default: 1) != 0, largest: op == "ArgMax"))
        case "CumSum":
            guard let axis = try integers(1)?.first else { throw error("CumSum needs its axis input") }
            try define(0, builder.cumulativeSum(input(0), axis: axis, exclusive: int("exclusive", default: 0) != 0,
                                                reverse: int("reverse", default: 0) != 0))
        case "ScatterND":
            let name = try string("reduction", default: "none")
            guard let reduction = ScatterReduction(rawValue: name) else { throw error("reduction '\(name)' is not supported") }
            try define(0, builder.scatterND(input(0), indices: builder.cast(input(1), to: .int64), updates: input(2),
                                            reduction: reduction))
        case "GatherND":
            guard try int("batch_dims", default: 0) == 0 else { throw error("batch_dims other than 0 is not supported") }
            try define(0, builder.gatherND(input(0), indices: builder.cast(input(1), to: .int64)))
        default:
            throw error("op '\(op)' is not supported (supported: \(ONNXImporter.supportedOps.sorted().joined(separator: ", ")))")
        }
    }

    /// The product of sizes a file gave, or nil when it overflows.
    static func product(_ values: [Int]) -> Int? {
        var result = 1
        for value in values {
            let (next, overflow) = result.multipliedReportingOverflow(by: value)
            if overflow { return nil }
            result = next
        }
        return result
    }

    static func dtype(code: Int) -> DType? {
        [1: .float32, 10: .float16, 16: .bfloat16, 11: .float64, 7: .int64, 6: .int32, 2: .uint8, 9: .bool][code]
    }

    /// The IR type a value of `dtype` computes in.
    static func computeType(_ dtype: DType) -> DType {
        switch dtype {
        case .float32, .float16, .bfloat16, .float64: .float32
        case .int64, .int32, .uint8: .int64
        case .bool: .bool
        }
    }

    // MARK: Products

    private mutating func gemm() throws {
        var a = try input(0), b = try input(1)
        // A Linear on 2-D input: the weight as it is, [out, in] (transB) or [in, out].
        let alpha = try float("alpha", default: 1), beta = try float("beta", default: 1)
        let transposeA = try int("transA", default: 0) != 0, transposeB = try int("transB", default: 0) != 0
        if !transposeA, alpha == 1, builder.constantTensor(b)?.rank == 2, builder.shape(of: a).count == 2 {
            let layout: WeightLayout = transposeB ? .outputsByInputs : .inputsByOutputs
            let outFeatures = layout.features(of: builder.shape(of: b)).outFeatures
            let bias = try optionalInput(2)
            if bias == nil || (beta == 1 && builder.constantTensor(bias!)?.elementCount == outFeatures) {
                let vector = try bias.map { try builder.reshape($0, to: [outFeatures]) }
                return try define(0, builder.linear(a, weight: b, bias: vector, layout: layout))
            }
        }
        if transposeA { a = try builder.transpose(a, permutation: [1, 0]) }
        if transposeB { b = try builder.transpose(b, permutation: [1, 0]) }
        var result = try builder.matMul(a, b)
        if alpha != 1 { result = try builder.binary(.multiply, result, scalar(alpha)) }
        if let addend = try optionalInput(2) {
            let term = beta == 1 ? addend : try builder.binary(.multiply, addend, scalar(beta))
            result = try builder.binary(.add, result, term)
        }
        try define(0, result)
    }

    mutating func scalar(_ value: Float) throws -> ValueID {
        try builder.typedConstant("scalar", Tensor(shape: [], floats: [value]))
    }

    private mutating func reduce(_ function: ReductionFunction) throws {
        let x = try input(0)
        // Axes: an attribute up to opset 17 (ReduceSum: up to 12), an input after.
        let axes = try ints("axes") ?? integers(1) ?? []
        let skipsEmpty = try int("noop_with_empty_axes", default: 0) != 0
        if axes.isEmpty && skipsEmpty { return try define(0, x) }
        try define(0, builder.reduce(function, x, axes: axes, keepDims: int("keepdims", default: 1) != 0))
    }

    // MARK: Shapes

    private mutating func reshape() throws {
        let x = try input(0)
        guard let requested = try integers(1) else { throw error("needs a shape") }
        let current = builder.shape(of: x)
        let allowZero = try int("allowzero", default: 0) != 0
        var target = requested.enumerated().map { axis, size in size == 0 && !allowZero && axis < current.count ? current[axis] : size }
        if let unknown = target.firstIndex(of: -1) {
            let others = target.enumerated().filter { $0.offset != unknown }.map(\.element)
            guard others.allSatisfy({ $0 > 0 }), let known = ONNXImporter.product(others),
                  current.reduce(1, *) % known == 0 else { throw error("cannot reshape \(current) to \(requested)") }
            target[unknown] = current.reduce(1, *) / known
        }
        try define(0, builder.reshape(x, to: target))
    }

    private mutating func flatten() throws {
        let x = try input(0)
        let s = builder.shape(of: x)
        var axis = try int("axis", default: 1)
        if axis < 0 { axis += s.count }
        guard axis >= 0 && axis <= s.count else { throw error("axis \(axis) is outside rank \(s.count)") }
        try define(0, builder.reshape(x, to: [s[..<axis].reduce(1, *), s[axis...].reduce(1, *)]))
    }

    private mutating func squeeze(adding: Bool) throws {
        let x = try input(0)
        let s = builder.shape(of: x)
        let axes = try ints("axes") ?? integers(1)
        var target: [Int]
        if adding {
            guard let axes else { throw error("needs axes") }
            let rank = s.count + axes.count
            let normalized = Set(axes.map { $0 < 0 ? $0 + rank : $0 })
            var rest = s.makeIterator()
            target = (0..<rank).map { normalized.contains($0) ? 1 : rest.next() ?? 1 }
        } else {
            let normalized = Set((axes ?? s.indices.filter { s[$0] == 1 }).map { $0 < 0 ? $0 + s.count : $0 })
            for axis in normalized where axis >= s.count || s[axis] != 1 {
                throw error("cannot squeeze axis \(axis) of \(s)")
            }
            target = s.indices.filter { !normalized.contains($0) }.map { s[$0] }
        }
        try define(0, builder.reshape(x, to: target))
    }

    private mutating func slice() throws {
        let x = try input(0)
        guard let starts = try integers(1), let ends = try integers(2) else { throw error("needs starts and ends") }
        let axes = try integers(3) ?? Array(starts.indices)
        let steps = try integers(4) ?? starts.map { _ in 1 }
        // ONNX clamps INT64_MAX / INT64_MIN ends; keep them inside Int arithmetic.
        let clampedEnds = ends.map { min(max($0, Int(Int32.min)), Int(Int32.max)) }
        let clampedStarts = starts.map { min(max($0, Int(Int32.min)), Int(Int32.max)) }
        try define(0, builder.slice(x, starts: clampedStarts, ends: clampedEnds, axes: axes, steps: steps))
    }

    private mutating func split() throws {
        guard let node else { return }
        let x = try input(0)
        let s = builder.shape(of: x)
        var axis = try int("axis", default: 0)
        if axis < 0 { axis += s.count }
        guard axis >= 0 && axis < s.count else { throw error("axis \(axis) is outside rank \(s.count)") }
        let sizes: [Int]
        if let given = try ints("split") ?? integers(1) {
            sizes = given
        } else {
            let parts = try int("num_outputs", default: node.outputs.count)
            let chunk = (s[axis] + parts - 1) / max(parts, 1)
            sizes = (0..<parts).map { min(chunk, max(0, s[axis] - $0 * chunk)) }
        }
        guard sizes.count == node.outputs.count, sizes.reduce(0, +) == s[axis] else {
            throw error("split sizes \(sizes) do not divide axis \(axis) of \(s) into \(node.outputs.count) outputs")
        }
        var start = 0
        for (index, size) in sizes.enumerated() {
            try define(index, builder.slice(x, starts: [start], ends: [start + size], axes: [axis], steps: [1]))
            start += size
        }
    }

    private mutating func shape() throws {
        let s = builder.shape(of: try input(0))
        func bound(_ value: Int) -> Int { min(max(value < 0 ? value + s.count : value, 0), s.count) }
        let start = bound(try int("start", default: 0)), end = bound(try int("end", default: s.count))
        let dims = start < end ? Array(s[start..<end]) : []
        try define(0, builder.typedConstant("shape", Tensor(shape: [dims.count], int64s: dims.map { Int64($0) })))
    }

    private mutating func constant() throws {
        guard let node, let (key, value) = node.attributes.first else { throw error("has no value") }
        let tensor: Tensor
        switch (key, value) {
        case ("value", .tensor(let stored)): tensor = try ONNXImporter.computable(stored, name: node.outputs.first ?? "")
        case ("value_float", .float(let number)): tensor = try Tensor(shape: [], floats: [number])
        case ("value_floats", .floats(let numbers)): tensor = try Tensor(shape: [numbers.count], floats: numbers)
        case ("value_int", .int(let number)): tensor = try Tensor(shape: [], int64s: [number])
        case ("value_ints", .ints(let numbers)): tensor = try Tensor(shape: [numbers.count], int64s: numbers)
        default: throw error("attribute '\(key)' is not a supported constant")
        }
        try define(0, builder.typedConstant(node.outputs.first ?? "constant", tensor))
    }

    private mutating func constantOfShape() throws {
        guard let shape = try integers(0) else { throw error("needs a shape") }
        var fill = try Tensor(shape: [], floats: [0])
        if case .tensor(let stored)? = attribute("value") { fill = try ONNXImporter.computable(stored, name: "value") }
        let scalar = try builder.typedConstant("value", fill.reshaped([]))
        try define(0, builder.expand(scalar, to: shape))
    }

    private mutating func range() throws {
        let start = try input(0)
        guard let first = builder.constantTensor(start), let limit = try numbers(1), let delta = try numbers(2),
              let begin = first.dtype == .int64 ? first.int64Array().map(Double.init).first : first.floatArray().map(Double.init).first,
              let end = limit.first.map(Double.init), let step = delta.first.map(Double.init), step != 0 else {
            throw error("needs constant start, limit and a non-zero delta")
        }
        let steps = ((end - begin) / step).rounded(.up)
        guard steps.isFinite, steps < Double(1 << 31) else { throw error("Range of \(steps) elements") }
        let count = max(Int(steps), 0)
        let elements = (0..<count).map { begin + Double($0) * step }
        let tensor = first.dtype == .int64 ? try Tensor(shape: [count], int64s: elements.map { Int64($0) })
                                           : try Tensor(shape: [count], floats: elements.map { Float($0) })
        try define(0, builder.typedConstant("range", tensor))
    }

    private mutating func tile() throws {
        let x = try input(0)
        guard let repeats = try integers(1), repeats.count == builder.shape(of: x).count,
              repeats.allSatisfy({ $0 >= 0 && $0 <= 1 << 16 }) else {
            throw error("needs one constant repeat count (0 to 65536) per axis")
        }
        var result = x
        for (axis, count) in repeats.enumerated() where count != 1 {
            result = try builder.concat([ValueID](repeating: result, count: count), axis: axis)
        }
        try define(0, result)
    }

    /// Trilu on a constant (the causal masks of text encoders are built from constants).
    private mutating func trilu() throws {
        let x = try input(0)
        guard let tensor = builder.constantTensor(x), tensor.rank >= 2 else {
            throw error("Trilu is supported on constants of rank >= 2 only")
        }
        let k = try integers(1)?.first ?? 0, upper = try int("upper", default: 1) != 0
        let rows = tensor.shape[tensor.rank - 2], columns = tensor.shape[tensor.rank - 1]
        var keep: [Bool] = []
        for index in 0..<tensor.elementCount {
            let (row, column) = ((index / columns) % rows, index % columns)
            keep.append(upper ? column - row >= k : column - row <= k)
        }
        let mask = try builder.typedConstant("trilu_mask", Tensor(shape: tensor.shape, int64s: keep.map { $0 ? 1 : 0 }))
        let zero: ValueID = tensor.dtype == .float32 ? try scalar(0)
            : try builder.typedConstant("zero", Tensor(shape: [], int64s: [0]))
        let condition = try builder.cast(mask, to: .bool)
        try define(0, builder.select(condition, x, builder.cast(zero, to: tensor.dtype)))
    }

    // MARK: Elementwise helpers

    private mutating func clip() throws {
        var x = try input(0)
        let minimum = try attribute("min") != nil ? [float("min", default: 0)] : numbers(1)
        let maximum = try attribute("max") != nil ? [float("max", default: 0)] : numbers(2)
        if let low = minimum?.first { x = try builder.binary(.maximum, x, typed(low, like: x)) }
        if let high = maximum?.first { x = try builder.binary(.minimum, x, typed(high, like: x)) }
        try define(0, x)
    }

    /// A scalar constant of `value`'s dtype.
    mutating func typed(_ number: Float, like value: ValueID) throws -> ValueID {
        builder.dtype(of: value) == .int64 ? try builder.typedConstant("scalar", Tensor(shape: [], int64s: [Int64(number)]))
                                           : try scalar(number)
    }

    /// Einsum without ellipses or repeated letters: one operand that only
    /// reorders axes (DiT's unpatchify, "nhwpqc->nchpwq"), or two operands
    /// contracted as a batched MatMul (MONAI's attention, "blxd,blyd->blxy").
    private mutating func einsum() throws {
        let equation = try string("equation", default: "").filter { !$0.isWhitespace }
        let sides = equation.split(separator: "->", omittingEmptySubsequences: false).map(String.init)
        let operands = sides[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let node, sides.count == 2, operands.count == node.inputs.count, (1...2).contains(operands.count),
              !equation.contains("."), (operands + [sides[1]]).allSatisfy({ Set($0).count == $0.count }) else {
            throw error("Einsum '\(equation)' is supported for one or two operands without ellipses or repeated letters")
        }
        let output = Array(sides[1])
        if operands.count == 1 {
            let source = Array(operands[0])
            guard Set(source) == Set(output) else { throw error("Einsum '\(equation)': a one-operand Einsum must keep every axis") }
            return try define(0, builder.transpose(input(0), permutation: output.map { source.firstIndex(of: $0)! }))
        }
        let (left, right) = (Array(operands[0]), Array(operands[1]))
        let batch = output.filter { left.contains($0) && right.contains($0) }
        let contracted = left.filter { right.contains($0) && !output.contains($0) }
        let leftOnly = left.filter { !right.contains($0) }, rightOnly = right.filter { !left.contains($0) }
        guard leftOnly.allSatisfy(output.contains), rightOnly.allSatisfy(output.contains),
              Set(batch + leftOnly + rightOnly) == Set(output) else {
            throw error("Einsum '\(equation)': an index summed within one operand is not supported")
        }
        var a = try input(0), b = try input(1)
        let aShape = builder.shape(of: a), bShape = builder.shape(of: b)
        guard aShape.count == left.count, bShape.count == right.count else {
            throw error("Einsum '\(equation)' does not fit operands \(aShape) and \(bShape)")
        }
        func size(_ letter: Character) -> Int {
            if let index = left.firstIndex(of: letter) { return aShape[index] }
            return bShape[right.firstIndex(of: letter)!]
        }
        for letter in batch + contracted where aShape[left.firstIndex(of: letter)!] != bShape[right.firstIndex(of: letter)!] {
            throw error("Einsum '\(equation)': axis '\(letter)' is \(aShape[left.firstIndex(of: letter)!]) and \(bShape[right.firstIndex(of: letter)!])")
        }
        // [batch..., M, K] x [batch..., K, N] -> [batch..., M, N], then the output's order.
        let batchSizes = batch.map(size)
        let m = leftOnly.map(size).reduce(1, *), k = contracted.map(size).reduce(1, *), n = rightOnly.map(size).reduce(1, *)
        a = try builder.reshape(builder.transpose(a, permutation: (batch + leftOnly + contracted).map { left.firstIndex(of: $0)! }),
                                to: batchSizes + [m, k])
        b = try builder.reshape(builder.transpose(b, permutation: (batch + contracted + rightOnly).map { right.firstIndex(of: $0)! }),
                                to: batchSizes + [k, n])
        let order = batch + leftOnly + rightOnly
        let product = try builder.reshape(builder.matMul(a, b), to: order.map(size))
        try define(0, builder.transpose(product, permutation: output.map { order.firstIndex(of: $0)! }))
    }

    /// IsInf with detect_positive / detect_negative.
    private mutating func isInfinite() throws {
        let x = try input(0)
        let positive = try int("detect_positive", default: 1) != 0, negative = try int("detect_negative", default: 1) != 0
        var result = try builder.typedConstant("false", Tensor(zeros: [], dtype: .bool))
        result = try builder.expand(result, to: builder.shape(of: x))
        if positive { result = try builder.binary(.or, result, builder.binary(.equal, x, scalar(.infinity))) }
        if negative { result = try builder.binary(.or, result, builder.binary(.equal, x, scalar(-.infinity))) }
        try define(0, result)
    }

    /// Gelu (opset 20): exact or tanh, written with primitives.
    private mutating func gelu() throws {
        let x = try input(0)
        let approximate = try string("approximate", default: "none")
        let inner: ValueID
        if approximate == "tanh" {
            let cube = try builder.binary(.multiply, builder.binary(.multiply, x, x), x)
            let sum = try builder.binary(.add, x, builder.binary(.multiply, cube, scalar(0.044715)))
            inner = try builder.map(.tanh, builder.binary(.multiply, sum, scalar(0.7978845608028654)))
        } else {
            inner = try builder.map(.erf, builder.binary(.multiply, x, scalar(0.7071067811865476)))
        }
        let half = try builder.binary(.multiply, x, scalar(0.5))
        try define(0, builder.binary(.multiply, half, builder.binary(.add, inner, scalar(1))))
    }
}
