/// From text to content ids: added tokens, cleaning, pre-split and byte-pair encoding, one
/// white-space-free run of the text at a time.
extension CLIPTokenizer {
    /// Appends the content ids of `text`, stopping after the run that brings `limit` new ids (the
    /// caller drops any beyond it).
    ///
    /// Why run by run gives the ids of the whole text: NFC never composes across a White_Space
    /// scalar (none is in a composition pair, and all are starters), lower-casing is per scalar,
    /// white space only separates pre-tokens, and no added token holds white space (otherwise the
    /// text is processed whole).
    func appendContentIDs(of text: String, limit: Int?, into ids: inout [Int]) throws {
        let start = ids.count
        var run: [Unicode.Scalar] = []
        var bytes: [UInt8] = []
        for scalar in text.unicodeScalars {
            if processesRunByRun, Self.isWhitespace(scalar) {
                if !run.isEmpty {
                    try appendRun(run, bytes: &bytes, into: &ids)
                    run.removeAll(keepingCapacity: true)
                    if let limit, ids.count - start >= limit { return }
                }
            } else {
                run.append(scalar)
            }
        }
        if !run.isEmpty { try appendRun(run, bytes: &bytes, into: &ids) }
    }

    private func appendRun(_ run: [Unicode.Scalar], bytes: inout [UInt8], into ids: inout [Int]) throws {
        try Self.split(run[...], on: rawTokenPatterns, token: { ids.append($0) }) { rawPiece in
            let cleaned = clean(rawPiece)
            try Self.split(cleaned[...], on: normalizedTokenPatterns, token: { ids.append($0) }) { piece in
                let text = Array(piece)
                try Self.preTokenize(text) { range in
                    bytes.removeAll(keepingCapacity: true)
                    for scalar in text[range] {
                        if scalar.value < 0x80 {
                            bytes.append(UInt8(scalar.value))
                        } else {
                            UTF8.encode(scalar) { bytes.append($0) }
                        }
                    }
                    try model.encode(bytes, into: &ids)
                }
            }
        }
    }

    /// Cuts `text` at the leftmost-longest matches of `patterns` (longest first): `token` gets each
    /// match's id, `piece` each non-empty stretch between matches.
    static func split(_ text: ArraySlice<Unicode.Scalar>, on patterns: [(scalars: [Unicode.Scalar], id: Int)],
                      token: (Int) -> Void, piece: (ArraySlice<Unicode.Scalar>) throws -> Void) rethrows {
        guard !patterns.isEmpty else {
            if !text.isEmpty { try piece(text) }
            return
        }
        // The first scalars of the patterns, to skip the rest of the text quickly.
        var firsts: [Unicode.Scalar] = []
        for pattern in patterns { if let first = pattern.scalars.first, !firsts.contains(first) { firsts.append(first) } }
        var start = text.startIndex
        var position = text.startIndex
        while position < text.endIndex {
            guard firsts.contains(text[position]) else {
                position += 1
                continue
            }
            var matched: (length: Int, id: Int)?
            for pattern in patterns where pattern.scalars.first == text[position] {
                let length = pattern.scalars.count
                if position + length <= text.endIndex, text[position..<(position + length)].elementsEqual(pattern.scalars) {
                    matched = (length, pattern.id)
                    break
                }
            }
            if let matched {
                if start < position { try piece(text[start..<position]) }
                token(matched.id)
                position += matched.length
                start = position
            } else {
                position += 1
            }
        }
        if start < text.endIndex { try piece(text[start..<text.endIndex]) }
    }
}
