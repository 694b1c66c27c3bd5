import NodusCore
import NodusFormats
import NodusGraph

/// A model exported to ONNX (`torch.onnx.export`, either exporter, opsets
/// 14-18), run on the same IR, planner and kernels as native models: the graph
/// is imported per set of input shapes (so any dynamic batch works) and its
/// plan cached like a native model's.
///
/// Matches onnxruntime's outputs for the same inputs (see `ONNXImporter` for
/// the ops). Inputs are converted to the dtype the graph declares when that
/// loses nothing (int32 -> int64, float64 -> float32).
///
/// Limitations: one default-domain graph without control flow; ops run as
/// primitives unless the importer writes a fused op for them.
public final class ONNXGraphModel: ContextualModel, AdaptableModel {
    public let kind = ModelKind.onnx
    public let config: JSONValue
    public let file: ONNXModel
    /// diffusers / PEFT / kohya LoRAs on the export's Linears (MatMul and Gemm by a weight), fused or not.
    public let lora: LoRAController
    private let weights: Weights
    private let weightNames: [String: String]
    private let linearWeights: Set<String>
    private let options: ModelOptions
    private let packedWeights: PackedWeights
    public let defaultContext: RunContext
    /// The graph imported at load (every symbolic axis 1), kept for a first forward of those shapes.
    private var nominal: (key: [Int], graph: Graph)?
    private let nominalLock = ReadWriteLock()

    public init(path: String, options: ModelOptions) throws {
        file = try ONNXModel.load(path, access: options.fileAccess)
        let source = ONNXWeightSource(model: file)
        weights = Weights(source: source)
        weightNames = source.importerNames
        linearWeights = Set(source.linearTargets.keys)
        let controller = LoRAController(weights: weights, targets: source.linearTargets,
                                        aliases: ONNXGraphModel.unwrappedNames(source.linearTargets.keys),
                                        options: options)
        lora = controller
        self.options = options
        let packedWeights = PackedWeights(precision: try options.precision())
        self.packedWeights = packedWeights
        defaultContext = try RunContext(RunContext.Settings(threads: options.threads), packedWeights: packedWeights,
                                        strengths: controller.defaultStrengths)
        var opsets: [String: JSONValue] = [:]
        for (domain, version) in file.opsetImports { opsets[domain.isEmpty ? "ai.onnx" : domain] = .number(Double(version)) }
        var counts: [String: Int] = [:]
        for node in file.graph.nodes { counts[node.opType, default: 0] += 1 }
        for node in file.graph.nodes where !(node.domain.isEmpty || node.domain == "ai.onnx")
            || !ONNXImporter.supportedOps.contains(node.opType) {
            let name = node.name.isEmpty ? node.outputs.first ?? "?" : node.name
            throw NodusError.unsupported("'\(path)': op '\(node.opType)' (domain '\(node.domain.isEmpty ? "ai.onnx" : node.domain)') of node '\(name)' is not supported at opset \(file.opsetImports[""] ?? 0)")
        }
        // The plan for one item (every symbolic axis 1), when such inputs are valid: it checks the
        // graph once at load and says what the passes made of it.
        var planned: [String: JSONValue] = [:]
        let shapes = file.graph.inputs.compactMap { input -> (String, [Int])? in
            guard let shape = input.shape else { return nil }
            return (input.name, shape.map { if case .fixed(let size) = $0 { size } else { 1 } })
        }
        if shapes.count == file.graph.inputs.count,
           let (graph, fused) = try? ONNXImporter.graph(of: file, weights: weights, weightNames: weightNames, linearWeights: linearWeights,
                                                         inputShapes: Dictionary(uniqueKeysWithValues: shapes)) {
            // The ops a plan runs: the planner fuses Linears with their readers (`Executable`) after
            // these passes.
            let plannedGraph = LinearReaderFusion().apply(to: graph)
            var kinds: [String: Int] = [:]
            for node in plannedGraph.nodes { kinds[node.operation.name, default: 0] += 1 }
            var fused = fused
            for (kind, count) in kinds where kind == "geglu_projection" || kind.hasPrefix("linear_") {
                fused[kind] = count
            }
            planned = ["fused": .object(fused.mapValues { .number(Double($0)) }),
                       "planned_ops": .object(kinds.mapValues { .number(Double($0)) })]
            nominal = (shapes.flatMap { [$0.1.count] + $0.1 }, graph)
        }
        config = .object([
            "_class_name": .string("ONNXModel"),
            "path": .string(path),
            "producer": .string(file.producer),
            "ir_version": .number(Double(file.irVersion)),
            "opset_import": .object(opsets),
            "inputs": .array(ONNXGraphModel.describe(file.graph.inputs)),
            "outputs": .array(ONNXGraphModel.describe(file.graph.outputs)),
            "op_counts": .object(counts.mapValues { .number(Double($0)) }),
            "initializers": .number(Double(file.graph.initializers.count)),
        ].merging(planned) { first, _ in first })
        // The import's temporaries (the parsed protobuf's, the fusion rounds' graphs) are freed, scattered
        // over the heap: 7 MB of SD-1.5 UNet's peak RSS until handed back.
        System.returnFreeHeapPages()
    }

    /// LoRA module names for weights exported under a wrapper module (a pipeline's
    /// `transformer.`, `unet.`, ...): the module path without it -> with it.
    private static func unwrappedNames(_ weights: Dictionary<String, [Int]>.Keys) -> [String: String] {
        var aliases: [String: String] = [:]
        for name in weights {
            let module = String(name.dropLast(".weight".count))
            for wrapper in ["transformer.", "unet.", "vae.", "text_encoder.", "model."] where module.hasPrefix(wrapper) {
                aliases[String(module.dropFirst(wrapper.count))] = module
            }
        }
        return aliases
    }

