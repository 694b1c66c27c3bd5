import NodusCore
import NodusGraph

/// How a model is loaded and run (the C ABI's `nodus_model_params`).
public struct ModelOptions: Sendable {
    /// Worker threads; 0 means every core.
    public var threads: Int = 0
    /// Compute precision of the Linears and convolutions: `.float32`, or
    /// `.bfloat16` (weights rounded to bf16 and packed once, bf16 products
    /// summed in float32, as torch's bf16 autocast; everything else float32).
    public var dtype: DType = .float32
    /// How weight files (and LoRA files loaded into the model) are held: mapped, or read into
    /// memory (see `FileAccess`: the cure for SIGBUS when files change under a running model).
    public var fileAccess: FileAccess = .mapped

    public init(threads: Int = 0, dtype: DType = .float32, fileAccess: FileAccess = .mapped) {
        self.threads = threads
        self.dtype = dtype
        self.fileAccess = fileAccess
    }

    /// The precision of `dtype`.
    /// - Throws: `NodusError.unsupported` when `dtype` is not a compute precision.
    func precision() throws -> PackedWeights.Precision {
        switch dtype {
        case .float32: return .float32
        case .bfloat16: return .bfloat16
        default: throw NodusError.unsupported("dtype \(dtype.name) is not a compute precision (float32 or bfloat16)")
        }
    }
}
