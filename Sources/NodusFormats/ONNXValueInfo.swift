import NodusCore

/// A graph input or output: its name, element type and shape as the file declares them.
public struct ONNXValueInfo: Sendable {
    public var name: String
    /// The element type, or nil when the file does not say.
    public var dtype: DType?
    /// The shape, or nil when the file declares none (any rank).
    public var shape: [ONNXDimension]?

    public init(name: String, dtype: DType?, shape: [ONNXDimension]?) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}
