#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats

final class NumpyArrayTests: XCTestCase {
    /// Reads a whole file (test checks only).
    private func readBytes(_ path: String) throws -> [UInt8] {
        let mapping = try MappedFile(path: path)
        return Array(UnsafeRawBufferPointer(start: mapping.bytes, count: mapping.byteCount))
    }

    /// An npy file made by hand: magic, version, header length, header text, data.
    private func rawFile(_ directory: String, major: UInt8 = 1, header: String, data: [UInt8]) -> String {
        var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, 0]
        let headerBytes = Array(header.utf8)
        let lengthBytes = major == 1 ? 2 : 4
        bytes += (0..<lengthBytes).map { UInt8((headerBytes.count >> (8 * $0)) & 0xFF) }
        bytes += headerBytes + data
        let path = "\(directory)/raw-\(UInt32.random(in: 0...UInt32.max)).npy"
        SafetensorsTests.writeBytes(bytes, to: path)
        return path
    }

    private func floatBytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { value in (0..<4).map { UInt8((value.bitPattern >> (8 * UInt32($0))) & 0xFF) } }
    }

    private func assertError(_ code: NodusError.Code, _ path: String, _ fragments: [String],
                             file: StaticString = #filePath, line: UInt = #line) {
        do {
            let tensor = try NumpyArray.read(path: path)
            XCTFail("expected an error containing \(fragments), read shape \(tensor.shape)", file: file, line: line)
        } catch let error as NodusError {
            XCTAssertEqual(error.code, code, "code of: \(error.message)", file: file, line: line)
            XCTAssertTrue(error.message.contains(path), "message should name '\(path)': \(error.message)", file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(error.message.contains(fragment), "message should contain '\(fragment)': \(error.message)",
                              file: file, line: line)
            }
        } catch {
            XCTFail("expected NodusError, got \(error)", file: file, line: line)
        }
    }

    func testRoundTripEverySupportedDType() throws {
        let directory = temporaryDirectory("npy")
        for dtype in DType.allCases where dtype != .bfloat16 {
            for shape in [[], [5], [2, 3, 4], [0, 3]] {
                let original = try SafetensorsTests.patterned(shape, dtype)
                let path = "\(directory)/\(dtype.name)-\(shape.count).npy"
                try NumpyArray.write(original, to: path)
                let loaded = try NumpyArray.read(path: path)
                XCTAssertEqual(loaded.dtype, dtype, path)
                XCTAssertEqual(loaded.shape, shape, path)
                XCTAssertTrue(SafetensorsTests.sameBytes(loaded, original), "bytes differ after round trip of \(path)")
                let size = try readBytes(path).count
                XCTAssertEqual((size - original.byteCount) % 64, 0, "data of \(path) must start 64-byte aligned")
            }
        }
    }

    func testWritesExactlyWhatNumpyWrites() throws {
        // np.save(path, np.arange(6, dtype=np.float32).reshape(2, 3)) with NumPy 2.4.
        let directory = temporaryDirectory("npy")
        let path = directory + "/arange.npy"
        try NumpyArray.write(try Tensor(shape: [2, 3], floats: [0, 1, 2, 3, 4, 5]), to: path)
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        var expected: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, 0x76, 0]
        expected += Array(header.utf8) + [UInt8](repeating: 0x20, count: 118 - header.utf8.count - 1) + [0x0A]
        expected += floatBytes([0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try readBytes(path), expected)
    }

    func testReadsVersionTwoAndThreeHeaders() throws {
        let directory = temporaryDirectory("npy")
        for major: UInt8 in [2, 3] {
            let path = rawFile(directory, major: major, header: "{\"descr\": \"<f4\", \"shape\": (3,), \"fortran_order\": False}\n",
                               data: floatBytes([1.5, -2, 4]))
            let tensor = try NumpyArray.read(path: path)
            XCTAssertEqual(tensor.shape, [3])
            XCTAssertEqual(tensor.floatArray(), [1.5, -2, 4])
        }
    }

    func testReadTensorIsWritableCopy() throws {
        let directory = temporaryDirectory("npy")
        let path = directory + "/copy.npy"
        try NumpyArray.write(try Tensor(shape: [2], floats: [1, 2]), to: path)
        let tensor = try NumpyArray.read(path: path)
        tensor.floats[0] = 10
        XCTAssertEqual(tensor.floatArray(), [10, 2])
        XCTAssertEqual(try NumpyArray.read(path: path).floatArray(), [1, 2])
    }

    func testBFloat16WriteIsUnsupported() throws {
        let directory = temporaryDirectory("npy")
        XCTAssertThrowsError(try NumpyArray.write(try Tensor(zeros: [2], dtype: .bfloat16), to: directory + "/b.npy")) { error in
            XCTAssertEqual((error as? NodusError)?.code, .unsupported, "\(error)")
            XCTAssertTrue("\(error)".contains("bfloat16"), "\(error)")
        }
    }

    func testBadMagic() {
        let directory = temporaryDirectory("npy")
        let path = directory + "/magic.npy"
        SafetensorsTests.writeBytes(Array("PK\u{3}\u{4} this is a zip, not an npy".utf8), to: path)
        assertError(.format, path, ["npy magic"])
    }

    func testTooShort() {
        let directory = temporaryDirectory("npy")
        let path = directory + "/short.npy"
        SafetensorsTests.writeBytes([0x93, 0x4E, 0x55], to: path)
        assertError(.format, path, ["3 bytes", "too short"])
    }

    func testTruncatedData() {
        let directory = temporaryDirectory("npy")
        let path = rawFile(directory, header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
                           data: floatBytes([1, 2, 3]))
        assertError(.format, path, ["needs 24 data bytes", "has 12", "truncated"])
    }

    func testExtraData() {
        let directory = temporaryDirectory("npy")
        let path = rawFile(directory, header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n",
                           data: floatBytes([1, 2]))
        assertError(.format, path, ["needs 4 data bytes", "has 8"])
    }

    func testFortranOrder() {
        let directory = temporaryDirectory("npy")
        let path = rawFile(directory, header: "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
                           data: floatBytes([0, 1, 2, 3, 4, 5]))
        assertError(.unsupported, path, ["fortran_order True is not supported"])
    }

    func testUnsupportedDescriptor() {
        let directory = temporaryDirectory("npy")
        let path = rawFile(directory, header: "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n",
                           data: floatBytes([1]))
        assertError(.unsupported, path, ["dtype '>f4' is not supported"])
    }

    func testHeaderLengthPastEnd() {
        let directory = temporaryDirectory("npy")
        let path = directory + "/long.npy"
        SafetensorsTests.writeBytes([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 2, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7B], to: path)
        assertError(.format, path, ["header length 4294967295 runs past the end"])
    }

    func testUnsupportedVersion() {
        let directory = temporaryDirectory("npy")
        let path = rawFile(directory, major: 9, header: "{}", data: [])
        assertError(.unsupported, path, ["version 9.0"])
    }

    func testMalformedHeaders() {
        let directory = temporaryDirectory("npy")
        let cases: [(String, String)] = [
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", "non-negative integer"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) ", "expected '}'"),
            ("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", "unknown word 'Maybe'"),
            ("{'descr': '<f4', 'shape': (2,), }", "'fortran_order'"),
            ("{'fortran_order': False, 'shape': (2,), }", "'descr'"),
            ("{'descr': '<f4', 'fortran_order': False, }", "'shape'"),
            ("{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", "malformed header"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "integer too large"),
        ]
        for (header, fragment) in cases {
            let path = rawFile(directory, header: header + "\n", data: floatBytes([1, 2]))
            assertError(.format, path, [fragment])
        }
    }
}
