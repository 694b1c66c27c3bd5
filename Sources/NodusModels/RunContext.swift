import NodusCore
import NodusGraph

/// A model's run state, as a llama.cpp context is to its model: the plans and
/// activation arenas built for the input shapes it has run, its thread count and
/// memory budget, and the strengths of the model's unfused LoRA adapters.
///
/// Contexts of one model share its weights and their packed copies (stored
/// once), so several contexts run one model from several threads at the same
/// time; one context runs one call at a time (its arenas are its own). Every
/// model has a default context, which its plain calls (`forward`,
/// `lora.setAdapters`) use. A new context starts with the adapters active in
/// the model's default context at that moment; `setAdapters` then changes its
/// own strengths only. Loading, deleting, fusing and unfusing adapters change
/// the model: they wait for every running call of every context to finish, and
/// each context rebuilds its plans at its next call, so no call sees a weight
/// half fused.
public final class RunContext: @unchecked Sendable {
    /// What a context is made with.
    public struct Settings: Sendable, Equatable {
        /// Worker threads of the context's calls (0 = every core).
        public var threads: Int
        /// What the context's plans may hold in activations.
        public var memoryBudget: MemoryBudget

        public init(threads: Int = 0, memoryBudget: MemoryBudget = .machine) {
            self.threads = threads
            self.memoryBudget = memoryBudget
        }
    }

    public let settings: Settings
    /// Worker threads of this context's calls (0 = every core).
    public var threads: Int { settings.threads }
    /// The unfused adapters' strengths this context runs with, by adapter slot.
    let strengths: AdapterWeights
    private var executables: ExecutableCache
    /// One call at a time in this context.
    private let calls = ReadWriteLock()

    /// - Throws: `invalidArgument` for a thread count outside 0...`Parallel.maximumThreads`.
    init(_ settings: Settings, packedWeights: PackedWeights, strengths: AdapterWeights = AdapterWeights()) throws {
        guard (0...Parallel.maximumThreads).contains(settings.threads) else {
            throw NodusError.invalidArgument(
                "threads must be in 0...\(Parallel.maximumThreads) (0 = every core), got \(settings.threads)")
        }
        self.settings = settings
        self.strengths = strengths
        executables = ExecutableCache(packedWeights: packedWeights, budget: settings.memoryBudget)
    }

    /// Runs `body` as one call of this context: alone in the context, with its threads, while the
    /// model's adapters cannot change (`structure` held shared).
    func run<Result>(structure: ReadWriteLock, _ body: (inout ExecutableCache) throws -> Result) throws -> Result {
        try calls.writing {
            try structure.reading {
                try Parallel.withThreads(threads) { try body(&executables) }
            }
        }
    }
}

/// A model that runs in several contexts (its weights shared by all of them).
public protocol ContextualModel: DiffusionModel {
    /// The context the model's plain calls run in.
    var defaultContext: RunContext { get }
    /// A new context with its own arenas, its settings' threads and budget, and the default
    /// context's adapters.
    func makeContext(_ settings: RunContext.Settings) throws -> RunContext
    /// `forwardAll` in `context`.
    func forwardAll(_ inputs: [String: Tensor], in context: RunContext) throws -> [Tensor]
    /// `outputShapes` for a run in `context` (an ONNX graph plans for the shapes to know them).
    func outputShapes(for inputs: [String: Tensor], in context: RunContext) throws -> [[Int]]
}

extension ContextualModel {
    /// Models whose output shapes follow from their inputs without a plan.
    public func outputShapes(for inputs: [String: Tensor], in context: RunContext) throws -> [[Int]] {
        try outputShapes(for: inputs)
    }
}
