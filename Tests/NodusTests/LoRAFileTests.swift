#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats

/// LoRA files in every format the loader reads (written here with `SafetensorsWriter`, plus
/// the diffusers / PEFT-written files of `Tests/Fixtures/lora`, made by
/// `tests/reference/make_lora_format_fixtures.py`), and every broken case it rejects.
final class LoRAFileTests: XCTestCase {
    private var directory = ""

    override func setUp() {
        super.setUp()
        directory = temporaryDirectory("lora")
    }

    // MARK: - Helpers

    /// Distinct float32 values, `start`, `start + step`, ... (exact in F16 and BF16 for small counts).
    private static func values(_ count: Int, start: Float = 0.125, step: Float = 0.0625) -> [Float] {
        (0..<count).map { start + Float($0) * step * (($0 % 2 == 0) ? 1 : -1) }
    }

    /// A tensor of `dtype` holding `values` (converted from float32).
    private static func tensor(_ shape: [Int], _ values: [Float], _ dtype: DType = .float32) throws -> Tensor {
        let result = try Tensor(zeros: shape, dtype: dtype)
        XCTAssertEqual(result.elementCount, values.count, "test setup: \(values.count) values for shape \(shape)")
        switch dtype {
        case .float32:
            for (index, value) in values.enumerated() { result.floats[index] = value }
        case .float16:
            let target = result.bytes.assumingMemoryBound(to: UInt16.self)
            for (index, value) in values.enumerated() { target[index] = Float16(value).bitPattern }
        case .bfloat16:
            let target = result.bytes.assumingMemoryBound(to: UInt16.self)
            for (index, value) in values.enumerated() { target[index] = UInt16(value.bitPattern >> 16) }
        case .float64:
            let target = result.bytes.assumingMemoryBound(to: Double.self)
            for (index, value) in values.enumerated() { target[index] = Double(value) }
        case .int32:
            let target = result.bytes.assumingMemoryBound(to: Int32.self)
            for (index, value) in values.enumerated() { target[index] = Int32(value) }
        default:
            XCTFail("test setup: dtype \(dtype.name) not handled")
        }
        return result
    }

    /// A factor of `shape` with distinct values.
    private static func factor(_ shape: [Int], _ dtype: DType = .float32, start: Float = 0.125) throws -> Tensor {
        try tensor(shape, values(shape.reduce(1, *), start: start), dtype)
    }

    /// A scalar alpha tensor of `shape` ([] or [1]).
    private static func alpha(_ value: Float, _ dtype: DType = .float32, shape: [Int] = []) throws -> Tensor {
        try tensor(shape, [value], dtype)
    }

    /// Writes `tensors` to `<directory>/<name>` and returns the path.
    private func write(_ name: String, _ tensors: [(String, Tensor)], metadata: [String: String] = [:]) throws -> String {
        let path = "\(directory)/\(name)"
        try SafetensorsWriter.write(tensors.map { (name: $0.0, tensor: $0.1) }, metadata: metadata, to: path)
        return path
    }

