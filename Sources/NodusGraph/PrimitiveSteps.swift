#if canImport(Glibc)
import Glibc
#endif
import NodusCore

// The kernels of the primitive ops: PrimitiveMath's reference loops bound to
// their buffers, dtypes and walks at plan time.

/// Typed element pointers of one buffer.
struct ElementBuffer {
    let bytes: UnsafeMutableRawPointer
    let dtype: DType
    var floats: UnsafeMutablePointer<Float> { bytes.assumingMemoryBound(to: Float.self) }
    var int64s: UnsafeMutablePointer<Int64> { bytes.assumingMemoryBound(to: Int64.self) }
    var booleans: UnsafeMutablePointer<UInt8> { bytes.assumingMemoryBound(to: UInt8.self) }
}

struct BinaryStep: Kernel {
    let function: BinaryFunction
    let walk: BroadcastWalk
    let a: ElementBuffer, b: ElementBuffer, output: ElementBuffer
    var name: String { function.rawValue }

    func run(scratch: UnsafeMutablePointer<Float>) {
        switch a.dtype {
        case .float32:
            switch function {
            case .add: PrimitiveMath.arithmetic(.add, walk, a.floats, b.floats, output.floats)
            case .subtract: PrimitiveMath.arithmetic(.subtract, walk, a.floats, b.floats, output.floats)
            case .multiply: PrimitiveMath.arithmetic(.multiply, walk, a.floats, b.floats, output.floats)
            case .divide: PrimitiveMath.arithmetic(.divide, walk, a.floats, b.floats, output.floats)
            default: run(a.floats, b.floats, Float.self)
            }
        case .int64: run(a.int64s, b.int64s, Int64.self)
        default: runBoolean()
        }
    }

    private func run<Element: Numeric & Comparable>(_ left: UnsafeMutablePointer<Element>,
                                                    _ right: UnsafeMutablePointer<Element>, _: Element.Type) {
        if function.isComparison {
            let compare: (Element, Element) -> UInt8
            switch function {
            case .equal: compare = { $0 == $1 ? 1 : 0 }
            case .less: compare = { $0 < $1 ? 1 : 0 }
            case .greater: compare = { $0 > $1 ? 1 : 0 }
            case .lessOrEqual: compare = { $0 <= $1 ? 1 : 0 }
            default: compare = { $0 >= $1 ? 1 : 0 }
            }
            PrimitiveMath.binary(walk, left, right, output.booleans, compare)
            return
        }
        let target = output.bytes.assumingMemoryBound(to: Element.self)
        switch function {
        case .add: PrimitiveMath.binary(walk, left, right, target, +)
        case .subtract: PrimitiveMath.binary(walk, left, right, target, -)
        case .multiply: PrimitiveMath.binary(walk, left, right, target, *)
        case .maximum: PrimitiveMath.binary(walk, left, right, target) { Swift.max($0, $1) }
        case .minimum: PrimitiveMath.binary(walk, left, right, target) { Swift.min($0, $1) }
        default:
            if Element.self == Float.self {
                runFloat(left as! UnsafeMutablePointer<Float>, right as! UnsafeMutablePointer<Float>, output.floats)
            } else {
                runInteger(left as! UnsafeMutablePointer<Int64>, right as! UnsafeMutablePointer<Int64>, output.int64s)
            }
        }
    }

    private func runFloat(_ left: UnsafeMutablePointer<Float>, _ right: UnsafeMutablePointer<Float>,
                          _ target: UnsafeMutablePointer<Float>) {
        switch function {
        case .divide: PrimitiveMath.binary(walk, left, right, target, /)
        case .power: PrimitiveMath.binary(walk, left, right, target) { Glibc.powf($0, $1) }
        case .modulo:
            PrimitiveMath.binary(walk, left, right, target) { x, y in
                let remainder = Glibc.fmodf(x, y)
                return remainder != 0 && (remainder < 0) != (y < 0) ? remainder + y : remainder
            }
        default: break
        }
    }

