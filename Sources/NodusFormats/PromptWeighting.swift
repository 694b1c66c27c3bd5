import NodusCore

/// Prompt weighting syntax, as AUTOMATIC1111's stable-diffusion-webui parses it
/// (`modules/prompt_parser.py`, `parse_prompt_attention`), rule for rule:
///
/// * `(text)` multiplies the weight of `text` by 1.1, `[text]` by 1/1.1; they nest (`((a))` = 1.21).
/// * `(text:1.5)` multiplies by 1.5 (the number: `[+-]?[.\d]+`, white space allowed around it).
/// * `\(`, `\)`, `\[`, `\]`, `\\` are the literal characters; a lone `\` vanishes.
/// * An unmatched `)` or `]` is literal text; a bracket left open at the end still applies to
///   everything after it.
/// * `BREAK` as a whole word (white space around it dropped) ends the current 75-token chunk; it
///   is a segment of weight -1 (and, as in A1111, inside brackets its weight is multiplied too, so
///   it is then plain text).
/// * Neighbouring segments of equal weight are joined; an empty prompt is one empty segment of weight 1.
///
/// Limitations: A1111's prompt editing (`[from:to:when]`) and alternation (`[a|b]`) are not
/// parsed (A1111 handles them before this function); `:` outside a `(text:weight)` stays text.
public enum PromptWeighting {
    /// A stretch of prompt text and its weight (-1: a BREAK).
    public struct Segment: Equatable, Sendable {
        public var text: String
        public var weight: Double
        /// Compared byte for byte: String `==` normalises, which is quadratic on a long run of marks.
        public var isBreak: Bool { weight == -1 && text.utf8.elementsEqual("BREAK".utf8) }

        public init(text: String, weight: Double) {
            self.text = text
            self.weight = weight
        }
    }

    /// The segments of `prompt`.
    /// - Throws: `NodusError.invalidArgument` for a weight that is not a number (`(a:1.2.3)`), where
    ///   A1111 raises too, and for brackets nested so deeply that the weights would take over 100
    ///   million products (A1111's rule is quadratic there).
    public static func parse(_ prompt: String) throws -> [Segment] {
        let scalars = Array(prompt.unicodeScalars)
        let count = scalars.count
        var result: [Segment] = []
        var roundBrackets: [Int] = []
        var squareBrackets: [Int] = []
        // Each closing bracket multiplies every segment since its opening one, in order (bit for bit
        // A1111's products). Nesting can make that quadratic ("((((a) a) a) ..."), so the work is
        // bounded: beyond 100 million multiplications the prompt is refused (A1111 would take hours).
        var multiplications = 0
        func multiply(from start: Int, by multiplier: Double) throws {
            multiplications += result.count - start
            guard multiplications <= 100_000_000 else {
                throw NodusError.invalidArgument("prompt weighting: the prompt nests its brackets too deeply for "
                                                 + "its length (over 100 million weight products); use fewer groups")
            }
            for index in start..<result.count { result[index].weight *= multiplier }
        }
        func appendText(_ text: ArraySlice<Unicode.Scalar>) {
            for (index, part) in splitOnBreak(Array(text)).enumerated() {
                if index > 0 { result.append(Segment(text: "BREAK", weight: -1)) }
                result.append(Segment(text: string(part[...]), weight: 1))
            }
        }
        var position = 0
        while position < count {
            let scalar = scalars[position]
            if scalar == "\\" {
                let next = position + 1 < count ? scalars[position + 1] : nil
                if let next, "()[]\\".unicodeScalars.contains(next) {
                    result.append(Segment(text: String(Character(next)), weight: 1))
                    position += 2
                } else {
                    result.append(Segment(text: "", weight: 1))
                    position += 1
                }
            } else if scalar == "(" {
                roundBrackets.append(result.count)
                position += 1
            } else if scalar == "[" {
                squareBrackets.append(result.count)
                position += 1
            } else if scalar == ":", let (number, end) = weightClose(scalars, at: position) {
                if let start = roundBrackets.popLast() {
                    guard let weight = Double(number) else {
                        throw NodusError.invalidArgument("prompt weighting: the weight '\(number)' of a "
                                                         + "'(text:weight)' group is not a number")
                    }
                    try multiply(from: start, by: weight)
                } else {
                    appendText(scalars[position..<end])
                }
                position = end
            } else if scalar == ")" || scalar == "]" {
                if scalar == ")", let start = roundBrackets.popLast() {
                    try multiply(from: start, by: 1.1)
                } else if scalar == "]", let start = squareBrackets.popLast() {
                    try multiply(from: start, by: 1 / 1.1)
                } else {
                    appendText(scalars[position...position])
                }
                position += 1
            } else if scalar == ":" {
                appendText(scalars[position...position])
                position += 1
            } else {
                var end = position + 1
                while end < count, !"\\()[]:".unicodeScalars.contains(scalars[end]) { end += 1 }
                appendText(scalars[position..<end])
                position = end
            }
        }
        for start in roundBrackets { try multiply(from: start, by: 1.1) }
        for start in squareBrackets { try multiply(from: start, by: 1 / 1.1) }
        if result.isEmpty { result = [Segment(text: "", weight: 1)] }
        // A1111 joins neighbours of equal weight pair by pair; one pass gives the same segments.
        var joined: [Segment] = []
        joined.reserveCapacity(result.count)
        for segment in result {
            if let last = joined.last, last.weight == segment.weight {
                joined[joined.count - 1].text += segment.text
            } else {
                joined.append(segment)
            }
        }
        return joined
    }

