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

    /// The components LoRA adapters can change, by their folder names.
    public var adaptableModels: [(name: String, model: any AdaptableModel)] {
        [("unet", unet), ("text_encoder", textEncoder)]
    }

    /// diffusers' `pipeline.load_lora_weights`: the file's layers go to the UNet and
    /// the text encoder, each taking those that name its Linears.
    /// - Returns: each loading component's report.
    /// - Throws: `NodusError.invalidArgument` when no layer names a Linear of either; any
    ///   component's error. On failure no component changed.
    public func loadLoRA(path: String, adapterName: String) throws -> [String: LoRAReport] {
        let file = try LoRAFile.load(path: path, access: unet.lora.fileAccess)
        let targets = adaptableModels.filter { $0.model.lora.matchesAny(file) }
        guard !targets.isEmpty else {
            let examples = file.layers.prefix(3).map(\.module).joined(separator: ", ")
            throw NodusError.invalidArgument("LoRA '\(path)' matches no layer of the UNet or the text encoder (its layers: \(examples)\(file.layers.count > 3 ? ", …" : ""))")
        }
        var reports: [String: LoRAReport] = [:]
        do {
            for (name, model) in targets { reports[name] = try model.lora.load(file, adapterName: adapterName) }
        } catch {
            for (name, model) in targets where reports[name] != nil { try? model.lora.delete([adapterName]) }
            throw error
        }
        return reports
    }

    /// diffusers' `pipeline.set_adapters`: each component activates the names it holds.
    /// - Throws: `NodusError.invalidArgument` for a name no component holds; then nothing changed.
    public func setAdapters(_ names: [String], weights: [Float]) throws {
        guard names.count == weights.count else {
            throw NodusError.invalidArgument("\(names.count) adapter names but \(weights.count) weights")
        }
        let held = Set(adaptableModels.flatMap { $0.model.lora.adapterNames })
        if let unknown = names.first(where: { !held.contains($0) }) {
            throw NodusError.invalidArgument("no adapter named '\(unknown)' is loaded (loaded: \(held.sorted().joined(separator: ", ")))")
        }
        for (_, model) in adaptableModels {
            let own = Set(model.lora.adapterNames)
            let pairs = zip(names, weights).filter { own.contains($0.0) }
            try model.lora.setAdapters(pairs.map(\.0), weights: pairs.map(\.1))
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
        let decoded = try vae.decode(Self.divided(latents, by: Float(vae.settings.scalingFactor)))
        return try StableDiffusionPipeline.displayImages(decoded)
    }

    /// The image size: the starting image's, else the request's or the default.
    private func size(of request: TextToImageRequest) throws -> (height: Int, width: Int) {
        guard let image = request.image else { return (request.height ?? defaultSize, request.width ?? defaultSize) }
        guard image.rank == 4, image.shape[3] == 3, image.shape[0] > 0 else {
            throw NodusError.shape("the starting image must be [1 or N, height, width, 3] in [0, 1], got \(image.shape)")
        }
        if let height = request.height, let width = request.width, [height, width] != [image.shape[1], image.shape[2]] {
            throw NodusError.invalidArgument("height x width \(height) x \(width) differs from the starting image's \(image.shape[1]) x \(image.shape[2])")
        }
        return (image.shape[1], image.shape[2])
    }

    /// img2img: the starting images [1 or N, H, W, 3] in [0, 1] as [-1, 1] NCHW, encoded, sampled
    /// with the generator and times `scaling_factor`; one image is repeated over the batch.
    private func encodedImage(_ image: Tensor, batch: Int, generator: inout TorchGenerator) throws -> Tensor {
        try encodedPixels(StableDiffusionPipeline.modelImages(image.finiteFloat32("the starting image")), batch: batch,
                          generator: &generator)
    }

    /// `_encode_vae_image`: pixels [1 or N, 3, H, W] in [-1, 1] encoded, `latent_dist.sample(generator)`
    /// times `scaling_factor`, one image repeated over the batch.
    private func encodedPixels(_ pixels: Tensor, batch: Int, generator: inout TorchGenerator) throws -> Tensor {
        let count = pixels.shape[0]
        guard count == 1 || count == batch else {
            throw NodusError.invalidArgument("\(count) starting images for a batch of \(batch): give one, or one per image")
        }
        let draw = try generator.randn(shape: vae.encodedShape(forImage: pixels.shape))
        let latents = try vae.encodeLatent(pixels, noise: draw)
        return try StableDiffusionPipeline.repeatedBatch(latents, to: batch)
    }

    /// `StableDiffusionInpaintPipeline`'s latents and conditioning, with its draws in its order.
    private func inpaintingRequest(image: Tensor, mask: Tensor, strength: Double, batch: Int, latentShape: [Int],
                                   generator: inout TorchGenerator) throws -> SamplingRequest {
        let pixels = try StableDiffusionPipeline.modelImages(image.finiteFloat32("the starting image"))
        let masks = try StableDiffusionPipeline.binaryMasks(mask, size: [pixels.shape[2], pixels.shape[3]])
        guard masks.shape[0] == 1 || masks.shape[0] == batch else {
            throw NodusError.invalidArgument("\(masks.shape[0]) masks for a batch of \(batch): give one, or one per image")
        }
        let channels = unet.settings.inChannels, latentChannels = vae.settings.latentChannels
        let blending = channels == latentChannels
        guard blending || channels == 2 * latentChannels + 1 else {
            throw NodusError.unsupported("inpainting needs a UNet of \(latentChannels) channels (blending) or \(2 * latentChannels + 1) (an inpainting UNet: latent, mask, masked-image latent), not \(channels)")
        }
        // 1. The image's latents (blending, or a start part-way), the noise, the masked image's latents.
        let imageLatents = blending || strength < 1 ? try encodedPixels(pixels, batch: batch, generator: &generator) : nil
        var request = SamplingRequest(initNoise: try generator.randn(shape: latentShape))
        let keptPixels = try StableDiffusionPipeline.masked(pixels, by: masks)
        let maskedLatents = try encodedPixels(keptPixels, batch: batch, generator: &generator)
        let latentMask = try StableDiffusionPipeline.repeatedBatch(
            StableDiffusionPipeline.nearestResized(masks, to: [latentShape[2], latentShape[3]]), to: batch)
        // 2. A 4-channel UNet blends the known region back; an inpainting UNet sees mask and masked image.
        if blending {
            request.imageLatents = imageLatents
            request.mask = latentMask
        } else {
            request.conditioning = try Tensor.concatenatingChannels([latentMask, maskedLatents])
            request.imageLatents = imageLatents
        }
        request.strength = strength
        return request
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
            throw NodusError.invalidArgument("images per prompt must be in 1...1024, got \(request.imagesPerPrompt)")
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

    /// `tensor / divisor` in float32, as torch divides by a Python float.
    static func divided(_ tensor: Tensor, by divisor: Float) throws -> Tensor {
        let result = try Tensor(shape: tensor.shape, floats: tensor.floatArray())
        for index in 0..<result.elementCount { result.floats[index] /= divisor }
        return result
    }

    /// One item [1, ...] repeated to `batch` items (others pass through).
    static func repeatedBatch(_ tensor: Tensor, to batch: Int) throws -> Tensor {
        tensor.shape[0] == batch ? tensor : try Tensor.concatenatingBatch(Array(repeating: tensor, count: batch))
    }

    /// Masks [N, H, W] or [N, H, W, 1] as diffusers' mask processor makes them: [N, 1, H, W] of 1 where
    /// the mask is at least 0.5, else 0.
    static func binaryMasks(_ mask: Tensor, size: [Int]) throws -> Tensor {
        let values = try mask.finiteFloat32("the mask")
        let shape = values.shape
        guard (shape.count == 3 || (shape.count == 4 && shape[3] == 1)), shape[0] > 0,
              Array(shape[1...2]) == size else {
            throw NodusError.shape("the mask must be [1 or N, \(size[0]), \(size[1])] (or with a last axis of 1), the image's size, got \(shape)")
        }
        let result = try Tensor(zeros: [shape[0], 1, size[0], size[1]])
        for index in 0..<result.elementCount { result.floats[index] = values.floats[index] >= 0.5 ? 1 : 0 }
        return result
    }

    /// `image * (mask < 0.5)`: the pixels to keep, 0 (mid gray) where the mask repaints.
    static func masked(_ pixels: Tensor, by masks: Tensor) throws -> Tensor {
        let (count, channels, height, width) = (pixels.shape[0], pixels.shape[1], pixels.shape[2], pixels.shape[3])
        let items = max(count, masks.shape[0])
        let result = try Tensor(zeros: [items, channels, height, width])
        let plane = height * width
        for item in 0..<items {
            let source = pixels.floats + (count == 1 ? 0 : item) * channels * plane
            let mask = masks.floats + (masks.shape[0] == 1 ? 0 : item) * plane
            for channel in 0..<channels {
                for pixel in 0..<plane {
                    result.floats[(item * channels + channel) * plane + pixel] = mask[pixel] < 0.5
                        ? source[channel * plane + pixel] : 0
                }
            }
        }
        return result
    }

    /// torch's `interpolate(mask, size=...)` (mode "nearest"): [N, 1, H, W] -> [N, 1, h, w].
    static func nearestResized(_ masks: Tensor, to size: [Int]) throws -> Tensor {
        let (count, height, width) = (masks.shape[0], masks.shape[2], masks.shape[3])
        let result = try Tensor(zeros: [count, 1, size[0], size[1]])
        let rowScale = Float(height) / Float(size[0]), columnScale = Float(width) / Float(size[1])
        for item in 0..<count {
            for row in 0..<size[0] {
                let sourceRow = min(Int((Float(row) * rowScale).rounded(.down)), height - 1)
                for column in 0..<size[1] {
                    let sourceColumn = min(Int((Float(column) * columnScale).rounded(.down)), width - 1)
                    result.floats[(item * size[0] + row) * size[1] + column] =
                        masks.floats[(item * height + sourceRow) * width + sourceColumn]
                }
            }
        }
        return result
    }

    /// [N, H, W, 3] in [0, 1] -> [N, 3, H, W] of `2 x - 1` (diffusers' `VaeImageProcessor.preprocess`).
    static func modelImages(_ images: Tensor) throws -> Tensor {
        let (batch, height, width, channels) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let result = try Tensor(zeros: [batch, channels, height, width])
        let source = images.floats, target = result.floats
        for item in 0..<batch {
            for pixel in 0..<(height * width) {
                for channel in 0..<channels {
                    target[(item * channels + channel) * height * width + pixel] =
                        2 * source[(item * height * width + pixel) * channels + channel] - 1
                }
            }
        }
        return result
    }

    /// [N, 3, H, W] in about [-1, 1] -> [N, H, W, 3] of `(x / 2 + 0.5).clamp(0, 1)`.
    static func displayImages(_ decoded: Tensor) throws -> Tensor {
        let (batch, channels, height, width) = (decoded.shape[0], decoded.shape[1], decoded.shape[2], decoded.shape[3])
        let images = try Tensor(zeros: [batch, height, width, channels])
        let source = decoded.floats, target = images.floats
        for item in 0..<batch {
            for channel in 0..<channels {
                for pixel in 0..<(height * width) {
                    let value = source[(item * channels + channel) * height * width + pixel] / 2 + 0.5
                    target[(item * height * width + pixel) * channels + channel] = min(max(value, 0), 1)
                }
            }
        }
        return images
    }
}
