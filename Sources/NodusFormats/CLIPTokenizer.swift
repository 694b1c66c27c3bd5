import NodusCore

/// CLIP's byte-level BPE tokenizer, as transformers 5's `CLIPTokenizer` (which is also
/// `CLIPTokenizerFast` there: one class backed by Hugging Face tokenizers) encodes text, id for id.
///
/// The steps, in tokenizers' order:
/// 1. added tokens (`<|startoftext|>`, `<|endoftext|>`) are cut out of the text (`AddedToken`);
/// 2. the rest is cleaned: NFC, every run of white space (Unicode `White_Space`) becomes one space,
///    lower case per character (tokenizers' `Sequence[NFC, Replace(\s+, " "), Lowercase]`; this is
///    transformers 5's only path: ftfy and the old `BasicTokenizer` clean-up are gone from it);
/// 3. the pre-split regex `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
///    [^\s\p{L}\p{N}]+` keeps its matches and drops the white space between them (a hand-written
///    scanner over Unicode general categories, see `CLIPTokenizer+PreTokenization.swift`);
/// 4. each piece's UTF-8 bytes go through `BytePairEncoding` with the `</w>` end-of-word suffix;
/// 5. `encode` wraps the ids in BOS/EOS (tokenizers' `RobertaProcessing`); `encodePadded` truncates
///    the content to `modelMaxLength - 2` and pads with the pad token to `modelMaxLength`, as
///    `tokenizer(text, padding="max_length", max_length=77, truncation=True)`.
///
/// Truncation stops cleaning and encoding as soon as enough tokens exist, so a million-character
/// prompt costs what its first words cost. The text is processed one white-space-free run at a time:
/// no cleaning step, added token or pre-token crosses white space, so the ids equal those of the
/// whole text (see `appendContentIDs`).
///
/// Checked against transformers on every Unicode code point and on random strings
/// (tests/reference/check_tokenizer_against_transformers.py): the same ids except for 3 code points.
///
/// Limitations: NFC and the letter / number classes come from the Swift standard library's Unicode
/// tables (Unicode 17 in Swift 6.3); scalars newer than tokenizers' Unicode 16 classes are treated as
/// unassigned, as tokenizers does, but the 3 Unicode 16 vowel signs whose compositions tokenizers'
/// NFC lacks (U+113C2, U+1611E, U+16D67) still compose here. A later Swift or tokenizers with other
/// tables may differ on characters new to one of them. Added tokens holding white space turn the
/// run-by-run processing (and the short-cut) off; `lstrip`, `rstrip` and `single_word` are not read.
/// Only CLIP's pre-tokenizer is implemented (other tokenizer.json files are refused).
public final class CLIPTokenizer: Sendable {
    public let model: BytePairEncoding
    public let configuration: CLIPTokenizerConfiguration
    public let addedTokens: [AddedToken]
    public let beginTokenID: Int
    public let endTokenID: Int
    public let padTokenID: Int
    public let unknownTokenID: Int?

    /// Added tokens matched in the raw and in the cleaned text, as scalar arrays, longest first.
    let rawTokenPatterns: [(scalars: [Unicode.Scalar], id: Int)]
    let normalizedTokenPatterns: [(scalars: [Unicode.Scalar], id: Int)]
    /// False when an added token holds white space: then the text is processed whole.
    let processesRunByRun: Bool
    /// UTF-8 length of the longest token string.
    let longestTokenLength: Int

