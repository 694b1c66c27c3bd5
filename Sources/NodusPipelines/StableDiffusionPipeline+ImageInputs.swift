import NodusCore
import NodusModels

/// img2img and inpainting: the starting image, the mask, and their latents, drawn as diffusers draws them.
extension StableDiffusionPipeline {
    /// The image size: the starting image's, else the request's or the default.
    func size(of request: TextToImageRequest) throws -> (height: Int, width: Int) {
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
    func encodedImage(_ image: Tensor, batch: Int, generator: inout TorchGenerator) throws -> Tensor {
        try encodedPixels(ImageProcessor.modelImages(image.finiteFloat32("the starting image")), batch: batch,
                          generator: &generator)
    }

    /// `_encode_vae_image`: pixels [1 or N, 3, H, W] in [-1, 1] encoded, `latent_dist.sample(generator)`
    /// times `scaling_factor`, one image repeated over the batch.
    func encodedPixels(_ pixels: Tensor, batch: Int, generator: inout TorchGenerator) throws -> Tensor {
        let count = pixels.shape[0]
        guard count == 1 || count == batch else {
            throw NodusError.invalidArgument("\(count) starting images for a batch of \(batch): give one, or one per image")
        }
        let draw = try generator.randn(shape: vae.encodedShape(forImage: pixels.shape))
        let latents = try vae.encodeLatent(pixels, noise: draw)
        return try ImageProcessor.repeatedBatch(latents, to: batch)
    }

    /// `StableDiffusionInpaintPipeline`'s latents and conditioning, with its draws in its order.
    func inpaintingRequest(image: Tensor, mask: Tensor, strength: Double, batch: Int, latentShape: [Int],
                                   generator: inout TorchGenerator) throws -> SamplingRequest {
        let pixels = try ImageProcessor.modelImages(image.finiteFloat32("the starting image"))
        let masks = try ImageProcessor.binaryMasks(mask, size: [pixels.shape[2], pixels.shape[3]])
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
        let keptPixels = try ImageProcessor.masked(pixels, by: masks)
        let maskedLatents = try encodedPixels(keptPixels, batch: batch, generator: &generator)
        let latentMask = try ImageProcessor.repeatedBatch(
            ImageProcessor.nearestResized(masks, to: [latentShape[2], latentShape[3]]), to: batch)
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
}
