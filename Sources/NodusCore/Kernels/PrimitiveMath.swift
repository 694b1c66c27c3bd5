#if canImport(Glibc)
import Glibc
#endif

/// The reference loops of the primitive ops that have no fused kernel: N-D,
/// strided, on float32, int64 or bool (one byte) elements. They favour being
/// right for every shape over speed; the graph passes raise the hot patterns
/// to the fused kernels.
public enum PrimitiveMath {
    /// `target = function(a, b)` along a walk of (target, a, b).
    @inline(__always)
    public static func binary<Element, Result>(_ walk: BroadcastWalk, _ a: UnsafePointer<Element>,
                                               _ b: UnsafePointer<Element>, _ target: UnsafeMutablePointer<Result>,
                                               _ function: (Element, Element) -> Result) {
        walk.forEachRunInParallel { offsets, length, steps in
            let (out, left, right) = (target + offsets[0], a + offsets[1], b + offsets[2])
            if steps[0] == 1 && steps[1] == 1 && steps[2] == 1 {
                for index in 0..<length { out[index] = function(left[index], right[index]) }
            } else if steps[0] == 1 && steps[1] == 1 && steps[2] == 0 {
                let scalar = right[0]
                for index in 0..<length { out[index] = function(left[index], scalar) }
            } else {
                for index in 0..<length {
                    out[index * steps[0]] = function(left[index * steps[1]], right[index * steps[2]])
                }
            }
        }
    }

    /// The float32 arithmetic `binary` runs as plain loops (the generic closure
    /// form does not vectorize): residual adds and scales are hot in exports.
    public enum Arithmetic: Sendable { case add, subtract, multiply, divide }

    /// `target = a op b` on float32 along a walk of (target, a, b).
    public static func arithmetic(_ operation: Arithmetic, _ walk: BroadcastWalk, _ a: UnsafePointer<Float>,
                                  _ b: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>) {
        walk.forEachRunInParallel { offsets, length, steps in
            let (out, left, right) = (target + offsets[0], a + offsets[1], b + offsets[2])
            if steps[0] == 1 && steps[1] == 1 && steps[2] == 1 {
                switch operation {
                case .add: for index in 0..<length { out[index] = left[index] + right[index] }
                case .subtract: for index in 0..<length { out[index] = left[index] - right[index] }
                case .multiply: for index in 0..<length { out[index] = left[index] * right[index] }
                case .divide: for index in 0..<length { out[index] = left[index] / right[index] }
                }
            } else if steps[0] == 1 && steps[1] == 1 && steps[2] == 0 {
                let value = right[0]
                switch operation {
                case .add: for index in 0..<length { out[index] = left[index] + value }
                case .subtract: for index in 0..<length { out[index] = left[index] - value }
                case .multiply: for index in 0..<length { out[index] = left[index] * value }
                case .divide: for index in 0..<length { out[index] = left[index] / value }
                }
            } else if steps[0] == 1 && steps[1] == 0 && steps[2] == 1 {
                let value = left[0]
                switch operation {
                case .add: for index in 0..<length { out[index] = value + right[index] }
                case .subtract: for index in 0..<length { out[index] = value - right[index] }
                case .multiply: for index in 0..<length { out[index] = value * right[index] }
                case .divide: for index in 0..<length { out[index] = value / right[index] }
                }
            } else {
                for index in 0..<length {
                    let x = left[index * steps[1]], y = right[index * steps[2]]
                    let result: Float
                    switch operation {
                    case .add: result = x + y
                    case .subtract: result = x - y
                    case .multiply: result = x * y
                    case .divide: result = x / y
                    }
                    out[index * steps[0]] = result
                }
            }
        }
    }

    /// `target = function(x)` element by element (same count).
    @inline(__always)
    public static func map<Element, Result>(_ x: UnsafePointer<Element>, _ target: UnsafeMutablePointer<Result>,
                                            count: Int, _ function: (Element) -> Result) {
        Parallel.forEach(count, costPerItem: 4) { range in
            for index in range { target[index] = function(x[index]) }
        }
    }

    /// `target = condition ? a : b` along a walk of (target, condition, a, b).
    public static func select<Element>(_ walk: BroadcastWalk, _ condition: UnsafePointer<UInt8>,
                                       _ a: UnsafePointer<Element>, _ b: UnsafePointer<Element>,
                                       _ target: UnsafeMutablePointer<Element>) {
        walk.forEachRunInParallel { offsets, length, steps in
            for index in 0..<length {
                let chosen = condition[offsets[1] + index * steps[1]] != 0
                    ? a[offsets[2] + index * steps[2]] : b[offsets[3] + index * steps[3]]
                target[offsets[0] + index * steps[0]] = chosen
            }
        }
    }

    /// Softmax over the middle axis of [outer, length, inner], max-subtracted.
    public static func softmax(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                               outer: Int, length: Int, inner: Int) {
        Parallel.forEach(outer * inner, costPerItem: length * 4) { range in
            for lane in range {
                let base = (lane / inner) * length * inner + lane % inner
                var largest = -Float.infinity
                for index in 0..<length { largest = Swift.max(largest, input[base + index * inner]) }
                var sum: Float = 0
                for index in 0..<length {
                    let value = Glibc.expf(input[base + index * inner] - largest)
                    output[base + index * inner] = value
                    sum += value
                }
                let scale = 1 / sum
                for index in 0..<length { output[base + index * inner] *= scale }
            }
        }
    }

