#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NodusCore
import NodusFormats
import XCTest

/// CLIPTokenizer against transformers 5 (Tests/Fixtures/clip-tokenizer-references.json, made by
/// tests/reference/make_tokenizer_fixtures.py with the real 49408-token CLIP vocabulary).
final class CLIPTokenizerTests: XCTestCase {
    static let references: JSONValue? = {
        guard let data = FileManager.default.contents(atPath: Fixtures.path("clip-tokenizer-references.json")) else {
            return nil
        }
        return data.withUnsafeBytes { try? JSONValue.parse($0, context: "clip-tokenizer-references.json") }
    }()
    // Loaded once: the vocabulary takes a moment.
    static let sd15 = Result { try CLIPTokenizer.load(path: Fixtures.path("clip-tokenizer")) }
    static let sd2 = Result { try CLIPTokenizer.load(path: Fixtures.path("clip-tokenizer-sd2")) }
    static let fromJSON = Result { try CLIPTokenizer.load(path: Fixtures.path("clip-tokenizer-json")) }

    private func cases() throws -> [JSONValue] {
        try XCTUnwrap(Self.references?["cases"]?.arrayValue, "clip-tokenizer-references.json is missing")
    }

    private func ints(_ value: JSONValue?) -> [Int] { (value?.arrayValue ?? []).compactMap(\.intValue) }

    func testSpecialTokensMatchTransformers() throws {
        let tokenizer = try Self.sd15.get()
        let special = try XCTUnwrap(Self.references?["special"])
        XCTAssertEqual(tokenizer.beginTokenID, special["bos_token_id"]?.intValue)
        XCTAssertEqual(tokenizer.endTokenID, special["eos_token_id"]?.intValue)
        XCTAssertEqual(tokenizer.padTokenID, special["pad_token_id"]?.intValue)
        XCTAssertEqual(try Self.sd2.get().padTokenID, special["pad_token_id_sd2"]?.intValue)
        XCTAssertEqual(tokenizer.vocabularySize, special["vocab_size"]?.intValue)
        XCTAssertEqual(tokenizer.configuration.modelMaxLength, special["model_max_length"]?.intValue)
    }

    func testVocabularyIsTheHubOne() throws {
        // The ids openai/clip-vit-large-patch14's own files give (as published in countless examples):
        // the fixture vocabulary built from bpe_simple_vocab_16e6.txt.gz is the hub's.
        XCTAssertEqual(try Self.sd15.get().encode("a photo of a cat"), [49406, 320, 1125, 539, 320, 2368, 49407])
    }

    func testPaddedIdsEqualTransformersOnCorpus() throws {
        let tokenizers = [("clip-tokenizer", try Self.sd15.get(), "input_ids"),
                          ("clip-tokenizer-json", try Self.fromJSON.get(), "input_ids"),
                          ("clip-tokenizer-sd2", try Self.sd2.get(), "input_ids_sd2")]
        let corpus = try cases()
        XCTAssertGreaterThan(corpus.count, 50)
        for (name, tokenizer, key) in tokenizers {
            for entry in corpus {
                let text = try XCTUnwrap(entry["text"]?.stringValue)
                let expected = ints(entry[key])
                XCTAssertEqual(try tokenizer.encodePadded(text), expected,
                               "\(name): \(String(reflecting: text.prefix(60))) should give \(expected)")
            }
        }
    }

    func testUntruncatedIdsEqualTransformers() throws {
        let tokenizer = try Self.sd15.get()
        for entry in try cases() {
            let text = try XCTUnwrap(entry["text"]?.stringValue)
            let expected = ints(entry["untruncated"])
            XCTAssertEqual(try tokenizer.encode(text), expected, "\(String(reflecting: text.prefix(60)))")
        }
    }

