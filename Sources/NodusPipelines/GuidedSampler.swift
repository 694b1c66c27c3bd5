import NodusCore
import NodusModels

/// What to sample (the C ABI's `nodus_sample_params`).
public struct SamplingRequest {
    public var steps: Int = 50
    /// Classifier-free guidance scale; 1 or less runs the model without guidance.
    public var guidanceScale: Float = 4.0
    /// The starting latent [B, C, H, W], already scaled by the scheduler's initNoiseSigma.
    public var initNoise: Tensor
    /// DiT class labels: B labels (the null class is added for guidance) or 2B labels [cond..., null...].
    public var classLabels: [Int64] = []
    /// Noise for steps that draw it (DDPM): [timesteps, B, C, H, W], one per timestep.
    public var stepNoise: Tensor?
    public var recordTrajectory = false
    /// Called after each step with (done, total); return false to cancel.
    public var progress: ((Int, Int) -> Bool)?
    /// LoRA per step: before step `step` runs, `adapters` become the active set.
    public var adapterSchedule: [AdapterChange] = []
    /// Channels concatenated after the noisy latent at every step, [B, C', H, W]
    /// (a mask and a masked-image latent for inpainting-style models).
    public var conditioning: Tensor?

    public init(initNoise: Tensor) { self.initNoise = initNoise }
}

/// A change of the active LoRA adapters during sampling (a slider step, a switch).
public struct AdapterChange: Sendable {
    /// The step (0-based) the set applies from.
    public var step: Int
    public var names: [String]
    public var weights: [Float]

    public init(step: Int, names: [String], weights: [Float]) {
        self.step = step
        self.names = names
        self.weights = weights
    }
}

public struct SamplingResult {
    /// The final latent [B, C, H, W].
    public var final: Tensor
    /// The latent after every step, [timesteps, B, C, H, W], when requested.
    public var trajectory: Tensor?
}

/// The denoising loop of diffusers' class-conditional pipelines with
/// classifier-free guidance.
///
/// Matches diffusers 0.42 `DiTPipeline.__call__` on its conditional half: the
/// model sees `[x, x]` with labels `[cond, null]`, the guided prediction is
/// `e_null + g (e_cond - e_null)` over the latent channels, and the learned
/// variance channels (when the model has them) stay those of the conditional
/// half. The scheduler receives the full output, so a `learned_range` DDPM uses
/// the variance (diffusers' pipeline drops it, which only fixed variances
/// tolerate); other schedulers ignore the extra channels as the pipeline's
/// split does. Steps run on the B conditional latents only: the pipeline's
/// null half follows the same arithmetic and is thrown away at the end.
///
/// Conditioning channels (mask, masked-image latent, baseline latent) are
/// concatenated after the scaled noisy latent at every step, the same for both
/// guidance halves, as diffusers' inpainting pipelines do.
///
/// An adapter schedule sets the model's active adapters before chosen steps
/// (as a diffusers callback calling `set_adapters` would); the model keeps the
/// last set afterwards.
///
/// Limitations: class-conditional models only for now (text-conditioned UNets
/// arrive with their issue).
public enum GuidedSampler {
    public static func run(model: any DiffusionModel, scheduler: inout any Scheduler,
                           request: SamplingRequest) throws -> SamplingResult {
        guard let conditioned = model as? any ClassConditionedModel else {
            throw NodusError.unsupported("sampling supports class-conditional models (DiT) for now, not \(model.kind.name)")
        }
        let latent = try request.initNoise.asFloat32()
        let shape = latent.shape
        guard shape.count == 4, shape[0] > 0 else {
            throw NodusError.shape("init_noise must be [batch, channels, height, width], got \(shape)")
        }
        let batch = shape[0]
        guard request.steps > 0 else { throw NodusError.invalidArgument("steps must be positive, got \(request.steps)") }
        guard request.guidanceScale.isFinite else { throw NodusError.invalidArgument("guidance_scale must be finite") }
        let guided = request.guidanceScale > 1
        let labels = try modelLabels(request.classLabels, batch: batch, guided: guided,
                                     nullLabel: conditioned.nullClassLabel)
        try scheduler.setTimesteps(request.steps)
        // Usually `steps` timesteps; diffusers' trailing spacing can give one more.
        let timesteps = scheduler.timesteps
        if let stepNoise = request.stepNoise, stepNoise.shape != [timesteps.count] + shape {
            throw NodusError.shape("step_noise must be \([timesteps.count] + shape), got \(stepNoise.shape)")
        }
        let stepNoise = try request.stepNoise?.asFloat32()
        let changes = try adapterChanges(request.adapterSchedule, model: model, steps: timesteps.count)
        let conditioning = try request.conditioning.map { try checkedConditioning($0, latentShape: shape) }
        let trajectory = request.recordTrajectory ? try Tensor(zeros: [timesteps.count] + shape) : nil
        let modelBatch = guided ? 2 * batch : batch
        let labelTensor = try Tensor(shape: [modelBatch], int64s: labels)
        var current = latent
        for (index, timestep) in timesteps.enumerated() {
            if let change = changes[index] { try change() }
            var input = try scheduler.scaleModelInput(current, timestep: timestep)
            if let conditioning { input = try Tensor.concatenatingChannels([input, conditioning]) }
            if guided { input = try repeatBatch(input) }
            let timestepTensor = scheduler.timestepsAreIntegers
                ? try Tensor(shape: [modelBatch], int64s: Array(repeating: Int64(timestep), count: modelBatch))
                : try Tensor(shape: [modelBatch], floats: Array(repeating: Float(timestep), count: modelBatch))
            var prediction = try model.forward(["sample": input, "timestep": timestepTensor, "class_labels": labelTensor])
            if guided {
                prediction = try applyGuidance(prediction, latentChannels: shape[1], scale: request.guidanceScale)
            }
            let noise = try stepNoise.map { try slice($0, index: index, shape: shape) }
            current = try scheduler.step(modelOutput: prediction, timestep: timestep, sample: current, noise: noise)
            if let trajectory {
                (trajectory.bytes + index * current.byteCount).copyMemory(from: current.bytes, byteCount: current.byteCount)
            }
            if let progress = request.progress, !progress(index + 1, timesteps.count) {
                throw NodusError.cancelled("sampling cancelled by the progress callback after step \(index + 1) of \(timesteps.count)")
            }
        }
        return SamplingResult(final: current, trajectory: trajectory)
    }

