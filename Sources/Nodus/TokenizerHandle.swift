import NodusFormats

/// What a `nodus_tokenizer *` points to: a loaded CLIP tokenizer (immutable; its BPE cache locks).
final class TokenizerHandle: OpaqueHandle {
    static let typeName = "nodus_tokenizer"
    let callLock = HandleLock()

    let tokenizer: CLIPTokenizer

    init(tokenizer: CLIPTokenizer) { self.tokenizer = tokenizer }
}
