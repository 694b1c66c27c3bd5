import NodusCore
import NodusModels

/// The denoising loop of diffusers' pipelines with classifier-free guidance.
///
/// Class-conditional models (DiT) match diffusers 0.42 `DiTPipeline.__call__`
/// on its conditional half: the model sees `[x, x]` with labels `[cond, null]`,
/// the guided prediction is `e_null + g (e_cond - e_null)` over the latent
/// channels, and the learned variance channels (when the model has them) stay
/// those of the conditional half. The scheduler receives the full output, so a
/// `learned_range` DDPM uses the variance (diffusers' pipeline drops it, which
/// only fixed variances tolerate); other schedulers ignore the extra channels
/// as the pipeline's split does. Steps run on the B conditional latents only:
/// the pipeline's null half follows the same arithmetic and is thrown away.
///
/// Context-conditioned models (UNet) match `StableDiffusionPipeline.__call__`:
/// batch `[uncond..., cond...]`, `e_uncond + g (e_cond - e_uncond)`. A batch of
/// K latents is a K-sample ensemble in one loop.
///
/// For every scheduler, as the pipelines do: the initial noise is multiplied by
/// `initNoiseSigma` after `setTimesteps`, the model runs once per entry of
/// `scheduler.timesteps` (2N - 1 for Heun, N + 1 or N + 9 for PNDM) on
/// `scaleModelInput` of the latent, and step noise and the trajectory have one
/// entry per timestep that runs.
///
/// Conditioning channels (mask, masked-image latent, baseline latent) are
/// concatenated after the scaled noisy latent at every step, the same for both
/// guidance halves, as diffusers' inpainting pipelines do; or, given for the
/// whole model batch (2B rows in its guidance order), per half: MedSyn2's
/// unconditional half sees an empty mask latent. Latents are 4-D images or 5-D
/// volumes; flow-matching schedulers with MONAI's voxel-count shift get the
/// latent's spatial size. With image latents
/// the run is img2img or inpainting (`KnownImage`): it starts part-way by
/// `strength` and, with a mask, blends the known region back after each step.
///
/// An adapter schedule sets the model's active adapters before chosen steps
/// (as a diffusers callback calling `set_adapters` would); the model keeps the
/// last set afterwards.
public enum GuidedSampler {
    /// The timesteps a request runs: the schedule after `setTimesteps(steps)`,
    /// from `strength`'s start when the request has image latents.
    public static func timesteps(for request: SamplingRequest, scheduler: inout any Scheduler) throws -> [Double] {
        guard request.steps > 0, request.steps <= SchedulerFactory.maximumSteps else {
            throw NodusError.invalidArgument("steps must be in 1...\(SchedulerFactory.maximumSteps), got \(request.steps)")
        }
        try scheduler.setTimesteps(request.steps, mu: nil,
                                   spatialSize: request.initNoise.shape.dropFirst(2).reduce(1, *))
        guard request.imageLatents != nil else {
            guard request.strength == 1 else {
                throw NodusError.invalidArgument("strength \(request.strength) needs image_latents (img2img or inpainting)")
            }
            return scheduler.timesteps
        }
        // diffusers' get_timesteps: the start index times the scheduler's order (Heun runs two entries a step).
        let start = try KnownImage.startIndex(steps: request.steps, strength: request.strength) * scheduler.order
        guard start < scheduler.timesteps.count else {
            throw NodusError.invalidArgument("strength \(request.strength) with \(request.steps) steps leaves no step to run")
        }
        scheduler.setBeginIndex(start)
        return Array(scheduler.timesteps[start...])
    }

