/// How a Linear's weight matrix is stored.
public enum WeightLayout: Sendable, Equatable {
    /// [out, in]: a PyTorch `nn.Linear` weight, as diffusers files hold it.
    case outputsByInputs
    /// [in, out]: the transposed initializer an ONNX `MatMul(x, W)` reads
    /// (how `torch.onnx.export` writes a Linear).
    case inputsByOutputs

    /// (out, in) of a weight of `shape` stored this way.
    public func features(of shape: [Int]) -> (outFeatures: Int, inFeatures: Int) {
        self == .outputsByInputs ? (shape[0], shape[1]) : (shape[1], shape[0])
    }
}
