import CNodus

/// A failure the CLI reports as `nodus: error: MESSAGE` with a non-zero exit code:
/// 2 for a usage error (wrong arguments), 1 for anything else.
struct CLIError: Error {
    let message: String
    let exitCode: Int32

    static func usage(_ message: String) -> CLIError { CLIError(message: message, exitCode: 2) }
    static func failure(_ message: String) -> CLIError { CLIError(message: message, exitCode: 1) }
}

/// Checks a C ABI status: throws the library's message (`nodus_last_error()`) unless NODUS_OK.
func check(_ status: nodus_status, _ what: String) throws {
    guard status != nodus_status(NODUS_OK) else { return }
    let name = String(cString: nodus_status_name(status))
    throw CLIError.failure("\(what): \(String(cString: nodus_last_error())) [\(name)]")
}