    // Integer division and modulo round toward minus infinity, as torch's // and % do.
    private func runInteger(_ left: UnsafeMutablePointer<Int64>, _ right: UnsafeMutablePointer<Int64>,
                            _ target: UnsafeMutablePointer<Int64>) {
        switch function {
        case .divide:
            PrimitiveMath.binary(walk, left, right, target) { x, y in
                guard y != 0 else { return 0 }
                let quotient = x / y
                return (x % y != 0) && ((x < 0) != (y < 0)) ? quotient - 1 : quotient
            }
        case .modulo:
            PrimitiveMath.binary(walk, left, right, target) { x, y in
                guard y != 0 else { return 0 }
                let remainder = x % y
                return remainder != 0 && (remainder < 0) != (y < 0) ? remainder + y : remainder
            }
        case .power:
            PrimitiveMath.binary(walk, left, right, target) { x, y in
                y < 0 ? 0 : (0..<y).reduce(Int64(1)) { product, _ in product &* x }
            }
        default: break
        }
    }

    private func runBoolean() {
        let (left, right, target) = (a.booleans, b.booleans, output.booleans)
        switch function {
        case .and: PrimitiveMath.binary(walk, left, right, target) { $0 != 0 && $1 != 0 ? 1 : 0 }
        case .or: PrimitiveMath.binary(walk, left, right, target) { $0 != 0 || $1 != 0 ? 1 : 0 }
        case .equal: PrimitiveMath.binary(walk, left, right, target) { ($0 != 0) == ($1 != 0) ? 1 : 0 }
        default: PrimitiveMath.binary(walk, left, right, target) { ($0 != 0) != ($1 != 0) ? 1 : 0 }  // xor
        }
    }
}

struct MapStep: Kernel {
    let function: UnaryFunction
    let input: ElementBuffer, output: ElementBuffer, count: Int
    var name: String { function.rawValue }

    func run(scratch: UnsafeMutablePointer<Float>) {
        switch input.dtype {
        case .float32: runFloat()
        case .int64:
            let (x, y) = (input.int64s, output.int64s)
            switch function {
            case .negate: PrimitiveMath.map(x, y, count: count) { -$0 }
            case .absolute: PrimitiveMath.map(x, y, count: count) { Swift.abs($0) }
            case .relu: PrimitiveMath.map(x, y, count: count) { Swift.max($0, 0) }
            default: PrimitiveMath.map(x, y, count: count) { $0 }
            }
        default:
            let (x, y) = (input.booleans, output.booleans)
            if function == .not { PrimitiveMath.map(x, y, count: count) { $0 == 0 ? 1 : 0 } }
            else { PrimitiveMath.map(x, y, count: count) { $0 } }
        }
    }

    private func runFloat() {
        let (x, y) = (input.floats, output.floats)
        switch function {
        case .negate: PrimitiveMath.map(x, y, count: count) { -$0 }
        case .absolute: PrimitiveMath.map(x, y, count: count) { Swift.abs($0) }
        case .exp: PrimitiveMath.map(x, y, count: count) { Glibc.expf($0) }
        case .log: PrimitiveMath.map(x, y, count: count) { Glibc.logf($0) }
        case .sqrt: PrimitiveMath.map(x, y, count: count) { $0.squareRoot() }
        case .reciprocal: PrimitiveMath.map(x, y, count: count) { 1 / $0 }
        case .tanh: PrimitiveMath.map(x, y, count: count) { Glibc.tanhf($0) }
        case .sigmoid: Activation.sigmoid(x, y, count: count)
        case .erf: PrimitiveMath.map(x, y, count: count) { Glibc.erff($0) }
        case .sin: PrimitiveMath.map(x, y, count: count) { Glibc.sinf($0) }
        case .cos: PrimitiveMath.map(x, y, count: count) { Glibc.cosf($0) }
        case .relu: PrimitiveMath.map(x, y, count: count) { Swift.max($0, 0) }
        case .floor: PrimitiveMath.map(x, y, count: count) { $0.rounded(.down) }
        case .ceil: PrimitiveMath.map(x, y, count: count) { $0.rounded(.up) }
        case .not, .identity: if x != y { y.update(from: x, count: count) }
        }
    }
}

struct SelectStep: Kernel {
    let name = "select"
    let walk: BroadcastWalk
    let condition: ElementBuffer, a: ElementBuffer, b: ElementBuffer, output: ElementBuffer
    func run(scratch: UnsafeMutablePointer<Float>) {
        switch output.dtype.byteSize {
        case 8: PrimitiveMath.select(walk, condition.booleans, a.int64s, b.int64s, output.int64s)
        case 4: PrimitiveMath.select(walk, condition.booleans, a.floats, b.floats, output.floats)
        default: PrimitiveMath.select(walk, condition.booleans, a.booleans, b.booleans, output.booleans)
        }
    }
}

