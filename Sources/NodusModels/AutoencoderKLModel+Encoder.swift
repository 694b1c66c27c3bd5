import NodusCore
import NodusGraph

/// Encoding: diffusers 0.42 `AutoencoderKL.encode(x).latent_dist`. The
/// `Encoder` (conv_in; `DownEncoderBlock2D`s of layers_per_block resnets, each
/// but the last followed by a `Downsample2D` that pads (0, 1, 0, 1) and
/// convolves with stride 2; the mid block; GroupNorm + SiLU; conv_out to
/// 2 * latent_channels), `quant_conv` when `use_quant_conv`, then the
/// `DiagonalGaussian` of the moments.
extension AutoencoderKLModel: LatentEncoder {
    public func encodedShape(forImage shape: [Int]) throws -> [Int] {
        if let encoderProblem { throw encoderProblem }
        let config = settings
        guard shape.count == 4, shape[0] > 0, shape[1] == config.inChannels, shape[2] > 0, shape[3] > 0,
              shape[2] % config.downscale == 0, shape[3] % config.downscale == 0 else {
            throw NodusError.shape(
                "image must be [batch, \(config.inChannels), height, width] with height and width multiples of \(config.downscale), got \(shape)")
        }
        return [shape[0], config.latentChannels, shape[2] / config.downscale, shape[3] / config.downscale]
    }

    public func encode(_ image: Tensor) throws -> DiagonalGaussian {
        try encode(image, in: defaultContext)
    }

    /// `encode` in `context`: its plans, threads and memory budget.
    public func encode(_ image: Tensor, in context: RunContext) throws -> DiagonalGaussian {
        let expected = try encodedShape(forImage: image.shape)
        let x = try ModelInputs(["image": image], known: ["image"])
            .image("image", channels: settings.inChannels, multiple: settings.downscale)
        let moments = try context.run(structure: structure) { plans in
            if let tiling, tiling.tilesImage(x.shape) {
                return try tiledEncode(x, tiling: tiling, budget: context.settings.memoryBudget)
            }
            let executable = try plans.executable(for: x.shape, graph: Self.encoderGraph) {
                try buildEncoder(imageShape: x.shape)
            }
            return try executable.run(["image": x])
        }
        let posterior = try DiagonalGaussian(moments: moments)
        guard posterior.mean.shape == expected else {
            throw NodusError(.internal, "encoding \(x.shape) gave a latent \(posterior.mean.shape), expected \(expected)")
        }
        return posterior
    }

    public func encodeLatent(_ image: Tensor, noise: Tensor?) throws -> Tensor {
        try encodeLatent(image, noise: noise, in: defaultContext)
    }

    /// `encodeLatent` in `context`.
    public func encodeLatent(_ image: Tensor, noise: Tensor?, in context: RunContext) throws -> Tensor {
        let expected = try encodedShape(forImage: image.shape)
        let draw = try noise.map { noise -> Tensor in
            guard noise.shape == expected else {
                throw NodusError.shape("noise must have the latent's shape \(expected), got \(noise.shape)")
            }
            return try ModelInputs(["noise": noise], known: ["noise"])
                .image("noise", channels: settings.latentChannels, multiple: 1)
        }
        let sample = try encode(image, in: context).sample(noise: draw)
        let latent = try Tensor(zeros: sample.shape)
        let scale = Float(settings.scalingFactor), shift = Float(settings.shiftFactor ?? 0)
        for index in 0..<latent.elementCount {
            latent.floats[index] = (sample.floats[index] - shift) * scale
        }
        return latent
    }

    /// The encode graph for one image shape: its output is the moments [B, 2C, h, w].
    func buildEncoder(imageShape: [Int]) throws -> Graph {
        let config = settings
        var builder = WeightedGraphBuilder(weights: weights, groups: config.groups)
        var x = builder.graph.input("image", shape: imageShape)
        x = try builder.conv(x, "encoder.conv_in", outChannels: config.blockOutChannels[0], kernel: 3)
        for (index, channels) in config.blockOutChannels.enumerated() {
            let block = "encoder.down_blocks.\(index)"
            for layer in 0..<config.layersPerBlock {
                x = try builder.resnet(x, "\(block).resnets.\(layer)", outChannels: channels)
            }
            if index < config.blockOutChannels.count - 1 {
                x = try builder.downsample(x, "\(block).downsamplers.0", padding: 0)
            }
        }
        x = try builder.midBlock(x, "encoder.mid_block", attention: config.midBlockAttention)
        x = try builder.groupNorm(x, "encoder.conv_norm_out", silu: true)
        x = try builder.conv(x, "encoder.conv_out", outChannels: 2 * config.latentChannels, kernel: 3)
        if config.useQuantConv {
            x = try builder.conv(x, "quant_conv", outChannels: 2 * config.latentChannels, kernel: 1)
        }
        builder.graph.setOutput(x)
        return builder.graph.finish()
    }

    /// Why this folder cannot encode, or nil: no encoder weights at all (a
    /// decoder-only export), an unsupported down block, or a broken encoder
    /// (checked by building its graph once, which reads every weight).
    func encoderAvailability() -> NodusError? {
        let config = settings
        let prefix = "'\(directory)' cannot encode"
        guard weights.source.names.contains(where: { $0.hasPrefix("encoder.") }) else {
            return .unsupported("\(prefix): it has no encoder weights (a decoder-only export); it can only decode")
        }
        if let type = config.downBlockTypes.first(where: { $0 != "DownEncoderBlock2D" }) {
            return .unsupported("\(prefix): down block '\(type)' is not supported (DownEncoderBlock2D only)")
        }
        guard config.downBlockTypes.count == config.blockOutChannels.count else {
            return .format("\(prefix): config.json has \(config.downBlockTypes.count) down_block_types for \(config.blockOutChannels.count) block_out_channels")
        }
        do {
            _ = try buildEncoder(imageShape: [1, config.inChannels, config.downscale, config.downscale])
            return nil
        } catch let error as NodusError {
            return NodusError(error.code, "\(prefix): \(error.message)")
        } catch {
            return NodusError(.internal, "\(prefix): \(error)")
        }
    }
}
