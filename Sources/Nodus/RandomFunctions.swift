import CNodus
import NodusCore

/// `nodus_status nodus_randn(uint64_t seed, nodus_tensor *output)`: fills a float32
/// tensor with `torch.randn(shape, generator=torch.Generator().manual_seed(seed))`.
/// `output` must have dtype (float32), ndim, shape, data and size_bytes set.
@_cdecl("nodus_randn")
public func nodusRandn(_ seed: UInt64, _ output: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_randn"
    return Status.run(function) {
        let target = try Argument.required(output, "output", in: function)
        let label = "\(function): output"
        let dtype = try TensorBridge.dtype(of: target.pointee, label: label)
        guard dtype == .float32 else {
            throw NodusError.shape("\(label): dtype is \(dtype.name); nodus_randn fills float32 tensors")
        }
        let shape = try TensorBridge.shape(of: target.pointee, label: label)
        let bytes = try TensorBridge.byteCount(shape: shape, dtype: dtype, label: label)
        guard bytes > 0 else { return }
        guard let data = target.pointee.data else { throw NodusError.invalidArgument("\(label): data is NULL") }
        guard TensorBridge.capacity(of: target.pointee) >= bytes else {
            throw NodusError.shape(
                "\(label): the buffer holds \(target.pointee.size_bytes) bytes, but float32 \(shape) needs \(bytes)")
        }
        var generator = TorchGenerator(seed: seed)
        let count = bytes / 4
        if Int(bitPattern: data) % 4 == 0 {
            generator.fillNormal(data.assumingMemoryBound(to: Float.self), count: count)
        } else {
            let values = try generator.randn(shape: [count])
            data.copyMemory(from: values.bytes, byteCount: bytes)
        }
    }
}
