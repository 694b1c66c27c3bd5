#if canImport(Glibc)
import Glibc
#endif

/// `nodus`: a command-line client of the Nodus C ABI (it calls only `nodus_*`
/// functions, like any host). Exit codes: 0 success, 1 failure, 2 usage error.
let commands: [any Command] = [
    InfoCommand(),
    ForwardCommand(),
    SampleCommand(),
    GenerateCommand(),
    RandnCommand(),
    VersionCommand(),
    LoRACommand(),
    DemoCommand(),
    EncodeCommand(),
    BenchCommand(),
    ConvertCommand(),
    GenerateVolumeCommand(),
    InsertNoduleCommand(),
    FollowUpCommand(),
    BatchCommand(),
]

func topLevelHelp() -> String {
    var text = "usage: nodus COMMAND [options]\n\nAn embeddable diffusion inference runtime.\n\ncommands:\n"
    let width = commands.map(\.name.count).max() ?? 0
    for command in commands {
        text += "  " + command.name + String(repeating: " ", count: width - command.name.count + 2) + command.summary + "\n"
    }
    return text + "\nRun `nodus COMMAND --help` for a command's options.\n"
}

func runCommandLine(_ arguments: [String]) -> Int32 {
    guard let first = arguments.first else {
        StandardStream.error(topLevelHelp())
        return 2
    }
    if first == "-h" || first == "--help" || first == "help" {
        if arguments.count > 1, let command = commands.first(where: { $0.name == arguments[1] }) {
            StandardStream.output(command.help)
        } else {
            StandardStream.output(topLevelHelp())
        }
        return 0
    }
    if first == "--version" { return runCommandLine(["version"]) }
    guard let command = commands.first(where: { $0.name == first }) else {
        StandardStream.error("nodus: error: unknown command '\(first)'\n\n" + topLevelHelp())
        return 2
    }
    do {
        try command.main(Array(arguments.dropFirst()))
        return 0
    } catch let error as CLIError {
        StandardStream.error("nodus \(command.name): error: \(error.message)\n")
        if error.exitCode == 2 { StandardStream.error("Run `nodus \(command.name) --help` for usage.\n") }
        return error.exitCode
    } catch {
        StandardStream.error("nodus \(command.name): error: \(error)\n")
        return 1
    }
}

exit(runCommandLine(Array(CommandLine.arguments.dropFirst())))
