import NodusCore
import NodusFormats

/// What a rectified-flow model predicts, read from a flow-matching scheduler's
/// config (`prediction_type`, a Nodus field that diffusers' flow-matching
/// schedulers do not have; they ignore it).
///
/// "flow_prediction" (the default): the velocity, as SD3 and Flux. "sample": the
/// clean sample x0 (MedSyn2, diffusers' PRX), turned into the velocity before
/// the step as `PRXPipeline` does: `v = (x - x0) / max(t / num_train_timesteps,
/// sample_clamp_min)`, the clamp (PRX: 0.05) keeping the last steps finite.
struct FlowPrediction: Sendable {
    enum Target: String, Sendable {
        case velocity = "flow_prediction"
        case sample
    }

    let target: Target
    let clampMinimum: Float

    init(reader: JSONObjectReader) throws {
        let name = try reader.choice("prediction_type", default: Target.velocity.rawValue,
                                     allowed: [Target.velocity.rawValue, Target.sample.rawValue])
        target = Target(rawValue: name) ?? .velocity
        clampMinimum = Float(try reader.double("sample_clamp_min", default: 0.05))
        guard clampMinimum.isFinite, clampMinimum > 0, clampMinimum <= 1 else {
            throw NodusError.format("\(reader.context): 'sample_clamp_min' = \(clampMinimum) must be in (0, 1] (x0 is divided by max(t, it))")
        }
    }

    /// The velocity for `modelOutput` at `timestep` (a float32 tensor of the sample's shape).
    func velocity(_ modelOutput: Tensor, sample: Tensor, timestep: Double, trainTimesteps: Int) throws -> Tensor {
        guard target == .sample else { return modelOutput }
        // PRX: t.float() / num_train_timesteps, clamped, all in float32.
        let time = max(Float(timestep) / Float(trainTimesteps), clampMinimum)
        let result = try Tensor(zeros: sample.shape)
        let x = sample.floats, original = modelOutput.floats, velocity = result.floats
        for index in 0..<sample.elementCount { velocity[index] = (x[index] - original[index]) / time }
        return result
    }
}