    public static func run(model: any DiffusionModel, scheduler: inout any Scheduler,
                           request: SamplingRequest) throws -> SamplingResult {
        let noise = try request.initNoise.finiteFloat32("init_noise")
        let shape = noise.shape
        guard shape.count == 4 || shape.count == 5, shape[0] > 0 else {
            throw NodusError.shape("init_noise must be [batch, channels, height, width] or [batch, channels, depth, height, width], got \(shape)")
        }
        let batch = shape[0]
        guard request.guidanceScale.isFinite else { throw NodusError.invalidArgument("guidance_scale must be finite") }
        let guided = request.guidanceScale > 1
        let conditioning = try ModelConditioning.make(model: model, request: request, batch: batch, guided: guided)
        let timesteps = try self.timesteps(for: request, scheduler: &scheduler)
        if let stepNoise = request.stepNoise, stepNoise.shape != [timesteps.count] + shape {
            throw NodusError.shape("step_noise must be \([timesteps.count] + shape), got \(stepNoise.shape)")
        }
        let stepNoise = try request.stepNoise?.asFloat32()
        let changes = try adapterChanges(request.adapterSchedule, model: model, steps: timesteps.count,
                                         context: request.context)
        let forward = try forwarding(model, in: request.context)
        let channels = try request.conditioning.map { try checkedConditioning($0, latentShape: shape, guided: guided) }
        guard request.mask == nil || request.imageLatents != nil else {
            throw NodusError.invalidArgument("a mask needs image_latents (the known image to keep)")
        }
        let known = try request.imageLatents.map { try KnownImage(latents: $0, noise: noise, mask: request.mask) }
        let trajectory = request.recordTrajectory ? try Tensor(zeros: [timesteps.count] + shape) : nil
        let modelBatch = guided ? 2 * batch : batch
        var current = try known?.startLatent(scheduler: scheduler, timestep: timesteps[0], strength: request.strength)
            ?? scaled(noise, by: scheduler.initNoiseSigma)
        for (index, timestep) in timesteps.enumerated() {
            if let change = changes[index] { try change() }
            var input = try scheduler.scaleModelInput(current, timestep: timestep)
            if let channels, channels.shape[0] == batch { input = try Tensor.concatenatingChannels([input, channels]) }
            if guided { input = try Tensor.concatenatingBatch([input, input]) }
            if let channels, channels.shape[0] != batch { input = try Tensor.concatenatingChannels([input, channels]) }
            let timestepTensor = scheduler.timestepsAreIntegers
                ? try Tensor(shape: [modelBatch], int64s: Array(repeating: Int64(timestep), count: modelBatch))
                : try Tensor(shape: [modelBatch], floats: Array(repeating: Float(timestep), count: modelBatch))
            var prediction = try forward(conditioning.inputs(sample: input, timestep: timestepTensor))
            if guided {
                prediction = try applyGuidance(prediction, latentChannels: shape[1], scale: request.guidanceScale,
                                               conditionalFirst: conditioning.conditionalFirst)
            }
            let noise = try stepNoise.map { try slice($0, index: index, shape: shape) }
            current = try scheduler.step(modelOutput: prediction, timestep: timestep, sample: current, noise: noise)
            if let known {
                current = try known.blend(current, scheduler: scheduler,
                                          nextTimestep: index + 1 < timesteps.count ? timesteps[index + 1] : nil)
            }
            if let trajectory {
                (trajectory.bytes + index * current.byteCount).copyMemory(from: current.bytes, byteCount: current.byteCount)
            }
            if let progress = request.progress, !progress(index + 1, timesteps.count) {
                throw NodusError.cancelled("sampling cancelled by the progress callback after step \(index + 1) of \(timesteps.count)")
            }
        }
        return SamplingResult(final: current, trajectory: trajectory)
    }

    /// `latents * init_noise_sigma` as diffusers' `prepare_latents` (float32); the noise itself when sigma is 1.
    static func scaled(_ noise: Tensor, by sigma: Float) throws -> Tensor {
        guard sigma != 1 else { return noise }
        let result = try Tensor(zeros: noise.shape)
        let x = noise.floats, y = result.floats
        for index in 0..<noise.elementCount { y[index] = x[index] * sigma }
        return result
    }

    /// The model's forward in `context` (nil: its default context).
    static func forwarding(_ model: any DiffusionModel,
                           in context: RunContext?) throws -> ([String: Tensor]) throws -> Tensor {
        guard let context else { return model.forward }
        guard let contextual = model as? any ContextualModel else {
            throw NodusError.unsupported("a \(model.kind.name) model has no run contexts")
        }
        return { try contextual.forwardAll($0, in: context)[0] }
    }

    /// The adapter changes by step, checked before sampling starts.
    static func adapterChanges(_ schedule: [AdapterChange], model: any DiffusionModel, steps: Int,
                               context: RunContext?) throws -> [Int: () throws -> Void] {
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
            changes[change.step] = {
                if let context {
                    try lora.setAdapters(change.names, weights: change.weights, in: context)
                } else {
                    try lora.setAdapters(change.names, weights: change.weights)
                }
            }
        }
        return changes
    }

    /// The conditioning as float32, checked against the latent's batch and size: B rows shared by
    /// both guidance halves, or 2B rows (the model batch) under guidance.
    static func checkedConditioning(_ tensor: Tensor, latentShape: [Int], guided: Bool) throws -> Tensor {
        let batch = latentShape[0]
        guard tensor.rank == latentShape.count, tensor.shape[0] == batch || (guided && tensor.shape[0] == 2 * batch),
              tensor.shape[1] > 0, Array(tensor.shape[2...]) == Array(latentShape[2...]) else {
            let rows = guided ? "\(batch) or \(2 * batch) (one per model-batch row)" : "\(batch)"
            let sides = latentShape[2...].map(String.init).joined(separator: ", ")
            throw NodusError.shape("conditioning must be [\(rows), channels, \(sides)] like init_noise, got \(tensor.shape)")
        }
        return try tensor.finiteFloat32("conditioning")
    }

    /// The conditional half's prediction with guided latent channels:
    /// e_u + g (e_c - e_u); extra (variance) channels kept from the conditional half.
    static func applyGuidance(_ prediction: Tensor, latentChannels: Int, scale: Float,
                              conditionalFirst: Bool) throws -> Tensor {
        let shape = prediction.shape
        let batch = shape[0] / 2
        let plane = shape.dropFirst(2).reduce(1, *)
        let itemCount = shape[1] * plane
        let result = try Tensor(zeros: [batch] + shape.dropFirst())
        let conditionalHalf = prediction.floats + (conditionalFirst ? 0 : batch * itemCount)
        let unconditionalHalf = prediction.floats + (conditionalFirst ? batch * itemCount : 0)
        result.floats.update(from: conditionalHalf, count: batch * itemCount)
        let guided = latentChannels * plane
        for item in 0..<batch {
            let conditional = conditionalHalf + item * itemCount
            let unconditional = unconditionalHalf + item * itemCount
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
