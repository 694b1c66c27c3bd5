import NodusCore

extension LoRAFile {
    /// What a key of a LoRA file holds.
    enum KeyRole: Sendable {
        case down, up, alpha
    }

    /// One recognised key of a LoRA file.
    struct ParsedKey: Sendable {
        var key: String
        var role: KeyRole
        var format: LoRAFormat
        /// The module path, prefixes removed (kohya: underscored).
        var module: String
        /// The `LoRALayer.component` ("transformer", "unet", "text_encoder" or "").
        var component: String
        /// Which model the module belongs to, for duplicate detection: "model" (transformer,
        /// unet, no prefix), "text_encoder", "text_encoder_2", "text_encoder_3".
        var group: String
        /// The prefix that picks the LoraConfig in diffusers' metadata ("transformer", "unet",
        /// "text_encoder", "text_encoder_2"; "" when none).
        var configPrefix: String
        /// PEFT's adapter name in `lora_A.<name>.weight`, when the key holds one.
        var adapterName: String?
    }

    /// Key fragments of adapter types other than LoRA, with their names for messages.
    static let otherAdapterMarkers: [(fragment: String, name: String)] = [
        (".hada_", "LoHa"),
        (".lokr_", "LoKr"),
        (".dora_scale", "DoRA"),
        (".lora_magnitude_vector", "DoRA"),
        (".lora_mid.", "LoCon (Tucker lora_mid)"),
        (".oft_", "OFT"),
        (".boft_", "BOFT"),
        (".lora_embedding_", "embedding LoRA"),
        (".ia3_l", "IA3"),
        (".vera_lambda", "VeRA"),
        (".lora_E.", "AdaLoRA"),
        (".ranknum", "AdaLoRA"),
    ]

    /// kohya / A1111 key prefixes: (prefix, component, group).
    /// `lora_te_` is SD 1.x/2.x's only text encoder, `lora_te1_` / `lora_te2_` SDXL's two.
    static let kohyaPrefixes: [(prefix: String, component: String, group: String)] = [
        ("lora_unet_", "unet", "model"),
        ("lora_te_", "text_encoder", "text_encoder"),
        ("lora_te1_", "text_encoder", "text_encoder"),
        ("lora_te2_", "text_encoder", "text_encoder_2"),
        ("lora_te3_", "text_encoder", "text_encoder_3"),
    ]

    /// diffusers component prefixes: (prefix, component, group).
    static let diffusersPrefixes: [(prefix: String, component: String, group: String)] = [
        ("transformer", "transformer", "model"),
        ("unet", "unet", "model"),
        ("text_encoder", "text_encoder", "text_encoder"),
        ("text_encoder_2", "text_encoder", "text_encoder_2"),
    ]

    /// Parses one key.
    /// - Returns: the parsed key, or nil when the key is not a LoRA key.
    /// - Throws: `NodusError.unsupported` naming the key for another adapter type (LoHa,
    ///   LoKr, DoRA, full `.diff`, ...) or a `lora_B` / `lora_up` bias.
    static func parseKey(_ key: String, context: String) throws -> ParsedKey? {
        for marker in otherAdapterMarkers where key.contains(marker.fragment) {
            throw NodusError.unsupported("\(context): key '\(key)' belongs to a \(marker.name) adapter, which is not supported (only LoRA)")
        }
        if key.hasSuffix(".diff") || key.hasSuffix(".diff_b") {
            throw NodusError.unsupported("\(context): key '\(key)' is a full weight difference ('.diff'), which is not supported (only LoRA)")
        }
        if let kohya = kohyaPrefixes.first(where: { key.hasPrefix($0.prefix) }) {
            let rest = key.dropFirst(kohya.prefix.count)
            guard let dot = rest.firstIndex(of: "."), dot > rest.startIndex else { return nil }
            let module = String(rest[..<dot])
            let suffix = rest[rest.index(after: dot)...]
            let role: KeyRole
            switch suffix {
            case "lora_down.weight": role = .down
            case "lora_up.weight": role = .up
            case "alpha": role = .alpha
            case "lora_up.bias", "lora_down.bias":
                throw NodusError.unsupported("\(context): key '\(key)' is a LoRA bias, which is not supported")
            default: return nil
            }
            return ParsedKey(key: key, role: role, format: .kohya, module: module, component: kohya.component,
                             group: kohya.group, configPrefix: "", adapterName: nil)
        }

        // diffusers / PEFT: <prefix>.<module>.lora_A[.<adapter>].weight, ... .lora_B ..., <module>.alpha
        var parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let role: KeyRole
        var adapterName: String?
        if parts.count >= 2, parts[parts.count - 1] == "alpha" {
            role = .alpha
            parts.removeLast()
        } else if let index = parts.lastIndex(where: { $0 == "lora_A" || $0 == "lora_B" }),
                  index >= 1, index == parts.count - 2 || index == parts.count - 3 {
            let tail = parts[parts.count - 1]
            if tail == "bias" {
                throw NodusError.unsupported("\(context): key '\(key)' is a LoRA bias (PEFT lora_bias), which is not supported")
            }
            guard tail == "weight" else { return nil }
            if index == parts.count - 3 {
                adapterName = parts[index + 1]
            }
            role = parts[index] == "lora_A" ? .down : .up
            parts.removeSubrange(index...)
        } else {
            return nil
        }
        // PEFT's PeftModel.save_pretrained writes `base_model.model.<module>`.
        if parts.count > 2, parts[0] == "base_model", parts[1] == "model" {
            parts.removeFirst(2)
        }
        var component = ""
        var group = "model"
        var configPrefix = ""
        if parts.count > 1, let prefix = diffusersPrefixes.first(where: { $0.prefix == parts[0] }) {
            component = prefix.component
            group = prefix.group
            configPrefix = prefix.prefix
            parts.removeFirst()
        }
        let module = parts.joined(separator: ".")
        guard !module.isEmpty, !parts.contains(where: \.isEmpty) else { return nil }
        return ParsedKey(key: key, role: role, format: .peft, module: module, component: component,
                         group: group, configPrefix: configPrefix, adapterName: adapterName)
    }

    /// The key that would complete `key`'s pair (for "A without its B" messages).
    static func partnerKey(of key: String, role: KeyRole) -> String {
        var parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let swaps: [String: String] = role == .down
            ? ["lora_A": "lora_B", "lora_down": "lora_up"]
            : ["lora_B": "lora_A", "lora_up": "lora_down"]
        if let index = parts.lastIndex(where: { swaps[$0] != nil }), let swapped = swaps[parts[index]] {
            parts[index] = swapped
        }
        return parts.joined(separator: ".")
    }
}
