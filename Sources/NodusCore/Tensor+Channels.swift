/// Channel concatenation of NCHW tensors, for pipelines that add conditioning
/// channels (mask, masked-image latent) to a latent.
extension Tensor {
    /// `parts` joined along dimension 1; they must share batch and spatial size.
    public static func concatenatingChannels(_ parts: [Tensor]) throws -> Tensor {
        guard let first = parts.first, first.rank >= 2 else { throw NodusError.shape("no tensors to concatenate") }
        let floats = try parts.map { try $0.asFloat32() }
        for part in floats where part.rank != first.rank || part.shape[0] != first.shape[0]
            || Array(part.shape.dropFirst(2)) != Array(first.shape.dropFirst(2)) {
            throw NodusError.shape("cannot concatenate \(part.shape) with \(first.shape) along channels")
        }
        var shape = first.shape
        shape[1] = floats.reduce(0) { $0 + $1.shape[1] }
        let result = try Tensor(zeros: shape)
        Layout.concatChannels(floats.map { (UnsafePointer($0.floats), $0.shape[1]) }, result.floats,
                              batch: shape[0], spatial: shape.dropFirst(2).reduce(1, *))
        return result
    }
}
