import NodusCore

/// The known image of img2img and inpainting runs, as diffusers'
/// `StableDiffusionImg2ImgPipeline` and `StableDiffusionInpaintPipeline` use
/// it: where the run starts (`get_timesteps`, `prepare_latents`) and, for
/// models without mask channels, the blend that keeps the known region.
struct KnownImage {
    /// The image's latent [B, C, H, W], already times the VAE's scaling factor.
    let latents: Tensor
    /// The noise the pipelines draw once, [B, C, H, W].
    let noise: Tensor
    /// [B or 1, 1, H, W], 1 where the latent is generated; nil for img2img.
    let mask: Tensor?

    init(latents: Tensor, noise: Tensor, mask: Tensor?) throws {
        let shape = noise.shape
        guard latents.shape == shape else {
            throw NodusError.shape("image_latents must have init_noise's shape \(shape), got \(latents.shape)")
        }
        self.latents = try latents.finiteFloat32("image_latents")
        self.noise = noise
        if let mask {
            guard mask.rank == 4, [1, shape[0]].contains(mask.shape[0]), mask.shape[1] == 1,
                  Array(mask.shape[2...]) == Array(shape[2...]) else {
                throw NodusError.shape("mask must be [\(shape[0]) or 1, 1, \(shape[2]), \(shape[3])] (latent size), got \(mask.shape)")
            }
            self.mask = try mask.finiteFloat32("mask")
        } else {
            self.mask = nil
        }
    }

    /// diffusers `get_timesteps`: the index of the first timestep that runs.
    static func startIndex(steps: Int, strength: Double) throws -> Int {
        guard strength >= 0, strength <= 1 else {
            throw NodusError.invalidArgument("strength must be in [0, 1], got \(strength)")
        }
        let initTimestep = min(Int(Double(steps) * strength), steps)
        return max(steps - initTimestep, 0)
    }

    /// The first latent: the image noised to the first timestep, or pure noise
    /// for inpainting at full strength (diffusers' `is_strength_max`).
    func startLatent(scheduler: any Scheduler, timestep: Double, strength: Double) throws -> Tensor {
        if mask != nil && strength == 1 {
            let sigma = scheduler.initNoiseSigma
            let result = try Tensor(zeros: noise.shape)
            for index in 0..<noise.elementCount { result.floats[index] = noise.floats[index] * sigma }
            return result
        }
        return try scheduler.addNoise(to: latents, noise: noise, timestep: timestep)
    }

    /// After a step: (1 - mask) known + mask latent, the known part noised to the
    /// next timestep (or clean after the last step). Without a mask: the latent.
    func blend(_ latent: Tensor, scheduler: any Scheduler, nextTimestep: Double?) throws -> Tensor {
        guard let mask else { return latent }
        let known = try nextTimestep.map { try scheduler.addNoise(to: latents, noise: noise, timestep: $0) } ?? latents
        let result = try Tensor(zeros: latent.shape)
        let plane = latent.shape[2] * latent.shape[3], channels = latent.shape[1]
        let m = mask.floats, k = known.floats, x = latent.floats, y = result.floats
        for item in 0..<latent.shape[0] {
            let maskPlane = m + (mask.shape[0] == 1 ? 0 : item * plane)
            for channel in 0..<channels {
                let offset = (item * channels + channel) * plane
                for index in 0..<plane {
                    let weight = maskPlane[index]
                    let kept = (1 - weight) * k[offset + index], generated = weight * x[offset + index]
                    y[offset + index] = kept + generated
                }
            }
        }
        return result
    }
}
