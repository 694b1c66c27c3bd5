extension LoRAConfig {
    /// The member order of every JSON object in `text`, keyed by the path of member names
    /// from the root (array elements add the component "[]"). First occurrences only.
    ///
    /// `JSONValue` keeps objects as dictionaries, which forget the order; PEFT's
    /// `get_pattern_key` takes the first `rank_pattern` / `alpha_pattern` key that matches,
    /// in the order Python's `json.loads` gives (the file's order), so the loader needs it.
    /// Returns what it could read when `text` is not valid JSON (callers parse it with
    /// `JSONValue.parse` first, which reports the error).
    static func objectKeyOrder(in text: String) -> [[String]: [String]] {
        var walker = KeyOrderWalker(bytes: Array(text.utf8))
        walker.value(path: [])
        return walker.orders
    }
}

/// A minimal JSON reader that records object member order (see `LoRAConfig.objectKeyOrder`).
private struct KeyOrderWalker {
    let bytes: [UInt8]
    var index = 0
    var orders: [[String]: [String]] = [:]

    init(bytes: [UInt8]) { self.bytes = bytes }

    private mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    /// Reads one value; false when the text is malformed.
    @discardableResult
    mutating func value(path: [String]) -> Bool {
        skipWhitespace()
        guard index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var keys: [String] = []
            var seen = Set<String>()
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                orders[path] = keys
                return true
            }
            while true {
                skipWhitespace()
                guard let key = string() else { return false }
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return false }
                index += 1
                if seen.insert(key).inserted { keys.append(key) }
                orders[path] = keys
                guard value(path: path + [key]) else { return false }
                skipWhitespace()
                guard index < bytes.count else { return false }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return true }
                return false
            }
        case UInt8(ascii: "["):
            index += 1
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return true
            }
            while true {
                guard value(path: path + ["[]"]) else { return false }
                skipWhitespace()
                guard index < bytes.count else { return false }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return true }
                return false
            }
        case UInt8(ascii: "\""):
            return string() != nil
        default:
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: ",") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]")
                    || byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { break }
                index += 1
            }
            return index > start
        }
    }

    /// Reads a string literal at `index`, decoding escapes (including surrogate pairs).
    private mutating func string() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        var result: [UInt8] = []
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "\"") { return String(decoding: result, as: UTF8.self) }
            guard byte == UInt8(ascii: "\\") else {
                result.append(byte)
                continue
            }
            guard index < bytes.count else { return nil }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "b"): result.append(0x08)
            case UInt8(ascii: "f"): result.append(0x0C)
            case UInt8(ascii: "n"): result.append(0x0A)
            case UInt8(ascii: "r"): result.append(0x0D)
            case UInt8(ascii: "t"): result.append(0x09)
            case UInt8(ascii: "u"):
                guard var code = hexQuad() else { return nil }
                if (0xD800..<0xDC00).contains(code), index + 1 < bytes.count,
                   bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") {
                    let save = index
                    index += 2
                    if let low = hexQuad(), (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        index = save
                    }
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                result.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: result.append(escape)  // \" \\ \/
            }
        }
        return nil
    }

    private mutating func hexQuad() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var code: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = Character(Unicode.Scalar(bytes[index])).hexDigitValue else { return nil }
            code = code * 16 + UInt32(digit)
            index += 1
        }
        return code
    }
}
