#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore
import NodusFormats

/// `nodus follow-up UNET --vae VAE --baseline SLICE --context EMB --samples K --output-dir DIR`:
/// NAMD's follow-up prediction, as `nodus.workflows.follow_up` (the same mapping,
/// resize, encoding, sampling, statistics and files).
struct FollowUpCommand: Command {
    let name = "follow-up"
    let summary = "Predict a follow-up slice K times from a baseline slice and a record embedding: mean, variance, samples."
    let positionalUsage = "UNET"
    let details = """
        UNET is an 8-channel UNet2DConditionModel (noisy latent + baseline latent). The baseline (DICOM,
        PNG, or a NIfTI volume's axial slice --slice, default the middle) is mapped linearly to [-1, 1]
        (its first window, else its storage's range, else its values' range; MONOCHROME1 flipped),
        resized to the UNet's sample size times the VAE's downsampling, copied to the VAE's input
        channels and encoded (posterior mean x scaling_factor). K samples start from
        randn([K, 4, h, w], seed) in one batch; --guidance above 1 runs CFG against a zero context.
        Writes NAME-mean.npy and NAME-variance.npy (torch.var(correction=1)) in [-1, 1] pixel units,
        NAME-sample-<k>.png (16-bit, brightness (x + 1) / 2) and NAME.json.
        Example: nodus follow-up unet/ --vae vae/ --scheduler scheduler/ --baseline slice.dcm \\
                   --context record.npy --samples 20 --steps 50 --seed 0 --output-dir out/
        """
    let options: [OptionSpec] = [
        .value("vae", "DIR", "the AutoencoderKL folder (required)"),
        .value("baseline", "FILE", "the baseline slice: .dcm, .png, .nii or .nii.gz (required)"),
        .value("slice", "K", "the axial slice of a NIfTI baseline (default the middle)"),
        .value("context", "FILE", "the record's embedding [tokens, width]: .npy, or .safetensors ('context') (required)"),
        .value("samples", "K", "samples (default 20, at least 2)"),
        .value("seed", "S", "noise seed (default 0)"),
        .value("steps", "N", "sampler steps (default 50)"),
        .value("scheduler", "PATH", "a scheduler_config.json or its folder (default SD-1.5's DDIM)"),
        .value("guidance", "G", "guidance scale (default 1: no guidance)"),
        .value("output-dir", "DIR", "where the files go (required; created if missing)"),
        .value("name", "STEM", "the output files' stem (default: the baseline's stem + '-follow-up')"),
        .value("threads", "N", "worker threads (default: all cores)"),
    ]

    /// Stable Diffusion 1.5's schedule under DDIM (as `nodus.workflows.follow_up.SD_DDIM`).
    static let defaultScheduler = """
        {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", \
        "num_train_timesteps": 1000, "clip_sample": false, "set_alpha_to_one": false, "steps_offset": 1, \
        "prediction_type": "epsilon"}
        """

