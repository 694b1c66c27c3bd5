import NodusCore

/// A parsed JSON document: configs, safetensors headers, scheduler configs.
/// Accessors return `nil` on a type mismatch; the typed readers in
/// `JSONObjectReader` turn that into an error naming the field.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses `bytes` as one JSON document (`JSONScanner`: RFC 8259 and Python's `NaN` /
    /// `Infinity` literals).
    /// - Parameter rejectingDuplicateKeys: a key given twice in one object is an error (else the last wins).
    /// - Throws: `NodusError.format` naming `context` and the byte offset when the text is not JSON.
    public static func parse(_ bytes: UnsafeRawBufferPointer, context: String,
                             rejectingDuplicateKeys: Bool = false) throws -> JSONValue {
        try JSONScanner.parse(bytes, context: context, rejectingDuplicateKeys: rejectingDuplicateKeys)
    }

    public static func parse(_ text: String, context: String, rejectingDuplicateKeys: Bool = false) throws -> JSONValue {
        var text = text
        return try text.withUTF8 {
            try parse(UnsafeRawBufferPointer($0), context: context, rejectingDuplicateKeys: rejectingDuplicateKeys)
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }
    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }
    public var doubleValue: Double? {
        if case .number(let number) = self { return number }
        return nil
    }
    public var boolValue: Bool? {
        if case .bool(let flag) = self { return flag }
        return nil
    }
    /// The number as an exact integer, or nil when it has a fraction or is out of range.
    public var intValue: Int? {
        guard case .number(let number) = self, number.rounded() == number,
              abs(number) < 9.0e15 else { return nil }
        return Int(number)
    }
    public var isNull: Bool { self == .null }

    /// `text` as a JSON string literal.
    public static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}

extension JSONValue {
    /// Compact JSON text, keys sorted. Non-finite numbers are written as Python's `json` writes
    /// them (`NaN`, `Infinity`, `-Infinity`), so a config read from diffusers goes back as it came.
    public func serialized() -> String {
        var text = ""
        write(to: &text)
        return text
    }

    private func write(to text: inout String) {
        switch self {
        case .null: text += "null"
        case .bool(let flag): text += flag ? "true" : "false"
        case .number(let number): text += JSONValue.format(number)
        case .string(let string): JSONValue.writeString(string, to: &text)
        case .array(let items):
            text += "["
            for (index, item) in items.enumerated() {
                if index > 0 { text += "," }
                item.write(to: &text)
            }
            text += "]"
        case .object(let members):
            text += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { text += "," }
                JSONValue.writeString(key, to: &text)
                text += ":"
                members[key]?.write(to: &text)
            }
            text += "}"
        }
    }

    private static func format(_ number: Double) -> String {
        if number.isNaN { return "NaN" }
        if number.isInfinite { return number < 0 ? "-Infinity" : "Infinity" }
        if number.rounded() == number, abs(number) < 9.0e15 { return String(Int64(number)) }
        return "\(number)"  // the shortest text that reads back as the same double
    }

    private static func writeString(_ string: String, to text: inout String) {
        text += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
