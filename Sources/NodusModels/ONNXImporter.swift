import NodusCore
import NodusFormats
import NodusGraph

/// Writes an ONNX graph as Nodus IR for one set of concrete input shapes, the
/// way native builders write a graph per input shape: symbolic axes (the
/// batch) take the sizes of the inputs given, every shape computation folds
/// to constants, and the data path becomes primitive ops (plus the fused ops
/// where an ONNX op is one: LayerNormalization, 2-D Conv).
///
/// Matches onnxruntime's semantics for the ops `torch.onnx.export` emits at
/// opsets 14-18 (both exporters) for diffusion models; `ONNXImporter.supportedOps`
/// lists them.
///
/// Limitations: only the default domain (`ai.onnx`); float16 / bfloat16 /
/// float64 initializers are computed in float32 (as the native loaders do);
/// control flow (If, Loop, Scan) and ops outside the list are refused with the
/// op, its node and the opset.
struct ONNXImporter {
    let model: ONNXModel
    /// The initializers, by the importer's names, with any fused LoRA installed.
    let weights: Weights
    /// Initializer name -> the importer's name for it (`ONNXWeightSource`).
    let weightNames: [String: String]
    /// The importer names of Linear weights (what LoRA adapters change).
    let linearWeights: Set<String>
    var builder = GraphBuilder()
    /// ONNX value name -> IR value.
    var values: [String: ValueID] = [:]
    /// The node being imported, for messages.
    var node: ONNXNode?
    /// The default-domain opset.
    let opset: Int64

    init(model: ONNXModel, weights: Weights, weightNames: [String: String], linearWeights: Set<String>) {
        self.model = model
        self.weights = weights
        self.weightNames = weightNames
        self.linearWeights = linearWeights
        opset = model.opsetImports[""] ?? model.opsetImports["ai.onnx"] ?? 1
    }

    /// The graph for inputs of `shapes` (by input name), its patterns raised to
    /// fused ops, and how many of each the fusion made.
    /// - Throws: `NodusError.shape` when a shape contradicts the model's declared
    ///   input shape, `.unsupported` for an op Nodus cannot run.
    static func graph(of model: ONNXModel, weights: Weights, weightNames: [String: String], linearWeights: Set<String>,
                      inputShapes: [String: [Int]]) throws -> (graph: Graph, fused: [String: Int]) {
        var importer = ONNXImporter(model: model, weights: weights, weightNames: weightNames,
                                    linearWeights: linearWeights)
        return try OperatorFusion().fuse(importer.build(inputShapes: inputShapes))
    }

    private mutating func build(inputShapes: [String: [Int]]) throws -> Graph {
        var symbols: [String: Int] = [:]
        for input in model.graph.inputs {
            guard let shape = inputShapes[input.name] else {
                throw NodusError.invalidArgument("missing input '\(input.name)'")
            }
            try ONNXImporter.check(shape, against: input, symbols: &symbols)
            let dtype = input.dtype ?? .float32
            guard [.float32, .int64, .bool].contains(dtype) else {
                throw NodusError.unsupported("input '\(input.name)' is \(dtype.name): Nodus takes float32, int64 and bool inputs")
            }
            values[input.name] = builder.input(input.name, shape: shape, dtype: dtype)
        }
        for onnxNode in model.graph.nodes {
            node = onnxNode
            try importNode(onnxNode)
        }
        node = nil
        for output in model.graph.outputs {
            guard var value = values[output.name] else {
                throw NodusError.format("\(model.path): graph output '\(output.name)' is never computed")
            }
            if builder.graph.inputs[output.name] == value { value = try builder.map(.identity, value) }
            builder.addOutput(value, name: output.name)
        }
        return DeadCodeElimination().apply(to: builder.finish())
    }

    /// Checks a concrete shape against a declared one, binding symbolic axes consistently.
    static func check(_ shape: [Int], against input: ONNXValueInfo, symbols: inout [String: Int]) throws {
        guard let declared = input.shape else { return }
        guard declared.count == shape.count else {
            throw NodusError.shape("input '\(input.name)' must have rank \(declared.count), got \(shape)")
        }
        for (axis, dimension) in declared.enumerated() {
            switch dimension {
            case .fixed(let size) where size != shape[axis]:
                throw NodusError.shape("input '\(input.name)' must have size \(size) on axis \(axis), got \(shape)")
            case .symbolic(let name) where !name.isEmpty:
                if let bound = symbols[name], bound != shape[axis] {
                    throw NodusError.shape("input '\(input.name)' axis \(axis) ('\(name)') is \(shape[axis]), but another input has \(bound)")
                }
                symbols[name] = shape[axis]
            default: break
            }
        }
    }

