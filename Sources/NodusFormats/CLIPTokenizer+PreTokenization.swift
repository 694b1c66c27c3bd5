/// The pre-split of transformers' `CLIPTokenizer`: tokenizers' `Split` with the regex
/// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
/// `behavior: removed, invert: true` (the matches are the pieces; the white space between them is
/// dropped), written as a scanner: at each position the alternatives are tried in the regex's order
/// and the first that matches wins, as a backtracking engine does. The `ByteLevel` pre-tokenizer that
/// follows (`use_regex: true`: GPT-2's regex) splits only the `<|startoftext|>` / `<|endoftext|>`
/// literals further (into `<|`, the name, `|>`; they reach this step when the added token is not
/// matched, as `<|ENDOFTEXT|>` with an unnormalized EOS); its byte mapping is in `BytePairEncoding`.
extension CLIPTokenizer {
    private static let specialLiterals: [[Unicode.Scalar]] = [
        Array("<|startoftext|>".unicodeScalars), Array("<|endoftext|>".unicodeScalars),
    ]
    private static let contractions: [[Unicode.Scalar]] = ["s", "t", "re", "ve", "m", "ll", "d"].map {
        Array($0.unicodeScalars)
    }

    /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
    static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return (value | 0x20) >= 0x61 && (value | 0x20) <= 0x7A }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return !isNewerThanReference(scalar)
        default: return false
        }
    }

    /// `\p{N}`: general categories Nd, Nl, No.
    static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        let value = scalar.value
        if value < 0x80 { return value >= 0x30 && value <= 0x39 }
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return !isNewerThanReference(scalar)
        default: return false
        }
    }

    /// Calls `piece` with the range of every pre-token of `text`, in order.
    static func preTokenize(_ text: [Unicode.Scalar], _ piece: (Range<Int>) throws -> Void) rethrows {
        let count = text.count
        var position = 0
        func matches(_ literal: [Unicode.Scalar], at start: Int) -> Bool {
            guard start + literal.count <= count else { return false }
            for index in 0..<literal.count where text[start + index] != literal[index] { return false }
            return true
        }
        while position < count {
            let scalar = text[position]
            if isWhitespace(scalar) {
                position += 1
                continue
            }
            if scalar == "<", let literal = specialLiterals.first(where: { matches($0, at: position) }) {
                // GPT-2's regex in the ByteLevel step cuts the literal into "<|", the name and "|>".
                let end = position + literal.count
                try piece(position..<(position + 2))
                try piece((position + 2)..<(end - 2))
                try piece((end - 2)..<end)
                position = end
                continue
            }
            if scalar == "'", let suffix = contractions.first(where: { matches($0, at: position + 1) }) {
                try piece(position..<(position + 1 + suffix.count))
                position += 1 + suffix.count
                continue
            }
            var end = position + 1
            if isLetter(scalar) {
                while end < count, isLetter(text[end]) { end += 1 }
            } else if !isNumber(scalar) {
                while end < count, !isWhitespace(text[end]), !isLetter(text[end]), !isNumber(text[end]) { end += 1 }
            }
            try piece(position..<end)
            position = end
        }
    }
}
