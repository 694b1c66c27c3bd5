import NodusCore

/// Reads and writes NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), the
/// container of the golden values the tests compare against.
///
/// Layout: the magic `\x93NUMPY`, a major and minor version byte, the header
/// length (2 bytes little-endian in v1, 4 bytes in v2/v3), a header that is a Python
/// dict literal (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`)
/// padded with spaces and a newline, then the raw elements.
///
/// Limitations: little-endian element types `<f4 <f2 <f8 <i8 <i4 |u1 |b1` only
/// (no big-endian, no structured or object arrays); C order only
/// (`fortran_order: True` is refused).
public enum NumpyArray {
    /// Reads the array at `path` into a new tensor that owns its bytes (a copy, so it
    /// may be written).
    /// - Throws: `NodusError.io` when the file cannot be read, `NodusError.format`
    ///   naming the file for a malformed header or a data size that does not match the
    ///   shape, `NodusError.unsupported` for an unsupported dtype or Fortran order.
    public static func read(path: String) throws -> Tensor {
        let mapping = try MappedFile(path: path)
        let context = "npy file '\(path)'"
        let fileSize = mapping.byteCount
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard fileSize >= 10 else {
            throw NodusError.format("\(context) is \(fileSize) bytes, too short for an npy preamble")
        }
        for index in 0..<magic.count where mapping.bytes.load(fromByteOffset: index, as: UInt8.self) != magic[index] {
            throw NodusError.format("\(context) does not start with the npy magic '\\x93NUMPY'")
        }
        let major = mapping.bytes.load(fromByteOffset: 6, as: UInt8.self)
        let minor = mapping.bytes.load(fromByteOffset: 7, as: UInt8.self)
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(UInt16(littleEndian: mapping.bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
            headerStart = 10
        case 2, 3:
            guard fileSize >= 12 else {
                throw NodusError.format("\(context) is \(fileSize) bytes, too short for an npy v\(major) preamble")
            }
            headerLength = Int(UInt32(littleEndian: mapping.bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
            headerStart = 12
        default:
            throw NodusError.unsupported("\(context): npy format version \(major).\(minor) is not supported (1.0, 2.0, 3.0 are)")
        }
        guard headerLength <= fileSize - headerStart else {
            throw NodusError.format("\(context): header length \(headerLength) runs past the end of the file (\(fileSize) bytes)")
        }
        let header = try parseHeader(UnsafeRawBufferPointer(start: mapping.bytes + headerStart, count: headerLength),
                                     context: context)
        let dataStart = headerStart + headerLength
        let count: Int
        do {
            count = try Tensor.elementCount(of: header.shape)
        } catch {
            throw NodusError.format("\(context): shape \(header.shape) is too large")
        }
        let byteCount = count * header.dtype.byteSize
        let available = fileSize - dataStart
        guard available == byteCount else {
            throw NodusError.format("\(context): shape \(header.shape) of \(header.dtype.name) needs \(byteCount) data bytes, the file has \(available)\(available < byteCount ? " (truncated)" : "")")
        }
        let tensor = try Tensor(zeros: header.shape, dtype: header.dtype)
        tensor.bytes.copyMemory(from: mapping.bytes + dataStart, byteCount: byteCount)
        return tensor
    }

    /// Writes `tensor` to `path` as a C-order npy file (version 1.0, or 2.0 when the
    /// header would not fit), with the header padded so the data starts 64-byte
    /// aligned, as NumPy does. Written to a temporary file and renamed over `path`.
    /// - Throws: `NodusError.unsupported` for bfloat16 (NumPy has no such dtype),
    ///   `NodusError.invalidArgument` when the tensor's bytes lie outside its storage,
    ///   `NodusError.io` when writing fails.
    public static func write(_ tensor: Tensor, to path: String) throws {
        guard let descr = descriptor(of: tensor.dtype) else {
            throw NodusError.unsupported("npy file '\(path)': dtype \(tensor.dtype.name) has no npy equivalent")
        }
        try SafetensorsWriter.checkBytes(of: tensor, name: "array", path: path)
        let shape: String
        switch tensor.shape.count {
        case 0: shape = "()"
        case 1: shape = "(\(tensor.shape[0]),)"
        default: shape = "(" + tensor.shape.map(String.init).joined(separator: ", ") + ")"
        }
        var header = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }".utf8)
        var preambleLength = 10
        var major: UInt8 = 1
        // Total of preamble + header + newline rounded up to 64.
        var total = (preambleLength + header.count + 1 + 63) / 64 * 64
        if total - preambleLength > Int(UInt16.max) {
            major = 2
            preambleLength = 12
            total = (preambleLength + header.count + 1 + 63) / 64 * 64
        }
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: total - preambleLength - header.count - 1))
        header.append(UInt8(ascii: "\n"))
        var preamble: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, 0]
        let length = header.count
        if major == 1 {
            preamble.append(contentsOf: [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF)])
        } else {
            preamble.append(contentsOf: (0..<4).map { UInt8((length >> (8 * $0)) & 0xFF) })
        }
        preamble.append(contentsOf: header)
        try preamble.withUnsafeBytes { headerBuffer in
            try SafetensorsWriter.writeAtomically(
                [headerBuffer, UnsafeRawBufferPointer(start: tensor.bytes, count: tensor.byteCount)], to: path)
        }
    }

    /// The npy `descr` of a dtype, or nil when NumPy has none.
    public static func descriptor(of dtype: DType) -> String? {
        switch dtype {
        case .float32: "<f4"
        case .float16: "<f2"
        case .float64: "<f8"
        case .int64: "<i8"
        case .int32: "<i4"
        case .uint8: "|u1"
        case .bool: "|b1"
        case .bfloat16: nil
        }
    }

    /// The dtype of an npy `descr`, or nil when unsupported.
    public static func dtype(descriptor: String) -> DType? {
        switch descriptor {
        case "<f4": .float32
        case "<f2": .float16
        case "<f8": .float64
        case "<i8": .int64
        case "<i4": .int32
        case "|u1", "<u1": .uint8
        case "|b1", "<b1": .bool
        default: nil
        }
    }

    // MARK: - Header parsing

    /// Parses the header dict literal; returns the dtype and shape.
    private static func parseHeader(_ bytes: UnsafeRawBufferPointer, context: String) throws -> (dtype: DType, shape: [Int]) {
        var parser = HeaderParser(bytes: bytes, context: context)
        let members = try parser.parseDictionary()
        guard case .text(let descr)? = members["descr"] else {
            throw NodusError.format("\(context): header has no 'descr' string")
        }
        guard let dtype = dtype(descriptor: descr) else {
            throw NodusError.unsupported("\(context): dtype '\(descr)' is not supported (supported: <f4 <f2 <f8 <i8 <i4 |u1 |b1)")
        }
        guard case .flag(let fortranOrder)? = members["fortran_order"] else {
            throw NodusError.format("\(context): header has no 'fortran_order' True/False")
        }
        guard !fortranOrder else {
            throw NodusError.unsupported("\(context): fortran_order True is not supported (save a C-order array)")
        }
        guard case .integers(let shape)? = members["shape"] else {
            throw NodusError.format("\(context): header has no 'shape' tuple")
        }
        return (dtype, shape)
    }

    /// A value in an npy header dict.
    private enum HeaderValue {
        case text(String)
        case flag(Bool)
        case integers([Int])
    }

    /// A parser for the small Python-literal subset npy headers use:
    /// `{ 'key': 'string' | True | False | (int, ...), ... }`.
    private struct HeaderParser {
        let bytes: UnsafeRawBufferPointer
        let context: String
        var position = 0

        init(bytes: UnsafeRawBufferPointer, context: String) {
            self.bytes = bytes
            self.context = context
        }

        private func failure(_ what: String) -> NodusError {
            NodusError.format("\(context): malformed header at byte \(position): \(what)")
        }

        private mutating func skipSpace() {
            while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
        }

        private mutating func peek() -> UInt8? {
            skipSpace()
            return position < bytes.count ? bytes[position] : nil
        }

        private mutating func expect(_ character: Character) throws {
            guard let ascii = character.asciiValue, peek() == ascii else { throw failure("expected '\(character)'") }
            position += 1
        }

        mutating func parseDictionary() throws -> [String: HeaderValue] {
            try expect("{")
            var members: [String: HeaderValue] = [:]
            while peek() != UInt8(ascii: "}") {
                let key = try parseString()
                try expect(":")
                members[key] = try parseValue()
                guard peek() == UInt8(ascii: ",") else { break }
                position += 1
            }
            try expect("}")
            guard peek() == nil else { throw failure("text after the closing '}'") }
            return members
        }

        private mutating func parseString() throws -> String {
            guard let quote = peek(), quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
                throw failure("expected a quoted string")
            }
            position += 1
            let start = position
            while position < bytes.count, bytes[position] != quote {
                guard bytes[position] != UInt8(ascii: "\\") else { throw failure("escapes are not supported") }
                position += 1
            }
            guard position < bytes.count else { throw failure("unterminated string") }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            position += 1
            return text
        }

        private mutating func parseValue() throws -> HeaderValue {
            switch peek() {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                return .text(try parseString())
            case UInt8(ascii: "("):
                return .integers(try parseTuple())
            default:
                let word = parseWord()
                if word == "True" { return .flag(true) }
                if word == "False" { return .flag(false) }
                throw failure(word.isEmpty ? "expected a string, True, False or a tuple" : "unknown word '\(word)'")
            }
        }

        private mutating func parseWord() -> String {
            let start = position
            while position < bytes.count, (bytes[position] >= UInt8(ascii: "A") && bytes[position] <= UInt8(ascii: "Z"))
                    || (bytes[position] >= UInt8(ascii: "a") && bytes[position] <= UInt8(ascii: "z")) {
                position += 1
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        }

        private mutating func parseTuple() throws -> [Int] {
            try expect("(")
            var items: [Int] = []
            while peek() != UInt8(ascii: ")") {
                items.append(try parseInteger())
                guard peek() == UInt8(ascii: ",") else { break }
                position += 1
            }
            try expect(")")
            return items
        }

        private mutating func parseInteger() throws -> Int {
            _ = peek()
            var value = 0
            var digits = 0
            while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
                let (scaled, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = scaled.addingReportingOverflow(Int(bytes[position] - UInt8(ascii: "0")))
                guard !overflow1, !overflow2 else { throw failure("integer too large") }
                value = sum
                digits += 1
                position += 1
            }
            // A trailing 'L' is how Python 2 wrote longs.
            if digits > 0, position < bytes.count, bytes[position] == UInt8(ascii: "L") { position += 1 }
            guard digits > 0 else { throw failure("expected a non-negative integer") }
            return value
        }
    }
}
