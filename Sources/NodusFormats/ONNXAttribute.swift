import NodusCore

/// The value of a node attribute (`AttributeProto`). Graph-valued attributes
/// (the bodies of `If` / `Loop` / `Scan`) and sparse tensors are not represented:
/// loading a model that has them fails with `NodusError.unsupported`.
public enum ONNXAttribute: Sendable {
    case int(Int64)
    case float(Float)
    /// A STRING attribute, decoded as UTF-8 (invalid bytes become U+FFFD).
    case string(String)
    case ints([Int64])
    case floats([Float])
    case strings([String])
    /// A TENSOR attribute (a `Constant` node's `value`): a view of the parsed file.
    case tensor(Tensor)
}