    // MARK: Values

    /// The IR value of input `index` of the current node (an initializer on first use).
    mutating func input(_ index: Int) throws -> ValueID {
        guard let value = try optionalInput(index) else { throw error("input \(index) is missing") }
        return value
    }

    mutating func optionalInput(_ index: Int) throws -> ValueID? {
        guard let node, index < node.inputs.count, !node.inputs[index].isEmpty else { return nil }
        return try value(named: node.inputs[index])
    }

    mutating func value(named name: String) throws -> ValueID {
        if let value = values[name] { return value }
        guard let tensor = model.graph.initializers[name] else { throw error("value '\(name)' is not defined") }
        // Linear weights come through `weights` (a fused LoRA replaces them); the rest as the file holds them.
        let weightName = weightNames[name] ?? name
        let current = linearWeights.contains(weightName) ? try weights.tensor(weightName, shape: tensor.shape) : tensor
        let value = try builder.typedConstant(weightName, ONNXImporter.computable(current, name: name))
        values[name] = value
        return value
    }

    /// A tensor in a dtype the IR computes with: float32, int64 or bool.
    static func computable(_ tensor: Tensor, name: String) throws -> Tensor {
        switch tensor.dtype {
        case .float32, .int64, .bool: return tensor.dtype == .float32 ? try tensor.asFloat32() : tensor
        case .float16, .bfloat16, .float64: return try tensor.asFloat32()
        case .int32, .uint8:
            return try Tensor(shape: tensor.shape, int64s: tensor.int64Array())
        }
    }

    /// The constant integer values of input `index` (shapes, axes, pads, ...).
    mutating func integers(_ index: Int) throws -> [Int]? {
        guard let value = try optionalInput(index) else { return nil }
        guard let tensor = builder.constantTensor(value) else {
            throw error("input \(index) must be a constant (it sets a shape, axis or size)")
        }
        switch tensor.dtype {
        case .int64: return tensor.int64Array().map { Int($0) }
        default:
            return try tensor.floatArray().map { value in
                guard let integer = Int(exactly: value.rounded(.towardZero)), abs(integer) < 1 << 53 else {
                    throw error("input \(index) holds \(value), which is not an integer size or index")
                }
                return integer
            }
        }
    }

    /// The constant float values of input `index` (scales, pad values, clip bounds).
    mutating func numbers(_ index: Int) throws -> [Float]? {
        guard let value = try optionalInput(index) else { return nil }
        guard let tensor = builder.constantTensor(value) else { throw error("input \(index) must be a constant") }
        return tensor.dtype == .int64 ? tensor.int64Array().map { Float($0) } : tensor.floatArray()
    }

    mutating func define(_ index: Int, _ value: ValueID) throws {
        guard let node, index < node.outputs.count else { throw error("has no output \(index)") }
        if !node.outputs[index].isEmpty { values[node.outputs[index]] = value }
    }

    // MARK: Attributes

    func attribute(_ name: String) -> ONNXAttribute? { node?.attributes[name] }

    func int(_ name: String, default fallback: Int) throws -> Int {
        guard let value = attribute(name) else { return fallback }
        guard case .int(let number) = value else { throw error("attribute '\(name)' must be an integer") }
        return Int(number)
    }

    func float(_ name: String, default fallback: Float) throws -> Float {
        guard let value = attribute(name) else { return fallback }
        switch value {
        case .float(let number): return number
        case .int(let number): return Float(number)
        default: throw error("attribute '\(name)' must be a float")
        }
    }

    func ints(_ name: String) throws -> [Int]? {
        guard let value = attribute(name) else { return nil }
        switch value {
        case .ints(let numbers): return numbers.map { Int($0) }
        case .int(let number): return [Int(number)]
        default: throw error("attribute '\(name)' must be a list of integers")
        }
    }

    func string(_ name: String, default fallback: String) throws -> String {
        guard let value = attribute(name) else { return fallback }
        guard case .string(let text) = value else { throw error("attribute '\(name)' must be a string") }
        return text
    }

    /// An error that names the node, its op and the opset.
    func error(_ detail: String) -> NodusError {
        guard let node else { return NodusError.format("\(model.path): \(detail)") }
        let name = node.name.isEmpty ? node.outputs.first ?? "?" : node.name
        return NodusError.format("\(model.path): \(node.opType) node '\(name)' (opset \(opset)): \(detail)")
    }
}
