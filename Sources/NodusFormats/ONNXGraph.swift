import NodusCore

/// The main graph of an ONNX model, validated and with its nodes in topological order.
public struct ONNXGraph: Sendable {
    public var name: String
    /// The real graph inputs, in file order: a graph input that is also an initializer (of the
    /// same dtype and shape) is a constant with a default, as onnxruntime treats it, and is not listed.
    public var inputs: [ONNXValueInfo]
    public var outputs: [ONNXValueInfo]
    /// Initializers by name: views of the parsed file or of its mapped external data where the
    /// bytes allow (see `ONNXTensorReader`). Read-only memory: never write them.
    public var initializers: [String: Tensor]
    /// The nodes in topological order (the file's order when it is already topological).
    public var nodes: [ONNXNode]

    public init(name: String, inputs: [ONNXValueInfo], outputs: [ONNXValueInfo], initializers: [String: Tensor],
                nodes: [ONNXNode]) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
        self.nodes = nodes
    }
}
