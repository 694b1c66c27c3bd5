import NodusCore
import Synchronization

/// Byte-level byte-pair encoding with an end-of-word suffix: the `BPE` model of Hugging Face
/// tokenizers as CLIP configures it (`end_of_word_suffix: "</w>"`, no continuing-subword prefix,
/// no dropout, `fuse_unk: false`, `ignore_merges: false`).
///
/// A pre-token's UTF-8 bytes become one symbol per byte (its byte-level character; the last one
/// with the suffix appended), then merges apply lowest rank first and, among equal ranks, leftmost
/// first, exactly as tokenizers' `Word::merge_all` does with its priority queue (O(n log n), so a
/// pre-token of a million characters still encodes in about a second).
///
/// Results are cached per pre-token, as tokenizers does (10,000 entries, pre-tokens up to 256
/// bytes); the cache is behind a mutex, so one instance may serve several threads.
///
/// Limitations: no dropout and no byte fallback (CLIP uses neither). A byte whose character is
/// missing from the vocabulary becomes the unknown token, unfused, as tokenizers does.
public final class BytePairEncoding: Sendable {
    /// Token string -> id (vocab.json).
    public let vocabulary: [String: Int]
    /// Id -> token string.
    public let tokens: [Int: String]
    /// The suffix of a word's last symbol ("</w>" for CLIP).
    public let endOfWordSuffix: String
    /// The id standing for a symbol that is not in the vocabulary, if any.
    public let unknownID: Int?
    /// Number of merges (merges.txt lines after the version header).
    public let mergeCount: Int

    /// (left id << 32 | right id) -> (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    /// The symbol of each byte inside a word, and at its end; -1 when not in the vocabulary.
    private let byteSymbols: [Int32]
    private let finalByteSymbols: [Int32]
    /// Keyed by the bytes: `String` keys compare by canonical equivalence, which would let a piece
    /// hit the entry of a differently ordered (or composed) piece with other bytes and other ids.
    private let cache = Mutex<[[UInt8]: [Int32]]>([:])
    private static let cacheCapacity = 10_000
    private static let cachedPieceLength = 256

