/// An option a command accepts: `--name VALUE` (or `--name=VALUE`), or a flag `--name`.
struct OptionSpec {
    let name: String
    /// The placeholder shown in help (`"FILE"`); nil for a flag without value.
    let valueName: String?
    let help: String
    var repeatable = false

    static func value(_ name: String, _ valueName: String, _ help: String, repeatable: Bool = false) -> OptionSpec {
        OptionSpec(name: name, valueName: valueName, help: help, repeatable: repeatable)
    }

    static func flag(_ name: String, _ help: String) -> OptionSpec {
        OptionSpec(name: name, valueName: nil, help: help)
    }
}

/// What the command line said: positional arguments, option values and flags.
struct ParsedArguments {
    var positionals: [String] = []
    var values: [String: [String]] = [:]
    var flags: Set<String> = []
    var wantsHelp = false

    /// The value of a non-repeatable option, or nil.
    func value(_ name: String) -> String? { values[name]?.last }

    /// Every value of a repeatable option, in order.
    func all(_ name: String) -> [String] { values[name] ?? [] }

    func flag(_ name: String) -> Bool { flags.contains(name) }

    /// The value of option `name`, or a usage error.
    func required(_ name: String) throws -> String {
        guard let value = value(name) else { throw CLIError.usage("missing --\(name)") }
        return value
    }

    /// An integer option in `range`, or `fallback` when absent.
    func integer(_ name: String, default fallback: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = value(name) else { return fallback }
        guard let number = Int(text), range.contains(number) else {
            throw CLIError.usage("--\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return number
    }

    /// A number option, or `fallback` when absent.
    func number(_ name: String, default fallback: Double) throws -> Double {
        guard let text = value(name) else { return fallback }
        guard let number = Double(text), number.isFinite else {
            throw CLIError.usage("--\(name) must be a number, got '\(text)'")
        }
        return number
    }

    /// Exactly `count` positional arguments (named in the error), or a usage error.
    func positionals(_ names: [String]) throws -> [String] {
        guard positionals.count == names.count else {
            throw CLIError.usage(
                positionals.count < names.count
                    ? "missing \(names[positionals.count])"
                    : "unexpected argument '\(positionals[names.count])'")
        }
        return positionals
    }
}

/// A small parser for `--name value`, `--name=value`, flags, `--` and `-h/--help`.
struct ArgumentParser {
    let options: [OptionSpec]

    func parse(_ arguments: [String]) throws -> ParsedArguments {
        var result = ParsedArguments()
        var index = 0
        var optionsEnded = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if optionsEnded || !argument.hasPrefix("-") || argument == "-" {
                result.positionals.append(argument)
                continue
            }
            if argument == "--" {
                optionsEnded = true
                continue
            }
            if argument == "-h" || argument == "--help" {
                result.wantsHelp = true
                continue
            }
            guard argument.hasPrefix("--") else {
                throw CLIError.usage("unknown option '\(argument)'")
            }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = options.first(where: { $0.name == name }) else {
                throw CLIError.usage("unknown option '--\(name)'")
            }
            guard option.valueName != nil else {
                if inlineValue != nil { throw CLIError.usage("--\(name) takes no value") }
                result.flags.insert(name)
                continue
            }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                guard index < arguments.count else { throw CLIError.usage("--\(name) needs a value") }
                value = arguments[index]
                index += 1
            }
            if !option.repeatable, result.values[name] != nil {
                throw CLIError.usage("--\(name) is given twice")
            }
            result.values[name, default: []].append(value)
        }
        return result
    }
}
