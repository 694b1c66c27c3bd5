#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats

final class WeightStoreTests: XCTestCase {
    /// A float16 tensor holding `values` (all exactly representable).
    private func float16(_ shape: [Int], _ values: [Float]) throws -> Tensor {
        let tensor = try Tensor(zeros: shape, dtype: .float16)
        let target = tensor.bytes.assumingMemoryBound(to: UInt16.self)
        for (index, value) in values.enumerated() { target[index] = Float16(value).bitPattern }
        return tensor
    }

    /// A bfloat16 tensor holding `values` (all exactly representable).
    private func bfloat16(_ shape: [Int], _ values: [Float]) throws -> Tensor {
        let tensor = try Tensor(zeros: shape, dtype: .bfloat16)
        let target = tensor.bytes.assumingMemoryBound(to: UInt16.self)
        for (index, value) in values.enumerated() { target[index] = UInt16(value.bitPattern >> 16) }
        return tensor
    }

    private func writeText(_ text: String, to path: String) {
        SafetensorsTests.writeBytes(Array(text.utf8), to: path)
    }

    /// A folder with two shards and an index.
    private func makeShardedFolder() throws -> String {
        let directory = temporaryDirectory("weights-sharded")
        try SafetensorsWriter.write([(name: "proj.weight", tensor: try Tensor(shape: [2, 2], floats: [1, 2, 3, 4])),
                                     (name: "proj.bias", tensor: try float16([2], [0.5, -1]))],
                                    to: directory + "/diffusion_pytorch_model-00001-of-00002.safetensors")
        try SafetensorsWriter.write([(name: "out.weight", tensor: try bfloat16([3], [1.5, 2, -4]))],
                                    to: directory + "/diffusion_pytorch_model-00002-of-00002.safetensors")
        writeText("""
            {"metadata": {"total_size": 26}, "weight_map": {
              "proj.weight": "diffusion_pytorch_model-00001-of-00002.safetensors",
              "proj.bias": "diffusion_pytorch_model-00001-of-00002.safetensors",
              "out.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"}}
            """, to: directory + "/diffusion_pytorch_model.safetensors.index.json")
        return directory
    }