    func run(_ arguments: ParsedArguments) throws {
        let unetPath = try arguments.positionals(["UNET"])[0]
        let vaePath = try arguments.required("vae")
        let baselinePath = try arguments.required("baseline")
        let contextPath = try arguments.required("context")
        let outputFolder = try arguments.required("output-dir")
        let count = try arguments.integer("samples", default: 20, in: 2...100_000)
        let steps = try arguments.integer("steps", default: 50, in: 1...10_000)
        let seedText = arguments.value("seed") ?? "0"
        guard let seed = UInt64(seedText) else { throw CLIError.usage("--seed must be a non-negative integer, got '\(seedText)'") }
        let guidance = Float(try arguments.number("guidance", default: 1))
        let threads = Int32(try arguments.integer("threads", default: 0, in: 0...4096))

        let image = try readBaseline(baselinePath, slice: arguments.value("slice"))
        let context = try TensorFiles.readTensor(contextPath, name: nil, preferred: "context", option: "context").asFloat32()
        let unet = try ModelHandle(path: unetPath, threads: threads)
        let vae = try ModelHandle(path: vaePath, threads: threads)
        guard unet.kindName == "unet", vae.kindName == "vae" else {
            throw CLIError.failure("follow-up needs a UNet and a VAE, got a \(unet.kindName) and a \(vae.kindName)")
        }
        let vaeConfig = try vae.config()
        let latentChannels = vaeConfig["latent_channels"]?.intValue ?? 4
        let imageChannels = vaeConfig["in_channels"]?.intValue ?? 3
        let scaling = Float(vaeConfig["scaling_factor"]?.doubleValue ?? 0.18215)
        guard try unet.configInteger("in_channels") == 2 * latentChannels else {
            throw CLIError.failure("'\(unetPath)' takes \(try unet.configInteger("in_channels")) channels; the follow-up path "
                + "needs \(2 * latentChannels) (noisy latent + baseline latent)")
        }
        let width = try unet.configInteger("cross_attention_dim")
        let tokens = try contextShape(context, width: width, path: contextPath)
        let latentSize = try unet.configInteger("sample_size")
        let size = latentSize << ((vaeConfig["block_out_channels"]?.arrayValue?.count ?? 4) - 1)

        let mapping = try IntensityMapping(of: image, path: baselinePath)
        let pixels = image.values.map { mapping.pixel(ofValue: Double($0)) }
        let rows = (0..<size).map { ResizeWeights(target: $0, sourceSize: image.height, targetSize: size, sources: 0..<image.height) }
        let columns = (0..<size).map { ResizeWeights(target: $0, sourceSize: image.width, targetSize: size, sources: 0..<image.width) }
        let resized = ResizeWeights.resample(pixels, width: image.width, rows: rows, columns: columns)
        // The gray image in every input channel of the VAE.
        let picture = (0..<imageChannels).flatMap { _ in resized.map { Float(min(max($0, -1), 1)) } }
        let pictureTensor = try Tensor(shape: [1, imageChannels, size, size], floats: picture)
        var imageDescription = try TensorArgument.make(pictureTensor)
        let mean = try TensorArgument.outputs("VAE encode", count: 2) { outputs, _ in
            nodus_model_encode(vae.pointer, &imageDescription, outputs, outputs + 1)
        }[0]
        withExtendedLifetime(pictureTensor) {}
        let cells = latentChannels * latentSize * latentSize
        let baselineLatent = (0..<(count * cells)).map { mean.floats[$0 % cells] * scaling }

        let scheduler = try arguments.value("scheduler").map { try SchedulerHandle(path: $0) }
            ?? SchedulerHandle(json: Self.defaultScheduler, label: "the default DDIM scheduler")
        try check(nodus_scheduler_set_timesteps(scheduler.pointer, Int32(steps)), "set_timesteps")
        var job = SamplingJob(model: unet, scheduler: scheduler, steps: steps, guidance: guidance,
                              initNoise: try RandnCommand.randn(shape: [count, latentChannels, latentSize, latentSize], seed: seed))
        job.conditioning = try Tensor(shape: [count, latentChannels, latentSize, latentSize], floats: baselineLatent)
        let contextValues = Array(UnsafeBufferPointer(start: context.floats, count: tokens * width))
        job.encoderHiddenStates = guidance > 1
            ? try Tensor(shape: [2, tokens, width], floats: [Float](repeating: 0, count: tokens * width) + contextValues)
            : try Tensor(shape: [1, tokens, width], floats: contextValues)
        job.progressLabel = "follow-up"
        let decoded = try SamplingJob.decode(try job.run(), with: vae)
        let plane = size * size
        let gray = (0..<(count * plane)).map { index -> Float in
            let (sample, pixel) = (index / plane, index % plane)
            return (0..<imageChannels).reduce(Float(0)) { $0 + decoded.floats[(sample * imageChannels + $1) * plane + pixel] }
                / Float(imageChannels)
        }
        let samplesTensor = try Tensor(shape: [count, size, size], floats: gray)
        var samplesDescription = try TensorArgument.make(samplesTensor)
        let statistics = try [Tensor(zeros: [size, size]), Tensor(zeros: [size, size])]
        var meanOutput = try TensorArgument.make(statistics[0])
        var varianceOutput = try TensorArgument.make(statistics[1])
        try check(nodus_batch_statistics(&samplesDescription, 1, &meanOutput, &varianceOutput), "batch statistics")
        withExtendedLifetime(samplesTensor) {}

        let base = baselinePath.split(separator: "/").last.map(String.init) ?? baselinePath
        let stem = arguments.value("name") ?? String(base.split(separator: ".").first ?? "baseline") + "-follow-up"
        try AtomicTextFile.makeFolder(outputFolder)
        let meanPath = outputFolder + "/" + stem + "-mean.npy"
        let variancePath = outputFolder + "/" + stem + "-variance.npy"
        let samplePaths = (0..<count).map { outputFolder + "/" + stem + "-sample-\($0).png" }
        let sidecarPath = outputFolder + "/" + stem + ".json"
        func name(_ path: String) -> JSONValue { .string(path.split(separator: "/").last.map(String.init) ?? path) }
        let sidecar = JSONValue.object([
            "workflow": .string("follow_up"),
            "nodus_version": .string(String(cString: nodus_version())),
            "unet": .object(["path": .string(unetPath), "sha256": .string(try SHA256.digest(ofPath: unetPath))]),
            "vae": .object(["path": .string(vaePath), "sha256": .string(try SHA256.digest(ofPath: vaePath))]),
            "baseline": .object(["path": .string(baselinePath), "sha256": .string(try SHA256.digest(ofPath: baselinePath))]),
            "context": .object(["path": .string(contextPath), "sha256": .string(try SHA256.digest(ofPath: contextPath))]),
            "samples": .number(Double(count)), "seed": .number(Double(seed)), "steps": .number(Double(steps)),
            "guidance_scale": .number(Double(guidance)),
            "scheduler": .string(nodus_scheduler_kind_name(scheduler.kind).map { String(cString: $0) } ?? "unknown"),
            "intensity": .object(["lower": .number(mapping.lower), "upper": .number(mapping.upper),
                                  "inverted": .bool(mapping.inverted)]),
            "size": .number(Double(size)),
            "outputs": .object(["mean": name(meanPath), "variance": name(variancePath), "samples": .array(samplePaths.map(name))]),
        ])
        var written: [String] = []
        do {
            written.append(meanPath)
            try NumpyArray.write(statistics[0], to: meanPath)
            written.append(variancePath)
            try NumpyArray.write(statistics[1], to: variancePath)
            for (index, path) in samplePaths.enumerated() {
                written.append(path)
                try GrayscalePNG.write(brightness: gray[(index * plane)..<((index + 1) * plane)].map { ($0 + 1) / 2 },
                                       width: size, height: size, bitDepth: 16, to: path)
            }
            written.append(sidecarPath)
            try AtomicTextFile.write(JSONPrinter.pretty(sidecar) + "\n", to: sidecarPath)
        } catch {
            AtomicTextFile.remove(written)
            throw error
        }
        StandardStream.output("wrote \(meanPath), \(variancePath), \(count) samples, \(sidecarPath)\n")
    }

