#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore
import NodusFormats

/// A nodule model folder, loaded once: `dit/` (mask-conditioned DiT), `vae/`,
/// `scheduler/`, LoRAs `lora-<characteristic>.safetensors` or `lora-<characteristic>/`,
/// and optionally `workflow.json` (`standard_size` 960, `class_label` 0,
/// `guidance_scale` 4.0, `subtlety_adapter` "subtlety" by default). The same folder
/// rules and painting as `nodus.workflows.NoduleModel`. The VAE may be a gray one or an
/// RGB one such as Stable Diffusion's: the gray patch goes to every input channel, and
/// the decoded channels are averaged back to gray.
final class NoduleModelFolder {
    let folder: String
    let dit: ModelHandle
    let vae: ModelHandle
    let scheduler: SchedulerHandle
    /// The scheduler config in use, as JSON text (the sidecar records it).
    let schedulerConfig: JSONValue
    var standardSize = 960
    var classLabel: Int64 = 0
    var guidanceScale: Float = 4
    var subtletyAdapter = "subtlety"
    /// Adapter name to file or folder.
    let adapterPaths: [String: String]
    let patchSize: Int
    let latentSize: Int
    let latentChannels: Int
    let scalingFactor: Float
    /// The VAE's image channels in and out (1 for a gray VAE, 3 for Stable Diffusion's).
    let imageChannels: (input: Int, output: Int)

    /// - Parameter schedulerClass: another diffusers scheduler class on the folder's
    ///   training betas ("DPMSolverMultistepScheduler": DPM-Solver++ 2M), or nil.
    init(folder: String, threads: Int32, schedulerClass: String? = nil) throws {
        self.folder = folder
        let settingsPath = folder + "/workflow.json"
        if access(settingsPath, F_OK) == 0 {
            let reader = try JSONObjectReader(try Self.readJSON(settingsPath), context: "'\(settingsPath)'")
            standardSize = try reader.int("standard_size", default: standardSize)
            classLabel = Int64(try reader.int("class_label", default: 0))
            guidanceScale = Float(try reader.double("guidance_scale", default: Double(guidanceScale)))
            subtletyAdapter = try reader.string("subtlety_adapter", default: subtletyAdapter)
        }
        for part in ["dit", "vae"] where access(folder + "/" + part, F_OK) != 0 {
            throw CLIError.failure("'\(folder)' is not a nodule model folder: it has no \(part)/")
        }
        dit = try ModelHandle(path: folder + "/dit", threads: threads)
        vae = try ModelHandle(path: folder + "/vae", threads: threads)
        guard dit.kindName == "dit", vae.kindName == "vae" else {
            throw CLIError.failure("'\(folder)': dit/ must hold a DiT and vae/ a VAE, found a \(dit.kindName) and a \(vae.kindName)")
        }
        guard case .object(var config) = try Self.readJSON(folder + "/scheduler/scheduler_config.json") else {
            throw CLIError.failure("'\(folder)/scheduler/scheduler_config.json' is not a JSON object")
        }
        if let schedulerClass {
            config["_class_name"] = .string(schedulerClass)
            if schedulerClass == "DPMSolverMultistepScheduler" {
                config["algorithm_type"] = config["algorithm_type"] ?? .string("dpmsolver++")
                config["solver_order"] = config["solver_order"] ?? .number(2)
            }
        }
        schedulerConfig = .object(config)
        scheduler = try SchedulerHandle(json: schedulerConfig.serialized(), label: "the scheduler of '\(folder)'")
        adapterPaths = try Self.adapters(in: folder)
        for (name, path) in adapterPaths.sorted(by: { $0.key < $1.key }) {
            try dit.loadLoRA(path: path, adapterName: name)
        }
        let vaeConfig = try vae.config()
        scalingFactor = Float(vaeConfig["scaling_factor"]?.doubleValue ?? 0.18215)
        latentChannels = vaeConfig["latent_channels"]?.intValue ?? 4
        imageChannels = (vaeConfig["in_channels"]?.intValue ?? 3, vaeConfig["out_channels"]?.intValue ?? 3)
        let levels = vaeConfig["block_out_channels"]?.arrayValue?.count ?? 4
        latentSize = try dit.configInteger("sample_size")
        patchSize = latentSize << (levels - 1)
        let channels = try dit.configInteger("in_channels")
        guard channels == 2 * latentChannels + 1 else {
            throw CLIError.failure("'\(folder)/dit' takes \(channels) channels; a mask-conditioned nodule model takes "
                + "\(2 * latentChannels + 1) (latent, mask, masked-image latent)")
        }
    }

    var schedulerName: String {
        nodus_scheduler_kind_name(scheduler.kind).map { String(cString: $0) } ?? "unknown"
    }