    func testDecodeAndTokensEqualTransformers() throws {
        let tokenizer = try Self.sd15.get()
        for entry in try cases() {
            let ids = ints(entry["untruncated"])
            let label = String(reflecting: (entry["text"]?.stringValue ?? "").prefix(60))
            XCTAssertEqual(tokenizer.decode(ids), entry["decoded"]?.stringValue, label)
            XCTAssertEqual(tokenizer.decode(ids, skipSpecialTokens: true), entry["decoded_skip_special"]?.stringValue, label)
            XCTAssertEqual(tokenizer.tokens(of: ids), (entry["tokens"]?.arrayValue ?? []).map(\.stringValue), label)
        }
    }

    func testStringFormMergesInTokenizerJSON() throws {
        // Older tokenizer.json files hold merges as "left right" strings; rewrite the fixture's pairs.
        let source = try String(contentsOfFile: Fixtures.path("clip-tokenizer-json/tokenizer.json"), encoding: .utf8)
        var document = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(source.utf8)) as? [String: Any])
        var model = try XCTUnwrap(document["model"] as? [String: Any])
        let pairs = try XCTUnwrap(model["merges"] as? [[String]])
        model["merges"] = pairs.map { $0.joined(separator: " ") }
        document["model"] = model
        let folder = temporaryDirectory("tokenizer-json-strings")
        try JSONSerialization.data(withJSONObject: document).write(to: URL(fileURLWithPath: folder + "/tokenizer.json"))
        let tokenizer = try CLIPTokenizer.load(path: folder + "/tokenizer.json")
        for entry in try cases() {
            let text = try XCTUnwrap(entry["text"]?.stringValue)
            XCTAssertEqual(try tokenizer.encodePadded(text), ints(entry["input_ids"]), String(reflecting: text.prefix(60)))
        }
    }

    // MARK: - Long prompts and weighting

    func testLongPromptsAndWeightsEqualTheReferenceRule() throws {
        let prompts = try XCTUnwrap(Self.references?["long_prompts"]?.arrayValue)
        XCTAssertGreaterThan(prompts.count, 10)
        let variants: [(String, CLIPTokenizer, LongPromptOptions)] = [
            ("sd15", try Self.sd15.get(), LongPromptOptions()),
            ("sd2", try Self.sd2.get(), LongPromptOptions()),
            ("sd15_no_backtrack", try Self.sd15.get(), LongPromptOptions(commaBacktrack: 0)),
        ]
        for entry in prompts {
            let text = try XCTUnwrap(entry["text"]?.stringValue)
            let label = String(reflecting: text.prefix(50))
            let parsed = try PromptWeighting.parse(text)
            let expectedParsed = (entry["parsed"]?.arrayValue ?? []).map {
                PromptWeighting.Segment(text: $0.arrayValue?[0].stringValue ?? "?", weight: $0.arrayValue?[1].doubleValue ?? .nan)
            }
            XCTAssertEqual(parsed, expectedParsed, "parse_prompt_attention(\(label))")
            for (key, tokenizer, options) in variants {
                let reference = try XCTUnwrap(entry[key])
                let chunks = try tokenizer.encodeLongPrompt(text, options: options)
                let expectedIDs = (reference["input_ids"]?.arrayValue ?? []).flatMap { ints($0) }
                let expectedWeights = (reference["weights"]?.arrayValue ?? []).flatMap {
                    ($0.arrayValue ?? []).compactMap { $0.doubleValue.map(Float.init) }
                }
                XCTAssertEqual(chunks.ids, expectedIDs, "\(key) ids of \(label)")
                XCTAssertEqual(chunks.weights, expectedWeights, "\(key) weights of \(label)")
                XCTAssertEqual(chunks.chunkCount * 77, expectedIDs.count)
                if let plain = reference["unweighted_input_ids"]?.arrayValue {
                    let unweighted = try tokenizer.encodeLongPrompt(text, options: LongPromptOptions(parsesWeights: false))
                    XCTAssertEqual(unweighted.ids, plain.flatMap { ints($0) }, "\(key) unweighted ids of \(label)")
                }
            }
        }
    }

    func testMaximumChunksKeepsTheFirstChunks() throws {
        let tokenizer = try Self.sd15.get()
        let prompt = String(repeating: "(chest:1.3) x-ray, nodule BREAK ", count: 30) + String(repeating: "lung ", count: 400)
        let all = try tokenizer.encodeLongPrompt(prompt)
        for maximum in [1, 2, 5, 31, 40] {
            let some = try tokenizer.encodeLongPrompt(prompt, options: LongPromptOptions(maximumChunks: maximum))
            let kept = min(maximum, all.chunkCount)
            XCTAssertEqual(some.ids, Array(all.ids.prefix(kept * 77)), "maximumChunks \(maximum)")
            XCTAssertEqual(some.weights, Array(all.weights.prefix(kept * 77)), "maximumChunks \(maximum)")
        }
        XCTAssertThrowsError(try tokenizer.encodeLongPrompt("a", options: LongPromptOptions(maximumChunks: 0)))
        XCTAssertThrowsError(try tokenizer.encodeLongPrompt("(a:1.2.3)")) { error in
            XCTAssertTrue("\(error)".contains("1.2.3"), "\(error)")
        }
    }

    func testWeightedMillionCharacterPromptsStayLinear() throws {
        let tokenizer = try Self.sd15.get()
        let start = Clock.seconds()
        // 100,000 groups of one weight join into one segment (A1111 joins them pair by pair).
        let groups = try tokenizer.encodeLongPrompt(String(repeating: "(a)", count: 100_000), options: LongPromptOptions(maximumChunks: 2))
        XCTAssertEqual(groups.chunkCount, 2)
        XCTAssertEqual(groups.weights[1], 1.1, accuracy: 1e-6)
        XCTAssertLessThan(Clock.seconds() - start, 10)
        // Nesting that would need N^2 / 2 products is refused with a message instead of running for hours.
        let nested = String(repeating: "(", count: 20_000) + String(repeating: "a)", count: 20_000)
        XCTAssertThrowsError(try tokenizer.encodeLongPrompt(nested)) { error in
            XCTAssertTrue("\(error)".contains("nests its brackets too deeply"), "\(error)")
            XCTAssertEqual((error as? NodusError)?.code, .invalidArgument)
        }
        let shallow = String(repeating: "(", count: 2_000) + String(repeating: "a)", count: 2_000)
        XCTAssertNoThrow(try tokenizer.encodeLongPrompt(shallow, options: LongPromptOptions(maximumChunks: 1)))
    }

    // MARK: - Bad input

    func testMissingFilesAreNamed() throws {
        let folder = temporaryDirectory("tokenizer-missing")
        XCTAssertThrowsError(try CLIPTokenizer.load(path: folder)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("vocab.json") && message.contains("merges.txt"), message)
        }
        let vocabulary = try String(contentsOfFile: Fixtures.path("clip-tokenizer/vocab.json"), encoding: .utf8)
        try vocabulary.write(toFile: folder + "/vocab.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer.load(path: folder)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("no merges.txt"), message)
            XCTAssertEqual((error as? NodusError)?.code, .io)
        }
        XCTAssertThrowsError(try CLIPTokenizer.load(path: folder + "/nowhere")) { error in
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
        }
    }

    func testVocabularyAndMergesThatDisagree() throws {
        let folder = temporaryDirectory("tokenizer-disagree")
        try #"{"a":0,"b":1,"a</w>":2,"b</w>":3,"<|startoftext|>":4,"<|endoftext|>":5}"#
            .write(toFile: folder + "/vocab.json", atomically: true, encoding: .utf8)
        try "#version: 0.2\na b\n".write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer.load(path: folder)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("'ab'") && message.contains("merge 1"), message)
            XCTAssertEqual((error as? NodusError)?.code, .format)
        }
        try "#version: 0.2\na c</w>\n".write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer.load(path: folder)) { error in
            XCTAssertTrue("\(error)".contains("'c</w>'"), "\(error)")
        }
        try "#version: 0.2\na b c\n".write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer.load(path: folder)) { error in
            XCTAssertTrue("\(error)".contains("line 2"), "\(error)")
        }
        try "#version: 0.2\n".write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
        try #"{"pad_token": "<pad>"}"#.write(toFile: folder + "/special_tokens_map.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer.load(path: folder)) { error in
            XCTAssertTrue("\(error)".contains("pad token '<pad>'"), "\(error)")
        }
    }

    func testMillionCharacterPromptIsTruncatedQuickly() throws {
        let tokenizer = try Self.sd15.get()
        let words = String(repeating: "pulmonary nodule in the right lower lobe ", count: 25_000)
        let start = Clock.seconds()
        let ids = try tokenizer.encodePadded(words)
        XCTAssertEqual(ids, try tokenizer.encodePadded(String(words.prefix(2_000))))
        XCTAssertLessThan(Clock.seconds() - start, 1, "truncation should stop reading early")
        // A single word of a million letters cannot stop early: its BPE runs in O(n log n).
        let repeated = try XCTUnwrap(Self.references?["repeated"]?.arrayValue)
        XCTAssertEqual(repeated.count, 7)
        for entry in repeated {
            let unit = try XCTUnwrap(entry["unit"]?.stringValue)
            let count = try XCTUnwrap(entry["count"]?.intValue)
            let begin = Clock.seconds()
            XCTAssertEqual(try tokenizer.encodePadded(String(repeating: unit, count: count)), ints(entry["input_ids"]),
                           "\(String(reflecting: unit)) x \(count)")
            XCTAssertLessThan(Clock.seconds() - begin, 20, "\(String(reflecting: unit)) x \(count) took too long")
        }
    }

    // MARK: - Loading rules

    /// A folder with the fixture's vocab.json and merges.txt (copied) and the given config files.
    private func folder(_ label: String, files: [String: String]) throws -> String {
        let folder = temporaryDirectory(label)
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(atPath: Fixtures.path("clip-tokenizer/" + name), toPath: folder + "/" + name)
        }
        for (name, text) in files { try text.write(toFile: folder + "/" + name, atomically: true, encoding: .utf8) }
        return folder
    }

    func testSpecialTokensMapOverridesTokenizerConfig() throws {
        // transformers 5: special_tokens_map.json wins; without model_max_length it has 1e30, Nodus 77.
        let both = try folder("tokenizer-precedence", files: [
            "tokenizer_config.json": #"{"pad_token": "<|endoftext|>", "model_max_length": 77}"#,
            "special_tokens_map.json": #"{"pad_token": {"content": "!", "normalized": false}}"#,
        ])
        XCTAssertEqual(try CLIPTokenizer.load(path: both).padTokenID, 0)
        let bare = try folder("tokenizer-bare", files: [:])
        let tokenizer = try CLIPTokenizer.load(path: bare)
        XCTAssertEqual(tokenizer.padTokenID, 49407)
        XCTAssertEqual(tokenizer.configuration.modelMaxLength, 77)
        let huge = try folder("tokenizer-huge", files: ["tokenizer_config.json": #"{"model_max_length": 1e30}"#])
        XCTAssertEqual(try CLIPTokenizer.load(path: huge).configuration.modelMaxLength, 77)
        let short = try folder("tokenizer-short", files: ["tokenizer_config.json": #"{"model_max_length": 16}"#])
        let shortTokenizer = try CLIPTokenizer.load(path: short)
        XCTAssertEqual(try shortTokenizer.encodePadded("a chest x-ray").count, 16)
        XCTAssertEqual(try shortTokenizer.encodeLongPrompt("word " + String(repeating: "lung ", count: 20)).chunkCount, 2)
        let bad = try folder("tokenizer-bad-length", files: ["tokenizer_config.json": #"{"model_max_length": "77"}"#])
        XCTAssertThrowsError(try CLIPTokenizer.load(path: bad)) { error in
            XCTAssertTrue("\(error)".contains("model_max_length") && "\(error)".contains("tokenizer_config.json"),
                          "\(error)")
        }
    }

    func testSpecialTokenFlagsFromConfigFilesMatchTransformers() throws {
        // Plain strings are unnormalized, objects carry their flag; a token shared by several roles
        // takes transformers' registration order (see CLIPTokenizer.init).
        let variants = try XCTUnwrap(Self.references?["special_token_variants"]?.arrayValue)
        XCTAssertGreaterThan(variants.count, 4)
        for (index, variant) in variants.enumerated() {
            var files: [String: String] = [:]
            for (name, content) in variant["files"]?.objectValue ?? [:] { files[name] = content.serialized() }
            let tokenizer = try CLIPTokenizer.load(path: try folder("tokenizer-variant-\(index)", files: files))
            let text = try XCTUnwrap(variant["text"]?.stringValue)
            XCTAssertEqual(try tokenizer.encode(text), ints(variant["input_ids"]), "variant \(index): \(files)")
            XCTAssertEqual(tokenizer.padTokenID, variant["pad_token_id"]?.intValue, "variant \(index)")
        }
    }

    func testTokenizerJSONFileAndPrecedence() throws {
        // A tokenizer.json path loads on its own; in a folder it is used before vocab.json (as transformers).
        let file = Fixtures.path("clip-tokenizer-json/tokenizer.json")
        XCTAssertEqual(try CLIPTokenizer.load(path: file).encodePadded("a chest x-ray"),
                       try Self.sd15.get().encodePadded("a chest x-ray"))
        let mixed = try folder("tokenizer-mixed", files: ["tokenizer.json": "{not json"])
        XCTAssertThrowsError(try CLIPTokenizer.load(path: mixed)) { error in
            XCTAssertTrue("\(error)".contains("tokenizer.json"), "\(error)")
        }
    }

    func testCacheKeysAreBytesNotCanonicalEquivalence() throws {
        // Without NFC, "é" and "e\u{301}" are different bytes and different ids; Swift strings compare
        // them equal, so a String-keyed BPE cache would hand the first one's ids to the second.
        let source = try String(contentsOfFile: Fixtures.path("clip-tokenizer-json/tokenizer.json"), encoding: .utf8)
        let folder = temporaryDirectory("tokenizer-no-nfc")
        let withoutNFC = source.replacingOccurrences(of: #"{"type":"NFC"},"#, with: "")
        XCTAssertNotEqual(withoutNFC, source)
        try withoutNFC.write(toFile: folder + "/tokenizer.json", atomically: true, encoding: .utf8)
        let tokenizer = try CLIPTokenizer.load(path: folder)
        XCTAssertFalse(tokenizer.configuration.composesUnicode)
        let composed = try tokenizer.encode("caf\u{E9}")
        let decomposed = try tokenizer.encode("cafe\u{301}")
        XCTAssertNotEqual(composed, decomposed)
        XCTAssertEqual(try tokenizer.encode("cafe\u{301}"), decomposed)
        XCTAssertEqual(composed, try Self.sd15.get().encode("caf\u{E9}"))
    }

    func testTokenizerJSONThatIsNotCLIPIsRefused() throws {
        let source = try String(contentsOfFile: Fixtures.path("clip-tokenizer-json/tokenizer.json"), encoding: .utf8)
        let cases = [
            (#""normalizer":{"type":"Sequence""#, #""normalizer":{"type":"BertNormalizer"},"unused":{"type":"Sequence""#,
             "BertNormalizer"),
            (#""type":"BPE""#, #""type":"WordPiece""#, "WordPiece"),
            (#"'s|'t|'re"#, #"'S|'t|'re"#, "pre-tokenizer"),
        ]
        for (old, new, word) in cases {
            XCTAssertTrue(source.contains(old), old)
            let folder = temporaryDirectory("tokenizer-json-unsupported")
            try source.replacingOccurrences(of: old, with: new)
                .write(toFile: folder + "/tokenizer.json", atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try CLIPTokenizer.load(path: folder), word) { error in
                XCTAssertEqual((error as? NodusError)?.code, .unsupported, "\(error)")
                XCTAssertTrue("\(error)".contains(word), "\(error)")
            }
        }
    }
}
