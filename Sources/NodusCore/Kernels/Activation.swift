#if canImport(Glibc)
import Glibc
#endif
import CNodusKernels

/// Element-wise activations, in place or out of place (`input` may equal `output`).
public enum Activation {
    /// GELU with the tanh approximation (`nn.GELU(approximate="tanh")`).
    public static func geluTanh(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        if vectorized(input, output, count: count, nodus_gelu_tanh) { return }
        // 0.5 x (1 + tanh u) = x sigmoid(2u): the same function without the
        // cancellation of 1 + tanh u far left, as the vector kernels compute it.
        map(input, output, count: count) { x in
            x * VectorMath.sigmoid(1.595_769_12 * x * (1 + 0.044_715 * x * x))
        }
    }

    /// Exact GELU (`nn.GELU()`): 0.5 x (1 + erf(x / sqrt 2)).
    public static func geluErf(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        if vectorized(input, output, count: count, nodus_gelu_erf) { return }
        Parallel.forEach(count) { range in
            for index in range {
                output[index] = exactGELU(input[index])
            }
        }
    }

    /// GEGLU gating (diffusers `GEGLU`): each input row [2 width] is (hidden, gate);
    /// output row = hidden * GELU(gate) with the exact erf GELU.
    public static func geglu(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        if hasVectorKernels {
            Parallel.forEach(rows, costPerItem: width * 8) { range in
                _ = nodus_geglu(input + range.lowerBound * 2 * width, output + range.lowerBound * width,
                                Int64(range.count), Int64(width))
            }
            return
        }
        Parallel.forEach(rows, costPerItem: width * 8) { range in
            for row in range {
                let hidden = input + row * 2 * width, gate = hidden + width, target = output + row * width
                for index in 0..<width { target[index] = hidden[index] * exactGELU(gate[index]) }
            }
        }
    }

    /// x Phi(x) in float64, through erfc: 1 + erf(z) cancels for z far below 0.
    @inline(__always)
    private static func exactGELU(_ x: Float) -> Float {
        Float(0.5 * Double(x) * erfc(-Double(x) * 0.707_106_781_186_547_6))
    }

    /// SiLU / swish: x * sigmoid(x).
    public static func silu(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        if vectorized(input, output, count: count, nodus_silu) { return }
        map(input, output, count: count) { x in x * VectorMath.sigmoid(x) }
    }

    /// The logistic sigmoid 1 / (1 + e^-x).
    public static func sigmoid(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        if vectorized(input, output, count: count, nodus_sigmoid) { return }
        map(input, output, count: count) { x in VectorMath.sigmoid(x) }
    }

    /// transformers' `quick_gelu`: x * sigmoid(1.702 x).
    public static func quickGELU(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        if vectorized(input, output, count: count, nodus_quick_gelu) { return }
        map(input, output, count: count) { x in x * VectorMath.sigmoid(1.702 * x) }
    }

    /// SiLU on the calling thread only (for kernels that already split their work).
    static func siluSerial(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        if hasVectorKernels && nodus_silu(input, output, Int64(count)) != 0 { return }
        var start = 0
        while start + 8 <= count {
            let x = UnsafeRawPointer(input + start).loadUnaligned(as: VectorMath.Vector.self)
            UnsafeMutableRawPointer(output + start).storeBytes(of: x * VectorMath.sigmoid(x), as: VectorMath.Vector.self)
            start += 8
        }
        while start < count {
            let x = input[start]
            output[start] = x / (1 + VectorMath.exp(-x))
            start += 1
        }
    }

    /// Whether the activations of `Sources/CNodusKernels/activation.c` (AVX-512 or AVX2) run here.
    static let hasVectorKernels = nodus_activation_supported() != 0

    /// `kernel` (one of those) over the workers, or false on CPUs it does not run on.
    private static func vectorized(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int,
                                   _ kernel: (UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, Int64) -> Int32)
        -> Bool {
        guard hasVectorKernels else { return false }
        let chunk = 4096
        Parallel.forEach((count + chunk - 1) / chunk, costPerItem: chunk) { range in
            let start = range.lowerBound * chunk, end = min(count, range.upperBound * chunk)
            _ = kernel(input + start, output + start, Int64(end - start))
        }
        return true
    }

    /// Applies a vector function over `count` floats, 8 at a time, split over threads.
    @inline(__always)
    static func map(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int,
                    _ function: (VectorMath.Vector) -> VectorMath.Vector) {
        Parallel.forEach((count + 7) / 8, costPerItem: 8) { range in
            for block in range {
                let start = block * 8
                if start + 8 <= count {
                    let x = UnsafeRawPointer(input + start).loadUnaligned(as: VectorMath.Vector.self)
                    UnsafeMutableRawPointer(output + start).storeBytes(of: function(x), as: VectorMath.Vector.self)
                } else {
                    var x = VectorMath.Vector(repeating: 0)
                    for lane in 0..<(count - start) { x[lane] = input[start + lane] }
                    let y = function(x)
                    for lane in 0..<(count - start) { output[start + lane] = y[lane] }
                }
            }
        }
    }
}
