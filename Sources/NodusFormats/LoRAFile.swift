#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// A LoRA adapter read into one normalised form: one `LoRALayer` (A, B, rank, alpha,
/// scale) per adapted module, whatever the file's naming.
///
/// Formats (all safetensors; F32 / F16 / BF16 / F64 factors, read as float32 — aligned
/// F32 factors are zero-copy, read-only views of the file mapping):
/// - **diffusers / PEFT** (`format == .peft`): `<prefix>.<module>.lora_A.weight` [rank, in]
///   and `.lora_B.weight` [out, rank], prefix `transformer.`, `unet.`, `text_encoder.`,
///   `text_encoder_2.`, PEFT's `base_model.model.`, or none; PEFT state dicts' adapter name
///   (`.lora_A.default.weight`) is dropped. The scale comes from the LoraConfig in
///   diffusers' `lora_adapter_metadata` (see `LoRAConfig.metadataConfigs`) or, for a PEFT
///   folder (`adapter_config.json` + `adapter_model.safetensors`), from `adapter_config.json`:
///   `alpha / r` or `alpha / sqrt(r)` (rsLoRA), with PEFT's `rank_pattern` / `alpha_pattern`
///   (see `LoRAConfig.patternKey`). Without a config the scale is 1, as diffusers assumes
///   (`get_peft_kwargs` sets `lora_alpha = r` per module). `<module>.alpha` tensors (as some
///   trainers write beside `lora_A` / `lora_B`) act as kohya alphas.
/// - **kohya / A1111** (`format == .kohya`): `lora_unet_<module, . as _>.lora_down.weight`
///   (A), `.lora_up.weight` (B), `.alpha` (a one-element tensor); `lora_te_`, `lora_te1_`,
///   `lora_te2_`, `lora_te3_` text-encoder layers are kept with component "text_encoder".
///   Scale = alpha / rank; when no layer has an alpha, alpha = rank (scale 1), as diffusers
///   (`_convert_non_diffusers_lora_to_diffusers` + `get_peft_kwargs`) and A1111 assume. Alphas
///   on some layers only are an error (diffusers would silently give the others the most
///   common alpha).
/// - A LoRA on an original-DiT fused `qkv` Linear (B [3 * hidden, rank]) is an ordinary
///   layer named `...qkv`; the model side splits it.
/// - 1x1 convolution factors ([rank, in, 1, 1], [out, rank, 1, 1]) are reshaped to 2-D.
///
/// Validation (each error names the file and the key): no LoRA key at all (`.format`,
/// listing keys found); an A without its B or the reverse, an alpha without its layer
/// (`.format`); rank 0, A/B rank mismatch, a factor that is not 2-D, a rank that differs
/// from the LoraConfig's (`.shape`); NaN or Inf in any A, B or alpha, a zero, negative or
/// NaN alpha (`.format`); one module given twice (two prefixes, two adapter names, or
/// `lora_A` and `lora_down`), several adapter names, alphas on some layers only, diffusers
/// and kohya names mixed (`.format`); other adapter types (LoHa `hada_`, LoKr `lokr_`, full
/// `.diff`, DoRA `dora_scale` / `lora_magnitude_vector`, OFT, ...), LoRA biases, 3x3
/// (LoCon) convolutions and unknown keys (`.unsupported`); malformed metadata JSON
/// (`.format` naming `lora_adapter_metadata`).
///
/// Limitations: safetensors only (no `.bin` / `.pt` pickles); `target_modules` is not used
/// to filter layers; the kohya module name stays underscored (the model side maps it).
public struct LoRAFile: Sendable {
    /// The path given to `load(path:)` (a file or a PEFT adapter folder).
    public let path: String
    public let format: LoRAFormat
    /// Sorted by module (then component).
    public let layers: [LoRALayer]
    /// The LoraConfig JSON used (the parsed `lora_adapter_metadata` — possibly holding several
    /// prefixed configs — or `adapter_config.json`), if any; nil for kohya files.
    public let config: JSONValue?