/// A strided copy: transpose, slice, expand (and reshape when the buffers differ).
struct CopyStep: Kernel {
    let name: String
    let walk: BroadcastWalk
    let input: ElementBuffer, output: ElementBuffer
    func run(scratch: UnsafeMutablePointer<Float>) {
        if input.bytes == output.bytes { return }  // a reshape planned in place
        switch output.dtype.byteSize {
        case 8: walk.copy(input.int64s, to: output.int64s)
        case 4: walk.copy(input.floats, to: output.floats)
        case 2: walk.copy(input.bytes.assumingMemoryBound(to: UInt16.self), to: output.bytes.assumingMemoryBound(to: UInt16.self))
        default: walk.copy(input.booleans, to: output.booleans)
        }
    }
}

struct CastStep: Kernel {
    let name = "cast"
    let input: ElementBuffer, output: ElementBuffer, count: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        switch (input.dtype, output.dtype) {
        case (.float32, .int64): PrimitiveMath.map(input.floats, output.int64s, count: count) { Int64($0.rounded(.towardZero)) }
        case (.float32, .bool): PrimitiveMath.map(input.floats, output.booleans, count: count) { $0 != 0 ? 1 : 0 }
        case (.int64, .float32): PrimitiveMath.map(input.int64s, output.floats, count: count) { Float($0) }
        case (.int64, .bool): PrimitiveMath.map(input.int64s, output.booleans, count: count) { $0 != 0 ? 1 : 0 }
        case (.bool, .float32): PrimitiveMath.map(input.booleans, output.floats, count: count) { $0 != 0 ? 1 : 0 }
        case (.bool, .int64): PrimitiveMath.map(input.booleans, output.int64s, count: count) { $0 != 0 ? 1 : 0 }
        default: if input.bytes != output.bytes { output.bytes.copyMemory(from: input.bytes, byteCount: count * output.dtype.byteSize) }
        }
    }
}

struct SoftmaxStep: Kernel {
    let name = "softmax"
    let input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    let outer: Int, length: Int, inner: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        PrimitiveMath.softmax(input, output, outer: outer, length: length, inner: inner)
    }
}

/// A reduction over several axes, done one axis at a time through scratch.
struct ReduceStep: Kernel {
    let name: String
    let kind: PrimitiveMath.ReductionKind
    let input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    /// [outer, length, inner] per reduced axis, from the last axis to the first.
    let passes: [(outer: Int, length: Int, inner: Int)]
    var scratchCount: Int { 2 * (passes.first.map { $0.outer * $0.inner } ?? 0) }

    func run(scratch: UnsafeMutablePointer<Float>) {
        // A mean over several axes is a sum per pass, scaled once; max/min/product chain as they are.
        let perPass: PrimitiveMath.ReductionKind = kind == .mean ? .sum : kind
        let half = scratchCount / 2
        var source = UnsafePointer(input)
        var total = 1
        for (index, pass) in passes.enumerated() {
            let last = index == passes.count - 1
            let target = last ? output : scratch + (index % 2) * half
            PrimitiveMath.reduce(source, target, outer: pass.outer, length: pass.length, inner: pass.inner,
                                 index == 0 ? (kind == .sumOfSquares ? .sumOfSquares : perPass)
                                            : (kind == .sumOfSquares ? .sum : perPass))
            total *= pass.length
            source = UnsafePointer(target)
        }
        if kind == .mean {
            let count = passes.last.map { $0.outer * $0.inner } ?? 0
            let scale = 1 / Float(total)
            for index in 0..<count { output[index] *= scale }
        }
    }
}

struct GatherStep: Kernel {
    let name = "gather"
    let data: ElementBuffer, indices: UnsafePointer<Int64>, output: ElementBuffer
    let outer: Int, axisLength: Int, inner: Int, indexCount: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        switch output.dtype.byteSize {
        case 8: PrimitiveMath.gather(data.int64s, outer: outer, axisLength: axisLength, inner: inner,
                                          indices: indices, indexCount: indexCount, into: output.int64s)
        case 4: PrimitiveMath.gather(data.floats, outer: outer, axisLength: axisLength, inner: inner,
                                          indices: indices, indexCount: indexCount, into: output.floats)
        default: PrimitiveMath.gather(data.booleans, outer: outer, axisLength: axisLength, inner: inner,
                                           indices: indices, indexCount: indexCount, into: output.booleans)
        }
    }
}

