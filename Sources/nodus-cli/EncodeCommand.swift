import CNodus
import NodusCore

/// `nodus encode VAE --input IMAGE --output LATENT`: an image tensor to the
/// latent a pipeline denoises.
struct EncodeCommand: Command {
    let name = "encode"
    let summary = "Encode an image tensor into a VAE latent ((latent_dist.sample() - shift) * scaling_factor)."
    let positionalUsage = "VAE"
    let details = """
        The image is float32 [B, C, H, W] in about [-1, 1], H and W multiples of 8 for the SD VAE:
        a .npy file, or a tensor of a .safetensors file (--tensor NAME; default its only tensor,
        else 'image'). The latent is latent_dist.sample() with the draw
        torch.randn(latent shape, generator=manual_seed(seed)), as diffusers' img2img pipelines
        take it, minus the config's shift_factor (if any), times its scaling_factor; --mode uses
        latent_dist.mode() (the mean) instead. Written to a .npy file or a .safetensors file
        (tensor 'latent').
        Example: nodus encode vae/ --input image.npy --output latent.npy --seed 0
        """
    let options: [OptionSpec] = [
        .value("input", "FILE", "the image: FILE.npy or FILE.safetensors (required)"),
        .value("tensor", "NAME", "the image's tensor in a .safetensors input"),
        .value("output", "FILE", "the .npy or .safetensors file to write (required)"),
        .value("seed", "S", "seed of the posterior sample's noise (default 0)"),
        .flag("mode", "the posterior's mode (mean) instead of a sample"),
        .value("threads", "N", "worker threads (default: all cores)"),
        ModelHandle.dtypeOption,
    ] + ModelHandle.tilingOptions

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["VAE"])[0]
        let input = try arguments.required("input")
        let output = try arguments.required("output")
        _ = try TensorFiles.kind(of: output, option: "output")
        let seedText = arguments.value("seed") ?? "0"
        guard let seed = UInt64(seedText) else {
            throw CLIError.usage("--seed must be an integer in 0...\(UInt64.max), got '\(seedText)'")
        }
        if arguments.flag("mode") && arguments.value("seed") != nil {
            throw CLIError.usage("--mode takes no noise: drop --seed")
        }
        let threads = try arguments.integer("threads", default: 0, in: 0...4096)
        let image = try TensorFiles.readTensor(input, name: arguments.value("tensor"), preferred: "image", option: "input")
        let vae = try ModelHandle(path: path, threads: Int32(threads), dtype: arguments.value("dtype") ?? "float32")
        guard vae.kindName == "vae" else { throw CLIError.failure("'\(path)' is a \(vae.kindName) model, not a VAE") }
        try vae.setTiling(from: arguments)

        var imageDescription = try TensorArgument.make(image)
        var query = nodus_tensor()
        try check(nodus_model_encode_latent(vae.pointer, &imageDescription, nil, &query), "cannot encode '\(input)'")
        let noise = arguments.flag("mode") ? nil : try RandnCommand.randn(shape: TensorArgument.shape(of: query), seed: seed)
        var noiseDescription = try noise.map { try TensorArgument.make($0) } ?? nodus_tensor()
        let latent = try TensorArgument.output("cannot encode '\(input)'") { target in
            noise == nil ? nodus_model_encode_latent(vae.pointer, &imageDescription, nil, target)
                : nodus_model_encode_latent(vae.pointer, &imageDescription, &noiseDescription, target)
        }
        withExtendedLifetime((image, noise)) {}
        try TensorFiles.write(latent, name: "latent", to: output, option: "output")
        StandardStream.output("latent \(latent.shape) -> \(output)\n")
    }
}
