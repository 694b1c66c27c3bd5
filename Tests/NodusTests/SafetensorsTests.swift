#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats

final class SafetensorsTests: XCTestCase {
    // MARK: - Helpers

    /// Writes `bytes` to `path` (test setup only).
    static func writeBytes(_ bytes: [UInt8], to path: String) {
        guard let handle = fopen(path, "wb") else {
            XCTFail("cannot create \(path)")
            return
        }
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, handle) }
        fclose(handle)
    }

    /// A safetensors file made by hand: `declaredLength` (default: the header's length),
    /// the header text, then `dataByteCount` bytes of data.
    static func rawFile(_ directory: String, header: String, dataByteCount: Int = 0,
                        declaredLength: UInt64? = nil) -> String {
        let headerBytes = Array(header.utf8)
        let length = declaredLength ?? UInt64(headerBytes.count)
        var bytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
        bytes += headerBytes
        bytes += [UInt8](repeating: 0xAB, count: dataByteCount)
        let path = "\(directory)/raw-\(UInt32.random(in: 0...UInt32.max)).safetensors"
        writeBytes(bytes, to: path)
        return path
    }

    /// A tensor of `dtype` whose bytes are 0, 1, 2, ... (mod 251).
    static func patterned(_ shape: [Int], _ dtype: DType) throws -> Tensor {
        let tensor = try Tensor(zeros: shape, dtype: dtype)
        let bytes = tensor.bytes.assumingMemoryBound(to: UInt8.self)
        for index in 0..<tensor.byteCount { bytes[index] = UInt8(index % 251) }
        if dtype == .bool {
            for index in 0..<tensor.byteCount { bytes[index] = UInt8(index % 2) }
        }
        return tensor
    }

    static func sameBytes(_ first: Tensor, _ second: Tensor) -> Bool {
        first.byteCount == second.byteCount && memcmp(first.bytes, second.bytes, first.byteCount) == 0
    }

    /// Asserts that opening `path` fails with a format error whose message holds every fragment.
    private func assertFormatError(_ path: String, _ fragments: [String], file: StaticString = #filePath,
                                   line: UInt = #line) {
        do {
            let opened = try SafetensorsFile(path: path)
            XCTFail("expected a format error containing \(fragments), opened \(opened.names)", file: file, line: line)
        } catch let error as NodusError {
            XCTAssertEqual(error.code, .format, "code of: \(error.message)", file: file, line: line)
            XCTAssertTrue(error.message.contains(path), "message should name '\(path)': \(error.message)", file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(error.message.contains(fragment), "message should contain '\(fragment)': \(error.message)",
                              file: file, line: line)
            }
        } catch {
            XCTFail("expected NodusError, got \(error)", file: file, line: line)
        }
    }

    // MARK: - Round trips

    func testRoundTripEveryDTypeIsZeroCopy() throws {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/all.safetensors"
        var tensors: [(name: String, tensor: Tensor)] = []
        for (index, dtype) in DType.allCases.enumerated() {
            tensors.append((name: "t.\(dtype.name)", tensor: try Self.patterned([2, index + 1, 3], dtype)))
        }
        tensors.append((name: "scalar", tensor: try Self.patterned([], .float32)))
        tensors.append((name: "empty", tensor: try Self.patterned([0, 4], .float16)))
        try SafetensorsWriter.write(tensors, to: path)

        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.names, tensors.map(\.name).sorted())
        XCTAssertEqual(file.metadata, [:])
        XCTAssertEqual(file.dataOffset % 8, 0, "header must be padded to a multiple of 8, data starts at \(file.dataOffset)")
        let mappingStart = UInt(bitPattern: file.mapping.bytes)
        let mappingEnd = mappingStart + UInt(file.mapping.byteCount)
        for (name, original) in tensors {
            let loaded = try file.tensor(name)
            XCTAssertEqual(loaded.dtype, original.dtype, name)
            XCTAssertEqual(loaded.shape, original.shape, name)
            XCTAssertTrue(Self.sameBytes(loaded, original), "bytes of \(name) differ after the round trip")
            XCTAssertEqual(file.entry(name)?.dtype, original.dtype)
            XCTAssertEqual(file.entry(name)?.byteRange.count, original.byteCount)
            let address = UInt(bitPattern: loaded.bytes)
            XCTAssertTrue(address >= mappingStart && address <= mappingEnd,
                          "\(name) at \(address) is not a view into the mapping [\(mappingStart), \(mappingEnd))")
        }
        XCTAssertTrue(file.contains("t.float32"))
        XCTAssertFalse(file.contains("t.nothing"))
        XCTAssertNil(file.entry("t.nothing"))
    }

    func testTensorsAreLaidOutInGivenOrder() throws {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/order.safetensors"
        try SafetensorsWriter.write([(name: "z", tensor: try Tensor(shape: [2], floats: [1, 2])),
                                     (name: "a", tensor: try Tensor(shape: [1], floats: [3]))], to: path)
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.entry("z")?.dataOffsets, 0..<8)
        XCTAssertEqual(file.entry("a")?.dataOffsets, 8..<12)
        XCTAssertEqual(try file.tensor("a").floatArray(), [3])
    }

    func testMetadataRoundTrip() throws {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/meta.safetensors"
        let metadata = ["format": "pt", "quoted": "say \"hi\"\\ / \n\ttab", "unicode": "héllo ✓", "json": #"{"r": 4}"#]
        try SafetensorsWriter.write([(name: "w", tensor: try Tensor(shape: [3], floats: [1, -2, 0.5]))],
                                    metadata: metadata, to: path)
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.metadata, metadata)
        XCTAssertEqual(file.names, ["w"])
        XCTAssertEqual(try file.tensor("w").floatArray(), [1, -2, 0.5])
    }

    func testViewOutlivesFileObject() throws {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/life.safetensors"
        try SafetensorsWriter.write([(name: "w", tensor: try Tensor(shape: [2, 2], floats: [1, 2, 3, 4]))], to: path)
        var file: SafetensorsFile? = try SafetensorsFile(path: path)
        let view = try file?.tensor("w")
        file = nil
        XCTAssertEqual(view?.floatArray(), [1, 2, 3, 4])
    }

    func testWriterReplacesExistingFileAndLeavesNoTemporaries() throws {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/replace.safetensors"
        try SafetensorsWriter.write([(name: "old", tensor: try Tensor(shape: [1], floats: [1]))], to: path)
        try SafetensorsWriter.write([(name: "new", tensor: try Tensor(shape: [1], floats: [2]))], to: path)
        XCTAssertEqual(try SafetensorsFile(path: path).names, ["new"])
        guard let listing = opendir(directory) else { return XCTFail("cannot list \(directory)") }
        defer { closedir(listing) }
        var entries: [String] = []
        while let item = readdir(listing) {
            let name = withUnsafePointer(to: item.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) { String(cString: $0) }
            }
            if name != "." && name != ".." { entries.append(name) }
        }
        XCTAssertEqual(entries, ["replace.safetensors"])
    }

    func testWriterRejectsDuplicateAndReservedNames() throws {
        let directory = temporaryDirectory("safetensors")
        let tensor = try Tensor(shape: [1], floats: [1])
        XCTAssertThrowsError(try SafetensorsWriter.write([(name: "a", tensor: tensor), (name: "a", tensor: tensor)],
                                                         to: directory + "/dup.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("'a' appears twice"), "\(error)")
        }
        XCTAssertThrowsError(try SafetensorsWriter.write([(name: "__metadata__", tensor: tensor)],
                                                         to: directory + "/reserved.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("reserved"), "\(error)")
        }
    }

    func testMissingTensorNamesIt() throws {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/one.safetensors"
        try SafetensorsWriter.write([(name: "w", tensor: try Tensor(shape: [1], floats: [1]))], to: path)
        let file = try SafetensorsFile(path: path)
        XCTAssertThrowsError(try file.tensor("bias")) { error in
            XCTAssertTrue("\(error)".contains("'bias'") && "\(error)".contains(path), "\(error)")
        }
    }

    func testMissingFileIsIOError() {
        XCTAssertThrowsError(try SafetensorsFile(path: "/nonexistent/x.safetensors")) { error in
            XCTAssertEqual((error as? NodusError)?.code, .io, "\(error)")
            XCTAssertTrue("\(error)".contains("/nonexistent/x.safetensors"), "\(error)")
        }
    }

    // MARK: - Broken input

    func testEmptyFile() {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/empty.safetensors"
        Self.writeBytes([], to: path)
        assertFormatError(path, ["0 bytes", "shorter than the 8-byte header length"])
    }

    func testFileShorterThanEightBytes() {
        let directory = temporaryDirectory("safetensors")
        let path = directory + "/short.safetensors"
        Self.writeBytes([1, 0, 0], to: path)
        assertFormatError(path, ["3 bytes", "shorter than the 8-byte header length"])
    }

    func testHeaderLengthPastEnd() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: "{}", declaredLength: 1000)
        assertFormatError(path, ["header length 1000 runs past the end"])
    }

    /// As the safetensors library: the tensors cover the data area exactly, so a header
    /// length one byte short (every tensor read one byte off) and unowned bytes are errors.
    func testHeaderLengthOneByteOffAndUnownedBytesAreRejected() {
        let directory = temporaryDirectory("safetensors")
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   "#
        let good = Self.rawFile(directory, header: header, dataByteCount: 8)
        XCTAssertNoThrow(try SafetensorsFile(path: good))
        let short = Self.rawFile(directory, header: header, dataByteCount: 8,
                                 declaredLength: UInt64(header.utf8.count - 1))
        assertFormatError(short, ["tensors end at byte 8 of a 9-byte data area", "header length"])
        let gap = Self.rawFile(directory, header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                               dataByteCount: 8)
        assertFormatError(gap, ["tensor 'a' starts at 4", "bytes 0..<4"])
        let trailing = Self.rawFile(directory, header: header, dataByteCount: 12)
        assertFormatError(trailing, ["tensors end at byte 8 of a 12-byte data area"])
    }

    func testHugeHeaderLengthIsRejectedWithoutAllocating() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: "{}", declaredLength: 1 << 63)
        assertFormatError(path, ["header length 9223372036854775808 runs past the end"])
        let maximum = Self.rawFile(directory, header: "{}", declaredLength: UInt64.max)
        assertFormatError(maximum, ["runs past the end"])
    }

    func testHeaderNotJSON() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: "{\"w\": {\"dtype\": ")
        assertFormatError(path, ["header", "is not valid JSON"])
    }

    /// The safetensors library refuses a header that names a tensor twice; a JSON reader would keep the last.
    func testDuplicateTensorNamesAreRejected() {
        let directory = temporaryDirectory("safetensors")
        let entry = #"{"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}"#
        let path = Self.rawFile(directory, header: #"{"w": \#(entry), "w": \#(entry)}"#, dataByteCount: 2)
        assertFormatError(path, ["the key 'w' appears twice"])
    }

    func testHeaderNotAnObject() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: "[1, 2, 3]")
        assertFormatError(path, ["the header is not a JSON object"])
    }

    func testUnknownDType() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: #"{"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}"#,
                                dataByteCount: 2)
        assertFormatError(path, ["tensor 'w'", "unknown dtype 'F8_E4M3'"])
    }

    func testNegativeShape() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: #"{"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 0]}}"#)
        assertFormatError(path, ["tensor 'w'", "non-negative integers"])
    }

    func testFractionalShape() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: #"{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}"#,
                                dataByteCount: 4)
        assertFormatError(path, ["tensor 'w'", "non-negative integers"])
    }

    func testOffsetsOutOfRange() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}"#,
                                dataByteCount: 8)
        assertFormatError(path, ["tensor 'w'", "[0, 16] run past the end of the data area (8 bytes)"])
    }

    func testBeginAfterEnd() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: #"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}"#,
                                dataByteCount: 8)
        assertFormatError(path, ["tensor 'w'", "[8, 4] must have 0 <= begin <= end"])
    }

    func testWrongByteSizeForShape() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: #"{"w": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 24]}}"#,
                                dataByteCount: 24)
        assertFormatError(path, ["tensor 'w'", "hold 24 bytes", "needs 12"])
    }

    func testOverlappingTensors() {
        let directory = temporaryDirectory("safetensors")
        let header = #"{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "#
            + #""b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}}"#
        let path = Self.rawFile(directory, header: header, dataByteCount: 20)
        assertFormatError(path, ["tensors 'a' and 'b' overlap"])
    }

    func testEmptyTensorsDoNotOverlap() throws {
        let directory = temporaryDirectory("safetensors")
        let header = #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "#
            + #""b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}"#
        let path = Self.rawFile(directory, header: header, dataByteCount: 8)
        XCTAssertEqual(try SafetensorsFile(path: path).names, ["a", "b"])
    }

    func testNonStringMetadata() {
        let directory = temporaryDirectory("safetensors")
        let path = Self.rawFile(directory, header: #"{"__metadata__": {"format": "pt", "rank": 4}}"#)
        assertFormatError(path, ["'__metadata__' value of 'rank' must be a string"])
    }

    func testMissingFields() {
        let directory = temporaryDirectory("safetensors")
        assertFormatError(Self.rawFile(directory, header: #"{"w": {"shape": [1], "data_offsets": [0, 4]}}"#,
                                       dataByteCount: 4), ["tensor 'w'", "'dtype'"])
        assertFormatError(Self.rawFile(directory, header: #"{"w": {"dtype": "F32", "data_offsets": [0, 4]}}"#,
                                       dataByteCount: 4), ["tensor 'w'", "'shape'"])
        assertFormatError(Self.rawFile(directory, header: #"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}"#,
                                       dataByteCount: 4), ["tensor 'w'", "'data_offsets'"])
        assertFormatError(Self.rawFile(directory, header: #"{"w": 5}"#), ["tensor 'w'", "not a JSON object"])
    }
}
