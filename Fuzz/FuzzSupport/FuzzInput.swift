import NodusCore

/// One libFuzzer input, as a target sees it.
///
/// Inputs that stand for several files (a tokenizer folder, a PEFT adapter folder) hold
/// them one after the other, split at `separator` lines; the seed corpora are made the same
/// way (`Fuzz/make_corpus.sh`).
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer

    /// The line between two files of one input.
    public static let separator = Array("\n#nodus-fuzz-next-file\n".utf8)

    /// Runs `body` on one input. A thrown `NodusError` is the clean way to refuse bad input;
    /// any other error means a failure escaped the runtime's one error type, and traps so
    /// libFuzzer keeps the input.
    public static func run(_ data: UnsafePointer<UInt8>?, _ count: Int, _ body: (FuzzInput) throws -> Void) -> Int32 {
        let input = FuzzInput(bytes: UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : count))
        do {
            try body(input)
        } catch is NodusError {
        } catch {
            fatalError("a parser threw \(type(of: error)), not a NodusError: \(error)")
        }
        return 0
    }

    /// The input split at `separator` lines (the whole input when there is none).
    public var parts: [UnsafeRawBufferPointer] {
        var parts: [UnsafeRawBufferPointer] = []
        let separator = FuzzInput.separator
        var start = 0
        var position = 0
        while position + separator.count <= bytes.count {
            if bytes[position] == separator[0],
               separator.indices.allSatisfy({ bytes[position + $0] == separator[$0] }) {
                parts.append(UnsafeRawBufferPointer(rebasing: bytes[start..<position]))
                position += separator.count
                start = position
            } else {
                position += 1
            }
        }
        parts.append(UnsafeRawBufferPointer(rebasing: bytes[start...]))
        return parts
    }

    /// The input as UTF-8 text (invalid sequences become U+FFFD).
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}
