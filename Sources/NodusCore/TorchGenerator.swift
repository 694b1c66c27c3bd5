#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reproduces PyTorch's CPU `torch.randn` bit for bit.
///
/// `var generator = TorchGenerator(seed: s)` followed by `normal(count:)` /
/// `fillNormal` / `randn(shape:)` calls gives exactly the float32 values of
/// `g = torch.Generator().manual_seed(s)` followed by the same sequence of
/// `torch.randn(shape, generator=g)` calls (float32, CPU, mean 0, std 1),
/// including how the generator state advances between calls.
///
/// What it matches (verified against torch 2.13.0+cpu, x86-64, whose AVX512
/// dispatch falls back to the AVX2 `normal_kernel`):
/// - The engine is torch's `at::mt19937` seeded from the low 32 bits of the seed.
/// - `count >= 16` (`normal_fill`): `count` uniforms `(random() & 0xffffff) * 2^-24`
///   are drawn, Box-Muller is applied in place to each full block of 16 (lanes
///   `j` and `j + 8` pair up), and when `count % 16 != 0` sixteen fresh uniforms
///   are drawn for the last 16 positions, which are recomputed. Box-Muller is
///   torch's AVX2 `NormalFill16<float>`: `avx_mathfun.h`'s Cephes-style
///   `log256_ps` and `sincos256_ps` as GCC compiled them into libtorch_cpu, with
///   the multiply-adds it fused into FMAs reproduced exactly (`addingProduct`).
/// - `count < 16`: torch's scalar `at::normal_distribution<double>`: two
///   `random64()` uniforms with 53 bits, `sqrt(-2 log1p(-u2))`, `sin`/`cos` of
///   `2 pi u1` in double from the C library, rounded to float; the second value
///   of each pair is cached in the generator and returned by the next small call,
///   exactly like `CPUGeneratorImpl::next_double_normal_sample`.
///
/// Limitations: only standard normal float32 (`mean 0`, `std 1`); the small path
/// calls the platform's `log1p`/`sin`/`cos`, so it is bit-exact when those are
/// glibc's (as torch's are on Linux). Other torch builds or dispatch levels (for
/// example `ATEN_CPU_CAPABILITY=default`, which uses scalar `logf`/`sinf`/`cosf`),
/// CUDA generators and float64 `randn` are not reproduced.
public struct TorchGenerator: Sendable {
    /// The seed given at creation.
    public let seed: UInt64
    private var engine: MersenneTwister
    /// torch's cached second Box-Muller value of the double (small tensor) path.
    private var cachedNormal: Double?

    /// Equivalent to `torch.Generator().manual_seed(seed)`.
    public init(seed: UInt64) {
        self.seed = seed
        engine = MersenneTwister(seed: seed)
        cachedNormal = nil
    }

    /// torch's `CPUGeneratorImpl::random()`: the next 32 engine bits.
    public mutating func nextUInt32() -> UInt32 {
        engine.next()
    }

    /// torch's `CPUGeneratorImpl::random64()`: two draws, the first as the high half.
    public mutating func nextUInt64() -> UInt64 {
        let high = UInt64(engine.next())
        let low = UInt64(engine.next())
        return (high << 32) | low
    }

    /// Fills `count` floats at `target` with what `torch.randn(count)` would produce.
    public mutating func fillNormal(_ target: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        if count < 16 {
            for index in 0..<count {
                target[index] = nextSmallPathNormal()
            }
            return
        }
        fillUniform(target, count: count)
        var blockStart = 0
        while blockStart + 16 <= count {
            TorchGenerator.boxMuller16(target + blockStart)
            blockStart += 16
        }
        if count % 16 != 0 {
            let tail = target + (count - 16)
            fillUniform(tail, count: 16)
            TorchGenerator.boxMuller16(tail)
        }
    }

    /// The values of `torch.randn(count)`.
    public mutating func normal(count: Int) -> [Float] {
        let length = max(count, 0)
        return [Float](unsafeUninitializedCapacity: length) { buffer, initialized in
            if let base = buffer.baseAddress {
                fillNormal(base, count: length)
            }
            initialized = length
        }
    }

    /// A float32 tensor holding `torch.randn(shape)`.
    /// - Throws: `NodusError.shape` for a negative or too large shape.
    public mutating func randn(shape: [Int]) throws -> Tensor {
        let tensor = try Tensor(zeros: shape, dtype: .float32)
        fillNormal(tensor.floats, count: tensor.elementCount)
        return tensor
    }

