import NodusCore

/// What to generate from a prompt (the C ABI's `nodus_generate_params`,
/// diffusers' `StableDiffusionPipeline.__call__` arguments).
public struct TextToImageRequest {
    public enum Output: Sendable {
        /// The final latents [N, C, H/8, W/8] (diffusers `output_type="latent"`).
        case latent
        /// Images float32 [N, H, W, 3] in [0, 1] (`output_type="np"`).
        case image
    }

    /// One prompt per batch row.
    public var prompts: [String]
    /// nil: the empty prompt for every row; one prompt: for every row; else one per row.
    public var negativePrompts: [String]?
    public var steps = 50
    /// Classifier-free guidance; 1 or less runs the UNet once per step without it.
    public var guidanceScale: Float = 7.5
    /// nil: the UNet's `sample_size` times the VAE's downscale (512 for SD-1.5).
    public var height: Int?
    public var width: Int?
    /// The seed of the one torch CPU generator every random draw comes from.
    public var seed: UInt64 = 0
    public var imagesPerPrompt = 1
    /// diffusers' `clip_skip` (applied to the prompts, not to the negative prompts, as diffusers does).
    public var clipSkip = 0
    public var output = Output.image
    /// Called after each step with (done, total); return false to cancel.
    public var progress: ((Int, Int) -> Bool)?
    /// img2img (diffusers' `StableDiffusionImg2ImgPipeline`): the starting images, float32
    /// [1 or N, H, W, 3] in [0, 1] (as `output_type="np"` returns them), which set the size.
    public var image: Tensor?
    /// img2img and inpainting: how much of the schedule runs (the last `Int(steps * strength)`
    /// timesteps). diffusers' default is 0.8 for img2img; inpainting callers usually pass 1.
    public var strength: Double = 0.8
    /// Inpainting (diffusers' `StableDiffusionInpaintPipeline`, with `image`): float32
    /// [1 or N, H, W] or [1 or N, H, W, 1], 1 (white, from 0.5 up) where the image is repainted.
    public var mask: Tensor?

    public init(prompts: [String]) { self.prompts = prompts }
}
