import NodusCore

extension Argument {
    /// `length` bytes at `text` as a String; an error names the parameter and the offset of the first
    /// byte that is not valid UTF-8 (overlong forms, surrogates and values above U+10FFFF included).
    static func utf8Text(_ text: UnsafePointer<CChar>?, length: Int, _ parameter: String,
                         in function: String) throws -> String {
        guard length != 0 else { return "" }
        guard length > 0 else {
            throw NodusError.invalidArgument("\(function): `\(parameter)_length` is too large")
        }
        let start = try required(text, parameter, in: function)
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(start).assumingMemoryBound(to: UInt8.self),
                                        count: length)
        if let decoded = String(validating: bytes, as: UTF8.self) { return decoded }
        let offset = firstInvalidOffset(bytes)
        throw NodusError.invalidArgument(
            "\(function): `\(parameter)` is not valid UTF-8 (byte \(offset) of \(length), 0x"
                + "\(String(bytes[min(offset, length - 1)], radix: 16)))")
    }

    /// The offset of the first byte of `bytes` that does not start or continue valid UTF-8 (`count` when all do).
    static func firstInvalidOffset(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var index = 0
        while index < bytes.count {
            let lead = bytes[index]
            let length: Int
            var lower: UInt8 = 0x80
            var upper: UInt8 = 0xBF
            switch lead {
            case 0x00...0x7F: index += 1; continue
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; lower = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; upper = 0x9F
            case 0xF0: length = 4; lower = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; upper = 0x8F
            default: return index
            }
            for continuation in 1..<length {
                guard index + continuation < bytes.count else { return index }
                let byte = bytes[index + continuation]
                let (low, high) = continuation == 1 ? (lower, upper) : (UInt8(0x80), UInt8(0xBF))
                guard byte >= low, byte <= high else { return index }
            }
            index += length
        }
        return bytes.count
    }
}