    public init(path: String, format: LoRAFormat, layers: [LoRALayer], config: JSONValue?) {
        self.path = path
        self.format = format
        self.layers = layers
        self.config = config
    }

    /// Loads a `.safetensors` LoRA file or a PEFT adapter folder.
    ///
    /// A file named `adapter_model.safetensors` with an `adapter_config.json` beside it is
    /// read as its PEFT folder.
    /// - Throws: `NodusError.io` when the path cannot be read or a folder lacks
    ///   `adapter_model.safetensors` / `adapter_config.json`; `.format`, `.shape` or
    ///   `.unsupported` as listed in the type's documentation, naming the file and the key.
    /// - Parameter access: how the file is held: mapped (factors stored as aligned float32 are
    ///   then views of the mapping), or read into memory.
    public static func load(path: String, access: FileAccess = .mapped) throws -> LoRAFile {
        var weightsPath = path
        var configPath: String?
        if isDirectory(path) {
            let folder = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
            weightsPath = "\(folder)/adapter_model.safetensors"
            guard isRegularFile(weightsPath) else {
                if isRegularFile("\(folder)/adapter_model.bin") {
                    throw NodusError.unsupported("PEFT adapter folder '\(folder)' holds adapter_model.bin (a pickle); only adapter_model.safetensors is supported")
                }
                throw NodusError.io("PEFT adapter folder '\(folder)' has no adapter_model.safetensors")
            }
            configPath = "\(folder)/adapter_config.json"
            guard let configPath, isRegularFile(configPath) else {
                throw NodusError.io("PEFT adapter folder '\(folder)' has no adapter_config.json")
            }
        } else if path == "adapter_model.safetensors" || path.hasSuffix("/adapter_model.safetensors") {
            let sibling = String(path.dropLast("adapter_model.safetensors".count)) + "adapter_config.json"
            if isRegularFile(sibling) { configPath = sibling }
        }

        let file = try SafetensorsFile(path: weightsPath, access: access)
        let context = "LoRA file '\(weightsPath)'"
        var folderConfig: (value: JSONValue, config: LoRAConfig)?
        if let configPath {
            let mapping = try MappedFile(path: configPath)
            let text = String(decoding: UnsafeRawBufferPointer(start: mapping.bytes, count: mapping.byteCount), as: UTF8.self)
            folderConfig = try LoRAConfig.adapterConfig(text, context: "adapter config '\(configPath)'")
        }
        var metadataConfig: (value: JSONValue, configs: [String: LoRAConfig])?
        if let text = file.metadata[LoRAConfig.metadataKey], !text.isEmpty {
            let parsed = try LoRAConfig.metadataConfigs(text, context: "metadata key '\(LoRAConfig.metadataKey)' of \(context)")
            if !parsed.configs.isEmpty { metadataConfig = parsed }
        }

        let slots = try pairKeys(of: file, context: context)
        guard let format = slots.first?.format else {
            throw NodusError.format("\(context): no LoRA weights found")
        }
        var configs: [String: LoRAConfig] = [:]
        var configValue: JSONValue?
        var configSource = ""
        if format == .peft {
            if let folderConfig {
                configs = ["": folderConfig.config]
                configValue = folderConfig.value
                configSource = "adapter config '\(configPath ?? "")'"
            } else if let metadataConfig {
                configs = metadataConfig.configs
                configValue = metadataConfig.value
                configSource = "metadata key '\(LoRAConfig.metadataKey)' of \(context)"
            }
        }
        if !configs.isEmpty, let withAlpha = slots.first(where: { $0.alpha != nil }), let alphaKey = withAlpha.alpha?.key {
            // diffusers' load_lora_adapter: "Both `network_alphas` and `metadata` cannot be specified."
            throw NodusError.format("\(context): '\(alphaKey)' gives an alpha tensor, but \(configSource) gives a LoraConfig too; a file may have one or the other")
        }
        let withAlpha = slots.filter { $0.alpha != nil }
        if !withAlpha.isEmpty, withAlpha.count != slots.count,
           let missing = slots.first(where: { $0.alpha == nil }), let example = withAlpha.first?.alpha?.key {
            throw NodusError.format("\(context): layer '\(missing.downKey)' has no alpha, but other layers have one (e.g. '\(example)'); alphas must be given for every layer or for none")
        }

        // The rank and alpha each layer's LoraConfig gives, resolved per config with each pattern compiled once.
        var resolved: [Int: (rank: Int, alpha: Double, scale: Double)] = [:]
        if !configs.isEmpty {
            var indicesByPrefix: [String: [Int]] = [:]
            for (index, slot) in slots.enumerated() {
                if configs[slot.configPrefix] != nil {
                    indicesByPrefix[slot.configPrefix, default: []].append(index)
                } else if configs[""] != nil {
                    indicesByPrefix["", default: []].append(index)
                } else if slot.component != "text_encoder" {
                    let found = configs.keys.sorted().map { $0.isEmpty ? "(none)" : "'\($0)'" }.joined(separator: ", ")
                    throw NodusError.format("\(configSource) has no LoraConfig for prefix '\(slot.configPrefix)' of layer '\(slot.downKey)' (prefixes found: \(found))")
                }
            }
            for (prefix, indices) in indicesByPrefix {
                guard let config = configs[prefix] else { continue }
                let pairs: [(rank: Int, alpha: Double)]
                do {
                    pairs = try config.rankAndAlpha(forModules: indices.map { slots[$0].module })
                } catch let error as NodusError {
                    throw NodusError(error.code, "\(configSource): \(error.message)")
                }
                for (position, index) in indices.enumerated() {
                    let (rank, alpha) = pairs[position]
                    guard alpha.isFinite, alpha > 0 else {
                        throw NodusError.format("\(configSource) gives layer '\(slots[index].downKey)' lora_alpha \(alpha); it must be a positive number")
                    }
                    resolved[index] = (rank, alpha, config.scale(rank: rank, alpha: alpha))
                }
            }
        }

        var layers: [LoRALayer] = []
        layers.reserveCapacity(slots.count)
        for (index, slot) in slots.enumerated() {
            var layer = try loadLayer(slot, file: file, context: context)
            if let config = resolved[index] {
                guard config.rank == layer.rank else {
                    throw NodusError.shape("\(context): '\(slot.downKey)' has rank \(layer.rank), but \(configSource) gives module '\(slot.module)' rank \(config.rank) (r / rank_pattern)")
                }
                // A double alpha such as 1e308 is finite but infinite in float32: it would poison
                // the weights with NaN for good (even at adapter weight 0), so it is refused here.
                guard Float(config.alpha).isFinite, Float(config.scale).isFinite else {
                    throw NodusError.format("\(configSource) gives layer '\(slot.downKey)' lora_alpha \(config.alpha) (scale \(config.scale)), which is not finite in float32")
                }
                layer.alpha = Float(config.alpha)
                layer.scale = Float(config.scale)
            }
            layers.append(layer)
        }
        return LoRAFile(path: path, format: format, layers: layers, config: configValue)
    }

