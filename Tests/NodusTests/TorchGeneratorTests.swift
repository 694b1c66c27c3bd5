#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats

/// Checks `TorchGenerator` against `torch.randn` values recorded by
/// `tests/reference/make_randn_fixtures.py` (bit patterns, compared exactly).
final class TorchGeneratorTests: XCTestCase {
    /// One recorded generator: a seed and the successive calls made on it.
    private struct RecordedCase {
        let seed: UInt64
        let shapes: [[Int]]
        let values: [[UInt32]]
    }

    private func loadCases() throws -> [RecordedCase] {
        let path = Fixtures.path("randn.json")
        guard let file = fopen(path, "rb") else {
            throw NodusError.io("cannot open \(path); run tests/reference/make_randn_fixtures.py")
        }
        defer { fclose(file) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let read = fread(&chunk, 1, chunk.count, file)
            if read <= 0 { break }
            bytes.append(contentsOf: chunk[0..<read])
        }
        let document = try bytes.withUnsafeBytes { try JSONValue.parse($0, context: "randn.json") }
        guard let cases = document["cases"]?.arrayValue else {
            throw NodusError.format("randn.json has no 'cases' array")
        }
        return try cases.enumerated().map { caseIndex, item in
            guard let seed = item["seed"]?.intValue, seed >= 0,
                  let shapes = item["shapes"]?.arrayValue, let values = item["values"]?.arrayValue,
                  shapes.count == values.count else {
                throw NodusError.format("randn.json case \(caseIndex) is malformed")
            }
            let parsedShapes = try shapes.map { shape -> [Int] in
                guard let dimensions = shape.arrayValue?.compactMap(\.intValue) else {
                    throw NodusError.format("randn.json case \(caseIndex) has a bad shape")
                }
                return dimensions
            }
            let parsedValues = try values.map { call -> [UInt32] in
                guard let numbers = call.arrayValue else {
                    throw NodusError.format("randn.json case \(caseIndex) has bad values")
                }
                return try numbers.map { number in
                    guard let bits = number.intValue, let pattern = UInt32(exactly: bits) else {
                        throw NodusError.format("randn.json case \(caseIndex) has a value that is not a uint32")
                    }
                    return pattern
                }
            }
            return RecordedCase(seed: UInt64(seed), shapes: parsedShapes, values: parsedValues)
        }
    }

    func testMatchesTorchRandnBitForBit() throws {
        let cases = try loadCases()
        XCTAssertFalse(cases.isEmpty)
        var compared = 0
        for recorded in cases {
            var generator = TorchGenerator(seed: recorded.seed)
            for (callIndex, shape) in recorded.shapes.enumerated() {
                let expected = recorded.values[callIndex]
                let tensor = try generator.randn(shape: shape)
                XCTAssertEqual(tensor.shape, shape)
                let actual = tensor.floatArray()
                XCTAssertEqual(actual.count, expected.count, "seed \(recorded.seed) call \(callIndex) shape \(shape)")
                var mismatches = 0
                for index in 0..<min(actual.count, expected.count) where actual[index].bitPattern != expected[index] {
                    mismatches += 1
                    if mismatches <= 5 {
                        let expectedValue = Float(bitPattern: expected[index])
                        XCTFail("seed \(recorded.seed) call \(callIndex) shape \(shape) index \(index): "
                                + "got \(actual[index]) (0x\(String(actual[index].bitPattern, radix: 16))), "
                                + "torch \(expectedValue) (0x\(String(expected[index], radix: 16)))")
                    }
                }
                if mismatches > 5 {
                    XCTFail("seed \(recorded.seed) call \(callIndex) shape \(shape): \(mismatches) mismatches in all")
                }
                compared += expected.count
            }
        }
        XCTAssertGreaterThan(compared, 8192)
    }

    func testNormalAndFillNormalAgreeWithRandn() throws {
        for count in [0, 1, 5, 16, 40, 513] {
            var first = TorchGenerator(seed: 99)
            var second = first
            var third = first
            let tensor = try first.randn(shape: [count])
            let array = second.normal(count: count)
            var buffer = [Float](repeating: .nan, count: count)
            buffer.withUnsafeMutableBufferPointer { pointer in
                if let base = pointer.baseAddress { third.fillNormal(base, count: count) }
            }
            XCTAssertEqual(tensor.floatArray().map(\.bitPattern), array.map(\.bitPattern), "count \(count)")
            XCTAssertEqual(buffer.map(\.bitPattern), array.map(\.bitPattern), "count \(count)")
            // The copies advanced identically: the next draws agree too.
            XCTAssertEqual(second.normal(count: 3).map(\.bitPattern), third.normal(count: 3).map(\.bitPattern))
        }
    }

    func testRejectsNegativeShape() {
        var generator = TorchGenerator(seed: 1)
        XCTAssertThrowsError(try generator.randn(shape: [2, -1]))
    }

    func testMersenneTwisterReferenceOutput() {
        // The standard MT19937 check value: the 10000th output for seed 5489.
        var engine = MersenneTwister(seed: 5489)
        var value: UInt32 = 0
        for _ in 0..<10000 { value = engine.next() }
        XCTAssertEqual(value, 4_123_659_995)

        // Bulk fill continues the same stream across twists.
        var single = MersenneTwister(seed: 77)
        var bulk = single
        _ = single.next()
        _ = bulk.next()
        var filled = [UInt32](repeating: 0, count: 1500)
        filled.withUnsafeMutableBufferPointer { pointer in
            if let base = pointer.baseAddress { bulk.fill(base, count: pointer.count) }
        }
        for index in 0..<filled.count {
            let expected = single.next()
            if filled[index] != expected {
                XCTFail("fill index \(index): \(filled[index]) != \(expected)")
                break
            }
        }
        XCTAssertEqual(single.next(), bulk.next())
    }
}
