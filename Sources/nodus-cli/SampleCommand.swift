import CNodus
import NodusCore
import NodusFormats

/// `nodus sample MODEL --scheduler DIR ...`: the guided denoising loop, then an
/// optional VAE decode to PNG.
struct SampleCommand: Command {
    let name = "sample"
    let summary = "Sample latents from a DiT with classifier-free guidance; decode them to PNG with a VAE."
    let positionalUsage = "MODEL"
    let details = """
        The initial noise is torch.randn([B, C, H, W], generator=manual_seed(seed)) times the
        scheduler's init_noise_sigma, B being the number of --class labels. Steps that draw noise
        (DDPM) take torch.randn([steps, B, C, H, W]) with seed + 1.
        With several labels, PNG files get the item's index: out-0.png, out-1.png, ...
        """
    let options: [OptionSpec] = [
        .value("scheduler", "PATH", "scheduler folder or scheduler_config.json (required)"),
        .value("vae", "DIR", "VAE folder to decode the latents (needed for --output)"),
        .value("steps", "N", "inference steps (default 50)"),
        .value("guidance", "G", "classifier-free guidance scale; <= 1 disables it (default 4.0)"),
        .value("class", "L", "class label (default 0)", repeatable: true),
        .value("seed", "S", "noise seed (default 0)"),
        .value("height", "H", "latent height (default: the config's sample_size)"),
        .value("width", "W", "latent width (default: the config's sample_size)"),
        .value("output", "FILE.png", "the decoded image (needs --vae)"),
        .value("npy", "FILE.npy", "the final latent [B, C, H, W]"),
        .value("threads", "N", "worker threads (default: all cores)"),
    ] + ModelHandle.tilingOptions

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["MODEL"])[0]
        let schedulerPath = try arguments.required("scheduler")
        let imagePath = arguments.value("output")
        let latentPath = arguments.value("npy")
        let vaePath = arguments.value("vae")
        guard imagePath != nil || latentPath != nil else {
            throw CLIError.usage("nothing to write: give --output FILE.png (with --vae) and/or --npy FILE.npy")
        }
        if let imagePath, !imagePath.lowercased().hasSuffix(".png") {
            throw CLIError.usage("--output '\(imagePath)' must end in .png")
        }
        if imagePath != nil && vaePath == nil { throw CLIError.usage("--output needs --vae to decode the latents") }
        if ModelHandle.wantsTiling(arguments) && vaePath == nil { throw CLIError.usage("--tiled needs --vae") }
        if let latentPath { _ = try TensorFiles.kind(of: latentPath, option: "npy") }
        let steps = try arguments.integer("steps", default: 50, in: 1...10_000)
        let guidance = try arguments.number("guidance", default: 4.0)
        let threads = try arguments.integer("threads", default: 0, in: 0...4096)
        let labelTexts = arguments.all("class").isEmpty ? ["0"] : arguments.all("class")
        let labels = try labelTexts.map { text -> Int64 in
            guard let label = Int64(text), label >= 0 else {
                throw CLIError.usage("--class must be a non-negative integer, got '\(text)'")
            }
            return label
        }
        let seedText = arguments.value("seed") ?? "0"
        guard let seed = UInt64(seedText) else { throw CLIError.usage("--seed must be a non-negative integer") }

        let model = try ModelHandle(path: path, threads: Int32(threads))
        let scheduler = try SchedulerHandle(path: schedulerPath)
        let vae = try vaePath.map { try ModelHandle(path: $0, threads: Int32(threads)) }
        guard model.kindName == "dit" else {
            throw CLIError.failure("'\(path)' is a \(model.kindName) model; sampling needs a DiT")
        }
        if let vae, vae.kindName != "vae" {
            throw CLIError.failure("--vae '\(vae.path)' is a \(vae.kindName) model, not a VAE")
        }
        try vae?.setTiling(from: arguments)
        let sampleSize = try model.configInteger("sample_size")
        let height = try arguments.integer("height", default: sampleSize, in: 1...4096)
        let width = try arguments.integer("width", default: sampleSize, in: 1...4096)
        let shape = [labels.count, try model.configInteger("in_channels"), height, width]

        // Noise as diffusers pipelines prepare it: randn, then times init_noise_sigma
        // (after set_timesteps, which some schedulers need for it).
        try check(nodus_scheduler_set_timesteps(scheduler.pointer, Int32(steps)), "set_timesteps")
        let initNoise = try RandnCommand.randn(shape: shape, seed: seed)
        let sigma = nodus_scheduler_init_noise_sigma(scheduler.pointer)
        for index in 0..<initNoise.elementCount { initNoise.floats[index] *= sigma }
        let stepNoise = scheduler.kind == nodus_scheduler_kind(NODUS_SCHEDULER_DDPM)
            ? try RandnCommand.randn(shape: [steps] + shape, seed: seed &+ 1) : nil

        let latent = try SamplingJob(model: model, scheduler: scheduler, steps: steps, guidance: Float(guidance),
                                     labels: labels, initNoise: initNoise, stepNoise: stepNoise).run()

        if let latentPath {
            try TensorFiles.write(latent, name: "latent", to: latentPath, option: "npy")
            StandardStream.output("latent \(shape) -> \(latentPath)\n")
        }
        if let vae, let imagePath {
            let images = try SamplingJob.decode(latent, with: vae)
            for index in 0..<shape[0] {
                let target = shape[0] == 1 ? imagePath : SampleCommand.indexed(imagePath, index)
                try PNGWriter.write(images, index: index, to: target)
                StandardStream.output("image \(index) [\(images.shape[1]), \(images.shape[2]), \(images.shape[3])] -> \(target)\n")
            }
        }
    }

    /// "out.png" with index 2 -> "out-2.png".
    static func indexed(_ path: String, _ index: Int) -> String {
        String(path.dropLast(4)) + "-\(index)" + String(path.suffix(4))
    }
}