    // MARK: - Pairing

    /// The keys of one module: A, B and optionally alpha.
    struct Slot: Sendable {
        var format: LoRAFormat
        var module: String
        var component: String
        var group: String
        var configPrefix: String
        var downKey: String
        var upKey: String
        var alpha: ParsedKey?
    }

    /// Parses every key of `file` and pairs them by module, sorted by (module, group).
    private static func pairKeys(of file: SafetensorsFile, context: String) throws -> [Slot] {
        var parsed: [ParsedKey] = []
        var unknown: [String] = []
        for name in file.names {
            if let key = try parseKey(name, context: context) {
                parsed.append(key)
            } else {
                unknown.append(name)
            }
        }
        guard parsed.contains(where: { $0.role != .alpha }) else {
            let shown = file.names.prefix(5).map { "'\($0)'" }.joined(separator: ", ")
            let more = file.names.count > 5 ? " and \(file.names.count - 5) more" : ""
            let found = file.names.isEmpty ? "it holds no tensors" : "keys found: \(shown)\(more)"
            throw NodusError.format("\(context) is not a LoRA: no lora_A / lora_B or lora_down / lora_up keys (\(found))")
        }
        if let first = unknown.first {
            throw NodusError.unsupported("\(context): key '\(first)' is not a LoRA key (expected <module>.lora_A.weight / .lora_B.weight / .alpha, or kohya lora_unet_<module>.lora_down.weight / .lora_up.weight / .alpha)")
        }
        var adapterNames: [String: String] = [:]  // name -> first key
        for key in parsed {
            if let name = key.adapterName, adapterNames[name] == nil { adapterNames[name] = key.key }
        }
        if adapterNames.count > 1 {
            let examples = adapterNames.sorted { $0.key < $1.key }.prefix(2).map { "'\($0.value)'" }.joined(separator: " and ")
            throw NodusError.format("\(context) holds several PEFT adapters (\(adapterNames.keys.sorted().joined(separator: ", "))): \(examples); save one adapter per file")
        }

        var keys: [String: (down: ParsedKey?, up: ParsedKey?, alpha: ParsedKey?)] = [:]
        var order: [String] = []
        for key in parsed {
            let slotName = "\(key.group)\u{0}\(key.format.rawValue)\u{0}\(key.module)"
            var entry = keys[slotName] ?? (nil, nil, nil)
            if keys[slotName] == nil { order.append(slotName) }
            let previous: ParsedKey?
            switch key.role {
            case .down: previous = entry.down; entry.down = key
            case .up: previous = entry.up; entry.up = key
            case .alpha: previous = entry.alpha; entry.alpha = key
            }
            if let previous {
                throw NodusError.format("\(context): module '\(key.module)' is given twice: '\(previous.key)' and '\(key.key)'")
            }
            keys[slotName] = entry
        }

        var slots: [Slot] = []
        for slotName in order {
            guard let entry = keys[slotName] else { continue }
            guard let down = entry.down else {
                let present = entry.up ?? entry.alpha
                let key = present?.key ?? slotName
                if present?.role == .alpha {
                    throw NodusError.format("\(context): '\(key)' is an alpha without its layer (no lora_down / lora_A or lora_up / lora_B for module '\(present?.module ?? "")')")
                }
                throw NodusError.format("\(context): '\(key)' (B) has no matching A ('\(partnerKey(of: key, role: .up))')")
            }
            guard let up = entry.up else {
                throw NodusError.format("\(context): '\(down.key)' (A) has no matching B ('\(partnerKey(of: down.key, role: .down))')")
            }
            slots.append(Slot(format: down.format, module: down.module, component: down.component, group: down.group,
                              configPrefix: down.configPrefix, downKey: down.key, upKey: up.key, alpha: entry.alpha))
        }
        slots.sort { ($0.module, $0.group, $0.configPrefix) < ($1.module, $1.group, $1.configPrefix) }

        // One module in both namings: compare the diffusers name with `.` as `_` against kohya's.
        let peftNames = Dictionary(slots.filter { $0.format == .peft }
            .map { ("\($0.group)\u{0}\($0.module.replacingDots())", $0.downKey) }, uniquingKeysWith: { first, _ in first })
        if !peftNames.isEmpty {
            for slot in slots where slot.format == .kohya {
                if let other = peftNames["\(slot.group)\u{0}\(slot.module)"] {
                    throw NodusError.format("\(context): module '\(slot.module)' is given twice: '\(other)' and '\(slot.downKey)'")
                }
            }
            if let kohya = slots.first(where: { $0.format == .kohya }), let peft = slots.first(where: { $0.format == .peft }) {
                throw NodusError.format("\(context) mixes diffusers/PEFT keys ('\(peft.downKey)') and kohya keys ('\(kohya.downKey)')")
            }
        }
        return slots
    }

