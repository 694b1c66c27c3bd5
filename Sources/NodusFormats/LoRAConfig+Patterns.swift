import NodusCore

extension LoRAConfig {
    /// The first key of `patternKeys` that matches `key`, or nil when none does.
    ///
    /// Reproduces PEFT 0.21.2's `get_pattern_key` (`peft/utils/other.py`):
    /// ```python
    /// for key in pattern_keys:
    ///     match = re.match(rf"(.*\.)?({key})$", key_to_match)
    ///     if not match: continue
    ///     return key
    /// return key_to_match
    /// ```
    /// so a pattern matches when it matches the whole module name or a suffix of it that
    /// starts right after a `.`, and patterns are regular expressions (`"^blocks.0.attn.to_q"`
    /// anchors to the full name, `"blocks\\.\\d+\\.attn\\.to_[qk]"` is a regex). Keys are
    /// tried in order and the first match wins. Python's `re.match(...$)` is the same as a
    /// whole match here (module names hold no newline); matching is per Unicode scalar,
    /// as Python's `re` is.
    ///
    /// Limitations: Swift `Regex` syntax is used; it accepts the Python constructs PEFT
    /// configs use (classes, quantifiers, groups, `(?P<name>...)`, anchors, alternation).
    /// - Throws: `NodusError.format` naming the pattern when it is not a valid regular
    ///   expression (Python raises `re.error` at that key too; keys after a match are not compiled).
    public static func patternKey(_ patternKeys: [String], matching key: String) throws -> String? {
        var matcher = PatternMatcher(patternKeys)
        return try matcher.firstMatch(key)
    }

    /// `patternKey(_:matching:)` for many modules, compiling each pattern once, when first needed.
    struct PatternMatcher {
        let patterns: [String]
        private var compiled: [Regex<AnyRegexOutput>?]

        init(_ patterns: [String]) {
            self.patterns = patterns
            self.compiled = Array(repeating: nil, count: patterns.count)
        }

        mutating func firstMatch(_ key: String) throws -> String? {
            for index in patterns.indices {
                let regex: Regex<AnyRegexOutput>
                if let known = compiled[index] {
                    regex = known
                } else {
                    do {
                        regex = try Regex("(.*\\.)?(" + patterns[index] + ")").matchingSemantics(.unicodeScalar)
                    } catch {
                        throw NodusError.format("pattern key '\(patterns[index])' is not a valid regular expression: \(error)")
                    }
                    compiled[index] = regex
                }
                if try regex.wholeMatch(in: key) != nil { return patterns[index] }
            }
            return nil
        }
    }
}
