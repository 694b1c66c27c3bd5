import NodusFormats

/// What a `nodus_tokenizer *` points to: a loaded CLIP tokenizer (immutable; its BPE cache locks).
final class TokenizerHandle {
    let tokenizer: CLIPTokenizer

    init(tokenizer: CLIPTokenizer) { self.tokenizer = tokenizer }

    /// A new retained opaque pointer to `self` (released by `nodus_tokenizer_free`).
    func retainedPointer() -> OpaquePointer {
        OpaquePointer(Unmanaged.passRetained(self).toOpaque())
    }

    /// The handle behind `pointer`, which must come from `retainedPointer()`.
    static func from(_ pointer: OpaquePointer) -> TokenizerHandle {
        Unmanaged<TokenizerHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
