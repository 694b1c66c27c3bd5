/// The settings of a CLIP tokenizer beyond its vocabulary: what tokenizer_config.json and
/// special_tokens_map.json (or tokenizer.json's normalizer and post-processor) say. The defaults are
/// transformers' `CLIPTokenizer` defaults, with `modelMaxLength` 77 (CLIP's position count).
public struct CLIPTokenizerConfiguration: Equatable, Sendable {
    /// Sequence length of `encodePadded` (tokenizer_config.json `model_max_length`). A missing value,
    /// or transformers' "no limit" placeholder (1e30), gives 77.
    public var modelMaxLength = 77
    public var beginToken = "<|startoftext|>"
    public var endToken = "<|endoftext|>"
    /// SD-1.5's tokenizer pads with `<|endoftext|>`, SD-2's with `!`.
    public var padToken = "<|endoftext|>"
    public var unknownToken = "<|endoftext|>"
    /// Whether each special token is matched in the cleaned text (`AddedToken.normalized`): true for
    /// a token written as an object with `"normalized": true`, false for a plain string (transformers
    /// 5 adds those with `normalized=False`). When two roles share a token (`<|endoftext|>` is EOS,
    /// UNK and SD-1.5's PAD) see `CLIPTokenizer.init` for which flag wins.
    public var beginTokenNormalized = false
    public var endTokenNormalized = false
    public var padTokenNormalized = false
    public var unknownTokenNormalized = false
    /// NFC normalisation (tokenizers' `NFC` normalizer).
    public var composesUnicode = true
    /// Lower-casing (tokenizers' `Lowercase`, a per-character full Unicode mapping).
    /// tokenizer_config.json's `do_lower_case` is not read: transformers 5 ignores it too.
    public var lowercases = true
    /// tokenizer_config.json's `added_tokens_decoder` (written by transformers 4.34 and later), when
    /// present: transformers then takes the added tokens and their flags from it, not from
    /// tokenizer.json, and does not read special_tokens_map.json.
    public var declaredAddedTokens: [AddedToken]?
    /// The end-of-word suffix of the BPE model.
    public var endOfWordSuffix = "</w>"

    public init() {}
}
