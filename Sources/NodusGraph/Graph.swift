import NodusCore

/// A value in a graph: a graph input, a constant (a weight), or a node's result.
public struct ValueID: Hashable, Sendable, CustomStringConvertible {
    public let index: Int
    public var description: String { "%\(index)" }
}

/// What a value is and where its data comes from.
public struct ValueInfo: Sendable {
    public enum Origin: Sendable {
        case input(name: String)
        /// A weight, by its source name (`transformer_blocks.0.attn1.to_q.weight`).
        case constant(name: String, tensor: Tensor)
        case node(Int)
    }

    public var shape: [Int]
    public var dtype: DType
    public var origin: Origin

    public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
}

/// A named result of a graph.
public struct GraphOutput: Sendable {
    public var name: String
    public var value: ValueID
}

/// One operation applied to values.
public struct Node: Sendable {
    public var operation: Operation
    /// nil for an absent optional input (a Linear without bias).
    public var inputs: [ValueID?]
    public var output: ValueID
}

/// A dataflow graph in execution order: built once per model and input shape,
/// then planned and executed.
public struct Graph: Sendable {
    public internal(set) var values: [ValueInfo] = []
    public internal(set) var nodes: [Node] = []
    public internal(set) var inputs: [String: ValueID] = [:]
    /// The results, in order, by name (`sample` for a diffusers model; the
    /// graph's output names for an ONNX model).
    public internal(set) var outputs: [GraphOutput] = []

    public init() {}

    public subscript(value: ValueID) -> ValueInfo { values[value.index] }

    /// The weights of every Linear, by name, with their [out, in] shapes: what
    /// LoRA adapters can target.
    public var linearWeights: [String: [Int]] {
        var result: [String: [Int]] = [:]
        for node in nodes {
            guard case .linear(let layout) = node.operation, node.inputs.count > 1, let weight = node.inputs[1],
                  case .constant(let name, _) = self[weight].origin else { continue }
            let features = layout.features(of: self[weight].shape)
            result[name] = [features.outFeatures, features.inFeatures]
        }
        return result
    }

    /// A value for messages: a constant's name in quotes, else its id.
    func describe(_ value: ValueID) -> String {
        if case .constant(let name, _) = self[value].origin { return "'\(name)'" }
        return value.description
    }

    /// Adds a value (for passes that add nodes or constants).
    mutating func appendValue(_ info: ValueInfo) -> ValueID {
        values.append(info)
        return ValueID(index: values.count - 1)
    }
}
