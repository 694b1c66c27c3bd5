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
            var scalars: [Unicode.Scalar] = []
            scalars.reserveCapacity(piece.count)
            for scalar in piece {
                // The three scalars of combining class 0 that decompose into non-starters: the
                // standard library's NFC treats them as starters and leaves the marks around them
                // out of canonical order ("e\u{301}\u{F73}\u{327}" would compose to "é..."), so
                // they go in decomposed, as NFC would decompose them anyway (composition exclusions).
                switch scalar.value {
                case 0x0F73: scalars += ["\u{F71}", "\u{F72}"]
                case 0x0F75: scalars += ["\u{F71}", "\u{F74}"]
                case 0x0F81: scalars += ["\u{F71}", "\u{F80}"]
                default: scalars.append(scalar)
                }
            }
            // `_nfcCodeUnits`: the standard library's NFC (underscored, but public; FoundationEssentials
            // has no normaliser). Its canonical ordering is quadratic in a run of combining marks (100,000
            // alternating marks took 9 s), so the runs go in already ordered: a stable sort by combining
            // class is the canonical ordering NFD would do (no mark that decomposes changes class). The
            // text is built from UTF-8 in one go: appending marks one by one to a String is quadratic too.
            var utf8: [UInt8] = []
            utf8.reserveCapacity(scalars.count * 3)
            for scalar in Self.canonicallyOrdered(scalars) { UTF8.encode(scalar) { utf8.append($0) } }
            let text = String(decoding: utf8, as: UTF8.self)
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

    /// `scalars` with every run of non-starters stably sorted by canonical combining class.
    static func canonicallyOrdered(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var result = scalars
        var start = 0
        while start < result.count {
            guard result[start].properties.canonicalCombiningClass.rawValue != 0 else {
                start += 1
                continue
            }
            var end = start + 1
            while end < result.count, result[end].properties.canonicalCombiningClass.rawValue != 0 { end += 1 }
            if end - start > 1 {
                let run = result[start..<end].enumerated().sorted {
                    let left = $0.element.properties.canonicalCombiningClass.rawValue
                    let right = $1.element.properties.canonicalCombiningClass.rawValue
                    return left != right ? left < right : $0.offset < $1.offset
                }.map(\.element)
                result.replaceSubrange(start..<end, with: run)
            }
            start = end
        }
        return result
    }
}
