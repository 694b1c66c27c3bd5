#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Linux's `O_PATH`, which Swift's Glibc module does not export: a descriptor that only names a
/// file (no read permission needed, and a FIFO does not block).
private let openPathOnly: Int32 = 0o10000000

extension Argument {
    /// Runs `body` with the file system path at `pointer` as a String the loaders can open.
    ///
    /// A Linux path is bytes and need not be UTF-8 (a folder named in Latin-1), but a Swift String
    /// holds only valid UTF-8, so such a path is reached through a descriptor: the folder that
    /// holds it (or, when its own name is the part that is not UTF-8, the path itself) is opened
    /// with `O_PATH`, and `body` gets "/proc/self/fd/N/name", which is ASCII. The descriptor is
    /// closed when `body` returns, and messages show the path as given, bytes that are not UTF-8
    /// as `\xNN`. Limitation: the folder of a file whose own name is not UTF-8 is unknown to
    /// `body` (an ONNX file's external data is then not found).
    /// - Parameter createFolder: create the path as a folder when it does not exist (a save's target).
    static func withPath<Result>(_ pointer: UnsafePointer<CChar>?, _ parameter: String, in function: String,
                                 createFolder: Bool = false, _ body: (String) throws -> Result) throws -> Result {
        let path = try required(pointer, parameter, in: function)
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(path).assumingMemoryBound(to: UInt8.self),
                                        count: strlen(path))
        if let text = String(validating: bytes, as: UTF8.self) { return try body(text) }
        let shown = escaped(Array(bytes)[...])
        let slash = UInt8(ascii: "/")
        var end = bytes.count
        while end > 1 && bytes[end - 1] == slash { end -= 1 }
        let nameStart = bytes[..<end].lastIndex(of: slash).map { $0 + 1 } ?? 0
        let name = String(validating: bytes[nameStart..<end], as: UTF8.self)
        let opened: [UInt8]
        let suffix: String
        if let name, name != ".", name != ".." {
            opened = nameStart == 0 ? Array(".".utf8) : nameStart == 1 ? [slash] : Array(bytes[..<(nameStart - 1)])
            suffix = "/" + name
        } else {
            opened = Array(bytes[..<end])
            suffix = ""
            if createFolder { _ = withCString(opened) { mkdir($0, 0o755) } }
        }
        let descriptor = withCString(opened) { open($0, openPathOnly | O_CLOEXEC) }
        guard descriptor >= 0 else {
            throw NodusError.io("\(function): cannot open '\(escaped(opened[...]))' (of `\(parameter)` '\(shown)'): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let alias = "/proc/self/fd/\(descriptor)"
        do {
            return try body(alias + suffix)
        } catch let error as NodusError {
            throw NodusError(error.code, error.message.replacing(alias, with: escaped(opened[...])))
        }
    }

    /// `body` with `bytes` as a NUL-terminated C string.
    private static func withCString<Result>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> Result) -> Result {
        (bytes + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
        }
    }

    /// `bytes` as text, each byte that is not part of valid UTF-8 as `\xNN`.
    private static func escaped(_ bytes: ArraySlice<UInt8>) -> String {
        var text = ""
        var rest = bytes
        while !rest.isEmpty {
            let valid = rest.withUnsafeBufferPointer { firstInvalidOffset($0) }
            text += String(decoding: rest.prefix(valid), as: UTF8.self)
            rest = rest.dropFirst(valid)
            if let byte = rest.first {
                text += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
                rest = rest.dropFirst()
            }
        }
        return text
    }
}
