import CNodus

/// `nodus version`: the library's version (and the header's, when they differ).
struct VersionCommand: Command {
    let name = "version"
    let summary = "Print the version of the Nodus library."
    let options: [OptionSpec] = []

    func run(_ arguments: ParsedArguments) throws {
        _ = try arguments.positionals([])
        let library = String(cString: nodus_version())
        var line = "nodus \(library)"
        if nodus_version_number() != Int32(NODUS_VERSION_NUMBER) {
            line += " (built against header \(NODUS_VERSION_STRING))"
        }
        StandardStream.output(line + "\n")
    }
}
