import NodusFormats

/// What loading an adapter matched: the answer to "did this LoRA fit my model?".
public struct LoRAReport: Sendable {
    public var adapterName: String
    public var format: String
    /// Layers in the file.
    public var layerCount: Int
    /// Model modules the adapter changes ("transformer_blocks.0.attn1.to_q").
    public var matched: [String]
    /// File modules that match nothing in the model (e.g. text-encoder layers).
    public var unmatched: [String]

    public var json: JSONValue {
        .object([
            "adapter_name": .string(adapterName),
            "format": .string(format),
            "layers": .number(Double(layerCount)),
            "matched": .array(matched.map { .string($0) }),
            "unmatched": .array(unmatched.map { .string($0) }),
        ])
    }
}