    private func assertError(_ code: NodusError.Code, _ fragments: [String], file: StaticString = #filePath,
                             line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected an error containing \(fragments)", file: file, line: line)
        } catch let error as NodusError {
            XCTAssertEqual(error.code, code, "code of: \(error.message)", file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(error.message.contains(fragment), "message should contain '\(fragment)': \(error.message)",
                              file: file, line: line)
            }
        } catch {
            XCTFail("expected NodusError, got \(error)", file: file, line: line)
        }
    }

    func testSingleFileFolder() throws {
        let directory = temporaryDirectory("weights-single")
        try SafetensorsWriter.write([(name: "a.weight", tensor: try Tensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])),
                                     (name: "a.bias", tensor: try float16([3], [0.25, -2, 8]))],
                                    to: directory + "/diffusion_pytorch_model.safetensors")
        let store = try WeightStore(directory: directory + "/")
        XCTAssertEqual(store.directory, directory)
        XCTAssertEqual(store.names, ["a.bias", "a.weight"])
        XCTAssertTrue(store.contains("a.bias"))
        XCTAssertFalse(store.contains("b"))
        XCTAssertEqual(store.dtypes, [.float32, .float16])
        XCTAssertEqual(try store.tensor("a.bias").dtype, .float16)

        let weight = try store.float32("a.weight", shape: [2, 3])
        XCTAssertEqual(weight.floatArray(), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(weight.bytes, try store.tensor("a.weight").bytes, "aligned F32 must be returned as a view")
        let bias = try store.float32("a.bias")
        XCTAssertEqual(bias.dtype, .float32)
        XCTAssertEqual(bias.floatArray(), [0.25, -2, 8])
    }

    func testUnalignedFloat32IsCopied() throws {
        let directory = temporaryDirectory("weights-unaligned")
        // A 1-element F16 first puts the F32 tensor 2 bytes into the (8-aligned) data area.
        try SafetensorsWriter.write([(name: "half", tensor: try float16([1], [1])),
                                     (name: "w", tensor: try Tensor(shape: [3], floats: [7, 8, 9]))],
                                    to: directory + "/diffusion_pytorch_model.safetensors")
        let store = try WeightStore(directory: directory)
        let view = try store.tensor("w")
        XCTAssertEqual(Int(bitPattern: view.bytes) % 4, 2)
        let converted = try store.float32("w")
        XCTAssertEqual(Int(bitPattern: converted.bytes) % 4, 0)
        XCTAssertEqual(converted.floatArray(), [7, 8, 9])
    }

    func testShardedFolder() throws {
        let directory = try makeShardedFolder()
        let store = try WeightStore(directory: directory)
        XCTAssertEqual(store.names, ["out.weight", "proj.bias", "proj.weight"])
        XCTAssertEqual(store.files.count, 2)
        XCTAssertEqual(store.dtypes, [.float32, .float16, .bfloat16])
        XCTAssertEqual(try store.float32("proj.weight", shape: [2, 2]).floatArray(), [1, 2, 3, 4])
        XCTAssertEqual(try store.float32("proj.bias").floatArray(), [0.5, -1])
        XCTAssertEqual(try store.float32("out.weight", shape: [3]).floatArray(), [1.5, 2, -4])
        XCTAssertEqual(store.entry("out.weight")?.dtype, .bfloat16)
    }

    func testSingleFileGivenDirectly() throws {
        let directory = temporaryDirectory("weights-file")
        let path = directory + "/lora.safetensors"
        try SafetensorsWriter.write([(name: "x", tensor: try Tensor(shape: [1], floats: [3]))], to: path)
        let store = try WeightStore(file: path)
        XCTAssertEqual(store.names, ["x"])
        XCTAssertEqual(store.directory, directory)
        XCTAssertThrowsError(try store.tensor("y")) { error in
            XCTAssertTrue("\(error)".contains("'y'") && "\(error)".contains(path), "\(error)")
        }
    }

    func testCustomBaseName() throws {
        let directory = temporaryDirectory("weights-base")
        try SafetensorsWriter.write([(name: "x", tensor: try Tensor(shape: [1], floats: [3]))],
                                    to: directory + "/model.safetensors")
        XCTAssertEqual(try WeightStore(directory: directory, baseName: "model").names, ["x"])
    }

    func testFolderWithoutWeightsListsWhatWasLookedFor() {
        let directory = temporaryDirectory("weights-none")
        assertError(.io, ["has no weights", "\(directory)/diffusion_pytorch_model.safetensors'",
                          "\(directory)/diffusion_pytorch_model.safetensors.index.json'"]) {
            _ = try WeightStore(directory: directory)
        }
    }

    func testMissingWeightNamesWeightAndFolder() throws {
        let directory = try makeShardedFolder()
        let store = try WeightStore(directory: directory)
        assertError(.format, ["weight 'norm.weight'", "folder '\(directory)'"]) {
            _ = try store.tensor("norm.weight")
        }
        assertError(.format, ["weight 'norm.weight'", "folder '\(directory)'"]) {
            _ = try store.float32("norm.weight")
        }
    }

    func testWrongExpectedShape() throws {
        let directory = try makeShardedFolder()
        let store = try WeightStore(directory: directory)
        assertError(.shape, ["weight 'proj.weight'", "expected shape [4, 1]", "found [2, 2]"]) {
            _ = try store.float32("proj.weight", shape: [4, 1])
        }
    }

    func testIndexPointingToMissingShard() throws {
        let directory = try makeShardedFolder()
        unlink(directory + "/diffusion_pytorch_model-00002-of-00002.safetensors")
        assertError(.io, ["weight 'out.weight'", "diffusion_pytorch_model-00002-of-00002.safetensors", "does not exist"]) {
            _ = try WeightStore(directory: directory)
        }
    }

    func testShardNameEscapingFolder() throws {
        let directory = try makeShardedFolder()
        writeText(#"{"weight_map": {"proj.weight": "../elsewhere.safetensors"}}"#,
                  to: directory + "/diffusion_pytorch_model.safetensors.index.json")
        assertError(.format, ["'../elsewhere.safetensors'", "plain file name"]) {
            _ = try WeightStore(directory: directory)
        }
        writeText(#"{"weight_map": {"proj.weight": ".."}}"#,
                  to: directory + "/diffusion_pytorch_model.safetensors.index.json")
        assertError(.format, ["'..'", "plain file name"]) {
            _ = try WeightStore(directory: directory)
        }
    }

    func testWeightMissingFromItsShard() throws {
        let directory = try makeShardedFolder()
        writeText(#"{"weight_map": {"proj.weight": "diffusion_pytorch_model-00002-of-00002.safetensors"}}"#,
                  to: directory + "/diffusion_pytorch_model.safetensors.index.json")
        assertError(.format, ["weight 'proj.weight'", "shard 'diffusion_pytorch_model-00002-of-00002.safetensors'",
                              "has no such tensor"]) {
            _ = try WeightStore(directory: directory)
        }
    }

    func testMalformedIndex() throws {
        let directory = try makeShardedFolder()
        let indexPath = directory + "/diffusion_pytorch_model.safetensors.index.json"
        writeText(#"{"metadata": {}}"#, to: indexPath)
        assertError(.format, ["'weight_map'", indexPath]) { _ = try WeightStore(directory: directory) }
        writeText(#"{"weight_map": {"proj.weight": 3}}"#, to: indexPath)
        assertError(.format, ["weight 'proj.weight'", "must be a string"]) { _ = try WeightStore(directory: directory) }
        writeText(#"{"weight_map": "#, to: indexPath)
        assertError(.format, ["not valid JSON", indexPath]) { _ = try WeightStore(directory: directory) }
    }
}
