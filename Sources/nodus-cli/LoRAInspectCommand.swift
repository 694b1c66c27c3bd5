import NodusFormats

/// `nodus lora inspect FILE`: what a LoRA file holds, without a model.
struct LoRAInspectCommand: Command {
    let name = "inspect"
    let usageName = "lora inspect"
    let summary = "Describe a LoRA file: format, ranks, alphas, targets, parameters and update norms."
    let positionalUsage = "FILE"
    let details = """
        FILE is a .safetensors LoRA (diffusers/PEFT or kohya) or a PEFT adapter folder.
        The norm of a layer is ||s B A||_F (s = alpha / rank), from rank-sized products.
        Example: nodus lora inspect adapter.safetensors --verbose
        """
    let options: [OptionSpec] = [
        .flag("verbose", "also list every layer (module, rank, alpha, scale, shape, norm)"),
        .flag("json", "print the same (every layer included) as JSON"),
    ]

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["FILE"])[0]
        let inspection = try LoRAInspection(path: path)
        if arguments.flag("json") {
            StandardStream.output(JSONPrinter.pretty(json(inspection)) + "\n")
        } else {
            StandardStream.output(text(inspection, verbose: arguments.flag("verbose")))
        }
    }

    /// The report for people: one line per fact, then the layers with `verbose`.
    private func text(_ inspection: LoRAInspection, verbose: Bool) -> String {
        let layers = inspection.file.layers
        let norms = [inspection.normSummary.minimum, inspection.normSummary.median, inspection.normSummary.maximum]
            .map { String(significant: $0) }
        let rows: [(String, String)] = [
            ("file", inspection.file.path),
            ("format", inspection.file.format.name),
            ("components", components(layers).joined(separator: ", ")),
            ("layers", "\(layers.count)"),
            ("ranks", Set(layers.map(\.rank)).sorted().map(String.init).joined(separator: ", ")),
            ("alphas", alphas(layers).map { $0.map { String(significant: Double($0)) } ?? "none" }.joined(separator: ", ")),
            ("scales", Set(layers.map(\.scale)).sorted().map { String(significant: Double($0)) }.joined(separator: ", ")),
            ("targets", inspection.targets.map { "\($0.kind) (\($0.count))" }.joined(separator: ", ")),
            ("parameters", "\(inspection.parameterCount) (\(inspection.storedBytes) bytes as stored)"),
            ("norms", "||s B A||_F min \(norms[0]), median \(norms[1]), max \(norms[2])"),
        ]
        var text = rows.map { ($0.0 + ":").padded(13) + $0.1 }.joined(separator: "\n") + "\n"
        guard verbose else { return text }
        let width = max(6, layers.map(\.module.count).max() ?? 0)
        text += "\n" + "module".padded(width) + "  rank  alpha     scale     out x in    norm\n"
        for layer in inspection.layers {
            let alpha = layer.layer.alpha.map { String(significant: Double($0)) } ?? "none"
            let shape = "\(layer.layer.outFeatures) x \(layer.layer.inFeatures)"
            text += layer.layer.module.padded(width) + "  " + "\(layer.layer.rank)".padded(4) + "  " + alpha.padded(8)
                + "  " + String(significant: Double(layer.layer.scale)).padded(8) + "  " + shape.padded(10)
                + "  " + String(significant: layer.norm) + "\n"
        }
        return text
    }

    /// The report as JSON: the summary, and every layer under "modules".
    private func json(_ inspection: LoRAInspection) -> JSONValue {
        let layers = inspection.file.layers
        let norms = inspection.normSummary
        let modules = inspection.layers.map { item -> JSONValue in
            .object([
                "module": .string(item.layer.module), "component": .string(item.layer.component),
                "kind": .string(item.kind), "rank": .number(Double(item.layer.rank)),
                "alpha": item.layer.alpha.map { .number(Double($0)) } ?? .null,
                "scale": .number(Double(item.layer.scale)),
                "in_features": .number(Double(item.layer.inFeatures)),
                "out_features": .number(Double(item.layer.outFeatures)),
                "parameters": .number(Double(item.parameterCount)), "norm": .number(item.norm),
            ])
        }
        return .object([
            "path": .string(inspection.file.path),
            "format": .string(inspection.file.format.name),
            "components": .array(components(layers).map { .string($0) }),
            "layers": .number(Double(layers.count)),
            "ranks": .array(Set(layers.map(\.rank)).sorted().map { .number(Double($0)) }),
            "alphas": .array(alphas(layers).map { $0.map { .number(Double($0)) } ?? .null }),
            "scales": .array(Set(layers.map(\.scale)).sorted().map { .number(Double($0)) }),
            "targets": .object(Dictionary(uniqueKeysWithValues: inspection.targets.map { ($0.kind, .number(Double($0.count))) })),
            "parameters": .number(Double(inspection.parameterCount)),
            "bytes": .number(Double(inspection.storedBytes)),
            "norm": .object(["min": .number(norms.minimum), "median": .number(norms.median), "max": .number(norms.maximum)]),
            "modules": .array(modules),
        ])
    }

    /// The components the layers belong to ("transformer", "unet", "text_encoder"; "(none)" without a prefix).
    private func components(_ layers: [LoRALayer]) -> [String] {
        Set(layers.map { $0.component.isEmpty ? "(none)" : $0.component }).sorted()
    }

    /// The distinct alphas, sorted; nil (printed "none") for layers without one.
    private func alphas(_ layers: [LoRALayer]) -> [Float?] {
        let values = Set(layers.compactMap(\.alpha)).sorted()
        return layers.contains { $0.alpha == nil } ? values + [nil] : values
    }
}
