import CNodus
import NodusCore
import NodusFormats

/// `nodus_status nodus_tokenizer_load(const char *path, nodus_tokenizer **)`: a tokenizer/ folder or a
/// tokenizer.json. On failure `*out_tokenizer` is NULL.
@_cdecl("nodus_tokenizer_load")
public func nodusTokenizerLoad(_ path: UnsafePointer<CChar>?,
                               _ outTokenizer: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_tokenizer_load"
    outTokenizer?.pointee = nil
    return Status.run(function) {
        let target = try Argument.required(outTokenizer, "out_tokenizer", in: function)
        do {
            let tokenizer = try Argument.withPath(path, "path", in: function) { try CLIPTokenizer.load(path: $0) }
            target.pointee = TokenizerHandle(tokenizer: tokenizer).retainedPointer()
        } catch let error as NodusError {
            throw NodusError(error.code, "\(function): \(error.message)")
        }
    }
}

/// `void nodus_tokenizer_free(nodus_tokenizer *)`: NULL is a no-op.
@_cdecl("nodus_tokenizer_free")
public func nodusTokenizerFree(_ tokenizer: OpaquePointer?) {
    TokenizerHandle.release(tokenizer, in: "nodus_tokenizer_free")
}

enum TokenizerOutput {
    /// Stores `count` in `outCount`; writes `values` when they fit, else fails (size queries pass).
    static func write(_ ids: [Int], weights: [Float]?, to outIDs: UnsafeMutablePointer<Int64>?,
                      _ outWeights: UnsafeMutablePointer<Float>?, capacity: Int,
                      count outCount: UnsafeMutablePointer<Int>, in function: String) throws {
        outCount.pointee = ids.count
        if capacity == 0, outIDs == nil { return }
        let target = try Argument.required(outIDs, "out_ids", in: function)
        // A size_t above Int.max arrives negative: it still means "room for all".
        guard capacity < 0 || capacity >= ids.count else {
            throw NodusError.invalidArgument("\(function): the text needs \(ids.count) ids but capacity is "
                                             + "\(capacity) (nothing written; *out_count holds the count)")
        }
        for (index, id) in ids.enumerated() { target[index] = Int64(id) }
        if let outWeights, let weights {
            for (index, weight) in weights.enumerated() { outWeights[index] = weight }
        }
    }

    static func tokenizer(_ pointer: OpaquePointer?, in function: String) throws -> CLIPTokenizer {
        try Argument.handle(pointer, TokenizerHandle.self, "tokenizer", in: function).tokenizer
    }
}

/// `nodus_status nodus_tokenizer_encode(const nodus_tokenizer *, const char *text, size_t text_length,
/// int32_t flags, int64_t *out_ids, size_t capacity, size_t *out_count)`.
@_cdecl("nodus_tokenizer_encode")
public func nodusTokenizerEncode(_ tokenizer: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ textLength: Int,
                                 _ flags: Int32, _ outIDs: UnsafeMutablePointer<Int64>?, _ capacity: Int,
                                 _ outCount: UnsafeMutablePointer<Int>?) -> nodus_status {
    let function = "nodus_tokenizer_encode"
    return Status.run(function) {
        let model = try TokenizerOutput.tokenizer(tokenizer, in: function)
        let countTarget = try Argument.required(outCount, "out_count", in: function)
        let known = Int32(NODUS_TOKENIZE_PAD_TO_MAX_LENGTH | NODUS_TOKENIZE_NO_SPECIAL_TOKENS)
        guard flags & ~known == 0 else {
            throw NodusError.invalidArgument("\(function): unknown flags 0x\(String(flags, radix: 16))")
        }
        let string = try Argument.utf8Text(text, length: textLength, "text", in: function)
        let ids = try model.encode(
            string, addSpecialTokens: flags & Int32(NODUS_TOKENIZE_NO_SPECIAL_TOKENS) == 0,
            padToMaximumLength: flags & Int32(NODUS_TOKENIZE_PAD_TO_MAX_LENGTH) != 0)
        try TokenizerOutput.write(ids, weights: nil, to: outIDs, nil, capacity: capacity, count: countTarget,
                                  in: function)
    }
}

/// `void nodus_prompt_params_init(nodus_prompt_params *)`: weights parsed, comma backtrack 20, all chunks.
@_cdecl("nodus_prompt_params_init")
public func nodusPromptParamsInit(_ params: UnsafeMutablePointer<nodus_prompt_params>?) {
    guard let params else { return }
    params.pointee = PromptParameters.defaults
}