    private func readBaseline(_ path: String, slice: String?) throws -> MedicalImage {
        switch try MedicalFileKind.of(path, isInput: true) {
        case .dicom where slice == nil: return try DICOMReader.read(path)
        case .png where slice == nil: return try GrayscalePNG.read(path)
        case .nifti:
            let index = try slice.map { text -> Int in
                guard let value = Int(text) else { throw CLIError.usage("--slice must be an integer, got '\(text)'") }
                return value
            }
            return try NIfTIReader.read(path).slice(.axial, index: index)
        default:
            throw CLIError.usage("--baseline '\(path)' must be a DICOM or PNG slice, or a NIfTI volume (--slice only for NIfTI)")
        }
    }

    /// The context's token count; it must be [tokens, width] or [1, tokens, width].
    private func contextShape(_ context: Tensor, width: Int, path: String) throws -> Int {
        let shape = context.shape.count == 3 && context.shape[0] == 1 ? Array(context.shape.dropFirst()) : context.shape
        guard shape.count == 2 else {
            throw CLIError.usage("the context '\(path)' must be [tokens, width] or [1, tokens, width], got \(context.shape)")
        }
        guard shape[1] == width else {
            throw CLIError.usage("the context '\(path)' is \(shape[1]) wide; the UNet attends to \(width)")
        }
        return shape[0]
    }
}
