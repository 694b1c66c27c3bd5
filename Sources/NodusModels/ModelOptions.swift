import NodusCore

/// How a model is loaded and run (the C ABI's `nodus_model_params`).
public struct ModelOptions: Sendable {
    /// Worker threads; 0 means every core.
    public var threads: Int = 0
    /// Compute precision. Only `.float32` for now.
    public var dtype: DType = .float32

    public init(threads: Int = 0, dtype: DType = .float32) {
        self.threads = threads
        self.dtype = dtype
    }
}
