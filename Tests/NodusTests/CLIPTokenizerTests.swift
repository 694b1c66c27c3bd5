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
}