    /// Reduces [outer, length, inner] over its middle axis into [outer, inner],
    /// summing in float64 (means and sums of squares keep float32 accuracy).
    public static func reduce(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, outer: Int,
                              length: Int, inner: Int, _ function: ReductionKind) {
        for lane in 0..<(outer * inner) {
            let base = (lane / inner) * length * inner + lane % inner
            var accumulator: Double
            switch function {
            case .max: accumulator = -.infinity
            case .min: accumulator = .infinity
            case .product: accumulator = 1
            case .sum, .mean, .sumOfSquares: accumulator = 0
            }
            for index in 0..<length {
                let value = Double(input[base + index * inner])
                switch function {
                case .sum, .mean: accumulator += value
                case .sumOfSquares: accumulator += value * value
                case .max: accumulator = Swift.max(accumulator, value)
                case .min: accumulator = Swift.min(accumulator, value)
                case .product: accumulator *= value
                }
            }
            output[lane] = Float(function == .mean ? accumulator / Double(Swift.max(length, 1)) : accumulator)
        }
    }

    /// The reductions `reduce` knows.
    public enum ReductionKind: Sendable { case sum, mean, max, min, product, sumOfSquares }

    /// `numpy.take` along the middle axis of data [outer, axisLength, inner];
    /// negative indices count from the end. An index outside the axis gives
    /// zeros (callers check indices that come from users before the run).
    public static func gather<Element>(_ data: UnsafePointer<Element>, outer: Int, axisLength: Int, inner: Int,
                                       indices: UnsafePointer<Int64>, indexCount: Int,
                                       into target: UnsafeMutablePointer<Element>) {
        for block in 0..<outer {
            for index in 0..<indexCount {
                let raw = Int(indices[index])
                let position = raw < 0 ? raw + axisLength : raw
                let destination = target + (block * indexCount + index) * inner
                if position >= 0 && position < axisLength {
                    destination.update(from: data + (block * axisLength + position) * inner, count: inner)
                } else {
                    UnsafeMutableRawPointer(destination).initializeMemory(as: UInt8.self, repeating: 0,
                                                                          count: inner * MemoryLayout<Element>.stride)
                }
            }
        }
    }

    /// A direct N-D convolution of any rank (any groups, strides, dilations, padding), float64 sums:
    /// the reference `ConvolutionND` is checked against, and the path beyond 3 spatial axes.
    public static func convolution(_ input: UnsafePointer<Float>, inputShape: [Int], weight: UnsafePointer<Float>,
                                   weightShape: [Int], bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                   outputShape: [Int], strides: [Int], dilations: [Int], padsBefore: [Int],
                                   groups: Int) {
        let spatialRank = inputShape.count - 2
        let batch = inputShape[0], inChannels = inputShape[1], outChannels = outputShape[1]
        let groupIn = inChannels / groups, groupOut = outChannels / groups
        let inSpatial = Array(inputShape.dropFirst(2)), outSpatial = Array(outputShape.dropFirst(2))
        let kernel = Array(weightShape.dropFirst(2))
        let inPlane = inSpatial.reduce(1, *), outPlane = outSpatial.reduce(1, *), kernelSize = kernel.reduce(1, *)
        let inStrides = BroadcastWalk.contiguousStrides(inSpatial)
        // For each output position and kernel tap: the input offset, or -1 in the padding.
        Parallel.forEach(batch * outChannels, costPerItem: outPlane * groupIn * kernelSize) { range in
            var outIndex = [Int](repeating: 0, count: spatialRank), tap = [Int](repeating: 0, count: spatialRank)
            for plane in range {
                let image = plane / outChannels, channel = plane % outChannels, group = channel / groupOut
                for position in 0..<outPlane {
                    var rest = position
                    for axis in (0..<spatialRank).reversed() {
                        outIndex[axis] = rest % outSpatial[axis]
                        rest /= outSpatial[axis]
                    }
                    var sum = Double(bias?[channel] ?? 0)
                    for tapIndex in 0..<kernelSize {
                        var restTap = tapIndex, offset = 0, inside = true
                        for axis in (0..<spatialRank).reversed() {
                            tap[axis] = restTap % kernel[axis]
                            restTap /= kernel[axis]
                            let coordinate = outIndex[axis] * strides[axis] - padsBefore[axis] + tap[axis] * dilations[axis]
                            if coordinate < 0 || coordinate >= inSpatial[axis] { inside = false; break }
                            offset += coordinate * inStrides[axis]
                        }
                        guard inside else { continue }
                        for inChannel in 0..<groupIn {
                            let x = input[(image * inChannels + group * groupIn + inChannel) * inPlane + offset]
                            let w = weight[(channel * groupIn + inChannel) * kernelSize + tapIndex]
                            sum += Double(x) * Double(w)
                        }
                    }
                    output[plane * outPlane + position] = Float(sum)
                }
            }
        }
    }
}