    /// The adapter changes by step, checked before sampling starts.
    static func adapterChanges(_ schedule: [AdapterChange], model: any DiffusionModel,
                               steps: Int) throws -> [Int: () throws -> Void] {
        guard !schedule.isEmpty else { return [:] }
        guard let lora = (model as? any AdaptableModel)?.lora else {
            throw NodusError.unsupported("an adapter schedule needs a model that takes LoRA adapters, not \(model.kind.name)")
        }
        var changes: [Int: () throws -> Void] = [:]
        var previous = -1
        for change in schedule {
            guard change.step > previous, change.step < steps else {
                throw NodusError.invalidArgument("adapter schedule step \(change.step) must be in 0..<\(steps) and after the previous entry's step \(previous)")
            }
            guard change.names.count == change.weights.count else {
                throw NodusError.invalidArgument("adapter schedule step \(change.step): \(change.names.count) names and \(change.weights.count) weights")
            }
            if let unknown = change.names.first(where: { !lora.adapterNames.contains($0) }) {
                throw NodusError.invalidArgument("adapter schedule step \(change.step): no adapter named '\(unknown)' is loaded")
            }
            previous = change.step
            changes[change.step] = { try lora.setAdapters(change.names, weights: change.weights) }
        }
        return changes
    }

    /// The labels of the model batch: [cond..., null...] under guidance.
    static func modelLabels(_ labels: [Int64], batch: Int, guided: Bool, nullLabel: Int64) throws -> [Int64] {
        switch (guided, labels.count) {
        case (true, batch): return labels + Array(repeating: nullLabel, count: batch)
        case (true, 2 * batch): return labels
        case (false, batch): return labels
        default:
            let expected = guided ? "\(batch) or \(2 * batch)" : "\(batch)"
            throw NodusError.invalidArgument("class_labels has \(labels.count) labels; expected \(expected) for a batch of \(batch)\(guided ? " with guidance" : "")")
        }
    }

    /// The conditioning as float32, checked against the latent's batch and size.
    static func checkedConditioning(_ tensor: Tensor, latentShape: [Int]) throws -> Tensor {
        guard tensor.rank == 4, tensor.shape[0] == latentShape[0], tensor.shape[1] > 0,
              Array(tensor.shape[2...]) == Array(latentShape[2...]) else {
            throw NodusError.shape("conditioning must be [\(latentShape[0]), channels, \(latentShape[2]), \(latentShape[3])] like init_noise, got \(tensor.shape)")
        }
        let converted = try tensor.asFloat32()
        if let index = (0..<converted.elementCount).first(where: { !converted.floats[$0].isFinite }) {
            throw NodusError.invalidArgument("conditioning holds a NaN or infinity at element \(index)")
        }
        return converted
    }

    /// [x, x] along the batch.
    static func repeatBatch(_ tensor: Tensor) throws -> Tensor {
        let result = try Tensor(zeros: [2 * tensor.shape[0]] + tensor.shape.dropFirst())
        result.bytes.copyMemory(from: tensor.bytes, byteCount: tensor.byteCount)
        (result.bytes + tensor.byteCount).copyMemory(from: tensor.bytes, byteCount: tensor.byteCount)
        return result
    }

    /// The conditional half's prediction with guided latent channels:
    /// e_null + g (e_cond - e_null); extra (variance) channels kept as they are.
    static func applyGuidance(_ prediction: Tensor, latentChannels: Int, scale: Float) throws -> Tensor {
        let shape = prediction.shape
        let batch = shape[0] / 2
        let plane = shape.dropFirst(2).reduce(1, *)
        let itemCount = shape[1] * plane
        let result = try Tensor(zeros: [batch] + shape.dropFirst())
        result.bytes.copyMemory(from: prediction.bytes, byteCount: batch * itemCount * 4)
        let guided = latentChannels * plane
        for item in 0..<batch {
            let conditional = prediction.floats + item * itemCount
            let unconditional = prediction.floats + (batch + item) * itemCount
            let target = result.floats + item * itemCount
            for index in 0..<guided {
                target[index] = unconditional[index] + scale * (conditional[index] - unconditional[index])
            }
        }
        return result
    }

    /// Step `index` of a [steps, ...] tensor, as a view.
    static func slice(_ tensor: Tensor, index: Int, shape: [Int]) throws -> Tensor {
        let count = shape.reduce(1, *)
        return Tensor(storage: tensor.storage, byteOffset: tensor.byteOffset + index * count * 4, shape: shape, dtype: .float32)
    }
}
