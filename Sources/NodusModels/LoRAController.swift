import NodusCore
import NodusFormats
import NodusGraph

/// The LoRA interface of a model (diffusers' `load_lora_weights`,
/// `set_adapters`, `fuse_lora`, ...). See `AdapterSet` for the semantics.
/// `setAdapters` sets the strengths of the model's default run context;
/// `setAdapters(_:weights:in:)` those of another context. Loading, deleting,
/// fusing and unfusing change the model for every context: they hold
/// `structure` alone, so they wait for running calls and calls wait for them.
public final class LoRAController {
    private let adapters = AdapterSet()
    private let weights: Weights
    private let matcher: LoRAMatcher
    /// Bumped by every change that alters the graph (load, delete, fuse,
    /// unfuse); plans built for an older generation are stale. Changing
    /// adapter weights or enabling/disabling does not bump it.
    public private(set) var generation = 0

    /// How LoRA files are held (the model's `ModelOptions.fileAccess`).
    public let fileAccess: FileAccess
    /// The model's thread count, which fusing runs on (0 = every core).
    let threads: Int

    /// Held shared by every running call of every context, alone by changes of the adapters.
    let structure = ReadWriteLock()

    /// The strengths the default context's plans read.
    var defaultStrengths: AdapterWeights { adapters.runtimeWeights }

    /// - Parameter options: the model's: how its files are read, and the threads its fusing runs on.
    init(weights: Weights, targets: [String: [Int]], aliases: [String: String] = [:], options: ModelOptions) {
        self.weights = weights
        self.fileAccess = options.fileAccess
        self.threads = options.threads
        self.matcher = LoRAMatcher(targets: targets, aliases: aliases)
    }

    /// Loads a LoRA file or PEFT adapter folder as adapter `adapterName`, which
    /// becomes the only active adapter (weight 1). On failure nothing changes.
    public func load(path: String, adapterName: String) throws -> LoRAReport {
        try load(LoRAFile.load(path: path, access: fileAccess), adapterName: adapterName)
    }

    /// Adds an already read file as adapter `adapterName` (a pipeline reads one file for
    /// several models). On failure nothing changes.
    public func load(_ file: LoRAFile, adapterName: String) throws -> LoRAReport {
        try structure.writing {
            let report = try adapters.load(file, name: adapterName, matcher: matcher)
            generation += 1
            return report
        }
    }

    /// Whether any layer of `file` targets a Linear of this model.
    public func matchesAny(_ file: LoRAFile) -> Bool {
        matcher.targetsAny(file)
    }

    /// Activates exactly `names` with `weights` (diffusers `set_adapters`); costs nothing.
    public func setAdapters(_ names: [String], weights: [Float]) throws {
        try adapters.setActive(names, weights: weights)
    }

    /// Activates exactly `names` with `weights` in `context` only.
    public func setAdapters(_ names: [String], weights: [Float], in context: RunContext) throws {
        context.strengths.set(try adapters.slotWeights(names, weights: weights))
    }

    /// A new run context starting with the default context's strengths.
    func makeContext(_ settings: RunContext.Settings, packedWeights: PackedWeights) throws -> RunContext {
        let strengths = AdapterWeights()
        strengths.set(adapters.runtimeWeights.all)
        return try RunContext(settings, packedWeights: packedWeights, strengths: strengths)
    }

    public var activeAdapters: [String] { adapters.active }
    public var adapterNames: [String] { adapters.names }

    /// disable_lora / enable_lora: the base model, or the active adapters again.
    public var isEnabled: Bool {
        get { adapters.isEnabled }
        set { adapters.isEnabled = newValue }
    }

    public func delete(_ names: [String]) throws {
        try structure.writing {
            try adapters.delete(names)
            generation += 1
        }
    }

    /// Merges `lora_scale * w_i * s_i * B_i A_i` of `adapterNames` (nil: the
    /// active ones) into copies of the weights (see `Weights.installMerged` for
    /// their memory).
    public func fuse(adapterNames: [String]?, loraScale: Float) throws {
        try structure.writing {
            let (names, terms) = try adapters.fusionTerms(for: adapterNames, loraScale: loraScale)
            let fused = try Parallel.withThreads(threads) { try weights.installMerged(terms) }
            adapters.markFused(names, weights: fused)
            generation += 1
        }
    }

    /// Drops the merged copies: the weights are the mapped originals again, bit
    /// for bit. The copies' memory is kept for the next fuse, lazily free
    /// (`Weights.removeReplacements`).
    public func unfuse() {
        structure.writing {
            weights.removeReplacements()
            adapters.markUnfused()
            generation += 1
        }
    }

    public var fusedAdapters: [String] { adapters.fusedAdapters }

    public func report(for adapterName: String) -> LoRAReport? { adapters.adapter(named: adapterName)?.report }

    /// Per targeted Linear, how the updates of adapters `first` and `second` relate
    /// (layers only one of them changes have interference and cosine 0).
    public func compare(_ first: String, _ second: String) throws -> [LoRALayerComparison] {
        guard let a = adapters.adapter(named: first), let b = adapters.adapter(named: second) else {
            let missing = adapters.adapter(named: first) == nil ? first : second
            throw NodusError.invalidArgument("no adapter named '\(missing)' is loaded (loaded: \(adapters.names.joined(separator: ", ")))")
        }
        func updates(_ adapter: AdapterSet.Adapter, _ weight: String) -> [LowRankUpdate] {
            (adapter.paths[weight] ?? []).map { LowRankUpdate(down: $0.down, up: $0.up, scale: Double($0.scale)) }
        }
        let weightNames = Set(a.paths.keys).union(b.paths.keys).sorted()
        return weightNames.map { name in
            LoRALayerComparison.compare(module: String(name.dropLast(".weight".count)), updates(a, name), updates(b, name))
        }
    }

    /// Writes the model's current weights (fused adapters included) as a
    /// diffusers folder: config.json and diffusion_pytorch_model.safetensors.
    /// Unchanged weights keep the file's dtype; fused ones are float32.
    func save(config: JSONValue, to directory: String) throws {
        try ModelFolderWriter.write(config: config, weights: weights, to: directory)
    }

    /// State for hosts: {"enabled", "active": {name: weight}, "adapters": [...], "fused": [...]}.
    public var stateJSON: JSONValue { adapters.json }

    /// Adds the unfused side paths to a graph built from the (possibly fused) weights, reading
    /// `strengths` (a run context's) when they run.
    func apply(to graph: Graph, strengths: AdapterWeights) throws -> Graph {
        try LoRAPass(paths: adapters.lowRankPaths(), weights: strengths).apply(to: graph)
    }
}

/// A model LoRA adapters can change.
public protocol AdaptableModel: DiffusionModel {
    var lora: LoRAController { get }
    /// Writes the model with its fused adapters as a new diffusers folder (`nodus lora merge`).
    func save(to directory: String) throws
}

extension AdaptableModel {
    public func save(to directory: String) throws {
        try lora.save(config: config, to: directory)
    }
}
