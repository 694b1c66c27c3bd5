#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import NodusCore
import NodusFormats

/// The ONNX reader on the exports and broken files made by tests/reference/make_onnx_fixtures.py
/// (Tests/Fixtures/GENERATED-onnx-fixtures.md lists them).
final class ONNXModelTests: XCTestCase {
    // MARK: - Helpers

    static func onnx(_ name: String) -> String { Fixtures.path("onnx/" + name) }

    /// The good exports: file stem, graph input names, output names, ai.onnx opset, IR version.
    static let exports: [(stem: String, inputs: [String], outputs: [String], opset: Int64, ir: Int64)] = [
        ("dit-tiny-dynamo18", ["sample", "timestep", "class_labels"], ["out_sample"], 18, 10),
        ("dit-tiny-torchscript17", ["sample", "timestep", "class_labels"], ["out_sample"], 17, 8),
        ("unet-micro-dynamo18", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"], 18, 10),
        ("unet-micro-torchscript17", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"], 17, 8),
        ("vae-micro-decoder-dynamo18", ["latent_sample"], ["sample"], 18, 10),
        ("vae-micro-decoder-dynamo17", ["latent_sample"], ["sample"], 17, 10),
        ("vae-micro-decoder-torchscript17", ["latent_sample"], ["sample"], 17, 8),
        ("vae-micro-encoder-dynamo18", ["sample"], ["latent_mean", "latent_logvar"], 18, 10),
        ("vae-micro-encoder-torchscript14", ["sample"], ["latent_mean", "latent_logvar"], 14, 7),
        ("vae-micro-encoder-dynamo18-external", ["sample"], ["latent_mean", "latent_logvar"], 18, 10),
    ]

    /// Asserts that loading `path` fails with `code` and a message naming the file and holding every fragment.
    private func assertLoadFails(_ path: String, _ code: NodusError.Code, _ fragments: [String],
                                 file: StaticString = #filePath, line: UInt = #line) {
        do {
            let model = try ONNXModel.load(path)
            XCTFail("expected \(code) containing \(fragments), loaded \(model.graph.nodes.count) nodes from \(path)",
                    file: file, line: line)
        } catch let error as NodusError {
            XCTAssertEqual(error.code, code, "code of: \(error.message)", file: file, line: line)
            XCTAssertTrue(error.message.contains(path), "message should name '\(path)': \(error.message)", file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(error.message.contains(fragment), "message should contain '\(fragment)': \(error.message)",
                              file: file, line: line)
            }
        } catch {
            XCTFail("expected a NodusError, got \(error)", file: file, line: line)
        }
    }

    private static func copyFile(_ source: String, to target: String) throws {
        try FileManager.default.copyItem(atPath: source, toPath: target)
    }

    private static func floats(_ tensor: Tensor) -> [Float] { tensor.floatArray() }

    /// Every node input is produced before the node reads it.
    private static func isTopological(_ graph: ONNXGraph) -> Bool {
        var known = Set(graph.inputs.map(\.name)).union(graph.initializers.keys)
        for node in graph.nodes {
            for input in node.inputs where !input.isEmpty && !known.contains(input) { return false }
            known.formUnion(node.outputs)
        }
        return true
    }

    // MARK: - Good exports

    func testEveryExportMatchesItsInputsAndOutputsFile() throws {
        for export in ONNXModelTests.exports {
            let model = try ONNXModel.load(ONNXModelTests.onnx(export.stem + ".onnx"))
            let ioStem = export.stem.replacingOccurrences(of: "-external", with: "")
            let io = try SafetensorsFile(path: ONNXModelTests.onnx(ioStem + "-io.safetensors"))
            XCTAssertEqual(model.irVersion, export.ir, export.stem)
            XCTAssertEqual(model.opsetImports[""], export.opset, export.stem)
            XCTAssertTrue(model.producer.hasPrefix("pytorch 2."), "\(export.stem): producer \(model.producer)")
            XCTAssertEqual(model.graph.inputs.map(\.name), export.inputs, export.stem)
            XCTAssertEqual(model.graph.outputs.map(\.name), export.outputs, export.stem)
            XCTAssertEqual(model.functionCount, 0, export.stem)
            // ONNX 1.12's checker runs on (and accepts) every TorchScript export; it skips IR 10.
            XCTAssertEqual(model.checkedByONNXChecker, export.ir <= 8, export.stem)
            XCTAssertTrue(ONNXModelTests.isTopological(model.graph), "\(export.stem): nodes not in topological order")
            XCTAssertGreaterThan(model.graph.nodes.count, 50, export.stem)
            for value in model.graph.inputs + model.graph.outputs {
                let entry = try XCTUnwrap(io.entry(value.name), "\(export.stem): io file has no '\(value.name)'")
                XCTAssertEqual(value.dtype, entry.dtype, "\(export.stem): dtype of '\(value.name)'")
                let shape = try XCTUnwrap(value.shape, "\(export.stem): '\(value.name)' has no shape")
                XCTAssertEqual(shape.count, entry.shape.count, "\(export.stem): rank of '\(value.name)'")
                // The batch axis is symbolic; every other input axis is fixed at the size the export ran
                // with. TorchScript exports may leave output axes symbolic ("Reshapeout_sample_dim_1").
                XCTAssertEqual(shape.first, .symbolic("batch"), "\(export.stem): batch axis of '\(value.name)' is \(shape)")
                let isInput = export.inputs.contains(value.name)
                for (dimension, size) in zip(shape.dropFirst(), entry.shape.dropFirst()) {
                    if !isInput, case .symbolic(let name) = dimension, !name.isEmpty { continue }
                    XCTAssertEqual(dimension, .fixed(size), "\(export.stem): shape of '\(value.name)' is \(shape), ran with \(entry.shape)")
                }
            }
            for (name, tensor) in model.graph.initializers {
                XCTAssertEqual(tensor.byteCount, tensor.storage.byteCount, "\(export.stem): '\(name)' is not a whole view")
            }
        }
    }

    func testDynamoExportOfDiT() throws {
        let model = try ONNXModel.load(ONNXModelTests.onnx("dit-tiny-dynamo18.onnx"))
        XCTAssertFalse(model.checkedByONNXChecker, "the ONNX 1.12 checker must skip IR 10 / opset 18")
        XCTAssertEqual(model.graph.inputs.map(\.dtype), [.float32, .int64, .int64])
        XCTAssertEqual(model.graph.inputs[0].shape, [.symbolic("batch"), .fixed(4), .fixed(8), .fixed(8)])
        XCTAssertEqual(model.graph.outputs[0].shape, [.symbolic("batch"), .fixed(8), .fixed(8), .fixed(8)])
        XCTAssertEqual(model.graph.initializers.count, 65)
        let counts = Dictionary(model.graph.nodes.map { ($0.opType, 1) }, uniquingKeysWith: +)
        XCTAssertEqual(counts["MatMul"], 17, "op counts: \(counts)")
        XCTAssertEqual(counts["LayerNormalization"], 5, "op counts: \(counts)")
        XCTAssertEqual(counts["Conv"], 1, "op counts: \(counts)")

        // Weights keep their module paths (with the wrapper's `transformer.` prefix) and the file's values.
        let weights = try SafetensorsFile(path: Fixtures.path("dit-tiny/diffusion_pytorch_model.safetensors"))
        let projection = try XCTUnwrap(model.graph.initializers["transformer.pos_embed.proj.weight"])
        XCTAssertEqual(projection.shape, [32, 4, 2, 2])
        XCTAssertEqual(projection.dtype, .float32)
        XCTAssertEqual(projection.floatArray(), try weights.tensor("pos_embed.proj.weight").floatArray())

        // A Linear is MatMul(x, W^T) with an anonymous initializer; its module path is in the name scopes.
        let toQ = try XCTUnwrap(model.graph.nodes.first {
            $0.opType == "MatMul" && $0.nameScopes.contains("transformer.transformer_blocks.0.attn1.to_q")
        }, "no MatMul scoped to transformer_blocks.0.attn1.to_q")
        XCTAssertEqual(toQ.nameScopes.first, "")
        XCTAssertEqual(toQ.modulePath, "transformer.transformer_blocks.0.attn1.to_q")
        XCTAssertEqual(toQ.metadata[ONNXNode.nameScopesKey]?.hasPrefix("['', 'transformer'"), true)
        let transposed = try XCTUnwrap(model.graph.initializers[toQ.inputs[1]], "to_q weight '\(toQ.inputs[1])'")
        let weight = try weights.tensor("transformer_blocks.0.attn1.to_q.weight")  // [out, in]
        XCTAssertEqual(transposed.shape, [weight.shape[1], weight.shape[0]])
        let (original, stored) = (weight.floatArray(), transposed.floatArray())
        for row in 0..<weight.shape[0] {
            for column in 0..<weight.shape[1] {
                XCTAssertEqual(stored[column * weight.shape[0] + row], original[row * weight.shape[1] + column],
                               "W^T[\(column), \(row)]")
            }
        }
        // Every MatMul of the attention and feed-forward blocks carries a module scope.
        let scoped = model.graph.nodes.filter { $0.opType == "MatMul" && $0.modulePath != nil }
        XCTAssertGreaterThanOrEqual(scoped.count, 12)
    }

    func testDynamoOpset17ConversionDropsNameScopes() throws {
        // The dynamo exporter converts its opset-18 graph down to 17 with ONNX's version
        // converter, which drops the nodes' metadata_props (only the rewriter's rule names, added
        // after the conversion, remain): the module paths are gone.
        let converted = try ONNXModel.load(ONNXModelTests.onnx("vae-micro-decoder-dynamo17.onnx"))
        XCTAssertTrue(converted.graph.nodes.allSatisfy { $0.metadata[ONNXNode.nameScopesKey] == nil && $0.nameScopes.isEmpty })
        XCTAssertTrue(converted.graph.nodes.contains { $0.metadata["pkg.onnxscript.rewriter.rule_name"] != nil })
        let original = try ONNXModel.load(ONNXModelTests.onnx("vae-micro-decoder-dynamo18.onnx"))
        let scoped = original.graph.nodes.filter { $0.opType == "Conv" && $0.modulePath != nil }
        XCTAssertEqual(scoped.count, original.graph.nodes.filter { $0.opType == "Conv" }.count)
        XCTAssertTrue(scoped.contains { $0.modulePath == "vae.post_quant_conv" }, "\(scoped.map(\.modulePath))")
    }

    func testTorchScriptExportOfDiT() throws {
        let model = try ONNXModel.load(ONNXModelTests.onnx("dit-tiny-torchscript17.onnx"))
        XCTAssertTrue(model.checkedByONNXChecker, "the ONNX 1.12 checker knows IR 8 / opset 17")
        let toQ = try XCTUnwrap(model.graph.nodes.first { $0.name == "/transformer/transformer_blocks.0/attn1/to_q/MatMul" })
        XCTAssertEqual(toQ.opType, "MatMul")
        XCTAssertEqual(toQ.nameScopes, [])
        XCTAssertEqual(toQ.modulePath, "transformer.transformer_blocks.0.attn1.to_q")
        XCTAssertEqual(model.graph.initializers[toQ.inputs[1]]?.shape, [32, 32])
        // Constant nodes carry TENSOR attributes.
        let constants = model.graph.nodes.filter { $0.opType == "Constant" }
        XCTAssertGreaterThan(constants.count, 10)
        for constant in constants {
            guard case .tensor(let value)? = constant.attributes["value"] else {
                return XCTFail("Constant \(constant.name) has no tensor value: \(constant.attributes.keys)")
            }
            XCTAssertEqual(value.byteCount, value.elementCount * value.dtype.byteSize)
        }
        let transposes = model.graph.nodes.filter { $0.opType == "Transpose" }
        XCTAssertFalse(transposes.isEmpty)
        for transpose in transposes {
            guard case .ints(let permutation)? = transpose.attributes["perm"] else {
                return XCTFail("Transpose \(transpose.name) has no perm")
            }
            XCTAssertEqual(permutation.sorted(), (0..<Int64(permutation.count)).map { $0 })
        }
    }

    func testExternalDataIsMappedWithTheInlineValues() throws {
        let inline = try ONNXModel.load(ONNXModelTests.onnx("vae-micro-encoder-dynamo18.onnx"))
        let external = try ONNXModel.load(ONNXModelTests.onnx("vae-micro-encoder-dynamo18-external.onnx"))
        XCTAssertEqual(Set(inline.graph.initializers.keys), Set(external.graph.initializers.keys))
        XCTAssertEqual(inline.graph.initializers.count, 68)
        for (name, expected) in inline.graph.initializers {
            let tensor = try XCTUnwrap(external.graph.initializers[name])
            XCTAssertEqual(tensor.shape, expected.shape, name)
            XCTAssertEqual(tensor.dtype, expected.dtype, name)
            XCTAssertFalse(expected.storage.isFileMapped, "\(name): inline data is a view of the parsed protobuf")
            if tensor.byteCount > 0 {
                XCTAssertTrue(tensor.storage.isFileMapped, "\(name): external data is not mapped")
                XCTAssertEqual(memcmp(tensor.bytes, expected.bytes, tensor.byteCount), 0, "\(name): bytes differ")
            }
        }
        XCTAssertEqual(inline.graph.nodes.map(\.opType), external.graph.nodes.map(\.opType))
    }

    func testSmallExternalModelPassesTheChecker() throws {
        let model = try ONNXModel.load(ONNXModelTests.onnx("external-small.onnx"))
        XCTAssertTrue(model.checkedByONNXChecker)
        let weight = try XCTUnwrap(model.graph.initializers["w"])
        XCTAssertEqual(weight.shape, [2, 3])
        XCTAssertEqual(weight.floatArray(), [0, 1, 2, 3, 4, 5])
        XCTAssertTrue(weight.storage.isFileMapped)
    }

    func testTensorsOutliveTheModel() throws {
        var weight: Tensor? = nil
        do {
            let model = try ONNXModel.load(ONNXModelTests.onnx("input-default.onnx"))
            weight = model.graph.initializers["w"]
        }
        XCTAssertEqual(weight?.floatArray(), [0, 1, 2, 3, 4, 5])
    }

    func testInputThatIsAlsoAnInitializerIsAConstant() throws {
        let model = try ONNXModel.load(ONNXModelTests.onnx("input-default.onnx"))
        XCTAssertEqual(model.graph.inputs.map(\.name), ["x"])
        XCTAssertEqual(model.graph.initializers["w"]?.shape, [2, 3])
        XCTAssertTrue(model.checkedByONNXChecker)
    }

    func testNodesAreSortedTopologically() throws {
        let model = try ONNXModel.load(ONNXModelTests.onnx("unsorted.onnx"))
        XCTAssertEqual(model.graph.nodes.map(\.name), ["relu", "sigmoid"])
        XCTAssertFalse(model.checkedByONNXChecker, "the checker requires the file's order; a sorted graph skips it")
    }

    func testNameScopeParser() {
        XCTAssertEqual(ONNXNode.parsePythonStringList("['', 'a', 'a.b']"), ["", "a", "a.b"])
        XCTAssertEqual(ONNXNode.parsePythonStringList(" [ ] "), [])
        XCTAssertEqual(ONNXNode.parsePythonStringList(#"["it's", 'say \'hi\'', 'back\\slash', 'tab\there', '\xe9']"#),
                       ["it's", "say 'hi'", "back\\slash", "tab\there", "é"])
        XCTAssertNil(ONNXNode.parsePythonStringList("['unterminated]"))
        XCTAssertNil(ONNXNode.parsePythonStringList("['a' 'b']"))
        XCTAssertNil(ONNXNode.parsePythonStringList("['a'] trailing"))
        XCTAssertNil(ONNXNode.parsePythonStringList("a, b"))
        let node = ONNXNode(name: "n", opType: "MatMul", domain: "", inputs: [], outputs: [], attributes: [:],
                            metadata: [ONNXNode.nameScopesKey: "not a list"])
        XCTAssertEqual(node.nameScopes, [])
        XCTAssertNil(node.modulePath)
    }

    // MARK: - Broken files

    func testBrokenFilesGiveClearErrors() {
        let cases: [(String, NodusError.Code, [String])] = [
            ("truncated.onnx", .format, ["not an ONNX model", "truncated or garbled"]),
            ("not-onnx.onnx", .format, ["not an ONNX model"]),
            ("external-absolute.onnx", .format, ["initializer 'w'", "'/etc/hostname'", "absolute"]),
            ("external-dotdot.onnx", .format, ["initializer 'w'", "'../onnx/outside.bin'", "outside the model's folder"]),
            ("short-external.onnx", .format, ["initializer 'w'", "runs past the end", "(16 bytes)"]),
            ("external-length.onnx", .format, ["initializer 'w'", "length 32", "needs 24"]),
            ("external-missing.onnx", .io, ["initializer 'w'", "cannot open", "no-such-file.data"]),
            ("dtype-data-mismatch.onnx", .format, ["initializer 'w'", "INT64", "float_data"]),
            ("inline-2gb.onnx", .format, ["initializer 'w'", "raw_data holds 16 bytes", "2147483652"]),
            ("raw-size.onnx", .format, ["initializer 'w'", "raw_data holds 20 bytes", "needs 24"]),
            ("negative-dim.onnx", .format, ["initializer 'w'", "[2, -3]", "negative"]),
            ("overflow-dims.onnx", .format, ["initializer 'w'", "too large"]),
            ("unsupported-dtype.onnx", .unsupported, ["initializer 'w'", "INT8"]),
            ("input-initializer-conflict.onnx", .format, ["graph input 'w'", "FLOAT [2, 3]", "[3, 2]", "disagree"]),
            ("duplicate-producer.onnx", .format, ["'y'", "produced twice", "'first' (Relu)", "'second' (Sigmoid)"]),
            ("undefined-input.onnx", .format, ["node 'add' (Add)", "'nowhere'"]),
            ("missing-output.onnx", .format, ["missing output", "'z'"]),
            ("cycle.onnx", .format, ["cycle", "node '"]),
            ("graph-attribute.onnx", .unsupported, ["node 'branch' (If)", "_branch'", "GRAPH"]),
        ]
        for (name, code, fragments) in cases {
            assertLoadFails(ONNXModelTests.onnx("broken/" + name), code, fragments)
        }
    }

    func testSymlinkOutOfTheFolderIsRefused() throws {
        let folder = temporaryDirectory("onnx-symlink")
        let outside = temporaryDirectory("onnx-outside")
        let data = outside + "/weights.bin"
        XCTAssertTrue(FileManager.default.createFile(atPath: data, contents: Data(count: 24)))
        let model = folder + "/external-symlink.onnx"
        try ONNXModelTests.copyFile(ONNXModelTests.onnx("broken/external-symlink.onnx"), to: model)
        XCTAssertEqual(symlink(data, folder + "/external-symlink.onnx.data"), 0)
        assertLoadFails(model, .format, ["initializer 'w'", "resolves to '\(data)'", "outside the model's folder"])

        // The same file linked from inside the folder is fine.
        XCTAssertEqual(unlink(folder + "/external-symlink.onnx.data"), 0)
        XCTAssertTrue(FileManager.default.createFile(atPath: folder + "/real.bin", contents: Data(count: 24)))
        XCTAssertEqual(symlink(folder + "/real.bin", folder + "/external-symlink.onnx.data"), 0)
        let loaded = try ONNXModel.load(model)
        XCTAssertEqual(loaded.graph.initializers["w"]?.floatArray(), [0, 0, 0, 0, 0, 0])
    }

    func testFIFOAndDirectoryDoNotHang() throws {
        let folder = temporaryDirectory("onnx-fifo")
        let fifo = folder + "/model.onnx"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        assertLoadFails(fifo, .io, ["not a regular file"])
        assertLoadFails(folder, .io, ["not a regular file"])
        assertLoadFails(folder + "/missing.onnx", .io, ["cannot open"])

        // A FIFO in place of the external data file.
        let model = folder + "/short-external.onnx"
        try ONNXModelTests.copyFile(ONNXModelTests.onnx("broken/short-external.onnx"), to: model)
        XCTAssertEqual(mkfifo(folder + "/short-external.onnx.data", 0o644), 0)
        assertLoadFails(model, .io, ["initializer 'w'", "not a regular file"])
    }

    /// Single corrupted bytes anywhere in an export: each load either succeeds (the byte was weight
    /// data or a name) or throws a NodusError; none crashes or hangs.
    func testCorruptedBytesNeverCrash() throws {
        let folder = temporaryDirectory("onnx-corrupt")
        let original = try Data(contentsOf: URL(fileURLWithPath: ONNXModelTests.onnx(ONNXModelTests.corruptionSource)))
        var generator = SplitMix64(seed: 14)
        var failures = 0
        let path = folder + "/corrupt.onnx"
        for trial in 0..<ONNXModelTests.corruptionTrials {
            var bytes = original
            // Half the trials hit the first 4 KB, where the structure (not the weights) is.
            let limit = trial % 2 == 0 ? min(4096, bytes.count) : bytes.count
            let index = Int.random(in: 0..<limit, using: &generator)
            bytes[index] = UInt8.random(in: 0...255, using: &generator)
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: bytes))
            do {
                _ = try ONNXModel.load(path)
            } catch is NodusError {
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, 0, "no corruption was noticed")
    }

    static let corruptionTrials = 200
    static let corruptionSource = "vae-micro-encoder-torchscript14.onnx"

    /// A seeded generator, so a failing trial can be replayed.
    private struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    func testTruncatedAndGarbledExportsFail() throws {
        let folder = temporaryDirectory("onnx-truncated")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: ONNXModelTests.onnx("dit-tiny-dynamo18.onnx")))
        for tenth in 1..<10 {
            let path = folder + "/cut-\(tenth).onnx"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: bytes.prefix(bytes.count * tenth / 10)))
            assertLoadFails(path, .format, [])
        }
        var garbled = bytes
        garbled.replaceSubrange(0..<64, with: [UInt8](repeating: 0xFF, count: 64))
        let path = folder + "/garbled.onnx"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: garbled))
        assertLoadFails(path, .format, ["truncated or garbled"])
        let empty = folder + "/empty.onnx"
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        assertLoadFails(empty, .format, ["not an ONNX model"])
        // A safetensors file is not an ONNX model either.
        let weights = Fixtures.path("dit-tiny/diffusion_pytorch_model.safetensors")
        XCTAssertThrowsError(try ONNXModel.load(weights)) { error in
            XCTAssertTrue(error is NodusError, "\(error)")
        }
    }
}
