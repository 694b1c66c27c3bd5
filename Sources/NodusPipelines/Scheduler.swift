import NodusCore

/// A diffusion sampler: the interchangeable part that turns a model output into
/// the next, less noisy sample. One conforming `struct` per diffusers class
/// (`DDIMScheduler`, `EulerDiscreteScheduler`, `PNDMScheduler`, ...; the list is
/// `SchedulerFactory.classNames`), made from a `scheduler_config.json` by
/// `SchedulerFactory`.
///
/// Use: `setTimesteps(count)`, then for each `t` in `timesteps` run the model on
/// `scaleModelInput(sample, timestep: t)` and call `step`. Where diffusers draws
/// random noise inside `step`, the caller passes it as `noise` (one tensor of the
/// sample's shape per step), so runs are reproducible. Multistep schedulers
/// (DPM-Solver, UniPC, LMS, PNDM, Heun) keep past model outputs in the value;
/// `setTimesteps` resets them.
public protocol Scheduler {
    /// The diffusers class name this scheduler matches ("DDIMScheduler", ...).
    var className: String { get }
    /// Timesteps of the current schedule, as float64 (integers for DDIM/DDPM, float32 values sigma*1000 for flow matching).
    var timesteps: [Double] { get }
    /// True when the model takes int64 timesteps (DDIM, DDPM); false for float timesteps (flow matching).
    var timestepsAreIntegers: Bool { get }
    /// diffusers `init_noise_sigma`: the standard deviation of the starting noise
    /// (after `setTimesteps`; sigma-based schedulers derive it from their sigmas).
    var initNoiseSigma: Float { get }
    /// Whether `step` uses noise that diffusers draws inside it (`randn_tensor` of the sample's
    /// shape, one per step): pipelines then draw it from their generator, in step order.
    var drawsStepNoise: Bool { get }
    /// diffusers' class attribute `order`: model calls per inference step (2 for Heun),
    /// by which img2img pipelines multiply their start index.
    var order: Int { get }
    mutating func setTimesteps(_ count: Int, mu: Double?) throws
    /// `setTimesteps(count, mu:)` for a latent of `spatialSize` elements per channel (depth x height
    /// x width): what MONAI's `RFlowScheduler.set_timesteps` calls `input_img_size_numel`, for the
    /// flow-matching schedulers' voxel-count shift; the others ignore it.
    mutating func setTimesteps(_ count: Int, mu: Double?, spatialSize: Int?) throws
    func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor
    /// One denoising step; `modelOutput` is [B, C or 2C, ...], `sample` [B, C, ...]; returns prev_sample.
    mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, noise: Tensor?) throws -> Tensor
    /// `original` noised to `timestep` (diffusers `add_noise`; `scale_noise` for flow matching),
    /// as img2img and inpainting pipelines start and blend.
    func addNoise(to original: Tensor, noise: Tensor, timestep: Double) throws -> Tensor
    /// diffusers `set_begin_index`: the first step after `setTimesteps` is schedule entry `index`
    /// (img2img with strength starts part-way).
    mutating func setBeginIndex(_ index: Int)
}

extension Scheduler {
    /// The identity, as diffusers' `scale_model_input` of DDIM, DDPM, PNDM, DPM-Solver, UniPC and LCM.
    public func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    /// Deterministic steps.
    public var drawsStepNoise: Bool { false }
    /// One model call per step.
    public var order: Int { 1 }

    /// Schedulers that find their place by the timestep value need no begin index.
    public mutating func setBeginIndex(_ index: Int) {}

    /// Schedules that do not depend on the latent's size.
    public mutating func setTimesteps(_ count: Int, mu: Double?, spatialSize: Int?) throws {
        try setTimesteps(count, mu: mu)
    }

    /// `setTimesteps(count, mu: nil)`.
    public mutating func setTimesteps(_ count: Int) throws {
        try setTimesteps(count, mu: nil)
    }

