import CNodus
import NodusCore
import NodusFormats

/// `nodus sample MODEL --scheduler DIR ...`: the guided denoising loop of a
/// DiT or a UNet, then an optional VAE decode to PNG, and ensemble statistics.
struct SampleCommand: Command {
    let name = "sample"
    let summary = "Sample latents from a DiT or UNet with classifier-free guidance; decode them to PNG with a VAE."
    let positionalUsage = "MODEL"
    let details = """
        The initial noise is torch.randn([B, C, H, W], generator=manual_seed(seed)) times the
        scheduler's init_noise_sigma (unscaled with --image-latents). B is the number of --class
        labels (DiT) times --samples. Steps that draw noise (DDPM, Euler ancestral, LCM, SDE DPM-Solver) take
        torch.randn([T, B, C, H, W]) with seed + 1, T the number of timesteps that run.
        UNet: --context holds the encoder hidden states: a .safetensors file with 'uncond' and
        'cond' tensors [1 or B, tokens, width], or one tensor [2 or 2B, tokens, width] ordered
        [uncond..., cond...] (just cond without guidance).
        --conditioning, --image-latents and --mask take one tensor each (.npy or .safetensors);
        a batch of 1 is repeated over the samples.
        With several samples, PNG files get the item's index: out-0.png, out-1.png, ...
        --stats PREFIX writes PREFIX-mean.npy and PREFIX-variance.npy (unbiased) over the samples:
        of the decoded images with --vae, else of the latents.
        """
    let options: [OptionSpec] = [
        .value("scheduler", "PATH", "scheduler folder or scheduler_config.json (required)"),
        .value("vae", "DIR", "VAE folder to decode the latents (needed for --output)"),
        .value("steps", "N", "inference steps (default 50)"),
        .value("guidance", "G", "classifier-free guidance scale; <= 1 disables it (default 4.0)"),
        .value("class", "L", "DiT class label (default 0)", repeatable: true),
        .value("context", "FILE", "UNet encoder hidden states (see below; required for a UNet)"),
        .value("samples", "K", "samples per label or context, sampled as one batch (default 1)"),
        .value("conditioning", "FILE", "channels concatenated after the noisy latent (baseline latent, mask...)"),
        .value("image-latents", "FILE", "img2img / inpainting: the known image's scaled latent"),
        .value("strength", "S", "img2img strength in [0, 1] (default 1)"),
        .value("mask", "FILE", "latent-blending inpainting mask [1, 1, h, w], 1 = generate (needs --image-latents)"),
        .value("seed", "S", "noise seed (default 0)"),
        .value("height", "H", "latent height (default: the config's sample_size)"),
        .value("width", "W", "latent width (default: the config's sample_size)"),
        .value("output", "FILE.png", "the decoded image (needs --vae)"),
        .value("npy", "FILE.npy", "the final latent [B, C, H, W]"),
        .value("stats", "PREFIX", "ensemble mean and variance maps (needs --samples >= 2)"),
        .value("threads", "N", "worker threads (default: all cores)"),
        ModelHandle.dtypeOption,
    ] + ModelHandle.tilingOptions

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["MODEL"])[0]
        let imagePath = arguments.value("output")
        let latentPath = arguments.value("npy")
        let statsPrefix = arguments.value("stats")
        let vaePath = arguments.value("vae")
        guard imagePath != nil || latentPath != nil || statsPrefix != nil else {
            throw CLIError.usage("nothing to write: give --output FILE.png (with --vae), --npy FILE.npy and/or --stats PREFIX")
        }
        if let imagePath, !imagePath.lowercased().hasSuffix(".png") {
            throw CLIError.usage("--output '\(imagePath)' must end in .png")
        }
        if imagePath != nil && vaePath == nil { throw CLIError.usage("--output needs --vae to decode the latents") }
        if ModelHandle.wantsTiling(arguments) && vaePath == nil { throw CLIError.usage("--tiled needs --vae") }
        if let latentPath { _ = try TensorFiles.kind(of: latentPath, option: "npy") }
        let steps = try arguments.integer("steps", default: 50, in: 1...10_000)
        let samples = try arguments.integer("samples", default: 1, in: 1...4096)
        if statsPrefix != nil && samples < 2 { throw CLIError.usage("--stats needs --samples 2 or more") }
        let threads = try arguments.integer("threads", default: 0, in: 0...4096)
        let seedText = arguments.value("seed") ?? "0"
        guard let seed = UInt64(seedText) else { throw CLIError.usage("--seed must be a non-negative integer") }

        let dtype = arguments.value("dtype") ?? "float32"
        let model = try ModelHandle(path: path, threads: Int32(threads), dtype: dtype)
        let scheduler = try SchedulerHandle(path: try arguments.required("scheduler"))
        let vae = try vaePath.map { try ModelHandle(path: $0, threads: Int32(threads), dtype: dtype) }
        if let vae, vae.kindName != "vae" {
            throw CLIError.failure("--vae '\(vae.path)' is a \(vae.kindName) model, not a VAE")
        }
        let guidance = Float(try arguments.number("guidance", default: 4.0))
        var job = SamplingJob(model: model, scheduler: scheduler, steps: steps, guidance: guidance,
                              initNoise: try Tensor(zeros: [1]))
        let batch: Int
        switch model.denoiserKind {
        case "dit":
            let labels = try SampleCommand.labels(arguments.all("class"))
            job.labels = labels.flatMap { Array(repeating: $0, count: samples) }
            batch = job.labels.count
        case "unet":
            guard arguments.all("class").isEmpty else { throw CLIError.usage("--class is for DiT models; a UNet takes --context") }
            batch = samples
            job.encoderHiddenStates = try SampleCommand.context(try arguments.required("context"), guided: guidance > 1)
        default:
            throw CLIError.failure("'\(path)' is a \(model.kindName) model; sampling needs a DiT or a UNet (or an export with their inputs)")
        }
        job.conditioning = try arguments.value("conditioning").map { try SampleCommand.batched($0, "conditioning", batch) }
        job.imageLatents = try arguments.value("image-latents").map { try SampleCommand.batched($0, "image-latents", batch) }
        job.mask = try arguments.value("mask").map { try TensorFiles.readTensor($0, name: nil, preferred: "mask", option: "mask") }
        job.strength = try arguments.number("strength", default: 1)
        try vae?.setTiling(from: arguments)
        let (modelChannels, defaultHeight, defaultWidth) = try model.sampleGeometry()
        let height = try arguments.integer("height", default: defaultHeight, in: 1...4096)
        let width = try arguments.integer("width", default: defaultWidth, in: 1...4096)
        let latentChannels = modelChannels - (job.conditioning?.shape[1] ?? 0)
        guard latentChannels > 0 else { throw CLIError.usage("--conditioning has as many channels as the model takes") }
        let shape = [batch, latentChannels, height, width]

        // Noise as diffusers pipelines draw it; nodus_sample multiplies it by init_noise_sigma
        // (unless img2img adds it to an image).
        try check(nodus_scheduler_set_timesteps(scheduler.pointer, Int32(steps)), "set_timesteps")
        job.initNoise = try RandnCommand.randn(shape: shape, seed: seed)
        if nodus_scheduler_draws_noise(scheduler.pointer) == 1 {
            let timesteps = try scheduler.timestepCount() - SampleCommand.skippedSteps(job, steps: steps)
            job.stepNoise = try RandnCommand.randn(shape: [timesteps] + shape, seed: seed &+ 1)
        }

        let latent = try job.run()
        if let latentPath {
            try TensorFiles.write(latent, name: "latent", to: latentPath, option: "npy")
            StandardStream.output("latent \(shape) -> \(latentPath)\n")
        }
        let images = try vae.map { try SamplingJob.decode(latent, with: $0) }
        if let images, let imagePath {
            for index in 0..<shape[0] {
                let target = shape[0] == 1 ? imagePath : SampleCommand.indexed(imagePath, index)
                try PNGWriter.write(images, index: index, to: target)
                StandardStream.output("image \(index) [\(images.shape[1]), \(images.shape[2]), \(images.shape[3])] -> \(target)\n")
            }
        }
        if let statsPrefix {
            try SampleCommand.writeStatistics(of: images ?? latent, prefix: statsPrefix)
        }
    }

    static func labels(_ texts: [String]) throws -> [Int64] {
        try (texts.isEmpty ? ["0"] : texts).map { text in
            guard let label = Int64(text), label >= 0 else {
                throw CLIError.usage("--class must be a non-negative integer, got '\(text)'")
            }
            return label
        }
    }

    /// The C layout of `--context`: [uncond..., cond...] under guidance, cond alone without.
    static func context(_ path: String, guided: Bool) throws -> Tensor {
        let tensors = try TensorFiles.read(path, option: "context", defaultName: "encoder_hidden_states")
        if let states = tensors["encoder_hidden_states"], tensors.count == 1 { return states }
        guard let cond = tensors["cond"], tensors.keys.allSatisfy(["cond", "uncond"].contains) else {
            throw CLIError.usage("--context '\(path)' must hold 'uncond' and 'cond', or one tensor 'encoder_hidden_states'; found \(tensors.keys.sorted())")
        }
        guard guided else { return cond }
        guard let uncond = tensors["uncond"] else { throw CLIError.usage("--context '\(path)' has no 'uncond' for guidance") }
        guard uncond.shape == cond.shape, cond.rank == 3 else {
            throw CLIError.usage("--context '\(path)': 'uncond' \(uncond.shape) and 'cond' \(cond.shape) must both be [N, tokens, width]")
        }
        return try Tensor.concatenatingBatch([uncond.asFloat32(), cond.asFloat32()])
    }

    /// A per-sample tensor of `--option FILE`, its batch of 1 repeated to `batch`.
    static func batched(_ path: String, _ option: String, _ batch: Int) throws -> Tensor {
        let tensor = try TensorFiles.readTensor(path, name: nil, preferred: option, option: option).asFloat32()
        guard tensor.rank == 4, tensor.shape[0] == 1 || tensor.shape[0] == batch else {
            throw CLIError.usage("--\(option) '\(path)' must be [1 or \(batch), C, h, w], got \(tensor.shape)")
        }
        return tensor.shape[0] == batch ? tensor : try Tensor.concatenatingBatch(Array(repeating: tensor, count: batch))
    }

    /// Timesteps diffusers' get_timesteps skips for img2img strength.
    static func skippedSteps(_ job: SamplingJob, steps: Int) -> Int {
        guard job.imageLatents != nil else { return 0 }
        return max(steps - min(Int(Double(steps) * job.strength), steps), 0)
    }

    static func writeStatistics(of samples: Tensor, prefix: String) throws {
        var source = try TensorArgument.make(samples)
        var meanShape = nodus_tensor(), varianceShape = nodus_tensor()
        try check(nodus_batch_statistics(&source, 1, &meanShape, &varianceShape), "statistics")
        let shape = TensorArgument.shape(of: meanShape)
        let mean = try Tensor(zeros: shape), variance = try Tensor(zeros: shape)
        var meanTarget = try TensorArgument.make(mean), varianceTarget = try TensorArgument.make(variance)
        try check(nodus_batch_statistics(&source, 1, &meanTarget, &varianceTarget), "statistics")
        withExtendedLifetime(samples) {}
        for (name, tensor) in [("mean", mean), ("variance", variance)] {
            let target = "\(prefix)-\(name).npy"
            try NumpyArray.write(tensor, to: target)
            StandardStream.output("\(name) \(shape) -> \(target)\n")
        }
    }

    /// "out.png" with index 2 -> "out-2.png".
    static func indexed(_ path: String, _ index: Int) -> String {
        String(path.dropLast(4)) + "-\(index)" + String(path.suffix(4))
    }
}