    // MARK: - Small tensors (fewer than 16 elements)

    /// One value of torch's `at::normal_distribution<double>(0, 1)`, cast to float.
    private mutating func nextSmallPathNormal() -> Float {
        if let cached = cachedNormal {
            cachedNormal = nil
            // transformation::normal: fma(value, std 1, mean 0), i.e. value + 0.
            return Float(cached + 0.0)
        }
        let mask53: UInt64 = (1 << 53) - 1
        let uniform1 = Double(nextUInt64() & mask53) * 0x1p-53
        let uniform2 = Double(nextUInt64() & mask53) * 0x1p-53
        let radius = (-2.0 * log1p(-uniform2)).squareRoot()
        let theta = 2.0 * Double.pi * uniform1
        cachedNormal = radius * sin(theta)
        let value = radius * cos(theta)
        return Float(value + 0.0)
    }

    // MARK: - Large tensors (16 elements or more)

    /// Writes `count` uniforms in [0, 1) as torch's `uniform_real_distribution<float>`:
    /// the low 24 bits of one engine draw times 2^-24 (exact).
    @inline(__always)
    private mutating func fillUniform(_ target: UnsafeMutablePointer<Float>, count: Int) {
        for index in 0..<count {
            target[index] = Float(engine.next() & 0x00ff_ffff) * 0x1p-24
        }
    }

    /// torch's AVX2 `NormalFill16<float>` on 16 uniforms at `data`, in place.
    @inline(__always)
    private static func boxMuller16(_ data: UnsafeMutablePointer<Float>) {
        for lane in 0..<8 {
            let (first, second) = boxMullerLane(uniform1: data[lane], uniform2: data[lane + 8])
            data[lane] = first
            data[lane + 8] = second
        }
    }

    // MARK: - One lane of the AVX2 kernel

    /// One lane of torch's AVX2 `NormalFill16<float>`: returns
    /// `(radius * cos(theta), radius * sin(theta))` with
    /// `radius = sqrt(-2 log(1 - uniform1))` and `theta = float(2 pi) * uniform2`,
    /// where log, sin and cos are the Cephes-style polynomials of `avx_mathfun.h`.
    ///
    /// Every operation below mirrors one instruction of the compiled kernel, in the
    /// same order: plain `*`, `+`, `-` where it uses separate multiply and add
    /// instructions and `addingProduct` (a fused multiply-add, one rounding) where
    /// GCC contracted a multiply and an add into an FMA. Swift never contracts
    /// `a * b + c` on its own, so the result does not depend on build settings.
    @inline(__always)
    static func boxMullerLane(uniform1: Float, uniform2: Float) -> (Float, Float) {
        let radius = (logarithm(1.0 - uniform1) * -2.0).squareRoot()
        let theta = Float(bitPattern: 0x40c9_0fdb) * uniform2  // float(2 pi) * u2
        let (sine, cosine) = sineCosine(theta)
        // fma(n, std 1, mean 0) is n + 0 (turns -0 into +0, as the FMA does).
        return (radius * cosine + 0.0, radius * sine + 0.0)
    }

