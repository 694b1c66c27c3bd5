import FuzzSupport
import NodusFormats

/// libFuzzer target: the JSON scanner every config, index and safetensors header goes through.
///
/// Beyond "no crash", what it accepts must serialize to text it reads back as the same document.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        _ = try? JSONValue.parse(input.bytes, context: "fuzz input", rejectingDuplicateKeys: true)
        let value = try JSONValue.parse(input.bytes, context: "fuzz input")
        let text = value.serialized()
        let again = try JSONValue.parse(text, context: "serialized fuzz input")
        guard again.serialized() == text else {
            fatalError("JSON round trip changed the document: \(text) became \(again.serialized())")
        }
    }
}
