import NodusCore
import NodusFormats
import NodusModels

/// diffusers' `StableDiffusionPipeline` from a pipeline folder: prompt to
/// latents to images with the folder's tokenizer, CLIP text encoder, UNet,
/// scheduler and VAE.
///
/// Matches diffusers 0.42 `StableDiffusionPipeline.__call__`: prompts padded
/// and truncated to the tokenizer's `model_max_length`; `encode_prompt` with
/// `clip_skip` on the prompts only; the empty prompt as the default negative
/// prompt; each prompt's embeddings repeated `num_images_per_prompt` times;
/// classifier-free guidance on [negative..., positive...] when
/// `guidance_scale` > 1; initial latents `torch.randn([N, C, H/8, W/8],
/// generator)` times `init_noise_sigma`; every stochastic step's noise drawn
/// from the same generator, in order; `vae.decode(latents / scaling_factor)`
/// and `(image / 2 + 0.5).clamp(0, 1)`. A seed reproduces diffusers' images
/// for `generator=torch.Generator("cpu").manual_seed(seed)`. With a starting
/// image it is `StableDiffusionImg2ImgPipeline`: the image (in [0, 1]) mapped
/// to [-1, 1] and encoded, `latent_dist.sample(generator)` times
/// `scaling_factor`, noised with a second draw to the first of the last
/// `Int(steps * strength)` timesteps, which then run. With a mask too it is
/// `StableDiffusionInpaintPipeline`: the mask binarized at 0.5 and resized
/// (nearest) to the latents; the masked image (`image * (mask < 0.5)`)
/// encoded; a 9-channel inpainting UNet takes [latent, mask, masked-image
/// latent] at every step, a 4-channel one runs with the known region blended
/// back after every step; the draws in diffusers' order (image latents when
/// blending or strength < 1, then the noise, then the masked image's latents).
///
/// Limitations: no safety checker (as diffusers with `safety_checker=None`);
/// no `prompt_embeds`, `guidance_rescale`, `timesteps` / `sigmas` lists or
/// IP-adapters; the text encoder runs without an attention mask (SD-1.x / 2.x
/// text encoders do not use one).
public final class StableDiffusionPipeline {
    public let folder: PipelineFolder
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNetModel
    public let vae: AutoencoderKLModel
    /// The folder's scheduler, or the one a caller swapped in.
    public var scheduler: any Scheduler

    /// Loads every component of `directory` with `options`.
    public init(directory: String, options: ModelOptions = ModelOptions()) throws {
        let folder = try PipelineFolder(directory: directory)
        self.folder = folder
        tokenizer = try CLIPTokenizer.load(path: folder.path(of: "tokenizer"))
        func load<Model>(_ name: String, as type: Model.Type) throws -> Model {
            let model = try ModelLoader.load(path: folder.path(of: name), options: options)
            guard let typed = model as? Model else {
                throw NodusError.format("'\(folder.path(of: name))': expected a \(folder.components[name] ?? name), found a \(model.kind.name) model")
            }
            return typed
        }
        textEncoder = try load("text_encoder", as: CLIPTextModel.self)
        unet = try load("unet", as: UNetModel.self)
        vae = try load("vae", as: AutoencoderKLModel.self)
        scheduler = try SchedulerFactory.load(path: folder.path(of: "scheduler"))
        guard textEncoder.settings.hiddenWidth == unet.contextWidth else {
            throw NodusError.format("'\(directory)': the text encoder's width \(textEncoder.settings.hiddenWidth) is not the UNet's cross_attention_dim \(unet.contextWidth)")
        }
    }

    /// The image side the UNet was trained for (`sample_size` times the VAE's downscale).
    public var defaultSize: Int { unet.settings.sampleSize * vae.settings.downscale }

    /// Runs the pipeline: latents [N, C, H/8, W/8], or images [N, H, W, 3] in [0, 1].
    /// - Throws: `NodusError.invalidArgument` for sizes that are not multiples of 8, empty
    ///   prompts lists or mismatched negative prompts; `.cancelled` when `progress` says stop;
    ///   the components' errors.
    public func generate(_ request: TextToImageRequest) throws -> Tensor {
        _ = try outputShape(for: request)
        let (height, width) = try size(of: request)
        let downscale = vae.settings.downscale
        let negatives = try negativePrompts(request)
        let guided = request.guidanceScale > 1
        let batch = request.prompts.count * request.imagesPerPrompt

        // 1. Prompt embeddings, each repeated per image: [negative..., positive...] under guidance.
        let positive = try repeated(encode(request.prompts, clipSkip: request.clipSkip), times: request.imagesPerPrompt)
        var context = positive
        if guided {
            let negative = try repeated(encode(negatives, clipSkip: 0), times: request.imagesPerPrompt)
            context = try Tensor.concatenatingBatch([negative, positive])
        }

        // 2. The initial latents (img2img: the image's sampled latent first), then every stochastic
        //    step's noise, from one generator stream.
        var generator = TorchGenerator(seed: request.seed)
        let latentShape = [batch, vae.settings.latentChannels, height / downscale, width / downscale]
        var sampling: SamplingRequest
        if let image = request.image, let mask = request.mask {
            sampling = try inpaintingRequest(image: image, mask: mask, strength: request.strength, batch: batch,
                                             latentShape: latentShape, generator: &generator)
        } else {
            let imageLatents = try request.image.map { try encodedImage($0, batch: batch, generator: &generator) }
            // The sampler multiplies the noise by init_noise_sigma, or (img2img) adds it to the image's latents.
            sampling = SamplingRequest(initNoise: try generator.randn(shape: latentShape))
            if let imageLatents {
                sampling.imageLatents = imageLatents
                sampling.strength = request.strength
            }
        }
        sampling.steps = request.steps
        sampling.guidanceScale = request.guidanceScale
        sampling.encoderHiddenStates = context
        sampling.progress = request.progress
        var probe = scheduler
        let stepCount = try GuidedSampler.timesteps(for: sampling, scheduler: &probe).count
        if scheduler.drawsStepNoise {
            // diffusers draws each step's noise inside `step`, one draw per step (torch fills a draw whose
            // size is not a multiple of 16 differently from a part of a larger one), nothing between them.
            let draws = try (0..<stepCount).map { _ in try generator.randn(shape: latentShape) }
            sampling.stepNoise = try Tensor.concatenatingBatch(draws).reshaped([stepCount] + latentShape)
        }
        var running = scheduler
        let latents = try GuidedSampler.run(model: unet, scheduler: &running, request: sampling).final
        if request.output == .latent { return latents }

        // 3. Decode and map [-1, 1] to [0, 1], as channels-last images.
        let decoded = try vae.decode(ImageProcessor.divided(latents, by: Float(vae.settings.scalingFactor)))
        return try ImageProcessor.displayImages(decoded)
    }