    // MARK: - Tensors

    /// Reads and checks one layer's tensors; alpha and scale from its alpha tensor, else nil and 1.
    private static func loadLayer(_ slot: Slot, file: SafetensorsFile, context: String) throws -> LoRALayer {
        let down = try factor(slot.downKey, file: file, context: context)
        let up = try factor(slot.upKey, file: file, context: context)
        let rank = down.shape[0]
        guard rank > 0 else {
            throw NodusError.shape("\(context): '\(slot.downKey)' has rank 0 (shape \(down.shape))")
        }
        guard up.shape[1] > 0 else {
            throw NodusError.shape("\(context): '\(slot.upKey)' has rank 0 (shape \(up.shape))")
        }
        guard up.shape[1] == rank else {
            throw NodusError.shape("\(context): rank mismatch: '\(slot.downKey)' is \(down.shape) (rank \(rank)) but '\(slot.upKey)' is \(up.shape) (rank \(up.shape[1])); expected A [rank, in] and B [out, rank]")
        }
        guard down.shape[1] > 0, up.shape[0] > 0 else {
            throw NodusError.shape("\(context): '\(slot.downKey)' \(down.shape) / '\(slot.upKey)' \(up.shape) have an empty in or out dimension")
        }
        let downFloats = try down.asFloat32()
        if downFloats.containsNonFinite {
            throw NodusError.format("\(context): '\(slot.downKey)' holds NaN or Inf values")
        }
        let upFloats = try up.asFloat32()
        if upFloats.containsNonFinite {
            throw NodusError.format("\(context): '\(slot.upKey)' holds NaN or Inf values")
        }
        var alpha: Float?
        var scale: Float = 1
        if let alphaKey = slot.alpha?.key {
            let value = try alphaValue(alphaKey, file: file, context: context)
            alpha = value
            scale = Float(Double(value) / Double(rank))
        }
        return LoRALayer(module: slot.module, component: slot.component, down: downFloats, up: upFloats, rank: rank,
                         alpha: alpha, scale: scale, downKey: slot.downKey, upKey: slot.upKey)
    }

