#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore
import NodusFormats

/// `nodus generate-volume MODEL --scheduler DIR ...`: a MedSyn2-style 3D
/// generation: x-prediction rectified flow with CFG over text and an optional
/// mask latent, per-channel latent de-normalisation, sliding-window decoding of
/// the latent by a 3D VAE decoder, and a NIfTI volume in Hounsfield units with
/// mid-plane previews.
struct GenerateVolumeCommand: Command {
    let name = "generate-volume"
    let summary = "Generate a 3D volume (MedSyn2-style DiT) and write it as NIfTI, decoded window by window."
    let positionalUsage = "MODEL"
    let details = """
        MODEL is a MedSyn2Transformer3DModel folder or an ONNX export with inputs sample [B, C, D, H, W],
        timestep and encoder_hidden_states. The latent noise is torch.randn([1, C, D, H, W],
        generator=manual_seed(seed)), C = --latent-channels, D x H x W = --size (default the config's
        sample_size). The model batch is [uncond, cond]:
          text   --text FILE holds 'cond' [1, tokens, width] (and 'uncond'), or one tensor;
                 --null-text FILE is the unconditional half's embedding (default: 'uncond' in --text).
                 Without --text the volume is generated from --null-text alone.
          mask   --mask-latent FILE [1, Cm, D, H, W] goes to the conditional half; the unconditional half,
                 and both halves without it, get an empty (zero) mask latent when the model takes more
                 channels than the latent has.
        The final latent is de-normalised per channel, latent x std + mean (--latents-mean / --latents-std,
        default the model config's latents_mean / latents_std), then decoded by --decoder (a one-input
        ONNX 3D VAE decoder) window by window: --decode-window D,H,W latent voxels (default 32,32,32,
        clamped to the latent), --overlap (default 0.25), Gaussian blending as MONAI's SlidingWindowInferer.
        The decoded volume [1, 1, Z, Y, X] goes through --hounsfield (default maisi: [0, 1] -> [-1000, 1000])
        into --output (.nii.gz, int16) with --spacing (mm, x,y,z); --previews PREFIX writes the three
        mid planes in --preview-window (lung, vessel, soft-tissue, bone or C/W; default lung).

        example:
          nodus generate-volume medsyn2/ --scheduler medsyn2/scheduler --text report.safetensors \\
              --decoder vae_decoder.onnx --output ct.nii.gz --spacing 1,1,1 --previews ct
        """
    let options: [OptionSpec] = [
        .value("scheduler", "PATH", "flow-matching scheduler folder or scheduler_config.json (required)"),
        .value("text", "FILE", "text embeddings: 'cond' (and 'uncond'), or one tensor [1, tokens, width]"),
        .value("null-text", "FILE", "the unconditional embedding [1, tokens, width] (default: 'uncond' of --text)"),
        .value("mask-latent", "FILE", "the mask latent [1, Cm, D, H, W] for the conditional half"),
        .value("latent-channels", "C", "channels of the noisy latent (default 4)"),
        .value("size", "D,H,W", "latent size (default the config's sample_size)"),
        .value("steps", "N", "inference steps (default 30)"),
        .value("guidance", "G", "classifier-free guidance; <= 1 runs the conditional half only (default 3.0)"),
        .value("seed", "S", "noise seed (default 0)"),
        .value("latents-mean", "M,M,...", "per-channel latent mean (default the config's latents_mean, else 0)"),
        .value("latents-std", "S,S,...", "per-channel latent std (default the config's latents_std, else 1)"),
        .value("decoder", "FILE.onnx", "a 3D VAE decoder with one input (needed for --output)"),
        .value("decode-window", "D,H,W", "sliding-window size in latent voxels (default 32,32,32)"),
        .value("overlap", "F", "sliding-window overlap in [0, 1) (default 0.25)"),
        .value("output", "FILE.nii.gz", "the decoded volume in Hounsfield units (needs --decoder)"),
        .value("npy", "FILE.npy", "the de-normalised latent [1, C, D, H, W]"),
        .value("spacing", "X,Y,Z", "voxel size in mm (default 1,1,1)"),
        .value("hounsfield", "maisi|L,H,HL,HH", "decoder values to Hounsfield units (default maisi)"),
        .value("previews", "PREFIX", "PREFIX-axial.png, -coronal.png, -sagittal.png of the volume"),
        .value("preview-window", "W", "the previews' window (default lung)"),
        .value("threads", "N", "worker threads (default: all cores)"),
        ModelHandle.dtypeOption,
    ]

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["MODEL"])[0]
        let outputPath = arguments.value("output"), latentPath = arguments.value("npy")
        guard outputPath != nil || latentPath != nil else {
            throw CLIError.usage("nothing to write: give --output FILE.nii.gz (with --decoder) and/or --npy FILE.npy")
        }
        if let outputPath {
            guard outputPath.hasSuffix(".nii.gz") || outputPath.hasSuffix(".nii") else {
                throw CLIError.usage("--output '\(outputPath)' must end in .nii.gz or .nii")
            }
            guard arguments.value("decoder") != nil else { throw CLIError.usage("--output needs --decoder to decode the latent") }
        }
        // Fail before the long run when an output cannot be written.
        for target in [outputPath, latentPath, arguments.value("previews").map { $0 + "-axial.png" }].compactMap({ $0 }) {
            try Self.checkWritable(target)
        }
        let mapping = try HounsfieldMapping.parse(arguments.value("hounsfield") ?? "maisi")
        let previewWindow = try WindowChoice.parse(arguments.value("preview-window") ?? "lung")
        let spacing = try Self.numbers(arguments.value("spacing") ?? "1,1,1", count: 3, option: "spacing")
        guard spacing.allSatisfy({ $0 > 0 }) else { throw CLIError.usage("--spacing must be positive") }
        let steps = try arguments.integer("steps", default: 30, in: 1...10_000)
        let threads = try arguments.integer("threads", default: 0, in: 0...4096)
        guard let seed = UInt64(arguments.value("seed") ?? "0") else { throw CLIError.usage("--seed must be a non-negative integer") }
        let guidance = Float(try arguments.number("guidance", default: 3.0))

        let dtype = arguments.value("dtype") ?? "float32"
        let model = try ModelHandle(path: path, threads: Int32(threads), dtype: dtype)
        let config = model.kindName == "onnx" ? nil : try model.config()
        let (modelChannels, defaultSize) = try Self.geometry(of: model, config: config)
        let latentChannels = try arguments.integer("latent-channels", default: min(4, modelChannels), in: 1...modelChannels)
        let size = try arguments.value("size").map { try Self.numbers($0, count: 3, option: "size").map(Int.init) } ?? defaultSize
        guard let size, size.allSatisfy({ $0 > 0 && $0 <= 4096 }) else {
            throw CLIError.usage("give the latent size with --size D,H,W (the model declares none)")
        }
        let shape = [1, latentChannels] + size
        let scheduler = try SchedulerHandle(path: try arguments.required("scheduler"))
        var job = SamplingJob(model: model, scheduler: scheduler, steps: steps, guidance: guidance,
                              initNoise: try RandnCommand.randn(shape: shape, seed: seed))
        job.progressLabel = "denoising"
        job.encoderHiddenStates = try Self.text(arguments, guided: guidance > 1)
        job.conditioning = try Self.maskChannels(arguments, latentShape: shape, modelChannels: modelChannels,
                                                 guided: guidance > 1)

        var latent = try job.run()
        latent = try Self.denormalised(latent, arguments: arguments, config: config)
        if let latentPath {
            try TensorFiles.write(latent, name: "latent", to: latentPath, option: "npy")
            StandardStream.output("latent \(latent.shape) -> \(latentPath)\n")
        }
        guard let outputPath, let decoderPath = arguments.value("decoder") else { return }
        let decoder = try ModelHandle(path: decoderPath, threads: Int32(threads), dtype: dtype)
        let window = try arguments.value("decode-window").map { try Self.numbers($0, count: 3, option: "decode-window") }
            ?? [32, 32, 32]
        let decoded = try Self.decode(latent, with: decoder, window: window.map(Int.init),
                                      overlap: try arguments.number("overlap", default: 0.25))
        guard decoded.rank == 5, decoded.shape[0] == 1 else {
            throw CLIError.failure("the decoder returned \(decoded.shape), not one volume [1, C, Z, Y, X]")
        }
        let geometry = VolumeGeometry(spacing: (spacing[0], spacing[1], spacing[2]))
        let volume = mapping.apply(to: try Volume(tensor: decoded, geometry: geometry))
        try NIfTIWriter().write(volume, to: outputPath)
        StandardStream.output("volume \(Array(decoded.shape[1...])) in HU -> \(outputPath)\n")
        if let prefix = arguments.value("previews") {
            guard case .window(let preview) = previewWindow else {
                throw CLIError.usage("--preview-window must be a preset or CENTRE/WIDTH")
            }
            for written in try VolumePreview.writeMidPlanes(of: volume, transform: .window(preview), prefix: prefix) {
                StandardStream.output("preview -> \(written)\n")
            }
        }
    }

    /// The model's input channels and nominal latent size (config's sample_size, or the export's sample shape).
    static func geometry(of model: ModelHandle, config: JSONValue?) throws -> (channels: Int, size: [Int]?) {
        if let config {
            guard model.kindName == "dit3d" else {
                throw CLIError.failure("'\(model.path)' is a \(model.kindName) model; generate-volume needs a 3D DiT (MedSyn2) or its ONNX export")
            }
            let reader = try JSONObjectReader(config, context: "config.json of '\(model.path)'")
            return (try reader.int("in_channels"), reader.has("sample_size") ? try reader.intArray("sample_size") : nil)
        }
        guard let sample = model.signatures(input: true).first(where: { $0.name == "sample" })?.shape, sample.count == 5,
              sample[1] > 0, model.denoiserKind == "unet" else {
            throw CLIError.failure("'\(model.path)' is not a 3D denoiser export (inputs sample [B, C, D, H, W], timestep, encoder_hidden_states)")
        }
        let declared = Array(sample[2...])
        return (sample[1], declared.allSatisfy { $0 > 0 } ? declared : nil)
    }

    /// The context in the C layout: [uncond, cond] under guidance, cond alone without.
    static func text(_ arguments: ParsedArguments, guided: Bool) throws -> Tensor {
        let null = try arguments.value("null-text").map { try TensorFiles.readTensor($0, name: nil, preferred: "uncond", option: "null-text") }
        guard let path = arguments.value("text") else {
            guard let null else { throw CLIError.usage("give --text and/or --null-text: the model attends to text embeddings") }
            return guided ? try Tensor.concatenatingBatch([null.asFloat32(), null.asFloat32()]) : null
        }
        guard let null else { return try SampleCommand.context(path, guided: guided) }
        let tensors = try TensorFiles.read(path, option: "text", defaultName: "cond")
        guard let cond = tensors["cond"] ?? (tensors.count == 1 ? tensors.values.first : nil) else {
            throw CLIError.usage("--text '\(path)' must hold 'cond' or one tensor; found \(tensors.keys.sorted())")
        }
        guard guided else { return cond }
        guard null.shape == cond.shape, cond.rank == 3 else {
            throw CLIError.usage("--null-text \(null.shape) and --text \(cond.shape) must both be [1, tokens, width] of one length")
        }
        return try Tensor.concatenatingBatch([null.asFloat32(), cond.asFloat32()])
    }

    /// The channels after the latent: the mask latent for the conditional half, zeros elsewhere.
    static func maskChannels(_ arguments: ParsedArguments, latentShape: [Int], modelChannels: Int,
                             guided: Bool) throws -> Tensor? {
        let extra = modelChannels - latentShape[1]
        let spatial = Array(latentShape[2...])
        guard let path = arguments.value("mask-latent") else {
            return extra > 0 ? try Tensor(zeros: [1, extra] + spatial) : nil
        }
        let mask = try TensorFiles.readTensor(path, name: nil, preferred: "mask_latent", option: "mask-latent").asFloat32()
        guard mask.shape == [1, extra] + spatial else {
            throw CLIError.usage("--mask-latent '\(path)' must be \([1, extra] + spatial) to fit the latent grid and the model's \(modelChannels) input channels, got \(mask.shape)")
        }
        return guided ? try Tensor.concatenatingBatch([Tensor(zeros: mask.shape), mask]) : mask
    }

    /// latent x std + mean per channel.
    static func denormalised(_ latent: Tensor, arguments: ParsedArguments, config: JSONValue?) throws -> Tensor {
        let channels = latent.shape[1]
        func values(_ option: String, _ key: String, fallback: Double) throws -> [Double] {
            if let text = arguments.value(option) { return try numbers(text, count: channels, option: option) }
            if let config, let list = try JSONObjectReader(config, context: "config.json").optionalDoubleArray(key) {
                guard list.count == channels else {
                    throw CLIError.failure("the model config's \(key) has \(list.count) values for \(channels) latent channels")
                }
                return list
            }
            return Array(repeating: fallback, count: channels)
        }
        let mean = try values("latents-mean", "latents_mean", fallback: 0)
        let std = try values("latents-std", "latents_std", fallback: 1)
        guard mean.allSatisfy(\.isFinite), std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw CLIError.usage("latent means must be finite and standard deviations positive")
        }
        let plane = latent.shape[2...].reduce(1, *)
        let result = try Tensor(zeros: latent.shape)
        for index in 0..<latent.elementCount {
            let channel = (index / plane) % channels
            result.floats[index] = latent.floats[index] * Float(std[channel]) + Float(mean[channel])
        }
        return result
    }

    /// `nodus_model_forward_windowed` with a progress bar.
    static func decode(_ latent: Tensor, with decoder: ModelHandle, window: [Int], overlap: Double) throws -> Tensor {
        var params = nodus_window_params()
        nodus_window_params_init(&params)
        params.ndim = 3
        params.window_size = (Int64(window[0]), Int64(window[1]), Int64(window[2]))
        params.overlap = Float(overlap)
        let progress = ProgressBar(label: "decoding")
        params.progress = { done, total, userData in
            guard let userData else { return 0 }
            Unmanaged<ProgressBar>.fromOpaque(userData).takeUnretainedValue().update(done: Int(done), total: Int(total))
            return 0
        }
        params.progress_user_data = Unmanaged.passUnretained(progress).toOpaque()
        var source = try TensorArgument.make(latent)
        var probe = nodus_tensor()
        try check(nodus_model_forward_windowed(decoder.pointer, &source, &params, &probe), "decoding")
        let decoded = try Tensor(zeros: TensorArgument.shape(of: probe))
        var target = try TensorArgument.make(decoded)
        try check(nodus_model_forward_windowed(decoder.pointer, &source, &params, &target), "decoding")
        withExtendedLifetime((latent, progress)) {}
        return decoded
    }

    static func numbers(_ text: String, count: Int, option: String) throws -> [Double] {
        let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: " ")) }
        guard values.count == count, values.allSatisfy({ $0?.isFinite == true }) else {
            throw CLIError.usage("--\(option) needs \(count) comma-separated numbers, got '\(text)'")
        }
        return values.compactMap { $0 }
    }

    /// The folder of `path` exists and can be written (the outputs themselves are written atomically).
    static func checkWritable(_ path: String) throws {
        let folder = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
        guard access(folder.isEmpty ? "/" : folder, W_OK) == 0 else {
            throw CLIError.failure("cannot write '\(path)': its folder '\(folder)' \(errno == ENOENT ? "does not exist" : "is not writable")")
        }
    }
}
