/// The one error type of the runtime. Every failure a host can cause ends here,
/// and the C ABI maps `code` to a `nodus_status` and `message` to `nodus_last_error()`.
public struct NodusError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Error kinds, in the order of the C header's `nodus_status` values (OK = 0 is not an error).
    public enum Code: Int32, Sendable {
        case invalidArgument = 1
        case io = 2
        case format = 3
        case unsupported = 4
        case shape = 5
        case cancelled = 6
        case outOfMemory = 7
        case `internal` = 8
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static func invalidArgument(_ message: String) -> NodusError { NodusError(.invalidArgument, message) }
    public static func io(_ message: String) -> NodusError { NodusError(.io, message) }
    public static func format(_ message: String) -> NodusError { NodusError(.format, message) }
    public static func unsupported(_ message: String) -> NodusError { NodusError(.unsupported, message) }
    public static func shape(_ message: String) -> NodusError { NodusError(.shape, message) }
    public static func cancelled(_ message: String) -> NodusError { NodusError(.cancelled, message) }
}