struct ConcatStep: Kernel {
    let name = "concat"
    /// Each part's buffer and its extent along the axis times the inner size.
    let parts: [(buffer: ElementBuffer, block: Int)]
    let output: ElementBuffer, outer: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        let elementSize = output.dtype.byteSize
        let outputBlock = parts.reduce(0) { $0 + $1.block }
        var column = 0
        for part in parts {
            for row in 0..<outer {
                (output.bytes + (row * outputBlock + column) * elementSize)
                    .copyMemory(from: part.buffer.bytes + row * part.block * elementSize, byteCount: part.block * elementSize)
            }
            column += part.block
        }
    }
}

struct BatchedMatMulStep: Kernel {
    let name = "mat_mul"
    let a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    /// Per output matrix, the offsets of its A and B matrices.
    let offsets: [(a: Int, b: Int)]
    let m: Int, n: Int, k: Int
    var flops: Int { 2 * offsets.count * m * n * k }
    func run(scratch: UnsafeMutablePointer<Float>) {
        for (index, offset) in offsets.enumerated() {
            Gemm.multiply(transposeA: false, transposeB: false, m: m, n: n, k: k, a: a + offset.a, lda: k,
                          b: b + offset.b, ldb: n, c: output + index * m * n, ldc: n)
        }
    }
}

struct ConvolutionNDStep: Kernel {
    let name = "convolution"
    let input: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?
    let output: UnsafeMutablePointer<Float>
    let inputShape: [Int], weightShape: [Int], outputShape: [Int]
    let geometry: ConvolutionGeometry
    /// The fast kernels for 1 to 3 spatial axes; nil: the reference loop.
    let convolution: ConvolutionND?

    init(input: UnsafeMutablePointer<Float>, weight: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
         output: UnsafeMutablePointer<Float>, inputShape: [Int], weightShape: [Int], outputShape: [Int],
         geometry: ConvolutionGeometry) {
        (self.input, self.weight, self.bias, self.output) = (input, weight, bias, output)
        (self.inputShape, self.weightShape, self.outputShape, self.geometry) = (inputShape, weightShape, outputShape, geometry)
        convolution = ConvolutionND.supports(spatialRank: inputShape.count - 2)
            ? ConvolutionND(inputShape: inputShape, weightShape: weightShape, outputShape: outputShape,
                            strides: geometry.strides, dilations: geometry.dilations, padsBefore: geometry.padsBefore,
                            groups: geometry.groups)
            : nil
    }

    var flops: Int { 2 * outputShape.reduce(1, *) * weightShape.dropFirst().reduce(1, *) }
    var scratchCount: Int { convolution?.scratchCount ?? 0 }

    func run(scratch: UnsafeMutablePointer<Float>) {
        if let convolution {
            convolution.run(input: input, weight: weight, bias: bias, output: output, scratch: scratch)
            return
        }
        PrimitiveMath.convolution(input, inputShape: inputShape, weight: weight, weightShape: weightShape, bias: bias,
                                  output: output, outputShape: outputShape, strides: geometry.strides,
                                  dilations: geometry.dilations, padsBefore: geometry.padsBefore, groups: geometry.groups)
    }
}

/// Pads with a constant (or crops, for negative pads): fill, then copy the kept block.
struct PadStep: Kernel {
    let name = "pad"
    let walk: BroadcastWalk
    let input: ElementBuffer, output: ElementBuffer
    let count: Int, value: Float
    let inputOffset: Int, outputOffset: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        switch output.dtype {
        case .float32:
            output.floats.update(repeating: value, count: count)
            walk.copy(UnsafePointer(input.floats + inputOffset), to: output.floats + outputOffset)
        case .int64:
            output.int64s.update(repeating: Int64(value), count: count)
            walk.copy(UnsafePointer(input.int64s + inputOffset), to: output.int64s + outputOffset)
        default:
            output.booleans.update(repeating: value != 0 ? 1 : 0, count: count)
            walk.copy(UnsafePointer(input.booleans + inputOffset), to: output.booleans + outputOffset)
        }
    }
}

/// N-D nearest or (multi)linear resize of every axis whose size changes.
struct ResizeNDStep: Kernel {
    let name = "resize"
    let input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>
    let inputShape: [Int], outputShape: [Int]
    let mode: ResizeMode

