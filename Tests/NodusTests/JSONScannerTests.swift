@testable import NodusFormats
import NodusCore
import XCTest

/// The tokenizer files' JSON parser: the same values as `JSONValue.parse` (Foundation) on valid
/// documents, and a format error naming the offset on broken ones.
final class JSONScannerTests: XCTestCase {
    private func scan(_ text: String) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { try JSONScanner.parse(UnsafeRawBufferPointer($0), context: "test.json") }
    }

    func testValidDocumentsEqualFoundation() throws {
        let documents = [
            #"{"a": 1, "b": [true, false, null], "c": {"d": "e"}}"#,
            #"[0, -0, 1.5, -2.25e3, 1E-2, 12345678901234567890, 0.1, 9007199254740993]"#,
            #"{"\u00e9\ud83d\ude42\n\t\"\\\/": "Ġ</w>", "": ""}"#,
            #"  "plain"  "#, "[]", "{}", "[[[]]]", "1e30", "-0.0",
        ]
        for document in documents {
            XCTAssertEqual(try scan(document), try JSONValue.parse(document, context: "test.json"), document)
        }
        // Duplicate keys: the last wins, as Python's json (which transformers reads vocab.json with).
        XCTAssertEqual(try scan(#"{"k": 1, "k": 2}"#), .object(["k": .number(2)]))
    }

    func testBrokenDocumentsAreFormatErrorsWithTheOffset() {
        let broken = ["", "{", #"{"a" 1}"#, #"{"a": 1,}"#, "[1,]", "[1 2]", "01", "1.", "-", "1e", "tru", "nul",
                      #""abc"#, "\"a\u{1}\"", #""\x""#, #""\ud800""#, #""\udc00x""#, #""\u12G4""#, "[1] 2",
                      #"{1: 2}"#, String(repeating: "[", count: 600) + String(repeating: "]", count: 600)]
        for document in broken {
            XCTAssertThrowsError(try scan(document), String(reflecting: document)) { error in
                XCTAssertEqual((error as? NodusError)?.code, .format)
                XCTAssertTrue("\(error)".contains("test.json is not valid JSON") && "\(error)".contains("at byte"),
                              "\(error)")
            }
        }
        let invalidUTF8: [UInt8] = [0x22, 0xC3, 0x28, 0x22]
        XCTAssertThrowsError(try invalidUTF8.withUnsafeBytes { try JSONScanner.parse($0, context: "test.json") })
    }
}
