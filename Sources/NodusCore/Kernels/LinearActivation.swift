import CNodusKernels

/// An activation a Linear applies to its output as it stores it: a Linear and
/// its only reader, fused (as onnxruntime fuses MatMul + Add + activation). The
/// GEMM's tile epilogue computes it with the formulas of `Activation`'s vector
/// kernels, so the fused product gives the values of the product and then the
/// activation, without a second pass over the output.
public enum LinearActivation: Sendable, Equatable, CaseIterable {
    /// `nn.GELU(approximate="tanh")`.
    case geluTanh
    /// SiLU / swish: x * sigmoid(x).
    case silu
    /// transformers' `quick_gelu`: x * sigmoid(1.702 x).
    case quickGELU

    /// As plans and profiles name the activation.
    public var name: String {
        switch self {
        case .geluTanh: "gelu_tanh"
        case .silu: "silu"
        case .quickGELU: "quick_gelu"
        }
    }

    var kernelActivation: nodus_gemm_activation {
        switch self {
        case .geluTanh: NODUS_GEMM_ACTIVATION_GELU_TANH
        case .silu: NODUS_GEMM_ACTIVATION_SILU
        case .quickGELU: NODUS_GEMM_ACTIVATION_QUICK_GELU
        }
    }

    /// The activation over `count` floats in place, for products without the
    /// tile epilogue (OpenBLAS below AVX2).
    func apply(_ values: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .geluTanh: Activation.geluTanh(values, values, count: count)
        case .silu: Activation.silu(values, values, count: count)
        case .quickGELU: Activation.quickGELU(values, values, count: count)
        }
    }
}
