#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats
import NodusModels

/// Broken model folders and inputs: each gives a clear error naming what is
/// wrong, and nothing crashes.
final class ModelLoadingTests: XCTestCase {
    /// A DiT folder with `config` and the tiny fixture's weights, optionally replaced.
    private func ditFolder(config: String? = nil, replacing weights: [(String, Tensor)] = [],
                           dropping dropped: Set<String> = []) throws -> String {
        let directory = temporaryDirectory("dit")
        let original = try SafetensorsFile(path: Fixtures.path("dit-tiny/diffusion_pytorch_model.safetensors"))
        var tensors = try original.names.filter { !dropped.contains($0) }.map { ($0, try original.tensor($0)) }
        for (name, tensor) in weights {
            tensors.removeAll { $0.0 == name }
            tensors.append((name, tensor))
        }
        try SafetensorsWriter.write(tensors.map { (name: $0.0, tensor: $0.1) },
                                    to: directory + "/diffusion_pytorch_model.safetensors")
        let text = try config ?? String(contentsOfFixture: "dit-tiny/config.json")
        try write(text, to: directory + "/config.json")
        return directory
    }

    private func write(_ text: String, to path: String) throws {
        guard let file = fopen(path, "w") else { throw NodusError.io("cannot write \(path)") }
        fputs(text, file)
        fclose(file)
    }

    private func assertLoadFails(_ path: String, code: NodusError.Code, mentioning fragments: [String],
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ModelLoader.load(path: path), file: file, line: line) { error in
            guard let error = error as? NodusError else { return XCTFail("not a NodusError: \(error)", file: file, line: line) }
            XCTAssertEqual(error.code, code, error.message, file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(error.message.contains(fragment), "'\(fragment)' not in: \(error.message)", file: file, line: line)
            }
        }
    }

    func testMissingFolderAndConfig() throws {
        assertLoadFails("/nonexistent/model", code: .io, mentioning: ["/nonexistent/model"])
        assertLoadFails(temporaryDirectory("empty"), code: .io, mentioning: ["config.json"])
    }

    func testConfigErrorsNameTheField() throws {
        assertLoadFails(try ditFolder(config: "{\"_class_name\": \"DiTTransformer2DModel\", \"num_layers\": \"two\"}"),
                        code: .format, mentioning: ["num_layers"])
        assertLoadFails(try ditFolder(config: "{\"num_layers\": 2}"), code: .format, mentioning: ["_class_name"])
        assertLoadFails(try ditFolder(config: "{\"_class_name\": \"DiTTransformer2DModel\", "),
                        code: .format, mentioning: ["not valid JSON"])
        assertLoadFails(try ditFolder(config: "{\"_class_name\": \"UNet3DConditionModel\"}"),
                        code: .unsupported, mentioning: ["UNet3DConditionModel"])
        assertLoadFails(try ditFolder(config: "{\"_class_name\": \"DiTTransformer2DModel\", \"norm_type\": \"layer_norm\"}"),
                        code: .unsupported, mentioning: ["norm_type"])
        assertLoadFails(try ditFolder(config: "{\"_class_name\": \"DiTTransformer2DModel\", \"num_layers\": -1}"),
                        code: .format, mentioning: ["num_layers"])
    }

    func testWeightErrorsNameTheWeight() throws {
        let name = "transformer_blocks.1.attn1.to_k.weight"
        assertLoadFails(try ditFolder(replacing: [(name, try Tensor(zeros: [32, 31]))]),
                        code: .shape, mentioning: [name, "[32, 31]", "[32, 32]"])
        assertLoadFails(try ditFolder(dropping: [name]), code: .format, mentioning: [name])
        assertLoadFails(try ditFolder(replacing: [(name, try Tensor(zeros: [32, 32], dtype: .int64))]),
                        code: .format, mentioning: [name])
    }

    func testForwardInputErrors() throws {
        let model = try ModelLoader.load(path: Fixtures.path("dit-tiny"))
        let sample = try Tensor(zeros: [2, 4, 8, 8])
        let timestep = try Tensor(shape: [2], int64s: [1, 2])
        let labels = try Tensor(shape: [2], int64s: [3, 10])
        let cases: [(String, [String: Tensor], String)] = [
            ("missing", ["sample": sample, "timestep": timestep], "class_labels"),
            ("channels", ["sample": try Tensor(zeros: [2, 3, 8, 8]), "timestep": timestep, "class_labels": labels], "sample"),
            ("odd side", ["sample": try Tensor(zeros: [2, 4, 7, 8]), "timestep": timestep, "class_labels": labels], "sample"),
            ("timesteps", ["sample": sample, "timestep": try Tensor(shape: [3], int64s: [1, 2, 3]), "class_labels": labels], "timestep"),
            ("label range", ["sample": sample, "timestep": timestep, "class_labels": try Tensor(shape: [2], int64s: [3, 11])], "class_labels"),
            ("unknown", ["sample": sample, "timestep": timestep, "class_labels": labels, "mask": sample], "mask"),
            ("nan", ["sample": try Tensor(shape: [1, 4, 2, 2], floats: [.nan] + Array(repeating: 0, count: 15)),
                     "timestep": timestep, "class_labels": labels], "NaN"),
        ]
        for (label, inputs, fragment) in cases {
            XCTAssertThrowsError(try model.forward(inputs), label) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(label): '\(fragment)' not in: \(error)")
            }
        }
    }
}

private extension String {
    init(contentsOfFixture name: String) throws {
        let file = try MappedFile(path: Fixtures.path(name))
        self = String(decoding: UnsafeRawBufferPointer(start: file.bytes, count: file.byteCount), as: UTF8.self)
    }
}
