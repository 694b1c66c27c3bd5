/// Channel and batch concatenation of float tensors, for pipelines that add
/// conditioning channels (mask, masked-image latent) to a latent or stack
/// guidance halves and ensemble samples.
extension Tensor {
    /// `parts` joined along dimension 0; they must share every other dimension.
    public static func concatenatingBatch(_ parts: [Tensor]) throws -> Tensor {
        guard let first = parts.first, first.rank >= 1 else { throw NodusError.shape("no tensors to concatenate") }
        let floats = try parts.map { try $0.asFloat32() }
        for part in floats where Array(part.shape.dropFirst()) != Array(first.shape.dropFirst()) || part.rank != first.rank {
            throw NodusError.shape("cannot concatenate \(part.shape) with \(first.shape) along the batch")
        }
        var shape = first.shape
        shape[0] = floats.reduce(0) { $0 + $1.shape[0] }
        let result = try Tensor(zeros: shape)
        var offset = 0
        for part in floats {
            (result.floats + offset).update(from: part.floats, count: part.elementCount)
            offset += part.elementCount
        }
        return result
    }

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