    /// - Parameters:
    ///   - context: names the tokenizer's source in messages (its folder).
    /// - Throws: `NodusError.format` when a special token of `configuration` is neither in the
    ///   vocabulary nor an added token, or `modelMaxLength` is below 2.
    public init(model: BytePairEncoding, addedTokens: [AddedToken], configuration: CLIPTokenizerConfiguration,
                context: String) throws {
        var tokenIDs = model.vocabulary
        for token in addedTokens { tokenIDs[token.content] = token.id }
        func id(of token: String, _ role: String) throws -> Int {
            guard let id = tokenIDs[token] else {
                throw NodusError.format("\(context): the \(role) token '\(token)' is not in the vocabulary")
            }
            return id
        }
        guard configuration.modelMaxLength >= 2 else {
            throw NodusError.format("\(context): model_max_length is \(configuration.modelMaxLength); "
                                    + "it must leave room for BOS and EOS (at least 2)")
        }
        self.beginTokenID = try id(of: configuration.beginToken, "bos")
        self.endTokenID = try id(of: configuration.endToken, "eos")
        self.padTokenID = try id(of: configuration.padToken, "pad")
        self.unknownTokenID = tokenIDs[configuration.unknownToken]
        self.model = model
        self.configuration = configuration
        // transformers 5 registers the special tokens as added tokens (tokenizers' add_special_tokens)
        // in the order bos, eos, unk, pad, skipping one equal to an earlier one in content and flags; a
        // later registration of the same content replaces the flags. Tokens that tokenizer.json lists
        // keep its flags.
        var registrations: [(content: String, normalized: Bool)] = []
        for role in [(configuration.beginToken, configuration.beginTokenNormalized),
                     (configuration.endToken, configuration.endTokenNormalized),
                     (configuration.unknownToken, configuration.unknownTokenNormalized),
                     (configuration.padToken, configuration.padTokenNormalized)]
            where !registrations.contains(where: { $0.content == role.0 && $0.normalized == role.1 }) {
            registrations.append((role.0, role.1))
        }
        var normalizedFlags: [String: Bool] = [:]
        for registration in registrations { normalizedFlags[registration.content] = registration.normalized }
        var tokens = addedTokens
        for registration in registrations where !tokens.contains(where: { $0.content == registration.content }) {
            guard let id = tokenIDs[registration.content] else { continue }
            tokens.append(AddedToken(content: registration.content, id: id,
                                     normalized: normalizedFlags[registration.content] ?? false))
        }
        self.addedTokens = tokens
        let patterns = tokens.filter { !$0.content.isEmpty }
            .map { (scalars: Array($0.content.unicodeScalars), id: $0.id, normalized: $0.normalized) }
            .sorted { $0.scalars.count > $1.scalars.count }
        self.rawTokenPatterns = patterns.filter { !$0.normalized }.map { (scalars: $0.scalars, id: $0.id) }
        self.normalizedTokenPatterns = patterns.filter { $0.normalized }.map { (scalars: $0.scalars, id: $0.id) }
        self.processesRunByRun = !patterns.contains { $0.scalars.contains(where: Self.isWhitespace) }
        self.longestTokenLength = max(model.vocabulary.keys.map(\.utf8.count).max() ?? 0,
                                      tokens.map(\.content.utf8.count).max() ?? 0)
    }

    /// Number of ids: the vocabulary plus added tokens outside it (transformers' `len(tokenizer)`;
    /// its `vocab_size` for CLIP, where both are 49408).
    public var vocabularySize: Int {
        model.vocabulary.count + addedTokens.filter { model.vocabulary[$0.content] == nil }.count
    }

    /// The id of `token` (vocabulary or added token), as transformers' `convert_tokens_to_ids`.
    public func id(of token: String) -> Int? {
        // Longer than any token: not looked up (hashing a String normalises it, which is slow on a
        // long run of combining marks from a host).
        guard token.utf8.count <= longestTokenLength else { return nil }
        return model.vocabulary[token] ?? addedTokens.first { $0.content == token }?.id
    }

    /// The token string of `id`, or nil for an unknown id.
    public func token(of id: Int) -> String? {
        addedTokens.first { $0.id == id }?.content ?? model.tokens[id]
    }

    /// The ids of `text` without BOS/EOS (`tokenizer(text, add_special_tokens=False)`), at most
    /// `limit` of them when given (the first `limit` of the full result).
    public func contentIDs(_ text: String, limit: Int? = nil) throws -> [Int] {
        var ids: [Int] = []
        try appendContentIDs(of: text, limit: limit, into: &ids)
        if let limit, ids.count > limit { ids.removeSubrange(limit...) }
        return ids
    }

    /// [BOS] ids [EOS], untruncated (`tokenizer(text)["input_ids"]`).
    public func encode(_ text: String) throws -> [Int] {
        try encode(text, addSpecialTokens: true, padToMaximumLength: false)
    }

    /// Exactly `length` ids (default `modelMaxLength`): [BOS] + the first `length - 2` content ids +
    /// [EOS] + pad ids, as `tokenizer(text, padding="max_length", max_length=length, truncation=True)`.
    /// - Throws: `NodusError.invalidArgument` when `length` is below 2.
    public func encodePadded(_ text: String, length: Int? = nil) throws -> [Int] {
        try encode(text, addSpecialTokens: true, padToMaximumLength: true, length: length)
    }

    /// The general form of `encode` and `encodePadded`: `addSpecialTokens` false leaves out BOS/EOS
    /// (`add_special_tokens=False`); `padToMaximumLength` truncates and pads to `length` (default
    /// `modelMaxLength`) ids, as `padding="max_length", truncation=True`.
    public func encode(_ text: String, addSpecialTokens: Bool, padToMaximumLength: Bool, length: Int? = nil) throws
        -> [Int] {
        let length = length ?? configuration.modelMaxLength
        let specialCount = addSpecialTokens ? 2 : 0
        guard !padToMaximumLength || length >= specialCount else {
            throw NodusError.invalidArgument("CLIPTokenizer.encode: length is \(length); it must be at least \(specialCount)")
        }
        var ids: [Int] = []
        if addSpecialTokens { ids.append(beginTokenID) }
        try appendContentIDs(of: text, limit: padToMaximumLength ? length - specialCount : nil, into: &ids)
        if padToMaximumLength, ids.count > length - (addSpecialTokens ? 1 : 0) {
            ids.removeSubrange((length - (addSpecialTokens ? 1 : 0))...)
        }
        if addSpecialTokens { ids.append(endTokenID) }
        if padToMaximumLength { while ids.count < length { ids.append(padTokenID) } }
        return ids
    }
}
