import NodusCore
import NodusModels

/// What to sample (the C ABI's `nodus_sample_params`).
public struct SamplingRequest {
    public var steps: Int = 50
    public var guidanceScale: Float = 4.0
    /// The starting latent [B, C, H, W], already scaled by the scheduler's initNoiseSigma.
    public var initNoise: Tensor
    /// DiT class labels: B labels (the null class is added) or 2B labels [cond..., null...].
    public var classLabels: [Int64] = []
    /// Noise for steps that draw it (DDPM): [steps, B, C, H, W].
    public var stepNoise: Tensor?
    public var recordTrajectory = false
    /// Called after each step with (done, total); return false to cancel.
    public var progress: ((Int, Int) -> Bool)?

    public init(initNoise: Tensor) { self.initNoise = initNoise }
}

public struct SamplingResult {
    /// The final latent [B, C, H, W].
    public var final: Tensor
    /// The latent after every step, [steps, B, C, H, W], when requested.
    public var trajectory: Tensor?
}

/// The denoising loop of diffusers' pipelines with classifier-free guidance.
public enum GuidedSampler {
    public static func run(model: any DiffusionModel, scheduler: inout any Scheduler,
                           request: SamplingRequest) throws -> SamplingResult {
        throw NodusError.unsupported("TODO(lead): sampling")
    }
}
