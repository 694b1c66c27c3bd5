import CNodusKernels

/// The instruction-set level the kernels run at (`nodus_cpu_level()`), lowest
/// first. Chosen once per process from the CPU; the `NODUS_CPU` environment
/// variable (`baseline`, `avx2`, `avx512`, `avx512_bf16`) can lower it, never
/// raise it, so every path a user's CPU takes can be tested on a bigger one.
public enum CPULevel: Int32, CaseIterable, Comparable, Sendable {
    /// Any x86-64: Swift SIMD loops and OpenBLAS.
    case baseline = 0
    /// AVX2 and FMA (Haswell and later, AMD Zen 1-3).
    case avx2 = 1
    /// AVX-512F (Skylake-SP and later, AMD Zen 4/5).
    case avx512 = 2
    /// AVX-512 with the bf16 dot products (Cooper Lake, Sapphire Rapids, AMD Zen 4/5).
    case avx512BFloat16 = 3

    /// The level in use by this process.
    public static var inUse: CPULevel { CPULevel(rawValue: Int32(nodus_kernels_level_in_use().rawValue)) ?? .baseline }

    /// The highest level this CPU supports.
    public static var supported: CPULevel {
        CPULevel(rawValue: Int32(nodus_kernels_level_supported().rawValue)) ?? .baseline
    }

    /// Why `NODUS_CPU` was not honoured as written, or nil.
    public static var overrideProblem: String? { nodus_kernels_level_problem().map { String(cString: $0) } }

    /// "baseline", "avx2", "avx512" or "avx512_bf16".
    public var name: String { String(cString: nodus_kernels_level_label(rawValue)) }

    public init?(name: String) {
        guard let match = CPULevel.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    public static func < (lhs: CPULevel, rhs: CPULevel) -> Bool { lhs.rawValue < rhs.rawValue }
}
