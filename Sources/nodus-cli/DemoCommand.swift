#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore
import NodusFormats

/// `nodus demo`: the main job on the bundled model. Paints lung nodules into
/// chest-X-ray-like patches inside a mask, with no LoRA, each characteristic
/// LoRA, a 50/50 merge and the subtlety slider at three weights, and writes a
/// labelled PNG grid (one row per input patch).
///
/// The model folder holds `dit/`, `vae/`, `scheduler/`, `lora-calcified.safetensors`,
/// `lora-spiculated/`, `lora-subtlety.safetensors`, `inputs.safetensors`
/// (`background`, `mask`, `latent_mask`, `masked_latent`) and `demo.json`
/// (`class_label`, `guidance_scale`, `steps`, `subtlety_weights`).
struct DemoCommand: Command {
    let name = "demo"
    let summary = "Synthesize nodules on the bundled model with each LoRA, a merge and a slider; write a PNG grid."
    var details: String {
        """
        Every column starts from the same noise (torch.randn with --seed), so columns differ only by
        their adapters. The DiT's input at each step is [noisy latent, latent mask, masked-image latent].
        """
    }
    let options = [
        OptionSpec(name: "model", valueName: "DIR", help: "the demo model folder (default models/nodule-demo)"),
        OptionSpec(name: "output", valueName: "FILE.png", help: "the grid (default out/demo.png)"),
        OptionSpec(name: "tensors", valueName: "FILE.safetensors", help: "also write every image as tensors"),
        OptionSpec(name: "seed", valueName: "S", help: "noise seed (default 0)"),
        OptionSpec(name: "steps", valueName: "N", help: "inference steps (default: demo.json, else 50)"),
        OptionSpec(name: "threads", valueName: "N", help: "worker threads (default: all cores)"),
        OptionSpec(name: "radiograph", valueName: "FILE.png",
                   help: "also write a synthetic 480x480 16-bit radiograph for `nodus insert-nodule`"),
    ]

    /// One grid column: a label and the adapters active while sampling it (nil: an input column).
    struct Column {
        var label: String
        var key: String
        var adapters: [(String, Float)]
    }

