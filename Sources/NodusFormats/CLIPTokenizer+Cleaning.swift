/// Text cleaning: tokenizers' normalizer `Sequence[NFC, Replace(Regex("\s+"), " "), Lowercase]`,
/// which transformers 5's `CLIPTokenizer` installs (no ftfy, no HTML unescaping: `&amp;` stays
/// `&amp;`, unlike open_clip's cleaner).
extension CLIPTokenizer {
    /// Unicode `White_Space`: what Oniguruma's `\s` matches in tokenizers' regexes (U+001C..U+001F,
    /// which Python's `str.isspace` accepts, are not white space here, nor is U+200B).
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return value == 0x20 || (value >= 0x09 && value <= 0x0D) }
        return scalar.properties.isWhitespace
    }

    /// `piece` cleaned: NFC (when enabled and the piece has a scalar from U+0300 on; below that
    /// nothing composes), each white-space run as one space, then each scalar's full lower-case
    /// mapping (per character, as Rust's `char::to_lowercase`: a final capital sigma becomes σ).
    func clean(_ piece: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var composed: [Unicode.Scalar]
        if configuration.composesUnicode, piece.contains(where: { $0.value >= 0x300 }) {
            var text = String()
            text.unicodeScalars.append(contentsOf: piece)
            composed = Array(String(decoding: text._nfcCodeUnits, as: UTF8.self).unicodeScalars)
        } else {
            composed = Array(piece)
        }
        var result: [Unicode.Scalar] = []
        result.reserveCapacity(composed.count)
        var inWhitespace = false
        for scalar in composed {
            if Self.isWhitespace(scalar) {
                if !inWhitespace { result.append(" ") }
                inWhitespace = true
                continue
            }
            inWhitespace = false
            if !configuration.lowercases {
                result.append(scalar)
            } else if scalar.value < 0x80 {
                let value = scalar.value
                result.append(value >= 0x41 && value <= 0x5A ? Unicode.Scalar(UInt8(value + 0x20)) : scalar)
            } else {
                let lower = scalar.properties.lowercaseMapping
                if lower.unicodeScalars.count == 1, let single = lower.unicodeScalars.first {
                    result.append(single)
                } else {
                    result.append(contentsOf: lower.unicodeScalars)
                }
            }
        }
        return result
    }
}