    /// The shape `generate` returns for `request`, after checking its sizes and counts.
    public func outputShape(for request: TextToImageRequest) throws -> [Int] {
        let (height, width) = try size(of: request)
        let downscale = vae.settings.downscale
        guard height > 0, width > 0, height <= 1 << 14, width <= 1 << 14, height % 8 == 0, width % 8 == 0,
              height % downscale == 0, width % downscale == 0 else {
            throw NodusError.invalidArgument("height and width must be positive multiples of 8 (and of the VAE's downscale \(downscale)) up to 16384, got \(height) x \(width)")
        }
        guard !request.prompts.isEmpty else { throw NodusError.invalidArgument("give at least one prompt") }
        guard (1...1024).contains(request.imagesPerPrompt) else {
            throw NodusError.invalidArgument("images_per_prompt must be in 1...1024, got \(request.imagesPerPrompt)")
        }
        guard request.steps >= 1, request.steps <= 10_000 else {
            throw NodusError.invalidArgument("steps must be in 1...10000, got \(request.steps)")
        }
        guard request.guidanceScale.isFinite else { throw NodusError.invalidArgument("guidance_scale must be finite") }
        guard request.image == nil || (0...1).contains(request.strength) else {
            throw NodusError.invalidArgument("strength must be in [0, 1], got \(request.strength)")
        }
        guard request.mask == nil || request.image != nil else {
            throw NodusError.invalidArgument("a mask needs the image to inpaint")
        }
        guard request.clipSkip >= 0, request.clipSkip < textEncoder.settings.layers else {
            throw NodusError.invalidArgument("clip_skip must be in 0..<\(textEncoder.settings.layers), got \(request.clipSkip)")
        }
        let count = request.prompts.count * request.imagesPerPrompt
        switch request.output {
        case .latent: return [count, vae.settings.latentChannels, height / downscale, width / downscale]
        case .image: return [count, height, width, 3]
        }
    }

    /// Token ids of `prompts` through the text encoder: [prompts, tokens, width].
    private func encode(_ prompts: [String], clipSkip: Int) throws -> Tensor {
        let length = tokenizer.configuration.modelMaxLength
        var ids: [Int64] = []
        for prompt in prompts {
            ids += try tokenizer.encodePadded(prompt, length: length).map(Int64.init)
        }
        var inputs = ["input_ids": try Tensor(shape: [prompts.count, length], int64s: ids)]
        if clipSkip > 0 { inputs["clip_skip"] = try Tensor(shape: [], int64s: [Int64(clipSkip)]) }
        return try textEncoder.forward(inputs)
    }

    /// The negative prompt of every prompt, as diffusers' `encode_prompt` pairs them.
    private func negativePrompts(_ request: TextToImageRequest) throws -> [String] {
        guard let negatives = request.negativePrompts else { return Array(repeating: "", count: request.prompts.count) }
        if negatives.count == 1 { return Array(repeating: negatives[0], count: request.prompts.count) }
        guard negatives.count == request.prompts.count else {
            throw NodusError.invalidArgument("\(negatives.count) negative prompts for \(request.prompts.count) prompts: give one, or one per prompt")
        }
        return negatives
    }

    /// Each row of [R, ...] `times` times in a row: [R * times, ...] (diffusers' `repeat(1, n, 1)`).
    private func repeated(_ tensor: Tensor, times: Int) throws -> Tensor {
        guard times > 1 else { return tensor }
        let rowCount = tensor.elementCount / tensor.shape[0]
        let result = try Tensor(zeros: [tensor.shape[0] * times] + tensor.shape.dropFirst())
        for row in 0..<tensor.shape[0] {
            for copy in 0..<times {
                (result.floats + (row * times + copy) * rowCount).update(from: tensor.floats + row * rowCount,
                                                                          count: rowCount)
            }
        }
        return result
    }
}
