import CNodus
import NodusCore
import NodusPipelines

/// `nodus_status nodus_batch_statistics(const nodus_tensor *samples, int32_t correction, nodus_tensor *mean,
/// nodus_tensor *variance)`: pixel-wise mean and variance over an ensemble's first axis. With either
/// output's data NULL both shapes are reported and nothing is computed.
@_cdecl("nodus_batch_statistics")
public func nodusBatchStatistics(_ samples: UnsafePointer<nodus_tensor>?, _ correction: Int32,
                                 _ mean: UnsafeMutablePointer<nodus_tensor>?,
                                 _ variance: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_batch_statistics"
    return Status.run(function) {
        let source = try Argument.required(samples, "samples", in: function)
        let meanTarget = try Argument.required(mean, "mean", in: function)
        let varianceTarget = try Argument.required(variance, "variance", in: function)
        let tensor = try TensorBridge.input(source.pointee, label: "\(function): samples", copy: false)
        guard tensor.rank >= 1, tensor.shape[0] >= 2 else {
            throw NodusError.shape("\(function): samples must be [K, ...] with K >= 2, got \(tensor.shape)")
        }
        let shape = Array(tensor.shape.dropFirst())
        let meanReady = try TensorBridge.prepareOutput(meanTarget, shape: shape, dtype: .float32, label: "\(function): mean")
        let varianceReady = try TensorBridge.prepareOutput(varianceTarget, shape: shape, dtype: .float32,
                                                           label: "\(function): variance")
        guard meanReady && varianceReady else { return }
        let statistics = try EnsembleStatistics.compute(tensor, correction: Int(correction))
        try TensorBridge.write(statistics.mean, to: meanTarget, shape: shape, dtype: .float32, label: "\(function): mean")
        try TensorBridge.write(statistics.variance, to: varianceTarget, shape: shape, dtype: .float32,
                               label: "\(function): variance")
    }
}