    func run(_ arguments: ParsedArguments) throws {
        let folder = arguments.value("model") ?? "models/nodule-demo"
        let output = arguments.value("output") ?? "out/demo.png"
        guard output.lowercased().hasSuffix(".png") else { throw CLIError.usage("--output '\(output)' must end in .png") }
        guard let seed = UInt64(arguments.value("seed") ?? "0") else { throw CLIError.usage("--seed must be a non-negative integer") }
        let threads = Int32(try arguments.integer("threads", default: 0, in: 0...4096))
        let settings = try DemoSettings(folder: folder)
        let steps = try arguments.integer("steps", default: settings.steps, in: 1...10_000)

        let model = try ModelHandle(path: folder + "/dit", threads: threads)
        let vae = try ModelHandle(path: folder + "/vae", threads: threads)
        let scheduler = try SchedulerHandle(path: folder + "/scheduler")
        try model.loadLoRA(path: folder + "/lora-calcified.safetensors", adapterName: "calcified")
        try model.loadLoRA(path: folder + "/lora-spiculated", adapterName: "spiculated")
        try model.loadLoRA(path: folder + "/lora-subtlety.safetensors", adapterName: "subtlety")

        let inputs = try SafetensorsFile(path: folder + "/inputs.safetensors")
        let background = try inputs.tensor("background").asFloat32()
        let mask = try inputs.tensor("mask").asFloat32()
        let conditioning = try Tensor.concatenatingChannels([try inputs.tensor("latent_mask"),
                                                             try inputs.tensor("masked_latent")])
        let count = background.shape[0]
        let latentShape = [count, 4, conditioning.shape[2], conditioning.shape[3]]
        try check(nodus_scheduler_set_timesteps(scheduler.pointer, Int32(steps)), "set_timesteps")
        let initNoise = try RandnCommand.randn(shape: latentShape, seed: seed)  // nodus_sample scales it

        var columns = [
            Column(label: "no LoRA", key: "base", adapters: []),
            Column(label: "calcified", key: "calcified", adapters: [("calcified", 1)]),
            Column(label: "spiculated", key: "spiculated", adapters: [("spiculated", 1)]),
            Column(label: "50/50", key: "merge", adapters: [("calcified", 0.5), ("spiculated", 0.5)]),
        ]
        for (index, weight) in settings.subtletyWeights.enumerated() {
            columns.append(Column(label: "subtle \(String(significant: Double(weight), digits: 3))",
                                  key: "subtlety_\(index)", adapters: [("subtlety", weight)]))
        }
        var images: [(String, Tensor)] = [("background", background), ("mask", try maskImage(mask))]
        for column in columns {
            try model.setAdapters(column.adapters.map(\.0), weights: column.adapters.map(\.1))
            var job = SamplingJob(model: model, scheduler: scheduler, steps: steps, guidance: settings.guidance,
                                  initNoise: initNoise)
            job.labels = Array(repeating: settings.classLabel, count: count)
            job.conditioning = conditioning
            job.progressLabel = column.label
            images.append((column.key, try SamplingJob.decode(try job.run(), with: vae)))
        }
        let labels = ["background", "mask"] + columns.map(\.label)
        try makeParentFolder(of: output)
        try ImageGrid(columns: zip(labels, images.map(\.1)).map { ($0, $1) }).write(to: output)
        StandardStream.output("wrote \(output)\n")
        if let radiograph = arguments.value("radiograph") {
            try makeParentFolder(of: radiograph)
            try GrayscalePNG.write(samples: try SyntheticRadiograph.samples(width: 480, height: 480, seed: seed),
                                   width: 480, height: 480, bitDepth: 16, to: radiograph)
            StandardStream.output("wrote \(radiograph)\n")
        }
        if let tensorPath = arguments.value("tensors") {
            let weights = try Tensor(shape: [settings.subtletyWeights.count], floats: settings.subtletyWeights)
            try SafetensorsWriter.write((images + [("subtlety_weights", weights)]).map { (name: $0.0, tensor: $0.1) },
                                        to: tensorPath)
            StandardStream.output("wrote \(tensorPath)\n")
        }
    }

    /// A 0/1 mask shown as an image in [-1, 1].
    private func maskImage(_ mask: Tensor) throws -> Tensor {
        let image = try Tensor(zeros: mask.shape)
        for index in 0..<mask.elementCount { image.floats[index] = mask.floats[index] * 2 - 1 }
        return image
    }

    private func makeParentFolder(of path: String) throws {
        guard let slash = path.lastIndex(of: "/") else { return }
        let folder = String(path[..<slash])
        if !folder.isEmpty, mkdir(folder, 0o755) != 0, errno != EEXIST {
            throw CLIError.failure("cannot create '\(folder)': \(String(cString: strerror(errno)))")
        }
    }
}

/// The demo's sampling settings from `demo.json` in the model folder.
struct DemoSettings {
    var classLabel: Int64 = 0
    var guidance: Float = 3.5
    var steps = 50
    var subtletyWeights: [Float] = [0.5, 1, 2]

    init(folder: String) throws {
        let path = folder + "/demo.json"
        guard access(path, F_OK) == 0 else { return }
        let file = try MappedFile(path: path)
        let reader = try JSONObjectReader(try JSONValue.parse(UnsafeRawBufferPointer(start: file.bytes, count: file.byteCount),
                                                              context: "'\(path)'"), context: "'\(path)'")
        classLabel = Int64(try reader.int("class_label", default: 0))
        guidance = Float(try reader.double("guidance_scale", default: Double(guidance)))
        steps = try reader.int("steps", default: steps)
        if let weights = try reader.optionalDoubleArray("subtlety_weights") { subtletyWeights = weights.map { Float($0) } }
    }
}
