extension ONNXNode {
    /// Parses a Python `repr` of a list of strings (`['', 'a.b', "it's"]`), as the dynamo exporter
    /// writes `pkg.torch.onnx.name_scopes`. Returns nil when `text` is not such a list.
    /// Handles both quote styles and the escapes Python's `repr` emits (`\\`, `\'`, `\"`, `\n`,
    /// `\r`, `\t`, `\xNN`, `\uNNNN`, `\UNNNNNNNN`).
    public static func parsePythonStringList(_ text: String) -> [String]? {
        let characters = Array(text.unicodeScalars)
        var index = 0
        func skipSpaces() {
            while index < characters.count, characters[index].properties.isWhitespace { index += 1 }
        }
        func hexValue(digits: Int) -> Unicode.Scalar? {
            guard index + digits <= characters.count else { return nil }
            var value: UInt32 = 0
            for _ in 0..<digits {
                guard let digit = UInt32(String(characters[index]), radix: 16) else { return nil }
                value = value * 16 + digit
                index += 1
            }
            return Unicode.Scalar(value)
        }

        skipSpaces()
        guard index < characters.count, characters[index] == "[" else { return nil }
        index += 1
        var items: [String] = []
        skipSpaces()
        if index < characters.count, characters[index] == "]" {
            index += 1
            skipSpaces()
            return index == characters.count ? items : nil
        }
        while true {
            skipSpaces()
            guard index < characters.count, characters[index] == "'" || characters[index] == "\"" else { return nil }
            let quote = characters[index]
            index += 1
            var item = String.UnicodeScalarView()
            while true {
                guard index < characters.count else { return nil }
                let character = characters[index]
                index += 1
                if character == quote { break }
                guard character == "\\" else {
                    item.append(character)
                    continue
                }
                guard index < characters.count else { return nil }
                let escaped = characters[index]
                index += 1
                switch escaped {
                case "n": item.append("\n")
                case "r": item.append("\r")
                case "t": item.append("\t")
                case "x", "u", "U":
                    guard let scalar = hexValue(digits: escaped == "x" ? 2 : escaped == "u" ? 4 : 8) else { return nil }
                    item.append(scalar)
                default: item.append(escaped)  // \\ \' \" and anything else as itself
                }
            }
            items.append(String(item))
            skipSpaces()
            guard index < characters.count else { return nil }
            if characters[index] == "," {
                index += 1
                continue
            }
            guard characters[index] == "]" else { return nil }
            index += 1
            skipSpaces()
            return index == characters.count ? items : nil
        }
    }
}
