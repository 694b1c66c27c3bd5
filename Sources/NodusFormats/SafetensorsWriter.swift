#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Writes `.safetensors` files the way the reference Python/Rust library does: an
/// 8-byte little-endian header length, a compact JSON header padded with spaces to a
/// multiple of 8 bytes (so the data area starts 8-byte aligned), then the tensors'
/// bytes back to back.
///
/// Tensors are laid out in the order given (the reference library sorts by dtype
/// alignment; readers do not care). The file is written to a temporary file beside
/// `path` and renamed over it, so readers never see a half-written file.
public enum SafetensorsWriter {
    /// Writes `tensors` and `metadata` to `path`.
    /// - Parameters:
    ///   - tensors: names and tensors, written in this order; names must be unique
    ///     and not `__metadata__`.
    ///   - metadata: the header's `__metadata__` object (omitted when empty).
    ///   - path: the file to create or replace.
    /// - Throws: `NodusError.invalidArgument` for a duplicate or reserved name or a
    ///   tensor whose bytes lie outside its storage; `NodusError.io` when writing fails.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
                             to path: String) throws {
        var seen = Set<String>()
        var header = "{"
        var separator = ""
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted().map { key in
                "\(JSONValue.quoted(key)):\(JSONValue.quoted(metadata[key] ?? ""))"
            }.joined(separator: ",")
            header += "}"
            separator = ","
        }
        var offset = 0
        for (name, tensor) in tensors {
            guard name != "__metadata__" else {
                throw NodusError.invalidArgument("safetensors file '\(path)': '__metadata__' is reserved and cannot name a tensor")
            }
            guard seen.insert(name).inserted else {
                throw NodusError.invalidArgument("safetensors file '\(path)': tensor name '\(name)' appears twice")
            }
            try checkBytes(of: tensor, name: name, path: path)
            let byteCount = tensor.byteCount
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            header += "\(separator)\(JSONValue.quoted(name)):{\"dtype\":\"\(tensor.dtype.safetensorsName)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + byteCount)]}"
            separator = ","
            offset += byteCount
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        let padding = (8 - headerBytes.count % 8) % 8
        headerBytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        var prefix = [UInt8](repeating: 0, count: 8)
        var length = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &length) { source in
            for index in 0..<8 { prefix[index] = source[index] }
        }
        prefix.append(contentsOf: headerBytes)

        try prefix.withUnsafeBytes { headerBuffer in
            var pieces = [headerBuffer]
            for (_, tensor) in tensors {
                pieces.append(UnsafeRawBufferPointer(start: tensor.bytes, count: tensor.byteCount))
            }
            try writeAtomically(pieces, to: path)
        }
    }

    /// Checks that a tensor's bytes lie inside its storage before they are read.
    static func checkBytes(of tensor: Tensor, name: String, path: String) throws {
        let count: Int
        do {
            count = try Tensor.elementCount(of: tensor.shape)
        } catch {
            throw NodusError.invalidArgument("'\(path)': tensor '\(name)' has an invalid shape \(tensor.shape)")
        }
        let byteCount = count * tensor.dtype.byteSize
        guard tensor.byteOffset >= 0, tensor.byteOffset <= tensor.storage.byteCount,
              byteCount <= tensor.storage.byteCount - tensor.byteOffset else {
            throw NodusError.invalidArgument("'\(path)': tensor '\(name)' (\(byteCount) bytes at offset \(tensor.byteOffset)) lies outside its storage of \(tensor.storage.byteCount) bytes")
        }
    }

    /// Writes `pieces` one after another to a temporary file beside `path`, then renames
    /// it to `path`. On failure the temporary file is removed and `path` is untouched.
    /// - Throws: `NodusError.io` naming the path and the system error.
    static func writeAtomically(_ pieces: [UnsafeRawBufferPointer], to path: String) throws {
        let temporaryPath = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw NodusError.io("cannot create '\(temporaryPath)': \(String(cString: strerror(errno)))")
        }
        var closed = false
        var renamed = false
        defer {
            if !closed { close(descriptor) }
            if !renamed { unlink(temporaryPath) }
        }
        for piece in pieces {
            guard var cursor = piece.baseAddress else { continue }
            var remaining = piece.count
            while remaining > 0 {
                let written = Glibc.write(descriptor, cursor, min(remaining, 1 << 30))
                if written < 0 {
                    if errno == EINTR { continue }
                    throw NodusError.io("cannot write '\(path)': \(String(cString: strerror(errno)))")
                }
                if written == 0 {
                    throw NodusError.io("cannot write '\(path)': no progress")
                }
                cursor += written
                remaining -= written
            }
        }
        closed = true
        guard close(descriptor) == 0 else {
            throw NodusError.io("cannot write '\(path)': \(String(cString: strerror(errno)))")
        }
        guard rename(temporaryPath, path) == 0 else {
            throw NodusError.io("cannot rename '\(temporaryPath)' to '\(path)': \(String(cString: strerror(errno)))")
        }
        renamed = true
    }
}