enum PromptParameters {
    static var defaults: nodus_prompt_params {
        nodus_prompt_params(struct_size: UInt32(MemoryLayout<nodus_prompt_params>.stride), parse_weights: 1,
                            comma_backtrack: 20, max_chunks: 0)
    }
}

/// `nodus_status nodus_tokenizer_encode_prompt(const nodus_tokenizer *, const char *text, size_t text_length,
/// const nodus_prompt_params *, int64_t *out_ids, float *out_weights, size_t capacity, size_t *out_count)`.
@_cdecl("nodus_tokenizer_encode_prompt")
public func nodusTokenizerEncodePrompt(_ tokenizer: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ textLength: Int,
                                       _ params: UnsafePointer<nodus_prompt_params>?,
                                       _ outIDs: UnsafeMutablePointer<Int64>?, _ outWeights: UnsafeMutablePointer<Float>?,
                                       _ capacity: Int, _ outCount: UnsafeMutablePointer<Int>?) -> nodus_status {
    let function = "nodus_tokenizer_encode_prompt"
    return Status.run(function) {
        let model = try TokenizerOutput.tokenizer(tokenizer, in: function)
        let countTarget = try Argument.required(outCount, "out_count", in: function)
        let settings = try params.map {
            try Argument.params($0, defaults: PromptParameters.defaults, initializer: "nodus_prompt_params_init",
                                in: function)
        } ?? PromptParameters.defaults
        guard settings.comma_backtrack >= 0 else {
            throw NodusError.invalidArgument("\(function): params.comma_backtrack is \(settings.comma_backtrack); "
                                             + "it must be 0 or more")
        }
        guard settings.max_chunks >= 0 else {
            throw NodusError.invalidArgument("\(function): params.max_chunks is \(settings.max_chunks); "
                                             + "use 0 for all chunks")
        }
        let string = try Argument.utf8Text(text, length: textLength, "text", in: function)
        let options = LongPromptOptions(parsesWeights: settings.parse_weights != 0,
                                        commaBacktrack: Int(settings.comma_backtrack),
                                        maximumChunks: settings.max_chunks == 0 ? nil : Int(settings.max_chunks))
        let chunks: PromptChunks
        do {
            chunks = try model.encodeLongPrompt(string, options: options)
        } catch let error as NodusError {
            throw NodusError(error.code, "\(function): \(error.message)")
        }
        try TokenizerOutput.write(chunks.ids, weights: chunks.weights, to: outIDs, outWeights, capacity: capacity,
                                  count: countTarget, in: function)
    }
}

/// `int32_t nodus_tokenizer_max_length(const nodus_tokenizer *)`: -1 when NULL.
@_cdecl("nodus_tokenizer_max_length")
public func nodusTokenizerMaxLength(_ tokenizer: OpaquePointer?) -> Int32 {
    guard let handle = TokenizerHandle.lookup(tokenizer, "tokenizer", in: "nodus_tokenizer_max_length") else { return -1 }
    return Int32(clamping: handle.tokenizer.configuration.modelMaxLength)
}

/// The value of `property` for a tokenizer, or -1 and a message naming `function` when it is NULL.
private func tokenizerQuery(_ tokenizer: OpaquePointer?, _ function: String,
                            _ property: (CLIPTokenizer) -> Int) -> Int64 {
    guard let handle = TokenizerHandle.lookup(tokenizer, "tokenizer", in: "\(function)") else { return -1 }
    return Int64(property(handle.tokenizer))
}

/// `int64_t nodus_tokenizer_bos_id(const nodus_tokenizer *)`: -1 when NULL.
@_cdecl("nodus_tokenizer_bos_id")
public func nodusTokenizerBOSID(_ tokenizer: OpaquePointer?) -> Int64 {
    tokenizerQuery(tokenizer, "nodus_tokenizer_bos_id") { $0.beginTokenID }
}

/// `int64_t nodus_tokenizer_eos_id(const nodus_tokenizer *)`: -1 when NULL.
@_cdecl("nodus_tokenizer_eos_id")
public func nodusTokenizerEOSID(_ tokenizer: OpaquePointer?) -> Int64 {
    tokenizerQuery(tokenizer, "nodus_tokenizer_eos_id") { $0.endTokenID }
}

/// `int64_t nodus_tokenizer_pad_id(const nodus_tokenizer *)`: -1 when NULL.
@_cdecl("nodus_tokenizer_pad_id")
public func nodusTokenizerPadID(_ tokenizer: OpaquePointer?) -> Int64 {
    tokenizerQuery(tokenizer, "nodus_tokenizer_pad_id") { $0.padTokenID }
}

