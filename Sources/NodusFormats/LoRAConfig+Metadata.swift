import NodusCore

extension LoRAConfig {
    /// The safetensors `__metadata__` key under which diffusers stores the LoraConfig
    /// (diffusers 0.42.1 `loaders/lora_base.py`, `LORA_ADAPTER_METADATA_KEY`).
    public static let metadataKey = "lora_adapter_metadata"

    /// Reads diffusers' `lora_adapter_metadata` JSON into one config per component prefix
    /// ("" for an unprefixed config).
    ///
    /// diffusers 0.42.1 writes it in two ways, both `json.dumps(..., indent=2, sort_keys=True)`
    /// with sets turned into lists:
    /// - a pipeline's `save_lora_weights` (`LoraBaseMixin._save_lora_weights` ->
    ///   `_pack_dict_with_prefix(config, prefix)` -> `write_lora_layers`) flattens each
    ///   component's `LoraConfig` dict with dotted prefixes: `{"transformer.r": 4,
    ///   "transformer.lora_alpha": 8, "transformer.rank_pattern": {...}, ...}`; the loader
    ///   (`PeftAdapterMixin.load_lora_adapter`) keeps the keys starting with `"<prefix>."` and
    ///   strips the prefix;
    /// - a model's `save_lora_adapter` (`loaders/peft.py`) writes `peft_config.to_dict()`
    ///   unprefixed: `{"r": 4, "lora_alpha": 8, ...}`.
    /// A nested form (`{"transformer": {"r": 4, ...}}`) is accepted too.
    ///
    /// An empty object counts as no metadata (no configs).
    /// - Returns: the parsed JSON and the configs by prefix.
    /// - Throws: `NodusError.format` naming `context` (which names the metadata key) when the
    ///   text is not JSON, not an object, or a field has a wrong type.
    static func metadataConfigs(_ text: String, context: String) throws -> (value: JSONValue, configs: [String: LoRAConfig]) {
        let value = try JSONValue.parse(text, context: context)
        guard let members = value.objectValue else {
            throw NodusError.format("\(context) is not a JSON object: \(value.serialized().prefix(200))")
        }
        let orders = LoRAConfig.objectKeyOrder(in: text)
        var groups: [String: [String: JSONValue]] = [:]
        var patternPaths: [String: (rank: [String], alpha: [String])] = [:]
        for (key, item) in members {
            if let dot = key.lastIndex(of: ".") {
                let prefix = String(key[..<dot])
                let field = String(key[key.index(after: dot)...])
                groups[prefix, default: [:]][field] = item
                patternPaths[prefix] = ([prefix + ".rank_pattern"], [prefix + ".alpha_pattern"])
            } else if let nested = item.objectValue,
                      nested["r"] != nil || nested["lora_alpha"] != nil || nested["peft_type"] != nil {
                for (field, fieldValue) in nested { groups[key, default: [:]][field] = fieldValue }
                patternPaths[key] = ([key, "rank_pattern"], [key, "alpha_pattern"])
            } else {
                groups["", default: [:]][key] = item
                patternPaths[""] = (["rank_pattern"], ["alpha_pattern"])
            }
        }
        var configs: [String: LoRAConfig] = [:]
        for (prefix, fields) in groups {
            let paths = patternPaths[prefix]
            let groupContext = prefix.isEmpty ? context : "\(context), prefix '\(prefix)'"
            configs[prefix] = try LoRAConfig(members: fields,
                                             rankPatternOrder: paths.flatMap { orders[$0.rank] },
                                             alphaPatternOrder: paths.flatMap { orders[$0.alpha] },
                                             context: groupContext)
        }
        return (value, configs)
    }

    /// Reads a PEFT folder's `adapter_config.json` text (written by PEFT's
    /// `PeftConfigMixin.save_pretrained` with `json.dumps(..., indent=2, sort_keys=True)`).
    /// - Throws: `NodusError.format` naming `context` for invalid JSON or fields;
    ///   `NodusError.unsupported` for a non-LoRA `peft_type` or DoRA.
    static func adapterConfig(_ text: String, context: String) throws -> (value: JSONValue, config: LoRAConfig) {
        let value = try JSONValue.parse(text, context: context)
        guard let members = value.objectValue else {
            throw NodusError.format("\(context) is not a JSON object")
        }
        let orders = LoRAConfig.objectKeyOrder(in: text)
        let config = try LoRAConfig(members: members, rankPatternOrder: orders[["rank_pattern"]],
                                    alphaPatternOrder: orders[["alpha_pattern"]], context: context)
        return (value, config)
    }
}
