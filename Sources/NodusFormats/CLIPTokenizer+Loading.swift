#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Reading a tokenizer from disk: a diffusers `tokenizer/` folder (vocab.json + merges.txt, with
/// special_tokens_map.json and tokenizer_config.json when present), or a Hugging Face tokenizer.json
/// (alone, or in a folder, where it takes precedence as in transformers 5).
///
/// Matches transformers 5's `CLIPTokenizer.from_pretrained`: special_tokens_map.json overrides
/// tokenizer_config.json, which overrides tokenizer.json's added tokens and post-processor; a special
/// token may be a string or an `AddedToken` object (`{"content": ...}`). A tokenizer_config.json with
/// `added_tokens_decoder` declares the added tokens itself, and special_tokens_map.json is then not
/// read (as transformers). Without any
/// `model_max_length` (transformers then has 1e30) the length is CLIP's 77.
extension CLIPTokenizer {
    /// The regex of CLIP's `Split` pre-tokenizer, the only one `CLIPTokenizer+PreTokenization` implements.
    static let splitPattern =
        #"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"#

    /// Loads `path`: a folder holding tokenizer.json or vocab.json + merges.txt, or a tokenizer.json file.
    /// - Throws: `NodusError.io` naming the missing file(s); `NodusError.format` for malformed files and
    ///   for a vocabulary and merges that disagree (naming the merge); `NodusError.unsupported` for a
    ///   tokenizer.json whose model, normalizer or pre-tokenizer is not CLIP's.
    public static func load(path: String) throws -> CLIPTokenizer {
        var folder = path
        var tokenizerJSON: String?
        if isDirectory(path) {
            let candidate = folder + "/tokenizer.json"
            if isRegularFile(candidate) { tokenizerJSON = candidate }
        } else if isRegularFile(path) {
            tokenizerJSON = path
            folder = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
        } else {
            throw NodusError.io("CLIP tokenizer: '\(path)' does not exist (expected a tokenizer/ folder with "
                                + "vocab.json and merges.txt, or a tokenizer.json)")
        }
        var configuration = CLIPTokenizerConfiguration()
        let model: BytePairEncoding
        var addedTokens: [AddedToken] = []
        if let tokenizerJSON {
            (model, addedTokens) = try readTokenizerJSON(tokenizerJSON, configuration: &configuration)
        } else {
            let vocabularyPath = folder + "/vocab.json"
            let mergesPath = folder + "/merges.txt"
            let missing = [vocabularyPath, mergesPath].filter { !isRegularFile($0) }
                .map { String($0.split(separator: "/").last ?? "") }
            guard missing.isEmpty else {
                throw NodusError.io("CLIP tokenizer folder '\(path)' has no \(missing.joined(separator: " and ")) "
                                    + "(it needs vocab.json and merges.txt, or tokenizer.json)")
            }
            let vocabulary = try readVocabulary(vocabularyPath)
            let merges = try readMerges(mergesPath)
            model = try BytePairEncoding(
                vocabulary: vocabulary, merges: merges, endOfWordSuffix: configuration.endOfWordSuffix,
                unknownToken: configuration.unknownToken, context: "vocab.json and merges.txt of '\(path)'")
        }
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let file = folder + "/" + name
            // With an added_tokens_decoder in tokenizer_config.json transformers skips the map.
            if name == "special_tokens_map.json", configuration.declaredAddedTokens != nil { continue }
            if isRegularFile(file) { try readSpecialTokens(file, into: &configuration) }
        }
        return try CLIPTokenizer(model: model, addedTokens: configuration.declaredAddedTokens ?? addedTokens,
                                 configuration: configuration, context: "CLIP tokenizer '\(path)'")
    }

    // MARK: - vocab.json, merges.txt

    static func readJSON(_ path: String) throws -> JSONValue {
        let mapping = try MappedFile(path: path)
        return try JSONScanner.parse(UnsafeRawBufferPointer(start: mapping.bytes, count: mapping.byteCount),
                                     context: "'\(path)'")
    }

    static func vocabulary(from value: JSONValue, context: String) throws -> [String: Int] {
        guard let members = value.objectValue else {
            throw NodusError.format("\(context) must be a JSON object of token -> id")
        }
        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(members.count)
        for (token, id) in members {
            guard let number = id.intValue else {
                throw NodusError.format("\(context): the id of '\(token)' is \(id.serialized()), not an integer")
            }
            vocabulary[token] = number
        }
        return vocabulary
    }

    static func readVocabulary(_ path: String) throws -> [String: Int] {
        try vocabulary(from: try readJSON(path), context: "'\(path)'")
    }

    /// merges.txt: an optional `#version` first line, then one `left right` pair per line (tokenizers'
    /// rule: exactly two parts split at single spaces; empty lines are skipped).
    static func readMerges(_ path: String) throws -> [(String, String)] {
        let mapping = try MappedFile(path: path)
        let bytes = UnsafeRawBufferPointer(start: mapping.bytes, count: mapping.byteCount).bindMemory(to: UInt8.self)
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw NodusError.format("'\(path)' is not valid UTF-8")
        }
        // Byte-wise: '\n', '\r' and ' ' never occur inside a multi-byte UTF-8 sequence.
        var merges: [(String, String)] = []
        merges.reserveCapacity(50_000)
        var lineStart = 0
        var lineNumber = 0
        while lineStart <= bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            lineNumber += 1
            var contentEnd = lineEnd
            if contentEnd > lineStart, bytes[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            let line = UnsafeBufferPointer(rebasing: bytes[lineStart..<contentEnd])
            defer { lineStart = lineEnd + 1 }
            if line.isEmpty || (lineNumber == 1 && line.starts(with: "#version".utf8)) { continue }
            let spaces = line.indices.filter { line[$0] == 0x20 }
            guard spaces.count == 1, let space = spaces.first else {
                let text = String(decoding: line.prefix(80), as: UTF8.self)
                throw NodusError.format("'\(path)' line \(lineNumber): a merge is two tokens separated by one space, "
                                        + "found '\(text)'")
            }
            merges.append((String(decoding: UnsafeBufferPointer(rebasing: line[..<space]), as: UTF8.self),
                           String(decoding: UnsafeBufferPointer(rebasing: line[(space + 1)...]), as: UTF8.self)))
        }
        return merges
    }

    // MARK: - tokenizer_config.json, special_tokens_map.json

    static func readSpecialTokens(_ path: String, into configuration: inout CLIPTokenizerConfiguration) throws {
        let context = "'\(path)'"
        let reader = try JSONObjectReader(try readJSON(path), context: context)
        // An object without "normalized": tokenizers' default for a special token (false) in
        // special_tokens_map.json, AddedToken's (true) in tokenizer_config.json.
        let defaultNormalized = !path.hasSuffix("special_tokens_map.json")
        func token(_ key: String) throws -> (content: String, normalized: Bool)? {
            guard let value = reader.members[key], !value.isNull else { return nil }
            if let text = value.stringValue { return (text, false) }
            if let content = value["content"]?.stringValue {
                return (content, value["normalized"]?.boolValue ?? defaultNormalized)
            }
            throw NodusError.format("\(context): '\(key)' must be a string or an object with 'content', "
                                    + "found \(value.serialized())")
        }
        if let value = try token("bos_token") {
            (configuration.beginToken, configuration.beginTokenNormalized) = value
        }
        if let value = try token("eos_token") { (configuration.endToken, configuration.endTokenNormalized) = value }
        if let value = try token("pad_token") { (configuration.padToken, configuration.padTokenNormalized) = value }
        if let value = try token("unk_token") {
            (configuration.unknownToken, configuration.unknownTokenNormalized) = value
        }
        if let declared = reader.members["added_tokens_decoder"], !declared.isNull {
            guard let entries = declared.objectValue else {
                throw NodusError.format("\(context): 'added_tokens_decoder' must be an object of id -> token")
            }
            var tokens: [AddedToken] = []
            for (key, value) in entries {
                let entry = try JSONObjectReader(value, context: "\(context) added_tokens_decoder[\(key)]")
                guard let id = Int(key), id >= 0 else {
                    throw NodusError.format("\(context): added_tokens_decoder key '\(key)' is not an id")
                }
                tokens.append(AddedToken(content: try entry.string("content"), id: id,
                                         normalized: try entry.bool("normalized", default: true),
                                         special: try entry.bool("special", default: false)))
            }
            configuration.declaredAddedTokens = tokens.sorted { $0.id < $1.id }
        }
        if let value = reader.members["model_max_length"], !value.isNull {
            guard let number = value.doubleValue, number >= 2, number.rounded() == number else {
                throw NodusError.format("\(context): 'model_max_length' must be an integer of at least 2, "
                                        + "found \(value.serialized())")
            }
            // transformers' "no limit" (1e30): keep CLIP's 77.
            if number <= 1_000_000 { configuration.modelMaxLength = Int(number) }
        }
    }

    // MARK: - tokenizer.json

    static func readTokenizerJSON(_ path: String, configuration: inout CLIPTokenizerConfiguration) throws
        -> (BytePairEncoding, [AddedToken]) {
        let context = "tokenizer.json '\(path)'"
        let document = try JSONObjectReader(try readJSON(path), context: context)
        guard let modelValue = document.members["model"] else {
            throw NodusError.format("\(context): no 'model'")
        }
        let model = try JSONObjectReader(modelValue, context: "\(context) model")
        let type = try model.string("type", default: "BPE")
        guard type == "BPE" else {
            throw NodusError.unsupported("\(context): model type '\(type)' is not BPE; only CLIP's BPE is supported")
        }
        if let prefix = model.members["continuing_subword_prefix"]?.stringValue, !prefix.isEmpty {
            throw NodusError.unsupported("\(context): continuing_subword_prefix '\(prefix)' is not supported")
        }
        configuration.endOfWordSuffix = model.members["end_of_word_suffix"]?.stringValue ?? ""
        if let unknown = model.members["unk_token"]?.stringValue { configuration.unknownToken = unknown }
        guard let vocabularyValue = model.members["vocab"] else {
            throw NodusError.format("\(context): model has no 'vocab'")
        }
        let vocabulary = try vocabulary(from: vocabularyValue, context: "\(context) model.vocab")
        guard let mergeValues = model.members["merges"]?.arrayValue else {
            throw NodusError.format("\(context): model has no 'merges' array")
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(mergeValues.count)
        for (index, value) in mergeValues.enumerated() {
            if let text = value.stringValue {
                // The older form: "left right".
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw NodusError.format("\(context): merge \(index + 1) '\(text)' is not two tokens separated by one space")
                }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = value.arrayValue, pair.count == 2, let left = pair[0].stringValue,
                      let right = pair[1].stringValue {
                merges.append((left, right))
            } else {
                throw NodusError.format("\(context): merge \(index + 1) is \(value.serialized()), "
                                        + "neither \"left right\" nor [left, right]")
            }
        }
        var addedTokens: [AddedToken] = []
        for (index, value) in (document.members["added_tokens"]?.arrayValue ?? []).enumerated() {
            let entry = try JSONObjectReader(value, context: "\(context) added_tokens[\(index)]")
            addedTokens.append(AddedToken(content: try entry.string("content"), id: try entry.int("id"),
                                          normalized: try entry.bool("normalized", default: true),
                                          special: try entry.bool("special", default: false)))
        }
        try readNormalizer(document.members["normalizer"], context: context, into: &configuration)
        try checkPreTokenizer(document.members["pre_tokenizer"], context: context)
        if let processor = document.members["post_processor"], processor["type"]?.stringValue == "RobertaProcessing" {
            if let begin = processor["cls"]?.arrayValue?.first?.stringValue { configuration.beginToken = begin }
            if let end = processor["sep"]?.arrayValue?.first?.stringValue { configuration.endToken = end }
        }
        let encoding = try BytePairEncoding(vocabulary: vocabulary, merges: merges,
                                            endOfWordSuffix: configuration.endOfWordSuffix,
                                            unknownToken: configuration.unknownToken,
                                            context: "\(context) (model.vocab and model.merges)")
        return (encoding, addedTokens)
    }

    /// CLIP's normalizer steps; NFC and Lowercase switch themselves on, `Replace(\s+, " ")` is implied.
    static func readNormalizer(_ value: JSONValue?, context: String,
                               into configuration: inout CLIPTokenizerConfiguration) throws {
        configuration.composesUnicode = false
        configuration.lowercases = false
        guard let value, !value.isNull else { return }
        var steps = [value]
        while let step = steps.popLast() {
            let type = step["type"]?.stringValue ?? ""
            switch type {
            case "Sequence": steps.append(contentsOf: (step["normalizers"]?.arrayValue ?? []).reversed())
            case "NFC": configuration.composesUnicode = true
            case "Lowercase": configuration.lowercases = true
            case "Replace" where step["pattern"]?["Regex"]?.stringValue == #"\s+"# && step["content"]?.stringValue == " ":
                break
            default:
                throw NodusError.unsupported("\(context): normalizer \(step.serialized().prefix(120)) is not one "
                                             + "of CLIP's (NFC, Replace \\s+ by a space, Lowercase)")
            }
        }
    }

    /// CLIP's pre-tokenizer: the `Split` above, then `ByteLevel` without a prefix space.
    static func checkPreTokenizer(_ value: JSONValue?, context: String) throws {
        var steps = value.map { [$0] } ?? []
        var sawSplit = false
        var sawByteLevel = false
        while let step = steps.popLast() {
            let type = step["type"]?.stringValue ?? ""
            switch type {
            case "Sequence": steps.append(contentsOf: step["pretokenizers"]?.arrayValue ?? [])
            case "Split" where step["pattern"]?["Regex"]?.stringValue == splitPattern: sawSplit = true
            case "ByteLevel" where step["add_prefix_space"]?.boolValue != true: sawByteLevel = true
            default:
                throw NodusError.unsupported("\(context): pre-tokenizer \(step.serialized().prefix(160)) is not "
                                             + "CLIP's (Split on its regex, then ByteLevel)")
            }
        }
        guard sawSplit, sawByteLevel else {
            throw NodusError.unsupported("\(context): the pre-tokenizer is not CLIP's (Split on its regex, then ByteLevel)")
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    static func isRegularFile(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
    }
}
