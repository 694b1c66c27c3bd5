/// One `nodus` subcommand: a name, a one-line summary, its arguments, and `run`.
/// Each command lives in its own file; `main.swift` lists them.
protocol Command {
    /// The word after `nodus` (`"info"`, `"sample"`, ...), or after its parent command.
    var name: String { get }
    /// The words after `nodus` in the usage line (`"lora inspect"`); `name` by default.
    var usageName: String { get }
    /// One line for `nodus --help`.
    var summary: String { get }
    /// Positional arguments after the options, as shown in the usage line (`"MODEL"`).
    var positionalUsage: String { get }
    /// A paragraph shown by `nodus NAME --help` under the usage line.
    var details: String { get }
    var options: [OptionSpec] { get }
    /// Runs the command. Throws `CLIError` (or a library error) on failure.
    func run(_ arguments: ParsedArguments) throws
    /// Handles the command line after the command's name: by default parses
    /// `options` and calls `run` (a command with subcommands dispatches instead).
    func main(_ arguments: [String]) throws
}

extension Command {
    var usageName: String { name }
    var positionalUsage: String { "" }
    var details: String { "" }

    /// The text of `nodus NAME --help`.
    var help: String {
        var text = "usage: nodus \(usageName)"
        if !options.isEmpty { text += " [options]" }
        if !positionalUsage.isEmpty { text += " \(positionalUsage)" }
        text += "\n\n\(summary)\n"
        if !details.isEmpty { text += "\n\(details)\n" }
        text += "\noptions:\n"
        let rows = options.map { option -> (String, String) in
            let flag = option.valueName.map { "--\(option.name) \($0)" } ?? "--\(option.name)"
            return (flag, option.help + (option.repeatable ? " (repeatable)" : ""))
        } + [("-h, --help", "show this help")]
        let width = rows.map(\.0.count).max() ?? 0
        for (flag, help) in rows {
            text += "  " + flag + String(repeating: " ", count: width - flag.count + 2) + help + "\n"
        }
        return text
    }

    /// Parses `arguments` against `options` and runs the command, or prints help.
    func main(_ arguments: [String]) throws {
        let parsed = try ArgumentParser(options: options).parse(arguments)
        if parsed.wantsHelp {
            StandardStream.output(help)
            return
        }
        try run(parsed)
    }
}
