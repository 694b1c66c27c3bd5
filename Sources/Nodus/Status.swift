#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore

/// Status codes and the wrapper every fallible entry point runs its body in.
enum Status {
    static let ok: nodus_status = 0

    /// Names indexed by status value (the header's enum, in order).
    // Immutable after initialisation; safe to share between threads.
    nonisolated(unsafe) static let names = StaticCString.table([
        "ok", "invalid_argument", "io", "format", "unsupported", "shape", "cancelled", "out_of_memory",
        "internal",
    ])
    nonisolated(unsafe) static let unknownName = StaticCString.make("unknown")

    /// Runs `body` and turns its outcome into a status: `NODUS_OK`, the code of a
    /// thrown `NodusError`, or `NODUS_ERROR_INTERNAL` for any other error. Every
    /// failure leaves its message for `nodus_last_error()`, starting with the function's
    /// name (errors from below the ABI, which do not know it, get it in front). The handles
    /// the body looks up stay locked until it returns (`HeldHandleLocks`).
    static func run(_ function: String, _ body: () throws -> Void) -> nodus_status {
        do {
            try HeldHandleLocks.scope(body)
            return ok
        } catch let error as NodusError {
            LastError.set(error.message.hasPrefix("\(function):") ? error.message : "\(function): \(error.message)")
            return error.code.rawValue
        } catch {
            LastError.set("\(function): internal error: \(error)")
            return NodusError.Code.internal.rawValue
        }
    }
}

/// Argument checks shared by the entry points; each names the function and the parameter.
enum Argument {
    /// `pointer` itself, or an `invalidArgument` error naming the NULL parameter.
    static func required<Pointee>(_ pointer: Pointee?, _ parameter: String, in function: String) throws -> Pointee {
        guard let pointer else { throw NodusError.invalidArgument("\(function): `\(parameter)` is NULL") }
        return pointer
    }

    /// The NUL-terminated string at `text`, or an error when it is NULL.
    static func string(_ text: UnsafePointer<CChar>?, _ parameter: String, in function: String) throws -> String {
        String(cString: try required(text, parameter, in: function))
    }

    /// `count` C strings at `pointer` (none when `count` is 0), each checked for NULL and as UTF-8.
    /// A count above 4096 (a size_t above Int.max arrives negative) is out of range.
    static func strings(_ pointer: UnsafePointer<UnsafePointer<CChar>?>?, count: Int, _ parameter: String,
                        in function: String) throws -> [String] {
        guard count != 0 else { return [] }
        guard (1...4096).contains(count) else {
            throw NodusError.invalidArgument("\(function): \(parameter) count \(UInt(bitPattern: count)) is out of range")
        }
        let list = try required(pointer, parameter, in: function)
        return try (0..<count).map { index in
            let label = "\(parameter)[\(index)]"
            let text = try required(list[index], label, in: function)
            return try utf8Text(text, length: strlen(text), label, in: function)
        }
    }

    /// `value`, or an `invalidArgument` error naming the parameter when it is NaN or infinite
    /// (the header's policy for every number a call takes).
    static func finite<Value: BinaryFloatingPoint>(_ value: Value, _ parameter: String, in function: String) throws
        -> Value
    {
        guard value.isFinite else {
            throw NodusError.invalidArgument("\(function): `\(parameter)` is \(value); it must be a finite number")
        }
        return value
    }

    /// The `count` floats at `pointer`, each finite; `fallback` each when `pointer` is NULL.
    static func floats(_ pointer: UnsafePointer<Float>?, count: Int, fallback: Float, _ parameter: String,
                       in function: String) throws -> [Float] {
        guard let pointer else { return Array(repeating: fallback, count: count) }
        return try (0..<count).map { try finite(pointer[$0], "\(parameter)[\($0)]", in: function) }
    }

    /// Reads a params struct that starts with `uint32_t struct_size`: the first
    /// `struct_size` bytes come from the caller, the rest keep `defaults` (a caller
    /// built against an older header passes a shorter struct, cut at a field).
    /// - Throws: `invalidArgument` for a size below 4 bytes (never initialised), above
    ///   the struct this library knows (a newer header), or inside a field (garbage).
    static func params<Params>(_ pointer: UnsafePointer<Params>, defaults: Params, initializer: String,
                               in function: String) throws -> Params {
        let size = Int(UnsafeRawPointer(pointer).loadUnaligned(as: UInt32.self))
        let fullSize = MemoryLayout<Params>.stride
        guard size >= MemoryLayout<UInt32>.size else {
            throw NodusError.invalidArgument(
                "\(function): params.struct_size is \(size): fill the struct with \(initializer)() first")
        }
        guard size <= fullSize else {
            throw NodusError.invalidArgument(
                "\(function): params.struct_size is \(size) but this library knows \(fullSize) bytes: "
                    + "the header is newer than the library, or the struct was not filled by \(initializer)()")
        }
        if let boundaries = StructLayout.fieldBoundaries(defaults), !boundaries.contains(size) {
            throw NodusError.invalidArgument(
                "\(function): params.struct_size is \(size), which ends inside a field: fill the struct with "
                    + "\(initializer)() first")
        }
        var value = defaults
        withUnsafeMutableBytes(of: &value) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer), count: size))
        }
        return value
    }
}

/// `const char *nodus_status_name(nodus_status)`: "ok", "invalid_argument", ...;
/// "unknown" for other values.
@_cdecl("nodus_status_name")
public func nodusStatusName(_ status: nodus_status) -> UnsafePointer<CChar> {
    StaticCString.lookup(Status.names, status) ?? Status.unknownName
}