    /// Saving a folder is for diffusers models.
    public func save(to directory: String) throws {
        throw NodusError.unsupported("an ONNX model cannot be saved as a diffusers folder")
    }

    private static func describe(_ values: [ONNXValueInfo]) -> [JSONValue] {
        values.map { value in
            let dims: JSONValue = value.shape.map { shape in
                .array(shape.map { dimension in
                    switch dimension {
                    case .fixed(let size): .number(Double(size))
                    case .symbolic(let name): name.isEmpty ? .null : .string(name)
                    }
                })
            } ?? .null
            return .object(["name": .string(value.name), "dtype": .string(value.dtype?.name ?? "unknown"), "shape": dims])
        }
    }

    private static func signature(_ value: ONNXValueInfo) -> TensorSignature {
        let shape = value.shape.map { dims in
            dims.map { dimension -> Int? in
                if case .fixed(let size) = dimension { return size }
                return nil
            }
        }
        return TensorSignature(name: value.name, dtype: value.dtype ?? .float32, shape: shape)
    }

    public var inputSignatures: [TensorSignature] { file.graph.inputs.map(ONNXGraphModel.signature) }
    public var outputSignatures: [TensorSignature] { file.graph.outputs.map(ONNXGraphModel.signature) }

    public func outputShape(for inputs: [String: Tensor]) throws -> [Int] { try outputShapes(for: inputs)[0] }

    public func outputShapes(for inputs: [String: Tensor]) throws -> [[Int]] {
        try outputShapes(for: inputs, in: defaultContext)
    }

    public func outputShapes(for inputs: [String: Tensor], in context: RunContext) throws -> [[Int]] {
        try context.run(structure: lora.structure) { plans in
            let (executable, _) = try plan(for: inputs, plans: &plans, strengths: context.strengths)
            return executable.graph.outputs.map { executable.graph[$0.value].shape }
        }
    }

    public func forward(_ inputs: [String: Tensor]) throws -> Tensor { try forwardAll(inputs)[0] }

    public func forwardAll(_ inputs: [String: Tensor]) throws -> [Tensor] {
        try forwardAll(inputs, in: defaultContext)
    }

    public func forwardAll(_ inputs: [String: Tensor], in context: RunContext) throws -> [Tensor] {
        try context.run(structure: lora.structure) { plans in
            let (executable, feeds) = try plan(for: inputs, plans: &plans, strengths: context.strengths)
            return try executable.runAll(feeds)
        }
    }

    public func makeContext(_ settings: RunContext.Settings) throws -> RunContext {
        try lora.makeContext(settings, packedWeights: packedWeights)
    }

    public func profile(_ inputs: [String: Tensor], rounds: Int) throws -> ExecutionProfile {
        try defaultContext.run(structure: lora.structure) { plans in
            let (executable, feeds) = try plan(for: inputs, plans: &plans, strengths: defaultContext.strengths)
            return try executable.profile(feeds, rounds: rounds)
        }
    }

    /// The plan for these inputs' shapes and the inputs converted to the graph's dtypes.
    private func plan(for inputs: [String: Tensor], plans: inout ExecutableCache,
                      strengths: AdapterWeights) throws -> (Executable, feeds: [String: Tensor]) {
        let declared = Set(file.graph.inputs.map(\.name))
        for name in inputs.keys where !declared.contains(name) {
            throw NodusError.invalidArgument("unknown input '\(name)' (the graph takes \(file.graph.inputs.map(\.name).joined(separator: ", ")))")
        }
        var feeds: [String: Tensor] = [:]
        var key: [Int] = []
        for input in file.graph.inputs {
            guard let tensor = inputs[input.name] else { throw NodusError.invalidArgument("missing input '\(input.name)'") }
            feeds[input.name] = try ONNXGraphModel.convert(tensor, to: input.dtype ?? .float32, name: input.name)
            key += [tensor.rank] + tensor.shape
        }
        let shapes = feeds.mapValues(\.shape)
        let executable = try plans.executable(for: key, generation: lora.generation) {
            if lora.generation == 0, let graph = takeNominal(key) { return graph }
            return try lora.apply(to: ONNXImporter.graph(of: file, weights: weights, weightNames: weightNames,
                                                         linearWeights: linearWeights, inputShapes: shapes).graph,
                                  strengths: strengths)
        }
        return (executable, feeds)
    }

    /// The graph imported at load when `key` is its shapes; the first plan of any shape drops it.
    private func takeNominal(_ key: [Int]) -> Graph? {
        nominalLock.writing {
            defer { nominal = nil }
            return nominal?.key == key ? nominal?.graph : nil
        }
    }

    /// `tensor` as `dtype` when nothing is lost.
    static func convert(_ tensor: Tensor, to dtype: DType, name: String) throws -> Tensor {
        if tensor.dtype == dtype { return tensor }
        switch (dtype, tensor.dtype) {
        case (.float32, let from) where from.isFloatingPoint:
            return try tensor.asFloat32()
        case (.int64, .int32), (.int64, .uint8):
            return try Tensor(shape: tensor.shape, int64s: tensor.int64Array())
        case (.int64, let from) where from.isFloatingPoint && tensor.floatArray().allSatisfy({ $0.rounded() == $0 && abs($0) < 1e15 }):
            return try Tensor(shape: tensor.shape, int64s: tensor.floatArray().map { Int64($0) })  // whole-number timesteps
        case (.float32, .int64), (.float32, .int32):
            return try tensor.asFloat32()  // integer timesteps for a float input
        default:
            throw NodusError.shape("input '\(name)' must be \(dtype.name), got \(tensor.dtype.name)")
        }
    }
}
