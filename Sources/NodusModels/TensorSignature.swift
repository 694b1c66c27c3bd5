import NodusCore

/// One named input or output of a model: its dtype and shape, with nil for an
/// axis of any size (the batch, a dynamic ONNX axis) and a nil shape when
/// even the rank is open.
public struct TensorSignature: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int?]?

    public init(name: String, dtype: DType, shape: [Int?]?) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}