    private func writeText(_ text: String, to path: String) {
        guard let handle = fopen(path, "wb") else {
            XCTFail("cannot create \(path)")
            return
        }
        _ = Array(text.utf8).withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, handle) }
        fclose(handle)
    }

    private func layer(_ file: LoRAFile, _ module: String, component: String? = nil,
                       line: UInt = #line) -> LoRALayer? {
        let found = file.layers.first { $0.module == module && (component == nil || $0.component == component) }
        if found == nil {
            XCTFail("no layer '\(module)' in \(file.layers.map(\.module))", line: line)
        }
        return found
    }

    /// Asserts that loading `path` fails with `code` and a message naming the file and every fragment.
    private func assertLoadFails(_ path: String, _ code: NodusError.Code, naming fragments: [String],
                                 file: StaticString = #filePath, line: UInt = #line) {
        do {
            let loaded = try LoRAFile.load(path: path)
            XCTFail("expected a \(code) error naming \(fragments), loaded \(loaded.layers.map(\.module))", file: file, line: line)
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

    private func assertClose(_ actual: Float, _ expected: Double, _ what: String, line: UInt = #line) {
        XCTAssertEqual(Double(actual), expected, accuracy: abs(expected) * 1e-6 + 1e-7,
                       "\(what): expected \(expected), found \(actual)", line: line)
    }

    // MARK: - diffusers / PEFT keys

    func testDiffusersKeysWithoutMetadataHaveScaleOne() throws {
        let path = try write("plain.safetensors", [
            ("transformer.transformer_blocks.0.attn1.to_q.lora_A.weight", try Self.factor([2, 6])),
            ("transformer.transformer_blocks.0.attn1.to_q.lora_B.weight", try Self.factor([5, 2], start: -0.5)),
            ("transformer.proj_out.lora_A.weight", try Self.factor([3, 4])),
            ("transformer.proj_out.lora_B.weight", try Self.factor([7, 3])),
        ])
        let file = try LoRAFile.load(path: path)
        XCTAssertEqual(file.path, path)
        XCTAssertEqual(file.format, .peft)
        XCTAssertNil(file.config)
        XCTAssertEqual(file.layers.map(\.module), ["proj_out", "transformer_blocks.0.attn1.to_q"])
        let query = try XCTUnwrap(layer(file, "transformer_blocks.0.attn1.to_q"))
        XCTAssertEqual(query.component, "transformer")
        XCTAssertEqual(query.rank, 2)
        XCTAssertEqual(query.down.shape, [2, 6])
        XCTAssertEqual(query.up.shape, [5, 2])
        XCTAssertEqual(query.down.dtype, .float32)
        XCTAssertEqual(query.down.floatArray(), Self.values(12))
        XCTAssertEqual(query.up.floatArray(), Self.values(10, start: -0.5))
        XCTAssertNil(query.alpha)
        XCTAssertEqual(query.scale, 1)
        XCTAssertEqual(query.downKey, "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight")
        XCTAssertEqual(query.upKey, "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight")
        XCTAssertEqual(query.inFeatures, 6)
        XCTAssertEqual(query.outFeatures, 5)
        let projection = try XCTUnwrap(layer(file, "proj_out"))
        XCTAssertEqual(projection.rank, 3, "without metadata the rank is still A's first dimension")
        XCTAssertEqual(projection.scale, 1)
    }

    func testFloat32FactorsAreViewsOfTheFile() throws {
        let path = try write("view.safetensors", [
            ("x.lora_A.weight", try Self.factor([2, 4])), ("x.lora_B.weight", try Self.factor([4, 2])),
        ])
        let file = try LoRAFile.load(path: path)
        let view = try XCTUnwrap(file.layers.first)
        let raw = try SafetensorsFile(path: path)
        // A view lies at its byte offset from a page-aligned mapping; a converted copy would not.
        for (tensor, key) in [(view.down, "x.lora_A.weight"), (view.up, "x.lora_B.weight")] {
            let offset = try XCTUnwrap(raw.entry(key)).byteRange.lowerBound
            let start = UInt(bitPattern: tensor.bytes) &- UInt(offset)
            XCTAssertEqual(start % UInt(getpagesize()), 0, "\(key) should be a view of the file mapping")
            XCTAssertEqual(tensor.floatArray(), try raw.tensor(key).floatArray())
        }
    }

    func testComponentPrefixes() throws {
        let path = try write("prefixes.safetensors", [
            ("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight", try Self.factor([2, 3])),
            ("unet.down_blocks.0.attentions.0.proj_in.lora_B.weight", try Self.factor([3, 2])),
            ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", try Self.factor([2, 3])),
            ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", try Self.factor([3, 2])),
            ("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", try Self.factor([2, 3])),
            ("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", try Self.factor([3, 2])),
            ("mid_block.proj.lora_A.weight", try Self.factor([1, 3])),
            ("mid_block.proj.lora_B.weight", try Self.factor([3, 1])),
        ])
        let file = try LoRAFile.load(path: path)
        XCTAssertEqual(file.layers.count, 4)
        XCTAssertEqual(layer(file, "down_blocks.0.attentions.0.proj_in")?.component, "unet")
        XCTAssertEqual(layer(file, "mid_block.proj")?.component, "")
        let textLayers = file.layers.filter { $0.module == "text_model.encoder.layers.0.self_attn.q_proj" }
        XCTAssertEqual(textLayers.map(\.component), ["text_encoder", "text_encoder"],
                       "both text encoders' layers are kept, as text_encoder")
    }

    func testPeftBaseModelPrefixAndAdapterName() throws {
        let path = try write("peft-state.safetensors", [
            ("base_model.model.blocks.0.attn.proj.lora_A.default.weight", try Self.factor([2, 4])),
            ("base_model.model.blocks.0.attn.proj.lora_B.default.weight", try Self.factor([4, 2])),
            ("base_model.model.blocks.1.attn.proj.lora_A.default.weight", try Self.factor([2, 4])),
            ("base_model.model.blocks.1.attn.proj.lora_B.default.weight", try Self.factor([4, 2])),
        ])
        let file = try LoRAFile.load(path: path)
        XCTAssertEqual(file.format, .peft)
        XCTAssertEqual(file.layers.map(\.module), ["blocks.0.attn.proj", "blocks.1.attn.proj"])
        XCTAssertEqual(file.layers.map(\.component), ["", ""])
    }

    func testFusedQKVLayerKeepsItsName() throws {
        let hidden = 4
        let path = try write("qkv.safetensors", [
            ("blocks.3.attn.qkv.lora_A.weight", try Self.factor([2, hidden])),
            ("blocks.3.attn.qkv.lora_B.weight", try Self.factor([3 * hidden, 2])),
        ])
        let qkv = try XCTUnwrap(try LoRAFile.load(path: path).layers.first)
        XCTAssertEqual(qkv.module, "blocks.3.attn.qkv")
        XCTAssertEqual(qkv.up.shape, [3 * hidden, 2])
        XCTAssertEqual(qkv.down.shape, [2, hidden])

        let kohyaPath = try write("qkv-kohya.safetensors", [
            ("lora_unet_blocks_3_attn_qkv.lora_down.weight", try Self.factor([2, hidden])),
            ("lora_unet_blocks_3_attn_qkv.lora_up.weight", try Self.factor([3 * hidden, 2])),
            ("lora_unet_blocks_3_attn_qkv.alpha", try Self.alpha(1)),
        ])
        let kohya = try XCTUnwrap(try LoRAFile.load(path: kohyaPath).layers.first)
        XCTAssertEqual(kohya.module, "blocks_3_attn_qkv")
        XCTAssertEqual(kohya.up.shape, [12, 2])
        XCTAssertEqual(kohya.scale, 0.5)
    }

    func testHalfPrecisionFactorsAreConverted() throws {
        for dtype in [DType.float16, .bfloat16, .float64] {
            let path = try write("half-\(dtype.name).safetensors", [
                ("x.lora_A.weight", try Self.factor([2, 3], dtype)),
                ("x.lora_B.weight", try Self.factor([4, 2], dtype, start: -1)),
            ])
            let loaded = try XCTUnwrap(try LoRAFile.load(path: path).layers.first)
            XCTAssertEqual(loaded.down.dtype, .float32, dtype.name)
            XCTAssertEqual(loaded.up.dtype, .float32, dtype.name)
            XCTAssertEqual(loaded.down.floatArray(), Self.values(6), dtype.name)
            XCTAssertEqual(loaded.up.floatArray(), Self.values(8, start: -1), dtype.name)
        }
    }

    // MARK: - lora_adapter_metadata

    /// A LoraConfig as diffusers' pipeline `save_lora_weights` flattens it: every field prefixed.
    private static func prefixedMetadata(_ prefix: String, _ fields: [String: String]) -> String {
        "{" + fields.keys.sorted().map { "\"\(prefix).\($0)\": \(fields[$0] ?? "null")" }.joined(separator: ", ") + "}"
    }

    private func writePatternFile(_ name: String, metadata: String) throws -> String {
        try write(name, [
            ("transformer.transformer_blocks.0.attn1.to_q.lora_A.weight", try Self.factor([4, 6])),
            ("transformer.transformer_blocks.0.attn1.to_q.lora_B.weight", try Self.factor([6, 4])),
            ("transformer.transformer_blocks.1.attn1.to_q.lora_A.weight", try Self.factor([2, 6])),
            ("transformer.transformer_blocks.1.attn1.to_q.lora_B.weight", try Self.factor([6, 2])),
            ("transformer.transformer_blocks.1.attn1.to_v.lora_A.weight", try Self.factor([4, 6])),
            ("transformer.transformer_blocks.1.attn1.to_v.lora_B.weight", try Self.factor([6, 4])),
            ("transformer.proj_out.lora_A.weight", try Self.factor([3, 6])),
            ("transformer.proj_out.lora_B.weight", try Self.factor([6, 3])),
        ], metadata: ["format": "pt", "lora_adapter_metadata": metadata])
    }

    func testPrefixedMetadataWithRankAndAlphaPatterns() throws {
        let metadata = Self.prefixedMetadata("transformer", [
            "r": "4", "lora_alpha": "8", "use_rslora": "false", "peft_type": "\"LORA\"",
            "rank_pattern": #"{"^proj_out": 3, "transformer_blocks\\.1\\.attn1\\.to_[qk]": 2}"#,
            "alpha_pattern": #"{"attn1.to_q": 2.5, "to_v": 16}"#,
            "target_modules": #"["to_q", "to_v", "proj_out"]"#,
        ])
        let file = try LoRAFile.load(path: try writePatternFile("patterns.safetensors", metadata: metadata))
        XCTAssertEqual(file.config?["transformer.r"]?.intValue, 4)
        let expected: [(String, Int, Double)] = [
            ("proj_out", 3, 8),                          // ^proj_out -> rank 3; default alpha 8
            ("transformer_blocks.0.attn1.to_q", 4, 2.5), // attn1.to_q matches the suffix after a '.'
            ("transformer_blocks.1.attn1.to_q", 2, 2.5), // the regex rank key
            ("transformer_blocks.1.attn1.to_v", 4, 16),
        ]
        XCTAssertEqual(file.layers.map(\.module), expected.map(\.0))
        for (module, rank, alpha) in expected {
            let found = try XCTUnwrap(layer(file, module))
            XCTAssertEqual(found.rank, rank, module)
            assertClose(found.alpha ?? .nan, alpha, "alpha of \(module)")
            assertClose(found.scale, alpha / Double(rank), "scale of \(module)")
            XCTAssertEqual(found.component, "transformer")
        }
    }

    func testUnprefixedAndNestedMetadataWithRsLoRA() throws {
        let fields = #""r": 4, "lora_alpha": 8, "use_rslora": true, "rank_pattern": {"^proj_out": 3, "transformer_blocks\\.1\\.attn1\\.to_q": 2}, "alpha_pattern": {"to_v": 16}"#
        for (name, metadata) in [("unprefixed", "{\(fields)}"), ("nested", "{\"transformer\": {\(fields)}}")] {
            let file = try LoRAFile.load(path: try writePatternFile("\(name).safetensors", metadata: metadata))
            let expected: [(String, Int, Double)] = [
                ("proj_out", 3, 8), ("transformer_blocks.0.attn1.to_q", 4, 8),
                ("transformer_blocks.1.attn1.to_q", 2, 8), ("transformer_blocks.1.attn1.to_v", 4, 16),
            ]
            for (module, rank, alpha) in expected {
                let found = try XCTUnwrap(layer(file, module))
                XCTAssertEqual(found.rank, rank, "\(name) \(module)")
                assertClose(found.scale, alpha / Double(rank).squareRoot(), "\(name): rsLoRA scale of \(module)")
            }
        }
    }

    func testPatternOrderIsTheTextOrder() throws {
        // Both keys match block 1's to_q; PEFT takes the first in the dict's (= the JSON text's) order.
        let metadata = #"{"r": 4, "lora_alpha": 8, "rank_pattern": {"transformer_blocks\\.1\\.attn1\\.to_q": 2, "^proj_out": 3}, "alpha_pattern": {"transformer_blocks.1.attn1.to_q": 6, "attn1.to_q": 2.5}}"#
        let file = try LoRAFile.load(path: try writePatternFile("order.safetensors", metadata: metadata))
        XCTAssertEqual(layer(file, "transformer_blocks.1.attn1.to_q")?.alpha, 6)
        XCTAssertEqual(layer(file, "transformer_blocks.0.attn1.to_q")?.alpha, 2.5)
    }

    func testPatternKeyRule() throws {
        func key(_ patterns: [String], _ module: String) throws -> String? {
            try LoRAConfig.patternKey(patterns, matching: module)
        }
        XCTAssertEqual(try key(["to_q"], "blocks.0.attn.to_q"), "to_q", "a suffix after a '.' matches")
        XCTAssertEqual(try key(["to_q"], "to_q"), "to_q", "the whole name matches")
        XCTAssertNil(try key(["to_q"], "blocks.0.attn.xto_q"), "a suffix must start after a '.'")
        XCTAssertNil(try key(["to_q"], "blocks.0.attn.to_q_extra"), "the pattern must reach the end")
        XCTAssertNil(try key(["^attn.to_q"], "blocks.0.attn.to_q"), "'^' anchors to the full name")
        XCTAssertEqual(try key(["^blocks.0.attn.to_q"], "blocks.0.attn.to_q"), "^blocks.0.attn.to_q")
        XCTAssertEqual(try key([#"blocks\.[0-9]+\.attn\.to_(q|k)"#], "blocks.12.attn.to_k"), #"blocks\.[0-9]+\.attn\.to_(q|k)"#)
        XCTAssertEqual(try key(["attn.to_v", "to_k", "attn.to_k"], "blocks.1.attn.to_k"), "to_k", "first match wins")
        XCTAssertEqual(try key(["blocks.1"], "blocksX1"), "blocks.1", "'.' is a regex wildcard, as in PEFT")
        XCTAssertNil(try key([], "anything"))
        XCTAssertThrowsError(try key(["to_q(", "x"], "a.to_q")) { error in
            XCTAssertEqual((error as? NodusError)?.code, .format)
            XCTAssertTrue((error as? NodusError)?.message.contains("to_q(") == true, "\(error)")
        }
    }

    func testDiffusersAndPeftWrittenFixtures() throws {
        let folder = Fixtures.path("lora")
        let expectedText = try String(contentsOfFile: "\(folder)/expected.json", encoding: .utf8)
        let expected = try JSONValue.parse(expectedText, context: "expected.json")
        for name in ["pipeline-prefixed.safetensors", "model-adapter.safetensors", "rslora.safetensors", "peft-folder"] {
            let file = try LoRAFile.load(path: "\(folder)/\(name)")
            XCTAssertEqual(file.format, .peft, name)
            XCTAssertNotNil(file.config, name)
            let modules = try XCTUnwrap(expected[name]?.objectValue, name)
            XCTAssertEqual(file.layers.map(\.module), modules.keys.sorted(), name)
            let raw = try SafetensorsFile(path: name == "peft-folder" ? "\(folder)/\(name)/adapter_model.safetensors" : "\(folder)/\(name)")
            for found in file.layers {
                let values = try XCTUnwrap(modules[found.module]?.arrayValue, "\(name) \(found.module)")
                XCTAssertEqual(found.rank, values[0].intValue, "\(name) \(found.module) rank")
                assertClose(found.alpha ?? .nan, values[1].doubleValue ?? .nan, "\(name) \(found.module) alpha")
                assertClose(found.scale, values[2].doubleValue ?? .nan, "\(name) \(found.module) PEFT scaling")
                XCTAssertEqual(found.down.floatArray(), try raw.tensor(found.downKey).floatArray(), "\(name) \(found.module) A")
                XCTAssertEqual(found.up.floatArray(), try raw.tensor(found.upKey).floatArray(), "\(name) \(found.module) B")
                XCTAssertEqual(found.component, name == "pipeline-prefixed.safetensors" ? "transformer" : "", name)
            }
        }
        // The folder's weights file given directly still reads the adapter_config.json beside it.
        let direct = try LoRAFile.load(path: "\(folder)/peft-folder/adapter_model.safetensors")
        XCTAssertEqual(direct.layers.first { $0.module == "proj_out_2" }?.rank, 3)
        XCTAssertNotNil(direct.config)
    }

    /// The parity fixtures of `tests/reference/make_lora_fixtures.py` (read only here).
    func testParityFixturesLoad() throws {
        let names = ["dit-tiny-lora-A.safetensors", "dit-tiny-lora-B", "dit-tiny-lora-A-kohya.safetensors",
                     "dit-tiny-lora-qkv.safetensors"]
        guard names.allSatisfy({ access(Fixtures.path($0), F_OK) == 0 }) else {
            throw XCTSkip("the dit-tiny-lora fixtures are not generated")
        }
        let adapterA = try LoRAFile.load(path: Fixtures.path(names[0]))
        XCTAssertEqual(adapterA.layers.count, 8)
        XCTAssertEqual(Set(adapterA.layers.map(\.scale)), [2])
        XCTAssertEqual(Set(adapterA.layers.map(\.component)), ["transformer"])
        XCTAssertEqual(adapterA.layers.first?.module, "transformer_blocks.0.attn1.to_k")

        let adapterB = try LoRAFile.load(path: Fixtures.path(names[1]))
        XCTAssertEqual(adapterB.layers.count, 8)
        for found in adapterB.layers {
            let expected: Float = found.module.hasSuffix("ff.net.0.proj") ? 0.75 : found.module.hasSuffix("ff.net.2") ? 3 : 1.5
            XCTAssertEqual(found.scale, expected, found.module)
            XCTAssertEqual(found.rank, found.module.hasSuffix("ff.net.0.proj") ? 4 : 2, found.module)
        }

        let kohya = try LoRAFile.load(path: Fixtures.path(names[2]))
        XCTAssertEqual(kohya.format, .kohya)
        XCTAssertEqual(kohya.layers.map(\.module), adapterA.layers.map { $0.module.replacingOccurrences(of: ".", with: "_") })
        XCTAssertEqual(Set(kohya.layers.map(\.scale)), [2])
        for (converted, original) in zip(kohya.layers, adapterA.layers) {
            XCTAssertEqual(converted.down.floatArray(), original.down.floatArray(), converted.module)
            XCTAssertEqual(converted.up.floatArray(), original.up.floatArray(), converted.module)
        }

        let qkv = try LoRAFile.load(path: Fixtures.path(names[3]))
        XCTAssertEqual(qkv.layers.map(\.module), ["blocks.0.attn.proj", "blocks.0.attn.qkv", "blocks.1.attn.proj", "blocks.1.attn.qkv"])
        XCTAssertEqual(qkv.layers[1].up.shape, [96, 4])
        XCTAssertEqual(Set(qkv.layers.map(\.scale)), [1])
    }

    func testPeftFolderWrittenHere() throws {
        let folder = "\(directory)/adapter"
        _ = folder.withCString { mkdir($0, 0o755) }
        try SafetensorsWriter.write([
            (name: "base_model.model.blocks.0.attn.to_q.lora_A.weight", tensor: try Self.factor([4, 8])),
            (name: "base_model.model.blocks.0.attn.to_q.lora_B.weight", tensor: try Self.factor([8, 4])),
            (name: "base_model.model.blocks.0.attn.to_k.lora_A.weight", tensor: try Self.factor([8, 8])),
            (name: "base_model.model.blocks.0.attn.to_k.lora_B.weight", tensor: try Self.factor([8, 8])),
        ], to: "\(folder)/adapter_model.safetensors")
        writeText(#"{"peft_type": "LORA", "r": 4, "lora_alpha": 16, "rank_pattern": {"to_k": 8}, "alpha_pattern": {}, "target_modules": ["to_q", "to_k"]}"#,
                  to: "\(folder)/adapter_config.json")
        let file = try LoRAFile.load(path: folder + "/")
        XCTAssertEqual(file.path, folder + "/")
        XCTAssertEqual(file.config?["lora_alpha"]?.doubleValue, 16)
        XCTAssertEqual(layer(file, "blocks.0.attn.to_q")?.scale, 4)
        XCTAssertEqual(layer(file, "blocks.0.attn.to_k")?.scale, 2)
        XCTAssertEqual(layer(file, "blocks.0.attn.to_k")?.rank, 8)
    }

    // MARK: - kohya

    func testKohyaWithAlpha() throws {
        let path = try write("kohya.safetensors", [
            ("lora_unet_transformer_blocks_0_attn1_to_q.lora_down.weight", try Self.factor([4, 6])),
            ("lora_unet_transformer_blocks_0_attn1_to_q.lora_up.weight", try Self.factor([6, 4], start: -0.25)),
            ("lora_unet_transformer_blocks_0_attn1_to_q.alpha", try Self.alpha(2, .float16)),
            ("lora_unet_proj_out.lora_down.weight", try Self.factor([2, 6], .bfloat16)),
            ("lora_unet_proj_out.lora_up.weight", try Self.factor([3, 2], .bfloat16)),
            ("lora_unet_proj_out.alpha", try Self.alpha(4, .float32, shape: [1])),
            ("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", try Self.factor([2, 5])),
            ("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", try Self.factor([5, 2])),
            ("lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha", try Self.alpha(1, .bfloat16)),
            ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", try Self.factor([2, 5])),
            ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", try Self.factor([5, 2])),
            ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.alpha", try Self.alpha(8, .float64)),
        ])
        let file = try LoRAFile.load(path: path)
        XCTAssertEqual(file.format, .kohya)
        XCTAssertNil(file.config)
        XCTAssertEqual(file.layers.map(\.module), ["proj_out", "text_model_encoder_layers_0_self_attn_q_proj",
                                                   "text_model_encoder_layers_0_self_attn_q_proj",
                                                   "transformer_blocks_0_attn1_to_q"])
        let query = try XCTUnwrap(layer(file, "transformer_blocks_0_attn1_to_q"))
        XCTAssertEqual(query.component, "unet")
        XCTAssertEqual(query.rank, 4)
        XCTAssertEqual(query.alpha, 2)
        XCTAssertEqual(query.scale, 0.5)
        XCTAssertEqual(query.down.floatArray(), Self.values(24))
        XCTAssertEqual(query.up.floatArray(), Self.values(24, start: -0.25))
        XCTAssertEqual(query.downKey, "lora_unet_transformer_blocks_0_attn1_to_q.lora_down.weight")
        let projection = try XCTUnwrap(layer(file, "proj_out"))
        XCTAssertEqual(projection.scale, 2)
        XCTAssertEqual(projection.down.floatArray(), Self.values(12))
        let text = file.layers.filter { $0.component == "text_encoder" }
        XCTAssertEqual(text.map(\.scale).sorted(), [0.5, 4])
    }

    func testKohyaWithoutAnyAlphaHasScaleOne() throws {
        let path = try write("kohya-no-alpha.safetensors", [
            ("lora_unet_a.lora_down.weight", try Self.factor([4, 6])),
            ("lora_unet_a.lora_up.weight", try Self.factor([6, 4])),
            ("lora_unet_b.lora_down.weight", try Self.factor([2, 6])),
            ("lora_unet_b.lora_up.weight", try Self.factor([6, 2])),
        ])
        let file = try LoRAFile.load(path: path)
        XCTAssertEqual(file.layers.map(\.scale), [1, 1])
        XCTAssertEqual(file.layers.map(\.alpha), [nil, nil])
        XCTAssertEqual(file.layers.map(\.rank), [4, 2])
    }

    func testKohyaWithSomeAlphasFails() throws {
        let path = try write("kohya-mixed-alpha.safetensors", [
            ("lora_unet_a.lora_down.weight", try Self.factor([4, 6])),
            ("lora_unet_a.lora_up.weight", try Self.factor([6, 4])),
            ("lora_unet_a.alpha", try Self.alpha(4)),
            ("lora_unet_b.lora_down.weight", try Self.factor([2, 6])),
            ("lora_unet_b.lora_up.weight", try Self.factor([6, 2])),
        ])
        assertLoadFails(path, .format, naming: [path, "lora_unet_b.lora_down.weight", "no alpha"])
    }

    func testOneByOneConvolutionIsReshaped() throws {
        let path = try write("conv1x1.safetensors", [
            ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", try Self.factor([2, 3, 1, 1])),
            ("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight", try Self.factor([5, 2, 1, 1])),
            ("lora_unet_down_blocks_0_attentions_0_proj_in.alpha", try Self.alpha(1)),
        ])
        let conv = try XCTUnwrap(try LoRAFile.load(path: path).layers.first)
        XCTAssertEqual(conv.down.shape, [2, 3])
        XCTAssertEqual(conv.up.shape, [5, 2])
        XCTAssertEqual(conv.down.floatArray(), Self.values(6))
        XCTAssertEqual(conv.scale, 0.5)
    }

    func testAlphaTensorsBesideDiffusersKeys() throws {
        let path = try write("peft-alpha.safetensors", [
            ("x.lora_A.weight", try Self.factor([4, 3])), ("x.lora_B.weight", try Self.factor([3, 4])),
            ("x.alpha", try Self.alpha(2)),
        ])
        let found = try XCTUnwrap(try LoRAFile.load(path: path).layers.first)
        XCTAssertEqual(found.alpha, 2)
        XCTAssertEqual(found.scale, 0.5)
    }

    // MARK: - Broken files

    func testNotALoRA() throws {
        let path = try write("model.safetensors", [
            ("blocks.0.attn.to_q.weight", try Self.factor([2, 2])), ("blocks.0.attn.to_q.bias", try Self.factor([2])),
        ])
        assertLoadFails(path, .format, naming: [path, "not a LoRA", "blocks.0.attn.to_q.weight"])
        let empty = try write("empty.safetensors", [])
        assertLoadFails(empty, .format, naming: [empty, "not a LoRA", "no tensors"])
    }

    func testUnpairedFactors() throws {
        let onlyA = try write("only-a.safetensors", [
            ("x.lora_A.weight", try Self.factor([2, 3])), ("y.lora_A.weight", try Self.factor([2, 3])),
            ("y.lora_B.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(onlyA, .format, naming: [onlyA, "'x.lora_A.weight'", "x.lora_B.weight"])
        let onlyB = try write("only-b.safetensors", [
            ("lora_unet_x.lora_up.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(onlyB, .format, naming: [onlyB, "lora_unet_x.lora_up.weight", "lora_unet_x.lora_down.weight"])
        let orphanAlpha = try write("orphan-alpha.safetensors", [
            ("lora_unet_x.lora_down.weight", try Self.factor([2, 3])), ("lora_unet_x.lora_up.weight", try Self.factor([3, 2])),
            ("lora_unet_x.alpha", try Self.alpha(1)), ("lora_unet_y.alpha", try Self.alpha(1)),
        ])
        assertLoadFails(orphanAlpha, .format, naming: [orphanAlpha, "lora_unet_y.alpha"])
    }

    func testRankZero() throws {
        let path = try write("rank0.safetensors", [
            ("x.lora_A.weight", try Self.factor([0, 3])), ("x.lora_B.weight", try Self.factor([3, 0])),
        ])
        assertLoadFails(path, .shape, naming: [path, "x.lora_A.weight", "rank 0"])
    }

    func testRankMismatch() throws {
        let path = try write("mismatch.safetensors", [
            ("x.lora_A.weight", try Self.factor([4, 3])), ("x.lora_B.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(path, .shape, naming: [path, "x.lora_A.weight", "x.lora_B.weight", "[4, 3]", "[3, 2]"])
    }

    func testFactorsMustBeTwoDimensional() throws {
        let path = try write("3d.safetensors", [
            ("x.lora_A.weight", try Self.factor([2, 3, 2])), ("x.lora_B.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(path, .shape, naming: [path, "x.lora_A.weight", "2-D"])
        let vector = try write("1d.safetensors", [
            ("x.lora_A.weight", try Self.factor([2, 3])), ("x.lora_B.weight", try Self.factor([6])),
        ])
        assertLoadFails(vector, .shape, naming: [vector, "x.lora_B.weight"])
    }

    func testThreeByThreeConvolutionIsUnsupported() throws {
        let path = try write("locon.safetensors", [
            ("lora_unet_conv_in.lora_down.weight", try Self.factor([2, 3, 3, 3])),
            ("lora_unet_conv_in.lora_up.weight", try Self.factor([4, 2, 1, 1])),
        ])
        assertLoadFails(path, .unsupported, naming: [path, "lora_unet_conv_in.lora_down.weight", "3x3", "LoCon"])
    }

    func testNonFiniteValues() throws {
        var nanValues = Self.values(6)
        nanValues[4] = .nan
        let nanA = try write("nan-a.safetensors", [
            ("x.lora_A.weight", try Self.tensor([2, 3], nanValues)), ("x.lora_B.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(nanA, .format, naming: [nanA, "x.lora_A.weight", "NaN or Inf"])
        var infValues = Self.values(6)
        infValues[5] = -.infinity
        let infB = try write("inf-b.safetensors", [
            ("x.lora_A.weight", try Self.factor([2, 3])), ("x.lora_B.weight", try Self.tensor([3, 2], infValues, .float16)),
        ])
        assertLoadFails(infB, .format, naming: [infB, "x.lora_B.weight", "NaN or Inf"])
        let infBF16 = try write("inf-bf16.safetensors", [
            ("lora_unet_x.lora_down.weight", try Self.tensor([2, 3], infValues, .bfloat16)),
            ("lora_unet_x.lora_up.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(infBF16, .format, naming: [infBF16, "lora_unet_x.lora_down.weight"])
        for (label, value) in [("nan", Float.nan), ("negative", -1), ("zero", 0), ("infinite", .infinity)] {
            let path = try write("alpha-\(label).safetensors", [
                ("lora_unet_x.lora_down.weight", try Self.factor([2, 3])),
                ("lora_unet_x.lora_up.weight", try Self.factor([3, 2])),
                ("lora_unet_x.alpha", try Self.alpha(value, .float16)),
            ])
            assertLoadFails(path, .format, naming: [path, "lora_unet_x.alpha", "positive"])
        }
        let wideAlpha = try write("alpha-shape.safetensors", [
            ("lora_unet_x.lora_down.weight", try Self.factor([2, 3])), ("lora_unet_x.lora_up.weight", try Self.factor([3, 2])),
            ("lora_unet_x.alpha", try Self.factor([2])),
        ])
        assertLoadFails(wideAlpha, .shape, naming: [wideAlpha, "lora_unet_x.alpha"])
    }

    func testNonFiniteScanFindsLateValues() throws {
        // The scan is one max-reduction; check a value at the very end of a larger tensor.
        var values = Self.values(4096 * 3, start: 0, step: 1e-4)
        values[values.count - 1] = .nan
        let path = try write("late-nan.safetensors", [
            ("x.lora_A.weight", try Self.factor([4, 8])), ("x.lora_B.weight", try Self.tensor([3072, 4], values)),
        ])
        assertLoadFails(path, .format, naming: [path, "x.lora_B.weight"])
    }

    func testSameModuleTwice() throws {
        let prefixed = try write("twice-prefix.safetensors", [
            ("transformer.x.lora_A.weight", try Self.factor([2, 3])), ("transformer.x.lora_B.weight", try Self.factor([3, 2])),
            ("x.lora_A.weight", try Self.factor([2, 3])), ("x.lora_B.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(prefixed, .format, naming: [prefixed, "twice", "transformer.x.lora_A.weight", "'x.lora_A.weight'"])
        let adapterName = try write("twice-adapter.safetensors", [
            ("x.lora_A.weight", try Self.factor([2, 3])), ("x.lora_B.weight", try Self.factor([3, 2])),
            ("x.lora_A.default.weight", try Self.factor([2, 3])),
        ])
        assertLoadFails(adapterName, .format, naming: [adapterName, "twice", "x.lora_A.default.weight"])
        let bothNamings = try write("twice-kohya.safetensors", [
            ("blocks.0.to_q.lora_A.weight", try Self.factor([2, 3])), ("blocks.0.to_q.lora_B.weight", try Self.factor([3, 2])),
            ("lora_unet_blocks_0_to_q.lora_down.weight", try Self.factor([2, 3])),
            ("lora_unet_blocks_0_to_q.lora_up.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(bothNamings, .format, naming: [bothNamings, "twice", "blocks.0.to_q.lora_A.weight",
                                                       "lora_unet_blocks_0_to_q.lora_down.weight"])
    }

    func testMixedNamingsAndSeveralAdapters() throws {
        let mixed = try write("mixed.safetensors", [
            ("a.lora_A.weight", try Self.factor([2, 3])), ("a.lora_B.weight", try Self.factor([3, 2])),
            ("lora_unet_b.lora_down.weight", try Self.factor([2, 3])), ("lora_unet_b.lora_up.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(mixed, .format, naming: [mixed, "mixes", "a.lora_A.weight", "lora_unet_b.lora_down.weight"])
        let adapters = try write("adapters.safetensors", [
            ("a.lora_A.first.weight", try Self.factor([2, 3])), ("a.lora_B.first.weight", try Self.factor([3, 2])),
            ("b.lora_A.second.weight", try Self.factor([2, 3])), ("b.lora_B.second.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(adapters, .format, naming: [adapters, "first", "second", "a.lora_A.first.weight"])
    }

    func testOtherAdapterTypesAreUnsupported() throws {
        let cases: [(String, String)] = [
            ("lora_unet_x.hada_w1_a", "LoHa"),
            ("lora_unet_x.lokr_w1", "LoKr"),
            ("lora_unet_x.diff", "diff"),
            ("lora_unet_x.diff_b", "diff"),
            ("lora_unet_x.dora_scale", "DoRA"),
            ("transformer.x.lora_magnitude_vector", "DoRA"),
            ("transformer.x.lora_magnitude_vector.default.weight", "DoRA"),
            ("transformer.x.lora_B.bias", "bias"),
            ("lora_unet_x.lora_up.bias", "bias"),
            ("lora_unet_x.lora_mid.weight", "LoCon"),
        ]
        for (index, (key, fragment)) in cases.enumerated() {
            let prefix = key.hasPrefix("lora_unet_") ? "lora_unet_x." : "transformer.x."
            let (down, up) = prefix == "lora_unet_x." ? ("lora_down", "lora_up") : ("lora_A", "lora_B")
            let path = try write("other-\(index).safetensors", [
                ("\(prefix)\(down).weight", try Self.factor([2, 3])), ("\(prefix)\(up).weight", try Self.factor([3, 2])),
                (key, try Self.factor([3])),
            ])
            assertLoadFails(path, .unsupported, naming: [path, "'\(key)'", fragment])
        }
    }

    func testUnknownKeysAreUnsupported() throws {
        let path = try write("unknown.safetensors", [
            ("x.lora_A.weight", try Self.factor([2, 3])), ("x.lora_B.weight", try Self.factor([3, 2])),
            ("classifier.modules_to_save.default.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(path, .unsupported, naming: [path, "classifier.modules_to_save.default.weight"])
    }

    func testIntegerFactorIsRejected() throws {
        let path = try write("int.safetensors", [
            ("x.lora_A.weight", try Self.tensor([2, 3], [1, 2, 3, 4, 5, 6], .int32)), ("x.lora_B.weight", try Self.factor([3, 2])),
        ])
        assertLoadFails(path, .format, naming: [path, "x.lora_A.weight", "floating point"])
    }

    func testBrokenMetadata() throws {
        let malformed = try writePatternFile("bad-json.safetensors", metadata: #"{"transformer.r": 4,"#)
        assertLoadFails(malformed, .format, naming: [malformed, "lora_adapter_metadata"])
        let notObject = try writePatternFile("array.safetensors", metadata: "[1, 2]")
        assertLoadFails(notObject, .format, naming: [notObject, "lora_adapter_metadata"])
        let wrongType = try writePatternFile("wrong-type.safetensors", metadata: #"{"transformer.r": "four"}"#)
        assertLoadFails(wrongType, .format, naming: [wrongType, "lora_adapter_metadata", "'r'"])
        let badRegex = try writePatternFile("regex.safetensors", metadata: #"{"r": 4, "rank_pattern": {"to_q[": 2}}"#)
        assertLoadFails(badRegex, .format, naming: [badRegex, "lora_adapter_metadata", "to_q["])
        let dora = try writePatternFile("dora.safetensors", metadata: #"{"transformer.r": 4, "transformer.use_dora": true}"#)
        assertLoadFails(dora, .unsupported, naming: [dora, "lora_adapter_metadata", "use_dora"])
        let loha = try writePatternFile("loha.safetensors", metadata: #"{"r": 4, "peft_type": "LOHA"}"#)
        assertLoadFails(loha, .unsupported, naming: [loha, "LOHA"])
    }

    func testMetadataMustAgreeWithTheFile() throws {
        // r = 4 everywhere, but block 1's to_q has rank 2 in the file.
        let rank = try writePatternFile("rank.safetensors", metadata: #"{"r": 4, "lora_alpha": 4, "rank_pattern": {"^proj_out": 3}}"#)
        assertLoadFails(rank, .shape, naming: [rank, "transformer.transformer_blocks.1.attn1.to_q.lora_A.weight", "rank 4"])
        let otherPrefix = try writePatternFile("prefix.safetensors", metadata: #"{"unet.r": 4}"#)
        assertLoadFails(otherPrefix, .format, naming: [otherPrefix, "lora_adapter_metadata", "'transformer'"])
        let alphaZero = try writePatternFile("alpha0.safetensors", metadata: #"{"r": 4, "lora_alpha": 0, "rank_pattern": {"^proj_out": 3, "transformer_blocks\\.1\\.attn1\\.to_q": 2}}"#)
        assertLoadFails(alphaZero, .format, naming: [alphaZero, "lora_alpha", "transformer.proj_out.lora_A.weight"])
        let both = try write("alpha-and-metadata.safetensors", [
            ("x.lora_A.weight", try Self.factor([4, 3])), ("x.lora_B.weight", try Self.factor([3, 4])),
            ("x.alpha", try Self.alpha(2)),
        ], metadata: ["lora_adapter_metadata": #"{"r": 4, "lora_alpha": 4}"#])
        assertLoadFails(both, .format, naming: [both, "x.alpha", "lora_adapter_metadata"])
    }

    func testBrokenPeftFolders() throws {
        let noConfig = "\(directory)/no-config"
        _ = noConfig.withCString { mkdir($0, 0o755) }
        try SafetensorsWriter.write([
            (name: "x.lora_A.weight", tensor: try Self.factor([2, 3])), (name: "x.lora_B.weight", tensor: try Self.factor([3, 2])),
        ], to: "\(noConfig)/adapter_model.safetensors")
        assertLoadFails(noConfig, .io, naming: [noConfig, "adapter_config.json"])
        let noWeights = "\(directory)/no-weights"
        _ = noWeights.withCString { mkdir($0, 0o755) }
        writeText("{}", to: "\(noWeights)/adapter_config.json")
        assertLoadFails(noWeights, .io, naming: [noWeights, "adapter_model.safetensors"])
        writeText("not json", to: "\(noConfig)/adapter_config.json")
        assertLoadFails(noConfig, .format, naming: ["adapter_config.json"])
        assertLoadFails("\(directory)/missing.safetensors", .io, naming: ["missing.safetensors"])
    }
}
