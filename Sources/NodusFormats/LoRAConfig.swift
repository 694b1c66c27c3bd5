import NodusCore

/// The fields of a PEFT `LoraConfig` that decide a layer's rank and scale, read from
/// diffusers' `lora_adapter_metadata` or a PEFT folder's `adapter_config.json`.
///
/// Matches PEFT 0.21.2 (`tuners/lora/model.py`, `LoraModel._create_and_replace`, and
/// `tuners/lora/layer.py`, `LoraLayer.update_layer`): a module's rank is
/// `rank_pattern[get_pattern_key(rank_pattern, module)]` or `r`; its alpha is
/// `alpha_pattern[get_pattern_key(alpha_pattern, module)]` or `lora_alpha`; its scale is
/// `alpha / r`, or `alpha / sqrt(r)` with `use_rslora`. Missing fields take
/// `LoraConfig`'s defaults (`r = 8`, `lora_alpha = 8`, no patterns, no rsLoRA).
///
/// Limitations: `target_modules` / `exclude_modules` are kept but not used to filter
/// layers (the file's keys decide which modules have a LoRA); DoRA (`use_dora`),
/// `lora_bias` and non-LoRA `peft_type`s are rejected.
public struct LoRAConfig: Sendable {
    /// `r`: the rank of modules no `rank_pattern` key matches.
    public var rank: Int
    /// `lora_alpha`: the alpha of modules no `alpha_pattern` key matches.
    public var alpha: Double
    /// `rank_pattern`, in the order of the JSON text (PEFT takes the first match).
    public var rankPattern: [(pattern: String, rank: Int)]
    /// `alpha_pattern`, in the order of the JSON text.
    public var alphaPattern: [(pattern: String, alpha: Double)]
    /// `use_rslora`: scale = alpha / sqrt(rank) instead of alpha / rank.
    public var useRslora: Bool
    /// `target_modules` as stored (a list of names or a regex string), if any.
    public var targetModules: JSONValue?

    /// PEFT's `LoraConfig` defaults for `r` and `lora_alpha`.
    public static let defaultRank = 8
    public static let defaultAlpha = 8.0

    public init(rank: Int = LoRAConfig.defaultRank, alpha: Double = LoRAConfig.defaultAlpha,
                rankPattern: [(pattern: String, rank: Int)] = [], alphaPattern: [(pattern: String, alpha: Double)] = [],
                useRslora: Bool = false, targetModules: JSONValue? = nil) {
        self.rank = rank
        self.alpha = alpha
        self.rankPattern = rankPattern
        self.alphaPattern = alphaPattern
        self.useRslora = useRslora
        self.targetModules = targetModules
    }

    /// Reads a LoraConfig object.
    /// - Parameters:
    ///   - members: the config's fields (`r`, `lora_alpha`, `rank_pattern`, ...).
    ///   - rankPatternOrder / alphaPatternOrder: the pattern keys in the JSON text's order
    ///     (from `objectKeyOrder(in:)`); sorted order when nil or inconsistent.
    ///   - context: names the source in messages ("metadata key 'lora_adapter_metadata' of LoRA file 'x'").
    /// - Throws: `NodusError.format` naming the context and field for a wrong type or a
    ///   non-positive rank; `NodusError.unsupported` for `use_dora`, `lora_bias` or a
    ///   `peft_type` other than LORA.
    public init(members: [String: JSONValue], rankPatternOrder: [String]? = nil, alphaPatternOrder: [String]? = nil,
                context: String) throws {
        let reader = try JSONObjectReader(.object(members), context: context)
        if let peftType = try reader.optionalString("peft_type"), peftType != "LORA" {
            throw NodusError.unsupported("\(context): peft_type '\(peftType)' is not supported (only LORA)")
        }
        if try reader.bool("use_dora", default: false) {
            throw NodusError.unsupported("\(context): use_dora = true (DoRA) is not supported")
        }
        if try reader.bool("lora_bias", default: false) {
            throw NodusError.unsupported("\(context): lora_bias = true (a bias on lora_B) is not supported")
        }
        let rank = try reader.int("r", default: LoRAConfig.defaultRank)
        guard rank > 0 else {
            throw NodusError.format("\(context): field 'r' must be a positive integer, found \(rank)")
        }
        let alpha = try reader.double("lora_alpha", default: LoRAConfig.defaultAlpha)
        let useRslora = try reader.bool("use_rslora", default: false)

        var rankPattern: [(pattern: String, rank: Int)] = []
        for key in try LoRAConfig.patternKeys(reader, "rank_pattern", order: rankPatternOrder) {
            guard let value = members["rank_pattern"]?[key]?.intValue, value > 0 else {
                throw NodusError.format("\(context): rank_pattern['\(key)'] must be a positive integer, found \(members["rank_pattern"]?[key]?.serialized() ?? "nothing")")
            }
            rankPattern.append((key, value))
        }
        var alphaPattern: [(pattern: String, alpha: Double)] = []
        for key in try LoRAConfig.patternKeys(reader, "alpha_pattern", order: alphaPatternOrder) {
            guard let value = members["alpha_pattern"]?[key]?.doubleValue else {
                throw NodusError.format("\(context): alpha_pattern['\(key)'] must be a number, found \(members["alpha_pattern"]?[key]?.serialized() ?? "nothing")")
            }
            alphaPattern.append((key, value))
        }
        let targets = members["target_modules"]
        self.init(rank: rank, alpha: alpha, rankPattern: rankPattern, alphaPattern: alphaPattern,
                  useRslora: useRslora, targetModules: targets?.isNull == true ? nil : targets)
    }

    /// The keys of pattern object `field` (absent or null: none), in `order` when it lists
    /// exactly those keys, else sorted (the order `json.dumps(sort_keys=True)` writes).
    private static func patternKeys(_ reader: JSONObjectReader, _ field: String, order: [String]?) throws -> [String] {
        guard reader.has(field) else { return [] }
        guard let members = reader.members[field]?.objectValue else {
            throw NodusError.format("\(reader.context): field '\(field)' must be an object, found \(reader.members[field]?.serialized() ?? "nothing")")
        }
        if let order, order.count == members.count, Set(order) == Set(members.keys) { return order }
        return members.keys.sorted()
    }

    /// The rank and alpha PEFT gives `module` (its name in the model, prefixes removed).
    /// - Throws: `NodusError.format` when a pattern key is not a valid regular expression.
    public func rankAndAlpha(for module: String) throws -> (rank: Int, alpha: Double) {
        try rankAndAlpha(forModules: [module])[0]
    }

    /// `rankAndAlpha(for:)` for many modules, compiling each pattern once.
    public func rankAndAlpha(forModules modules: [String]) throws -> [(rank: Int, alpha: Double)] {
        var rankMatcher = PatternMatcher(rankPattern.map(\.pattern))
        var alphaMatcher = PatternMatcher(alphaPattern.map(\.pattern))
        var result: [(rank: Int, alpha: Double)] = []
        result.reserveCapacity(modules.count)
        for module in modules {
            var rank = self.rank
            if let key = try rankMatcher.firstMatch(module), let entry = rankPattern.first(where: { $0.pattern == key }) {
                rank = entry.rank
            }
            var alpha = self.alpha
            if let key = try alphaMatcher.firstMatch(module), let entry = alphaPattern.first(where: { $0.pattern == key }) {
                alpha = entry.alpha
            }
            result.append((rank, alpha))
        }
        return result
    }

    /// PEFT's `LoraLayer.update_layer` scaling: `alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA.
    public func scale(rank: Int, alpha: Double) -> Double {
        useRslora ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
    }
}
