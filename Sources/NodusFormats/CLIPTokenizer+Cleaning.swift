/// Text cleaning: tokenizers' normalizer `Sequence[NFC, Replace(Regex("\s+"), " "), Lowercase]`,
/// which transformers 5's `CLIPTokenizer` installs (no ftfy, no HTML unescaping: `&amp;` stays
/// `&amp;`, unlike open_clip's cleaner).
extension CLIPTokenizer {
    /// The Unicode version of the character classes in tokenizers 0.23's regexes (Oniguruma): 16.
    /// Scalars assigned later (the Swift 6.3 standard library knows Unicode 17) are unassigned
    /// there, so here they are not letters, numbers or white space either. (Lower-casing is Rust's,
    /// which knows Unicode 17 as Swift does, so it is left alone.) Found by encoding every code point
    /// with both (tests/reference/check_tokenizer_against_transformers.py): 3 scalars of Unicode 16
    /// still differ (compositions Rust's NFC tables lack).
    static let referenceUnicodeMajorVersion = 16

    /// True when `scalar` is newer than tokenizers' Unicode tables.
    static func isNewerThanReference(_ scalar: Unicode.Scalar) -> Bool {
        guard let age = scalar.properties.age else { return false }
        return age.major > referenceUnicodeMajorVersion
    }

    /// Unicode `White_Space`: what Oniguruma's `\s` matches in tokenizers' regexes (U+001C..U+001F,
    /// which Python's `str.isspace` accepts, are not white space here, nor is U+200B).
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return value == 0x20 || (value >= 0x09 && value <= 0x0D) }
        return scalar.properties.isWhitespace && !isNewerThanReference(scalar)
    }

    /// `piece` cleaned: NFC (when enabled and the piece has a scalar from U+0300 on; below that
    /// nothing composes), each white-space run as one space, then each scalar's full lower-case
    /// mapping (per character, as Rust's `char::to_lowercase`: a final capital sigma becomes σ).
    func clean(_ piece: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var composed: [Unicode.Scalar]
        if configuration.composesUnicode, piece.contains(where: { $0.value >= 0x300 }) {
            var text = String()
            for scalar in piece {
                // The three scalars of combining class 0 that decompose into non-starters: the
                // standard library's NFC treats them as starters and leaves the marks around them
                // out of canonical order ("e\u{301}\u{F73}\u{327}" would compose to "é..."), so
                // they go in decomposed, as NFC would decompose them anyway (composition exclusions).
                switch scalar.value {
                case 0x0F73: text.unicodeScalars.append(contentsOf: ["\u{F71}", "\u{F72}"])
                case 0x0F75: text.unicodeScalars.append(contentsOf: ["\u{F71}", "\u{F74}"])
                case 0x0F81: text.unicodeScalars.append(contentsOf: ["\u{F71}", "\u{F80}"])
                default: text.unicodeScalars.append(scalar)
                }
            }
            // `_nfcCodeUnits`: the standard library's NFC (underscored, but public; FoundationEssentials
            // has no normaliser).
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
