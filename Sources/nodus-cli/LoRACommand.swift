/// `nodus lora SUBCOMMAND ...`: inspect, compare and merge LoRA adapters.
///
/// The `Command` protocol parses a command's options before `run`, so a command with
/// subcommands has to know which one the command line names before parsing: `init(arguments:)`
/// picks it (the first argument after `lora` that is not an option) and this command then
/// presents that subcommand's options, usage and help as its own. `run` drops the
/// subcommand's word from the positionals and runs it.
///
/// Limitations: an option with a value cannot come before the subcommand
/// (`nodus lora --model M compare ...`); flags can.
struct LoRACommand: Command {
    /// The subcommands, in the order `nodus lora --help` lists them.
    static var subcommands: [any Command] { [LoRAInspectCommand(), LoRACompareCommand(), LoRAMergeCommand()] }

    let name = "lora"
    /// The subcommand the command line names, or nil (`nodus lora --help`, a typo).
    let selected: (any Command)?

    /// - Parameter arguments: the command line after the program name (`["lora", "inspect", ...]`).
    init(arguments: [String] = Array(CommandLine.arguments.dropFirst())) {
        guard arguments.first == "lora",
              let word = arguments.dropFirst().first(where: { !$0.hasPrefix("-") }) else {
            selected = nil
            return
        }
        selected = LoRACommand.subcommands.first { $0.name == word }
    }

    var summary: String { selected?.summary ?? "Inspect, compare and merge LoRA adapters." }

    var positionalUsage: String { selected.map { "\($0.name) \($0.positionalUsage)" } ?? "SUBCOMMAND ..." }

    var details: String {
        if let selected { return selected.details }
        let commands = LoRACommand.subcommands
        let width = commands.map(\.name.count).max() ?? 0
        let rows = commands.map { "  \($0.name)" + String(repeating: " ", count: width - $0.name.count + 2) + $0.summary }
        return "subcommands:\n" + rows.joined(separator: "\n") + "\n\nRun `nodus lora SUBCOMMAND --help` for a subcommand's options."
    }

    var options: [OptionSpec] { selected?.options ?? [] }

    func run(_ arguments: ParsedArguments) throws {
        guard let selected, arguments.positionals.first == selected.name else {
            let names = LoRACommand.subcommands.map(\.name).joined(separator: ", ")
            guard let word = arguments.positionals.first else {
                throw CLIError.usage("missing the subcommand (\(names))")
            }
            throw CLIError.usage("unknown subcommand '\(word)' (expected \(names))")
        }
        var rest = arguments
        rest.positionals.removeFirst()
        try selected.run(rest)
    }
}
