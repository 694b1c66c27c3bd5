import NodusCore
import NodusModels

/// What to sample (the C ABI's `nodus_sample_params`).
public struct SamplingRequest {
    public var steps: Int = 50
    /// Classifier-free guidance scale; 1 or less runs the model without guidance.
    public var guidanceScale: Float = 4.0
    /// The starting noise [B, C, H, W], unscaled: the run multiplies it by the scheduler's
    /// initNoiseSigma, as diffusers' `prepare_latents` does; with `imageLatents`, the noise the
    /// pipelines add to the image (see `imageLatents`).
    public var initNoise: Tensor
    /// DiT class labels: B labels (the null class is added for guidance) or 2B labels [cond..., null...].
    public var classLabels: [Int64] = []
    /// UNet context [N, L, W] (SD order): with guidance N = 2B as [uncond..., cond...], or N = 2
    /// (one uncond, one cond row shared by the batch); without, N = B or 1 (cond only).
    public var encoderHiddenStates: Tensor?
    /// img2img / inpainting: the image's latent [B, C, H, W] (already times the VAE's scaling
    /// factor). The run starts at `add_noise(imageLatents, initNoise, t_start)`, or at
    /// `initNoise * initNoiseSigma` when inpainting (`mask`) with strength 1, as diffusers'
    /// img2img and inpainting pipelines do.
    public var imageLatents: Tensor?
    /// How much of the schedule runs with `imageLatents` (diffusers `strength`): the last
    /// `Int(steps * strength)` timesteps.
    public var strength: Double = 1
    /// Latent-blending inpainting for models without mask channels: [B or 1, 1, H, W], 1 where
    /// the latent is generated; after every step the rest is `imageLatents` noised to the next timestep.
    public var mask: Tensor?
    /// Noise for steps that draw it (DDPM, Euler ancestral, LCM, SDE DPM-Solver):
    /// [timesteps, B, C, H, W], one per timestep that runs.
    public var stepNoise: Tensor?
    public var recordTrajectory = false
    /// Called after each step with (done, total); return false to cancel.
    public var progress: ((Int, Int) -> Bool)?
    /// LoRA per step: before step `step` runs, `adapters` become the active set.
    public var adapterSchedule: [AdapterChange] = []
    /// Channels concatenated after the noisy latent at every step, [B, C', H, W]
    /// (a mask and a masked-image latent for inpainting-style models).
    public var conditioning: Tensor?
    /// The run context the model runs in (its arenas, threads and adapter strengths; the adapter
    /// schedule changes its strengths); nil: the model's default context.
    public var context: RunContext?

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