    private static func readJSON(_ path: String) throws -> JSONValue {
        let file = try MappedFile(path: path)
        return try JSONValue.parse(UnsafeRawBufferPointer(start: file.bytes, count: file.byteCount), context: "'\(path)'")
    }

    private static func adapters(in folder: String) throws -> [String: String] {
        guard let directory = opendir(folder) else {
            throw CLIError.failure("cannot list '\(folder)': \(String(cString: strerror(errno)))")
        }
        defer { closedir(directory) }
        var result: [String: String] = [:]
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasPrefix("lora-") else { continue }
            var adapter = String(name.dropFirst("lora-".count))
            if adapter.hasSuffix(".safetensors") {
                adapter = String(adapter.dropLast(".safetensors".count))
            } else {
                var status = stat()
                guard stat(folder + "/" + name, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else { continue }
            }
            result[adapter] = folder + "/" + name
        }
        return result
    }

    /// The active adapters: `adapters` by characteristic, plus the subtlety adapter at
    /// 2^(2 + subtlety) when a level is given. Unknown names are refused.
    func adapterWeights(_ adapters: [(String, Float)], subtlety: Double?) throws -> [(String, Float)] {
        var weights = adapters
        if let subtlety {
            guard !weights.contains(where: { $0.0 == subtletyAdapter }) else {
                throw CLIError.usage("give the '\(subtletyAdapter)' adapter a weight or a subtlety level, not both")
            }
            weights.append((subtletyAdapter, Float(pow(2, 2 + subtlety))))
        }
        let unknown = weights.map(\.0).filter { adapterPaths[$0] == nil }
        guard unknown.isEmpty else {
            throw CLIError.usage("'\(folder)' has no LoRA for \(unknown.map { "'\($0)'" }.joined(separator: ", ")); "
                + "it has \(adapterPaths.keys.sorted().joined(separator: ", "))")
        }
        return weights
    }

    /// A nodule painted into `patch` (row-major `patchSize`^2 pixels in [-1, 1]) inside
    /// `mask` (1 = nodule): the masked patch VAE-encoded (posterior mean), guided DiT
    /// sampling from `nodus_randn` noise of `seed`, the latent decoded.
    func paint(patch: [Double], mask: [Float], adapters: [(String, Float)], seed: UInt64, steps: Int,
               guidance: Float?, progressLabel: String) throws -> [Float] {
        let size = patchSize
        let gray = (0..<(size * size)).map { Float(patch[$0]) * (1 - mask[$0]) }
        let masked = try Tensor(shape: [1, imageChannels.input, size, size],
                                floats: Array([[Float]](repeating: gray, count: imageChannels.input).joined()))
        var image = try TensorArgument.make(masked)
        let encoded = try TensorArgument.outputs("VAE encode", count: 2) { outputs, _ in
            nodus_model_encode(vae.pointer, &image, outputs, outputs + 1)
        }
        withExtendedLifetime(masked) {}
        let mean = encoded[0]
        let factor = size / latentSize
        let cells = latentSize * latentSize
        var conditioning = [Float](repeating: 0, count: (1 + latentChannels) * cells)
        for index in 0..<(size * size) where mask[index] > 0 {
            conditioning[(index / size / factor) * latentSize + (index % size) / factor] = 1
        }
        for index in 0..<(latentChannels * cells) { conditioning[cells + index] = mean.floats[index] * scalingFactor }
        let noise = try RandnCommand.randn(shape: [1, latentChannels, latentSize, latentSize], seed: seed)
        if adapters.isEmpty {
            if !adapterPaths.isEmpty { try check(nodus_model_enable_lora(dit.pointer, 0), "disable_lora") }
        } else {
            try check(nodus_model_enable_lora(dit.pointer, 1), "enable_lora")
            try dit.setAdapters(adapters.map(\.0), weights: adapters.map(\.1))
        }
        try check(nodus_scheduler_set_timesteps(scheduler.pointer, Int32(steps)), "set_timesteps")
        var job = SamplingJob(model: dit, scheduler: scheduler, steps: steps, guidance: guidance ?? guidanceScale,
                              initNoise: noise)
        job.labels = [classLabel]
        job.conditioning = try Tensor(shape: [1, 1 + latentChannels, latentSize, latentSize], floats: conditioning)
        job.progressLabel = progressLabel
        let decoded = try SamplingJob.decode(try job.run(), with: vae)
        let planes = decoded.elementCount / (size * size)
        guard planes > 1 else { return Array(UnsafeBufferPointer(start: decoded.floats, count: size * size)) }
        // Gray again: the mean of the decoded channels, summed in channel order.
        return (0..<(size * size)).map { index in
            (0..<planes).reduce(Float(0)) { $0 + decoded.floats[$1 * size * size + index] } / Float(planes)
        }
    }
}