    /// Checks and converts the tensors `step` receives.
    ///
    /// - Returns: float32 views/copies of `sample` and `noise`, the first `C`
    ///   channels of `modelOutput` as a contiguous float32 tensor of the sample's
    ///   shape, and the other `C` channels (the learned variance) when
    ///   `modelOutput` has `2C` channels.
    /// - Throws: `NodusError.shape` when the shapes do not fit together.
    static func stepInputs(modelOutput: Tensor, sample: Tensor, noise: Tensor?)
        throws -> (modelOutput: Tensor, extra: Tensor?, sample: Tensor, noise: Tensor?)
    {
        let shape = sample.shape
        guard shape.count >= 2 else {
            throw NodusError.shape("scheduler step: sample must be [batch, channels, ...], got shape \(shape)")
        }
        guard modelOutput.rank == shape.count, modelOutput.shape[0] == shape[0],
              Array(modelOutput.shape[2...]) == Array(shape[2...]),
              modelOutput.shape[1] == shape[1] || modelOutput.shape[1] == 2 * shape[1]
        else {
            throw NodusError.shape(
                "scheduler step: model output shape \(modelOutput.shape) does not match sample shape \(shape) "
                    + "(expected the same shape, or twice the channels)")
        }
        if let noise, noise.shape != shape {
            throw NodusError.shape("scheduler step: noise shape \(noise.shape) does not match sample shape \(shape)")
        }
        let floatSample = try sample.asFloat32()
        let floatNoise = try noise?.asFloat32()
        let output = try modelOutput.asFloat32()
        guard output.shape[1] != shape[1] else { return (output, nil, floatSample, floatNoise) }

        // [B, 2C, ...]: per batch item, the first C*S values are the prediction, the next C*S the variance.
        let main = try Tensor(zeros: shape)
        let extra = try Tensor(zeros: shape)
        let batch = shape[0]
        let itemCount = sample.elementCount / max(batch, 1)
        let source = output.floats
        for item in 0..<batch {
            (main.floats + item * itemCount).update(from: source + 2 * item * itemCount, count: itemCount)
            (extra.floats + item * itemCount).update(from: source + (2 * item + 1) * itemCount, count: itemCount)
        }
        return (main, extra, floatSample, floatNoise)
    }

    /// The timestep as an integer, and its index into the training schedule.
    ///
    /// Negative timesteps down to `-trainTimesteps` index from the end, as torch
    /// indexing does: numpy's float `arange` makes diffusers' "trailing" spacing end
    /// with -1 for some step counts (1000 training steps, 61 inference steps), and
    /// diffusers then reads `alphas_cumprod[-1]`.
    /// - Throws: `NodusError.invalidArgument` when it is not an integer in `-trainTimesteps..<trainTimesteps`.
    static func integerTimestep(_ timestep: Double, trainTimesteps: Int, className: String)
        throws -> (value: Int, index: Int)
    {
        guard timestep.rounded() == timestep, timestep >= -Double(trainTimesteps), timestep < Double(trainTimesteps) else {
            throw NodusError.invalidArgument(
                "\(className).step: timestep \(timestep) is not an integer in 0..<\(trainTimesteps)")
        }
        let value = Int(timestep)
        return (value, value < 0 ? value + trainTimesteps : value)
    }

    /// Checks that `original` and `noise` fit for `addNoise`, as float32.
    static func noiseInputs(_ original: Tensor, _ noise: Tensor) throws -> (original: Tensor, noise: Tensor) {
        guard original.shape == noise.shape else {
            throw NodusError.shape("add_noise: noise shape \(noise.shape) does not match sample shape \(original.shape)")
        }
        return (try original.asFloat32(), try noise.asFloat32())
    }

    /// A float32 copy that a multistep scheduler can keep beyond the call.
    static func copied(_ tensor: Tensor) throws -> Tensor {
        try Tensor(shape: tensor.shape, floats: tensor.floatArray())
    }

    /// The error for a step that needs caller noise and got none.
    static func missingNoise(className: String, timestep: Double) -> NodusError {
        let shown = timestep.rounded() == timestep ? String(Int(timestep)) : String(timestep)
        return NodusError.invalidArgument(
            "\(className).step at timestep \(shown) needs noise: pass a noise tensor of the sample's shape")
    }
}
