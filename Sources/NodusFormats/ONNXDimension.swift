/// One dimension of an ONNX graph input's or output's shape.
public enum ONNXDimension: Sendable, Equatable, CustomStringConvertible {
    /// A known size (`dim_value`).
    case fixed(Int)
    /// A named dynamic size (`dim_param`, such as `"batch"`), or `""` for an unnamed unknown size.
    case symbolic(String)

    public var description: String {
        switch self {
        case .fixed(let size): "\(size)"
        case .symbolic(let name): name.isEmpty ? "?" : name
        }
    }
}
