/// The byte-to-character table of byte-level BPE (GPT-2's and CLIP's `bytes_to_unicode`,
/// tokenizers' `ByteLevel` pre-tokenizer): each of the 256 byte values stands for one printable
/// character, so any UTF-8 text becomes a string of vocabulary characters. Printable Latin-1 bytes
/// (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) map to themselves; the other 68 bytes map to U+0100 onwards in
/// byte order.
public enum ByteLevelAlphabet {
    /// `characters[byte]`: the vocabulary character of `byte`.
    public static let characters: [Character] = {
        var printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var codePoints = printable
        var next = 0
        for byte in 0..<256 where !printable.contains(byte) {
            printable.append(byte)
            codePoints.append(256 + next)
            next += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (byte, codePoint) in zip(printable, codePoints) {
            // Every code point here is below 0x200, a valid scalar.
            table[byte] = Character(Unicode.Scalar(UInt16(codePoint)).map { $0 } ?? " ")
        }
        return table
    }()

    /// The byte of each vocabulary character's scalar value (the inverse of `characters`).
    public static let bytes: [UInt32: UInt8] = {
        var table: [UInt32: UInt8] = [:]
        for (byte, character) in characters.enumerated() {
            if let scalar = character.unicodeScalars.first { table[scalar.value] = UInt8(byte) }
        }
        return table
    }()

    /// The vocabulary string of `bytes` (one character per byte).
    public static func string<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var result = ""
        for byte in bytes { result.append(characters[Int(byte)]) }
        return result
    }
}