    /// - Parameters:
    ///   - vocabulary: token -> id.
    ///   - merges: the merge pairs in rank order.
    ///   - context: names the source in messages (file names), e.g. "merges.txt of 'sd/tokenizer'".
    /// - Throws: `NodusError.format` when a merge's parts or result are not in the vocabulary (the
    ///   message names the merge and its line), or an id is negative or too large.
    public init(vocabulary: [String: Int], merges: [(String, String)], endOfWordSuffix: String,
                unknownToken: String?, context: String) throws {
        var tokens: [Int: String] = [:]
        tokens.reserveCapacity(vocabulary.count)
        for (token, id) in vocabulary {
            guard id >= 0, id < Int(Int32.max) else {
                throw NodusError.format("\(context): token '\(token)' has id \(id), outside 0..<\(Int32.max)")
            }
            tokens[id] = token
        }
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            guard let left = vocabulary[merge.0], let right = vocabulary[merge.1] else {
                let missing = vocabulary[merge.0] == nil ? merge.0 : merge.1
                throw NodusError.format(
                    "\(context): merge \(rank + 1) '\(merge.0) \(merge.1)' uses '\(missing)', which is not in the "
                        + "vocabulary: the vocabulary and the merges disagree")
            }
            guard let merged = vocabulary[merge.0 + merge.1] else {
                throw NodusError.format(
                    "\(context): merge \(rank + 1) '\(merge.0) \(merge.1)' makes '\(merge.0 + merge.1)', which is "
                        + "not in the vocabulary: the vocabulary and the merges disagree")
            }
            let key = UInt64(left) << 32 | UInt64(right)
            // tokenizers keeps the first rank of a duplicated pair.
            if table[key] == nil { table[key] = UInt64(rank) << 32 | UInt64(merged) }
        }
        var inner = [Int32](repeating: -1, count: 256)
        var final = [Int32](repeating: -1, count: 256)
        for byte in 0..<256 {
            let character = String(ByteLevelAlphabet.characters[byte])
            inner[byte] = vocabulary[character].map(Int32.init) ?? -1
            final[byte] = vocabulary[character + endOfWordSuffix].map(Int32.init) ?? -1
        }
        let unknownID = unknownToken.flatMap { vocabulary[$0] }
        self.vocabulary = vocabulary
        self.tokens = tokens
        self.endOfWordSuffix = endOfWordSuffix
        self.unknownID = unknownID
        self.mergeCount = merges.count
        self.merges = table
        self.byteSymbols = inner
        self.finalByteSymbols = final
    }

    /// Appends the ids of one pre-token, given as its UTF-8 `bytes`.
    /// - Throws: `NodusError.format` when a byte has no symbol and the vocabulary has no unknown token.
    public func encode(_ bytes: [UInt8], into output: inout [Int]) throws {
        if bytes.count <= Self.cachedPieceLength, let cached = cache.withLock({ $0[bytes] }) {
            for id in cached { output.append(Int(id)) }
            return
        }
        var symbols = [Int32](repeating: 0, count: bytes.count)
        for index in 0..<bytes.count {
            let table = index == bytes.count - 1 ? finalByteSymbols : byteSymbols
            var symbol = table[Int(bytes[index])]
            if symbol < 0 {
                guard let unknownID else {
                    throw NodusError.format("byte-pair encoding: byte 0x\(String(bytes[index], radix: 16)) has no "
                                            + "token in the vocabulary and there is no unknown token")
                }
                symbol = Int32(unknownID)
            }
            symbols[index] = symbol
        }
        let merged = mergeAll(symbols)
        if bytes.count <= Self.cachedPieceLength {
            cache.withLock { entries in
                if entries.count < Self.cacheCapacity { entries[bytes] = merged }
            }
        }
        for id in merged { output.append(Int(id)) }
    }

    /// tokenizers' `Word::merge_all` without dropout: a min-heap of (rank, position) over adjacent
    /// pairs; a popped entry whose pair has changed since it was pushed is skipped.
    private func mergeAll(_ initial: [Int32]) -> [Int32] {
        var symbols = initial
        let count = symbols.count
        guard count >= 2 else { return symbols }
        var next = [Int32](repeating: 0, count: count)
        var previous = [Int32](repeating: 0, count: count)
        var removed = [Bool](repeating: false, count: count)
        for index in 0..<count {
            next[index] = Int32(index + 1)
            previous[index] = Int32(index - 1)
        }
        var heap = MergeQueue()
        heap.reserve(count)
        for index in 0..<(count - 1) {
            if let entry = merges[UInt64(UInt32(bitPattern: symbols[index])) << 32
                                  | UInt64(UInt32(bitPattern: symbols[index + 1]))] {
                heap.push((entry >> 32) << 32 | UInt64(index))
            }
        }
        while let top = heap.pop() {
            let position = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            if removed[position] { continue }
            let right = Int(next[position])
            if right >= count { continue }
            let key = UInt64(UInt32(bitPattern: symbols[position])) << 32 | UInt64(UInt32(bitPattern: symbols[right]))
            guard let entry = merges[key], entry >> 32 == rank else { continue }
            symbols[position] = Int32(truncatingIfNeeded: entry & 0xFFFF_FFFF)
            removed[right] = true
            let after = Int(next[right])
            next[position] = Int32(after)
            if after < count { previous[after] = Int32(position) }
            let before = Int(previous[position])
            if before >= 0 {
                let pair = UInt64(UInt32(bitPattern: symbols[before])) << 32
                    | UInt64(UInt32(bitPattern: symbols[position]))
                if let entry = merges[pair] { heap.push((entry >> 32) << 32 | UInt64(before)) }
            }
            if after < count {
                let pair = UInt64(UInt32(bitPattern: symbols[position])) << 32
                    | UInt64(UInt32(bitPattern: symbols[after]))
                if let entry = merges[pair] { heap.push((entry >> 32) << 32 | UInt64(position)) }
            }
        }
        var result: [Int32] = []
        result.reserveCapacity(count)
        var index = 0
        while index < count {
            result.append(symbols[index])
            index = Int(next[index])
        }
        return result
    }
}