    /// One factor as a 2-D view in the file's dtype (a 1x1 convolution's 4-D shape reshaped).
    private static func factor(_ key: String, file: SafetensorsFile, context: String) throws -> Tensor {
        let tensor = try file.tensor(key)
        guard tensor.dtype.isFloatingPoint else {
            throw NodusError.format("\(context): '\(key)' is \(tensor.dtype.name); LoRA weights must be floating point")
        }
        if tensor.rank == 4 {
            guard tensor.shape[2] == 1, tensor.shape[3] == 1 else {
                throw NodusError.unsupported("\(context): '\(key)' is a \(tensor.shape[2])x\(tensor.shape[3]) convolution LoRA (LoCon) of shape \(tensor.shape), which is not supported (only Linear and 1x1 convolution LoRAs)")
            }
            return try tensor.reshaped([tensor.shape[0], tensor.shape[1]])
        }
        guard tensor.rank == 2 else {
            throw NodusError.shape("\(context): '\(key)' has shape \(tensor.shape); a LoRA factor must be 2-D (A [rank, in], B [out, rank]) or a 1x1 convolution")
        }
        return tensor
    }

    /// The value of a one-element alpha tensor (shape [] or [1], any numeric dtype).
    private static func alphaValue(_ key: String, file: SafetensorsFile, context: String) throws -> Float {
        let tensor = try file.tensor(key)
        guard tensor.shape.isEmpty || tensor.shape == [1] else {
            throw NodusError.shape("\(context): alpha '\(key)' has shape \(tensor.shape); expected a scalar ([] or [1])")
        }
        var value: Float = 0
        Tensor.convertToFloat(from: tensor.bytes, dtype: tensor.dtype, count: 1, into: &value)
        guard value.isFinite else {
            throw NodusError.format("\(context): alpha '\(key)' is \(value); it must be a positive number (NaN or Inf found)")
        }
        guard value > 0 else {
            throw NodusError.format("\(context): alpha '\(key)' is \(value); it must be a positive number")
        }
        return value
    }

    private static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    private static func isRegularFile(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
    }
}

private extension String {
    func replacingDots() -> String { String(map { $0 == "." ? "_" : $0 }) }
}
