import XCTest
import NodusCore
import NodusFormats

final class JSONValueTests: XCTestCase {
    func testParsesNestedDocument() throws {
        let value = try JSONValue.parse(#"{"a": [1, 2.5, "x"], "b": {"c": null, "d": true}}"#, context: "doc")
        XCTAssertEqual(value["a"]?.arrayValue?.count, 3)
        XCTAssertEqual(value["a"]?.arrayValue?[0].intValue, 1)
        XCTAssertNil(value["a"]?.arrayValue?[1].intValue)
        XCTAssertEqual(value["b"]?["d"]?.boolValue, true)
    }

    /// diffusers writes Python's json literals into configs (DPM-Solver's `lambda_min_clipped: -Infinity`):
    /// they read and write back as Python's json does.
    func testPythonNonFiniteLiteralsRoundTrip() throws {
        let text = #"{"a": -Infinity, "b": NaN, "c": Infinity, "d": [1e-06, 0.00085, 1000, "x\ny"]}"#
        let value = try JSONValue.parse(text, context: "doc")
        XCTAssertEqual(value["a"]?.doubleValue, -.infinity)
        XCTAssertTrue(value["b"]?.doubleValue?.isNaN ?? false)
        XCTAssertEqual(value["c"]?.doubleValue, .infinity)
        let written = value.serialized()
        XCTAssertEqual(written, #"{"a":-Infinity,"b":NaN,"c":Infinity,"d":[1e-06,0.00085,1000,"x\ny"]}"#)
        let again = try JSONValue.parse(written, context: "written")
        XCTAssertEqual(again["d"], value["d"])
        XCTAssertThrowsError(try JSONValue.parse("[-Inf]", context: "doc"))
        XCTAssertThrowsError(try JSONValue.parse(#"{"a": 1, "a": 2}"#, context: "doc", rejectingDuplicateKeys: true))
        XCTAssertEqual(try JSONValue.parse(#"{"a": 1, "a": 2}"#, context: "doc")["a"]?.intValue, 2)
    }

    func testMalformedJSONNamesContext() {
        XCTAssertThrowsError(try JSONValue.parse("{\"a\": ", context: "config.json of 'x'")) { error in
            let error = error as? NodusError
            XCTAssertEqual(error?.code, .format)
            XCTAssertTrue(error?.message.contains("config.json of 'x'") ?? false, "\(String(describing: error))")
        }
    }

    func testReaderErrorsNameField() throws {
        let reader = try JSONObjectReader(try JSONValue.parse(#"{"layers": "many"}"#, context: "c"), context: "config.json")
        XCTAssertThrowsError(try reader.int("layers")) { error in
            XCTAssertTrue("\(error)".contains("'layers'"), "\(error)")
        }
        XCTAssertThrowsError(try reader.int("heads")) { error in
            XCTAssertTrue("\(error)".contains("'heads' is missing"), "\(error)")
        }
        XCTAssertEqual(try reader.int("heads", default: 8), 8)
    }
}
