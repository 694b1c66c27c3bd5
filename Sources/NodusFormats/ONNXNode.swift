/// One node of an ONNX graph (`NodeProto`).
public struct ONNXNode: Sendable {
    /// The node's name (may be empty: ONNX does not require names).
    public var name: String
    public var opType: String
    /// The operator domain: `""` for the default domain (`ai.onnx` is reported as `""` too).
    public var domain: String
    /// Input value names; `""` is an absent optional input.
    public var inputs: [String]
    /// Output value names; `""` is an absent optional output.
    public var outputs: [String]
    public var attributes: [String: ONNXAttribute]
    /// `metadata_props`: the dynamo exporter writes `pkg.torch.onnx.name_scopes`,
    /// `pkg.torch.onnx.class_hierarchy`, `namespace`, ... here.
    public var metadata: [String: String]
    /// The module scopes the dynamo exporter records in `pkg.torch.onnx.name_scopes`
    /// (a Python list repr), outermost first: `["", "transformer", "transformer.transformer_blocks.0",
    /// ..., "transformer.transformer_blocks.0.attn1.to_q", "linear_3"]`. The first entry is the root
    /// module (`""`) and the last is the FX node's own name. Empty when the metadata is absent
    /// (TorchScript exports, or the dynamo exporter's opset-17 conversion) or malformed.
    public var nameScopes: [String]

    public init(name: String, opType: String, domain: String, inputs: [String], outputs: [String],
                attributes: [String: ONNXAttribute], metadata: [String: String]) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
        self.metadata = metadata
        self.nameScopes = metadata[ONNXNode.nameScopesKey].flatMap(ONNXNode.parsePythonStringList) ?? []
    }

    /// The metadata key of the dynamo exporter's module scopes.
    public static let nameScopesKey = "pkg.torch.onnx.name_scopes"

    /// The dotted path of the innermost module this node came from, or nil when the file does not say:
    /// * dynamo exports: the last module scope of `nameScopes` (the entry before the FX node's name),
    ///   e.g. `transformer.transformer_blocks.0.attn1.to_q`;
    /// * TorchScript exports: the node name without its last component, `/` turned into `.`:
    ///   `/transformer/transformer_blocks.0/attn1/to_q/MatMul` gives `transformer.transformer_blocks.0.attn1.to_q`.
    public var modulePath: String? {
        if nameScopes.count >= 2 {
            let module = nameScopes[nameScopes.count - 2]
            return module.isEmpty ? nil : module
        }
        guard name.hasPrefix("/") else { return nil }
        let components = name.split(separator: "/").dropLast()
        return components.isEmpty ? nil : components.joined(separator: ".")
    }
}
