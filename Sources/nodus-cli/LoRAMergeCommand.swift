#if canImport(Glibc)
import Glibc
#endif
import NodusFormats

/// `nodus lora merge MODEL --lora PATH[:WEIGHT] --output DIR`: a model with adapters baked
/// in (load, set_adapters, fuse_lora, save), as a new diffusers folder.
struct LoRAMergeCommand: Command {
    let name = "merge"
    let usageName = "lora merge"
    let summary = "Write a model with LoRAs fused into its weights, as a new diffusers folder."
    let positionalUsage = "MODEL"
    let details = """
        Each --lora is PATH[:WEIGHT] or NAME=PATH[:WEIGHT] (adapter names default to lora0,
        lora1, ...; weights to 1.0). The model's weights become W + S * sum_i w_i s_i B_i A_i,
        with S the --scale (fuse_lora's lora_scale) and s_i = alpha / rank per layer.
        Example: nodus lora merge dit/ --lora a.safetensors:0.7 --lora b/:0.5 --output merged/
        """
    let options: [OptionSpec] = [
        .value("lora", "[NAME=]PATH[:WEIGHT]", "a LoRA file or PEFT folder to merge", repeatable: true),
        .value("output", "DIR", "the folder to write (required; not the model's own)"),
        .value("scale", "S", "lora_scale of fuse_lora (default 1.0)"),
        .value("threads", "N", "worker threads (default: all cores)"),
    ]

    /// One `--lora` value.
    private struct Adapter {
        let name: String
        let path: String
        let weight: Float
    }

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["MODEL"])[0]
        let output = try arguments.required("output")
        let scale = try arguments.number("scale", default: 1.0)
        let threads = try arguments.integer("threads", default: 0, in: 0...4096)
        let adapters = try arguments.all("lora").enumerated().map { try parse($0.element, index: $0.offset) }
        guard !adapters.isEmpty else { throw CLIError.usage("missing --lora") }
        if let duplicate = Dictionary(grouping: adapters, by: \.name).first(where: { $0.value.count > 1 })?.key {
            throw CLIError.usage("adapter name '\(duplicate)' is given twice")
        }
        if let model = realpath(path, nil), let target = realpath(output, nil) {
            defer { free(model); free(target) }
            if strcmp(model, target) == 0 { throw CLIError.usage("--output '\(output)' is the model's own folder") }
        }

        let model = try ModelHandle(path: path, threads: Int32(threads))
        for adapter in adapters { try model.loadLoRA(path: adapter.path, adapterName: adapter.name) }
        try model.setAdapters(adapters.map(\.name), weights: adapters.map(\.weight))
        try model.fuseLoRA(adapters.map(\.name), loraScale: Float(scale))
        try model.save(to: output)
        StandardStream.output(try report(adapters, state: model.loraState(), scale: scale, output: output))
    }

    /// `[NAME=]PATH[:WEIGHT]`: ":WEIGHT" only when it reads as a number, "NAME=" only when the
    /// whole value is not an existing path.
    private func parse(_ value: String, index: Int) throws -> Adapter {
        var rest = value
        var weight: Float = 1
        if let colon = rest.lastIndex(of: ":"), let number = Float(rest[rest.index(after: colon)...]) {
            guard number.isFinite else { throw CLIError.usage("--lora '\(value)': the weight must be finite") }
            weight = number
            rest = String(rest[..<colon])
        }
        var name = "lora\(index)"
        if access(rest, F_OK) != 0, let equals = rest.firstIndex(of: "="), equals != rest.startIndex {
            name = String(rest[..<equals])
            rest = String(rest[rest.index(after: equals)...])
        }
        guard !rest.isEmpty else { throw CLIError.usage("--lora '\(value)' names no file") }
        return Adapter(name: name, path: rest, weight: weight)
    }

    /// What was merged: per adapter its weight, format and matched / unmatched counts.
    private func report(_ adapters: [Adapter], state: JSONValue, scale: Double, output: String) throws -> String {
        var text = ""
        var modules = Set<String>()
        for adapter in adapters {
            let report = state["reports"]?[adapter.name]
            let matched = report?["matched"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let unmatched = report?["unmatched"]?.arrayValue?.compactMap(\.stringValue) ?? []
            modules.formUnion(matched)
            text += "\(adapter.name): \(adapter.path) at weight \(String(significant: Double(adapter.weight))): "
                + "\(report?["format"]?.stringValue ?? "?"), \(report?["layers"]?.intValue ?? 0) layers, "
                + "\(matched.count) matched, \(unmatched.count) unmatched\n"
            for module in unmatched.prefix(10) { text += "  unmatched: \(module)\n" }
            if unmatched.count > 10 { text += "  ... and \(unmatched.count - 10) more\n" }
        }
        return text + "fused \(adapters.count) adapter(s) at lora_scale \(String(significant: scale))"
            + " into \(modules.count) modules\n"
            + "saved -> \(output)\n"
    }
}
