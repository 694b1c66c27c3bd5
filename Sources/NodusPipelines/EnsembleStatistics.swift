import NodusCore

/// Pixel-wise statistics over the samples of an ensemble (K samples of one
/// case, as the follow-up-CT model draws for a mean and an uncertainty map).
public enum EnsembleStatistics {
    /// The mean and variance over the first axis of `samples` [K, ...], as
    /// `torch.mean(samples, 0)` and `torch.var(samples, 0, correction=correction)`,
    /// accumulated in float64 (as torch's CPU variance is).
    public static func compute(_ samples: Tensor, correction: Int) throws -> (mean: Tensor, variance: Tensor) {
        let count = samples.shape.first ?? 0
        guard samples.rank >= 1, count >= 2 else {
            throw NodusError.shape("samples must be [K, ...] with K >= 2, got \(samples.shape)")
        }
        guard correction >= 0, correction < count else {
            throw NodusError.invalidArgument("correction must be in 0..<\(count) for \(count) samples, got \(correction)")
        }
        let values = try samples.finiteFloat32("samples")
        let itemShape = Array(samples.shape.dropFirst())
        let itemCount = itemShape.reduce(1, *)
        let mean = try Tensor(zeros: itemShape), variance = try Tensor(zeros: itemShape)
        let x = values.floats
        Parallel.forEach(itemCount, costPerItem: count * 2) { range in
            for index in range {
                var sum = 0.0
                for sample in 0..<count { sum += Double(x[sample * itemCount + index]) }
                let average = sum / Double(count)
                var squares = 0.0
                for sample in 0..<count {
                    let deviation = Double(x[sample * itemCount + index]) - average
                    squares += deviation * deviation
                }
                mean.floats[index] = Float(average)
                variance.floats[index] = Float(squares / Double(count - correction))
            }
        }
        return (mean, variance)
    }
}
