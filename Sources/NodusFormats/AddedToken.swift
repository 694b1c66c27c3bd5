/// A token matched whole in the input before byte-pair encoding: tokenizers' `AddedToken`
/// (the `added_tokens` of tokenizer.json; CLIP's `<|startoftext|>` and `<|endoftext|>`).
///
/// A `normalized` token is matched in the cleaned text (so `<|STARTOFTEXT|>` matches SD-1.5's BOS,
/// an object with `"normalized": true`, the text being lower-cased), the others in the raw text
/// (`<|ENDOFTEXT|>` is no EOS there: its PAD, a plain string, makes `<|endoftext|>` unnormalized);
/// leftmost, longest match first.
/// Limitations: `lstrip`, `rstrip` and `single_word` are not read (CLIP's are all false).
public struct AddedToken: Equatable, Sendable {
    public var content: String
    public var id: Int
    public var normalized: Bool
    public var special: Bool

    public init(content: String, id: Int, normalized: Bool = true, special: Bool = true) {
        self.content = content
        self.id = id
        self.normalized = normalized
        self.special = special
    }
}