    /// `:\s*([+-]?[.\d]+)\s*\)` at `start` (a `:`): the number's text (decimal digits as ASCII) and
    /// the index after the `)`.
    private static func weightClose(_ scalars: [Unicode.Scalar], at start: Int) -> (String, Int)? {
        var position = start + 1
        func skipSpace() { while position < scalars.count, isSpace(scalars[position]) { position += 1 } }
        skipSpace()
        var number = ""
        if position < scalars.count, scalars[position] == "+" || scalars[position] == "-" {
            number.unicodeScalars.append(scalars[position])
            position += 1
        }
        let digitsStart = position
        while position < scalars.count {
            let scalar = scalars[position]
            if scalar == "." {
                number += "."
            } else if scalar.properties.generalCategory == .decimalNumber,
                      let value = scalar.properties.numericValue {
                number += String(Int(value))
            } else {
                break
            }
            position += 1
        }
        guard position > digitsStart else { return nil }
        skipSpace()
        guard position < scalars.count, scalars[position] == ")" else { return nil }
        return (number, position + 1)
    }

    /// Python's `re.split(r"\s*\bBREAK\b\s*", text)`.
    private static func splitOnBreak(_ text: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        let keyword = Array("BREAK".unicodeScalars)
        var parts: [[Unicode.Scalar]] = []
        var partStart = 0
        var position = 0
        while position + keyword.count <= text.count {
            let before = position > 0 ? text[position - 1] : nil
            let afterIndex = position + keyword.count
            let after = afterIndex < text.count ? text[afterIndex] : nil
            if text[position..<afterIndex].elementsEqual(keyword), before.map({ !isWordCharacter($0) }) ?? true,
               after.map({ !isWordCharacter($0) }) ?? true {
                var cutStart = position
                while cutStart > partStart, isSpace(text[cutStart - 1]) { cutStart -= 1 }
                var cutEnd = afterIndex
                while cutEnd < text.count, isSpace(text[cutEnd]) { cutEnd += 1 }
                parts.append(Array(text[partStart..<cutStart]))
                partStart = cutEnd
                position = cutEnd
            } else {
                position += 1
            }
        }
        parts.append(Array(text[partStart...]))
        return parts
    }

    /// Python's `\s` on str: `str.isspace()` (White_Space plus U+001C..U+001F).
    private static func isSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }

    /// Python's `\w` on str: letters, digits and numbers, and `_`.
    private static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || CLIPTokenizer.isLetter(scalar) || CLIPTokenizer.isNumber(scalar)
            || scalar.properties.generalCategory == .decimalNumber
    }

    /// Built from UTF-8 in one go (appending marks to a String one by one is quadratic).
    private static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(scalars.count)
        for scalar in scalars { UTF8.encode(scalar) { utf8.append($0) } }
        return String(decoding: utf8, as: UTF8.self)
    }
}
