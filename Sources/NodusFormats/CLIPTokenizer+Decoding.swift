/// From ids back to text, as transformers 5's `CLIPTokenizer.decode`: tokenizers' `ByteLevel`
/// decoder (each token's characters back to their bytes, a token with a character outside the
/// byte alphabet as its own UTF-8; the bytes of all tokens decoded as UTF-8 with U+FFFD for invalid
/// sequences), then `</w>` replaced by a space and the ends stripped (transformers' wrapper of the
/// backend's decode; `clean_up_tokenization_spaces` is off for CLIP).
///
/// Limitations: ids that are neither in the vocabulary nor added tokens are skipped, as tokenizers
/// skips them.
extension CLIPTokenizer {
    /// The token string of each id (`convert_ids_to_tokens`), nil for an unknown id.
    public func tokens(of ids: [Int]) -> [String?] { ids.map { token(of: $0) } }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        let special = Set(addedTokens.filter(\.special).map(\.id))
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens, special.contains(id) { continue }
            guard let token = token(of: id) else { continue }
            let start = bytes.count
            var mapped = true
            for scalar in token.unicodeScalars {
                guard let byte = ByteLevelAlphabet.bytes[scalar.value] else {
                    mapped = false
                    break
                }
                bytes.append(byte)
            }
            if !mapped {
                bytes.removeSubrange(start...)
                bytes.append(contentsOf: token.utf8)
            }
        }
        // The suffix is replaced in the bytes: a Character-wise replace would miss "</w>" before a
        // combining mark (">" + U+0307 is one Character). Replacing ASCII bytes before decoding gives
        // what Python's str.replace gives after it (no invalid sequence swallows an ASCII byte).
        let suffix = Array(configuration.endOfWordSuffix.utf8)
        var spaced: [UInt8] = []
        spaced.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if !suffix.isEmpty, index + suffix.count <= bytes.count, bytes[index..<(index + suffix.count)].elementsEqual(suffix) {
                spaced.append(0x20)
                index += suffix.count
            } else {
                spaced.append(bytes[index])
                index += 1
            }
        }
        return Self.strippingPythonWhitespace(String(decoding: spaced, as: UTF8.self))
    }

    /// Python's `str.strip()`: White_Space and U+001C..U+001F off both ends.
    static func strippingPythonWhitespace(_ text: String) -> String {
        func isSpace(_ scalar: Unicode.Scalar) -> Bool {
            scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
        }
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isSpace($0) }),
              let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}