    /// Row by row: each output row (all axes but the last fixed) blends the input rows at the
    /// low and high source index of every leading axis (one row for nearest), and along the last
    /// axis takes each output element from its precomputed low and high source columns.
    func run(scratch: UnsafeMutablePointer<Float>) {
        let rank = inputShape.count
        let inStrides = BroadcastWalk.contiguousStrides(inputShape)
        // Per axis and output coordinate: (low index, high index, weight of high).
        let taps: [[(Int, Int, Float)]] = (0..<rank).map { axis in
            (0..<outputShape[axis]).map { coordinate in source(axis: axis, coordinate: coordinate) }
        }
        let rowLength = outputShape[rank - 1]
        let columns = taps[rank - 1]
        let rows = outputShape.dropLast().reduce(1, *)
        let leading = rank - 1
        Parallel.forEach(rows, costPerItem: rowLength * (1 << leading) * 2) { range in
            var index = [Int](repeating: 0, count: leading)
            for row in range {
                var rest = row
                for axis in (0..<leading).reversed() {
                    index[axis] = rest % outputShape[axis]
                    rest /= outputShape[axis]
                }
                let target = output + row * rowLength
                target.update(repeating: 0, count: rowLength)
                for corner in 0..<(1 << leading) {
                    var offset = 0, weight: Float = 1
                    for axis in 0..<leading {
                        let (low, high, fraction) = taps[axis][index[axis]]
                        let takeHigh = corner & (1 << axis) != 0
                        if takeHigh && fraction == 0 { weight = 0; break }
                        weight *= takeHigh ? fraction : 1 - fraction
                        offset += (takeHigh ? high : low) * inStrides[axis]
                    }
                    guard weight != 0 else { continue }
                    let line = input + offset
                    for x in 0..<rowLength {
                        let (low, high, fraction) = columns[x]
                        let value = fraction == 0 ? line[low] : (1 - fraction) * line[low] + fraction * line[high]
                        target[x] += weight * value
                    }
                }
            }
        }
    }

    private func source(axis: Int, coordinate: Int) -> (Int, Int, Float) {
        let (inSize, outSize) = (inputShape[axis], outputShape[axis])
        if inSize == outSize { return (coordinate, coordinate, 0) }
        let scale = Double(outSize) / Double(inSize), x = Double(coordinate)
        var original: Double
        switch mode.coordinates {
        case .halfPixel: original = (x + 0.5) / scale - 0.5
        case .pytorchHalfPixel: original = outSize > 1 ? (x + 0.5) / scale - 0.5 : 0
        case .alignCorners: original = outSize > 1 ? x * Double(inSize - 1) / Double(outSize - 1) : 0
        case .asymmetric: original = x / scale
        }
        if mode.interpolation == .nearest {
            var nearest: Double
            switch mode.rounding {
            case .floor: nearest = original.rounded(.down)
            case .ceil: nearest = original.rounded(.up)
            case .roundPreferFloor: nearest = original - original.rounded(.down) == 0.5 ? original.rounded(.down) : original.rounded()
            case .roundPreferCeil: nearest = original - original.rounded(.down) == 0.5 ? original.rounded(.up) : original.rounded()
            }
            let clamped = min(max(Int(nearest), 0), inSize - 1)
            return (clamped, clamped, 0)
        }
        original = min(max(original, 0), Double(inSize - 1))
        let low = Int(original.rounded(.down)), high = min(low + 1, inSize - 1)
        return (low, high, Float(original - Double(low)))
    }
}

/// The index of the largest (smallest) element of each [outer, length, inner] lane; the first on ties.
struct ArgExtremumStep: Kernel {
    let name: String
    let input: ElementBuffer, output: UnsafeMutablePointer<Int64>
    let outer: Int, length: Int, inner: Int
    let largest: Bool

    func run(scratch: UnsafeMutablePointer<Float>) {
        switch input.dtype {
        case .int64: search(UnsafePointer(input.int64s))
        case .float32: search(UnsafePointer(input.floats))
        default: search(UnsafePointer(input.booleans))
        }
    }

    private func search<Element: Comparable>(_ values: UnsafePointer<Element>) {
        for lane in 0..<(outer * inner) {
            let base = (lane / inner) * length * inner + lane % inner
            var best = 0
            for index in 1..<max(length, 1) {
                let candidate = values[base + index * inner], current = values[base + best * inner]
                if largest ? candidate > current : candidate < current { best = index }
            }
            output[lane] = Int64(best)
        }
    }
}

