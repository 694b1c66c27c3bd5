#if canImport(Glibc)
import Glibc
#endif

/// `nodus lora SUBCOMMAND ...`: inspect, compare and merge LoRA adapters.
/// It dispatches the rest of the command line to the named subcommand.
struct LoRACommand: Command {
    /// The subcommands, in the order `nodus lora --help` lists them.
    static let subcommands: [any Command] = [LoRAInspectCommand(), LoRACompareCommand(), LoRAMergeCommand()]

    let name = "lora"
    let summary = "Inspect, compare and merge LoRA adapters."
    let positionalUsage = "SUBCOMMAND ..."
    let options: [OptionSpec] = []

    var details: String {
        let commands = LoRACommand.subcommands
        let width = commands.map(\.name.count).max() ?? 0
        let rows = commands.map { "  \($0.name)" + String(repeating: " ", count: width - $0.name.count + 2) + $0.summary }
        return "subcommands:\n" + rows.joined(separator: "\n")
            + "\n\nRun `nodus lora SUBCOMMAND --help` for a subcommand's options."
    }

    func main(_ arguments: [String]) throws {
        let names = LoRACommand.subcommands.map(\.name).joined(separator: ", ")
        guard let word = arguments.first else { throw CLIError.usage("missing the subcommand (\(names))") }
        if word == "-h" || word == "--help" {
            StandardStream.output(help)
            return
        }
        guard let subcommand = LoRACommand.subcommands.first(where: { $0.name == word }) else {
            throw CLIError.usage("unknown subcommand '\(word)' (expected \(names))")
        }
        try subcommand.main(Array(arguments.dropFirst()))
    }

    func run(_ arguments: ParsedArguments) throws {
        try main(arguments.positionals)
    }
}

extension String {
    /// `value` with `digits` significant digits, as C's `%.*g` ("0.000123457", "2.5e+07").
    init(significant value: Double, digits: Int = 6) {
        var buffer = [CChar](repeating: 0, count: 32)
        let count = withVaList([Int32(digits), value]) { vsnprintf(&buffer, buffer.count, "%.*g", $0) }
        self = count > 0 ? String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "\(value)"
    }

    /// The text left-aligned in `width` columns (never cut).
    func padded(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }

    /// The text without the spaces at its end (of a padded last column).
    func trimmingTrailingSpaces() -> String { String(self[..<(lastIndex { $0 != " " }.map(index(after:)) ?? startIndex)]) }
}