/// `int64_t nodus_tokenizer_vocab_size(const nodus_tokenizer *)`: -1 when NULL.
@_cdecl("nodus_tokenizer_vocab_size")
public func nodusTokenizerVocabSize(_ tokenizer: OpaquePointer?) -> Int64 {
    tokenizerQuery(tokenizer, "nodus_tokenizer_vocab_size") { $0.vocabularySize }
}

/// `nodus_status nodus_tokenizer_token_to_id(const nodus_tokenizer *, const char *token, int64_t *out_id)`.
@_cdecl("nodus_tokenizer_token_to_id")
public func nodusTokenizerTokenToID(_ tokenizer: OpaquePointer?, _ token: UnsafePointer<CChar>?,
                                    _ outID: UnsafeMutablePointer<Int64>?) -> nodus_status {
    let function = "nodus_tokenizer_token_to_id"
    outID?.pointee = -1
    return Status.run(function) {
        let model = try TokenizerOutput.tokenizer(tokenizer, in: function)
        let text = try Argument.string(token, "token", in: function)
        let target = try Argument.required(outID, "out_id", in: function)
        guard let id = model.id(of: text) else {
            throw NodusError.invalidArgument("\(function): '\(text)' is not in the vocabulary")
        }
        target.pointee = Int64(id)
    }
}

/// Copies `text` (UTF-8, NUL-terminated) to `target` when it fits in `capacity` bytes; `length` gets
/// its byte count either way (size queries pass). `parameter` names `target` in errors.
private func writeText(_ text: String, to target: UnsafeMutablePointer<CChar>?, _ parameter: String, capacity: Int,
                       length: UnsafeMutablePointer<Int>, in function: String) throws {
    let bytes = Array(text.utf8)
    length.pointee = bytes.count
    if capacity == 0, target == nil { return }
    let output = try Argument.required(target, parameter, in: function)
    guard capacity < 0 || capacity > bytes.count else {
        throw NodusError.invalidArgument("\(function): the text needs \(bytes.count + 1) bytes with its NUL but "
                                         + "capacity is \(capacity) (nothing written; the length is stored)")
    }
    for (index, byte) in bytes.enumerated() { output[index] = CChar(bitPattern: byte) }
    output[bytes.count] = 0
}

/// `nodus_status nodus_tokenizer_id_to_token(const nodus_tokenizer *, int64_t id, char *out_token, size_t capacity,
/// size_t *out_length)`.
@_cdecl("nodus_tokenizer_id_to_token")
public func nodusTokenizerIDToToken(_ tokenizer: OpaquePointer?, _ id: Int64, _ outToken: UnsafeMutablePointer<CChar>?,
                                    _ capacity: Int, _ outLength: UnsafeMutablePointer<Int>?) -> nodus_status {
    let function = "nodus_tokenizer_id_to_token"
    return Status.run(function) {
        let model = try TokenizerOutput.tokenizer(tokenizer, in: function)
        let lengthTarget = try Argument.required(outLength, "out_length", in: function)
        guard let token = Int(exactly: id).flatMap(model.token(of:)) else {
            throw NodusError.invalidArgument("\(function): id \(id) is not a token (the vocabulary has "
                                             + "\(model.vocabularySize))")
        }
        try writeText(token, to: outToken, "out_token", capacity: capacity, length: lengthTarget, in: function)
    }
}

/// `nodus_status nodus_tokenizer_decode(const nodus_tokenizer *, const int64_t *ids, size_t count,
/// int32_t skip_special_tokens, char *out_text, size_t capacity, size_t *out_length)`.
@_cdecl("nodus_tokenizer_decode")
public func nodusTokenizerDecode(_ tokenizer: OpaquePointer?, _ ids: UnsafePointer<Int64>?, _ count: Int,
                                 _ skipSpecialTokens: Int32, _ outText: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                                 _ outLength: UnsafeMutablePointer<Int>?) -> nodus_status {
    let function = "nodus_tokenizer_decode"
    return Status.run(function) {
        let model = try TokenizerOutput.tokenizer(tokenizer, in: function)
        let lengthTarget = try Argument.required(outLength, "out_length", in: function)
        guard count >= 0 else { throw NodusError.invalidArgument("\(function): count is too large") }
        var values: [Int] = []
        if count > 0 {
            let source = try Argument.required(ids, "ids", in: function)
            values = (0..<count).map { Int(truncatingIfNeeded: source[$0]) }
        }
        let text = model.decode(values, skipSpecialTokens: skipSpecialTokens != 0)
        try writeText(text, to: outText, "out_text", capacity: capacity, length: lengthTarget, in: function)
    }
}