/// GatherND (batch_dims 0): each index tuple of `dataShape.count` coordinates
/// (negative ones from the end) picks a slice of `sliceCount` elements; a tuple
/// outside the data gives zeros (indices from users are checked before the run).
struct GatherNDStep: Kernel {
    let name = "gather_nd"
    let data: ElementBuffer, indices: UnsafePointer<Int64>, output: ElementBuffer
    let dataShape: [Int]
    let sliceCount: Int, tupleCount: Int

    func run(scratch: UnsafeMutablePointer<Float>) {
        let elementSize = output.dtype.byteSize, depth = dataShape.count
        for tuple in 0..<tupleCount {
            var offset = 0, inside = true
            for axis in 0..<depth {
                let raw = Int(indices[tuple * depth + axis])
                let position = raw < 0 ? raw + dataShape[axis] : raw
                if position < 0 || position >= dataShape[axis] { inside = false; break }
                offset = offset * dataShape[axis] + position
            }
            let target = output.bytes + tuple * sliceCount * elementSize
            if inside {
                target.copyMemory(from: data.bytes + offset * sliceCount * elementSize, byteCount: sliceCount * elementSize)
            } else {
                target.initializeMemory(as: UInt8.self, repeating: 0, count: sliceCount * elementSize)
            }
        }
    }
}

/// Running sums along the middle axis of [outer, length, inner] (ONNX CumSum), in float32 or int64.
struct CumulativeSumStep: Kernel {
    let name = "cumulative_sum"
    let input: ElementBuffer, output: ElementBuffer
    let outer: Int, length: Int, inner: Int
    let exclusive: Bool, reverse: Bool

    func run(scratch: UnsafeMutablePointer<Float>) {
        if input.dtype == .int64 {
            sum(UnsafePointer(input.int64s), output.int64s)
        } else {
            sum(UnsafePointer(input.floats), output.floats)
        }
    }

    private func sum<Element: AdditiveArithmetic>(_ x: UnsafePointer<Element>, _ y: UnsafeMutablePointer<Element>) {
        for block in 0..<outer {
            for lane in 0..<inner {
                var total = Element.zero
                for step in 0..<length {
                    let position = reverse ? length - 1 - step : step
                    let index = (block * length + position) * inner + lane
                    let value = x[index]
                    if exclusive {
                        y[index] = total
                        total += value
                    } else {
                        total += value
                        y[index] = total
                    }
                }
            }
        }
    }
}

/// A copy of data with the slices the index tuples pick replaced or combined with updates, in tuple order
/// (ONNX ScatterND). Tuples outside the data are skipped (ONNX leaves them undefined).
struct ScatterNDStep: Kernel {
    let name = "scatter_nd"
    let data: ElementBuffer, indices: UnsafePointer<Int64>, updates: ElementBuffer, output: ElementBuffer
    let dataShape: [Int]
    let sliceCount: Int, tupleCount: Int, totalCount: Int
    let reduction: ScatterReduction

    func run(scratch: UnsafeMutablePointer<Float>) {
        let elementSize = output.dtype.byteSize
        if output.bytes != data.bytes { output.bytes.copyMemory(from: data.bytes, byteCount: totalCount * elementSize) }
        for tuple in 0..<tupleCount {
            var offset = 0, inside = true
            for axis in 0..<dataShape.count {
                let raw = Int(indices[tuple * dataShape.count + axis])
                let position = raw < 0 ? raw + dataShape[axis] : raw
                if position < 0 || position >= dataShape[axis] { inside = false; break }
                offset = offset * dataShape[axis] + position
            }
            guard inside else { continue }
            let (target, source) = (offset * sliceCount, tuple * sliceCount)
            switch output.dtype {
            case .float32: combine(output.floats + target, UnsafePointer(updates.floats + source))
            case .int64: combine(output.int64s + target, UnsafePointer(updates.int64s + source))
            default:
                (output.bytes + target * elementSize).copyMemory(from: updates.bytes + source * elementSize,
                                                                 byteCount: sliceCount * elementSize)
            }
        }
    }

    private func combine<Element: Numeric & Comparable>(_ target: UnsafeMutablePointer<Element>,
                                                        _ source: UnsafePointer<Element>) {
        for index in 0..<sliceCount {
            switch reduction {
            case .none: target[index] = source[index]
            case .add: target[index] += source[index]
            case .mul: target[index] *= source[index]
            case .max: target[index] = Swift.max(target[index], source[index])
            case .min: target[index] = Swift.min(target[index], source[index])
            }
        }
    }
}