    /// `log256_ps` for one lane (natural logarithm, NaN for `x <= 0`).
    @inline(__always)
    static func logarithm(_ input: Float) -> Float {
        let invalid = input <= 0
        // Cut off denormals (vmaxps returns the second operand unless the first is greater).
        let minimumNormal = Float(bitPattern: 0x0080_0000)
        let clamped = input > minimumNormal ? input : minimumNormal
        let exponentBits = Int32(bitPattern: clamped.bitPattern >> 23) &- 127
        var mantissa = Float(bitPattern: (clamped.bitPattern & 0x807f_ffff) | 0x3f00_0000)
        var exponent = Float(exponentBits) + 1.0
        let belowSquareRootHalf = mantissa < Float(bitPattern: 0x3f35_04f3)
        let addend: Float = belowSquareRootHalf ? mantissa : 0.0
        mantissa = mantissa + -1.0
        exponent = exponent - (belowSquareRootHalf ? 1.0 : 0.0)
        mantissa = mantissa + addend

        let square = mantissa * mantissa
        var polynomial = Float(bitPattern: 0xbdeb_d1b8).addingProduct(Float(bitPattern: 0x3d90_21bb), mantissa)
        polynomial = Float(bitPattern: 0x3def_251a).addingProduct(polynomial, mantissa)
        polynomial = Float(bitPattern: 0xbdfe_5d4f).addingProduct(polynomial, mantissa)
        polynomial = Float(bitPattern: 0x3e11_e9bf).addingProduct(polynomial, mantissa)
        polynomial = Float(bitPattern: 0xbe2a_ae50).addingProduct(polynomial, mantissa)
        polynomial = Float(bitPattern: 0x3e4c_ceac).addingProduct(polynomial, mantissa)
        polynomial = Float(bitPattern: 0xbe7f_fffc).addingProduct(polynomial, mantissa)
        polynomial = Float(bitPattern: 0x3eaa_aaaa).addingProduct(polynomial, mantissa)
        let exponentTimesQ1 = exponent * Float(bitPattern: 0xb95e_8083)
        polynomial = mantissa * polynomial
        polynomial = exponentTimesQ1.addingProduct(polynomial, square)
        polynomial = polynomial.addingProduct(-square, 0.5)
        mantissa = mantissa + polynomial
        let result = mantissa.addingProduct(exponent, Float(bitPattern: 0x3f31_8000))
        return invalid ? Float(bitPattern: result.bitPattern | 0xffff_ffff) : result
    }

    /// `sincos256_ps` for one lane: `(sin(x), cos(x))`, accurate for |x| below 8192.
    @inline(__always)
    static func sineCosine(_ input: Float) -> (Float, Float) {
        let signMask: UInt32 = 0x8000_0000
        var signOfSine = input.bitPattern & signMask
        var reduced = Float(bitPattern: input.bitPattern & ~signMask)
        let scaled = reduced * Float(bitPattern: 0x3fa2_f983)  // 4 / pi
        // cvttps2dq; the callers' arguments are below 2 pi, far inside Int32.
        var octant = Int32(scaled)
        octant = (octant &+ 1) & ~1
        let octantValue = Float(octant)
        let swapSignOfSine = UInt32(bitPattern: octant & 4) << 29
        let useSinePolynomialForSine = (octant & 2) == 0

        // Extended precision modular arithmetic: x - y * (pi / 4) in three parts.
        reduced = reduced.addingProduct(octantValue, Float(bitPattern: 0xbf49_0000))
        reduced = reduced.addingProduct(octantValue, Float(bitPattern: 0xb97d_a000))
        reduced = reduced.addingProduct(octantValue, Float(bitPattern: 0xb322_2169))

        let signOfCosine = UInt32(bitPattern: ~(octant &- 2) & 4) << 29
        signOfSine ^= swapSignOfSine

        let square = reduced * reduced
        let halfSquare = square * 0.5
        var cosinePolynomial = Float(bitPattern: 0xbab6_061a).addingProduct(Float(bitPattern: 0x37cc_f5ce), square)
        cosinePolynomial = Float(bitPattern: 0x3d2a_aaa5).addingProduct(cosinePolynomial, square)
        cosinePolynomial = square * cosinePolynomial
        cosinePolynomial = (-halfSquare).addingProduct(square, cosinePolynomial)
        cosinePolynomial = cosinePolynomial + 1.0

        var sinePolynomial = Float(bitPattern: 0x3c08_839e).addingProduct(Float(bitPattern: 0xb94c_a1f9), square)
        sinePolynomial = Float(bitPattern: 0xbe2a_aaa3).addingProduct(sinePolynomial, square)
        sinePolynomial = square * sinePolynomial
        sinePolynomial = reduced.addingProduct(reduced, sinePolynomial)

        // Blend exactly as the kernel does (masked parts are +0).
        let sinePart = useSinePolynomialForSine ? sinePolynomial : 0.0
        let cosinePart = useSinePolynomialForSine ? 0.0 : cosinePolynomial
        let sineRemainder = sinePolynomial - sinePart
        let cosineRemainder = cosinePolynomial - cosinePart
        let sine = sinePart + cosinePart
        let cosine = sineRemainder + cosineRemainder
        return (Float(bitPattern: sine.bitPattern ^ signOfSine),
                Float(bitPattern: cosine.bitPattern ^ signOfCosine))
    }
}
