import NodusFormats

/// `nodus lora compare A B --model M`: whether two adapters change the same layers in
/// the same directions (two characteristic LoRAs that interfere).
struct LoRACompareCommand: Command {
    let name = "compare"
    let usageName = "lora compare"
    let summary = "Compare two LoRAs on a model, layer by layer: interference ||dW_A dW_B^T||_F and cosine."
    let positionalUsage = "A B"
    let details = """
        Loads A and B (.safetensors files or PEFT folders) as adapters "A" and "B" of the model
        and compares their updates dW = s B A (adapter weights not applied) on every Linear
        either changes. The summary gives the mean |cosine| over layers both change and the
        layer with the largest interference.
        Example: nodus lora compare hyperdense.safetensors calcified/ --model dit/
        """
    let options: [OptionSpec] = [
        .value("model", "DIR", "the model folder the adapters apply to (required)"),
        .flag("json", "print the library's JSON: [{module, interference, cosine, norm_a, norm_b}]"),
    ]

    /// One row of the library's comparison.
    private struct Row {
        let module: String
        let interference, cosine, normA, normB: Double
    }

    func run(_ arguments: ParsedArguments) throws {
        let paths = try arguments.positionals(["A", "B"])
        let model = try ModelHandle(path: try arguments.required("model"))
        try model.loadLoRA(path: paths[0], adapterName: "A")
        try model.loadLoRA(path: paths[1], adapterName: "B")
        let text = try model.compareAdapters("A", "B")
        if arguments.flag("json") {
            StandardStream.output(text + "\n")
            return
        }
        let rows = try parse(text)
        StandardStream.output("A: \(paths[0])\nB: \(paths[1])\n\n" + table(rows) + "\n" + summary(rows))
    }

    private func parse(_ text: String) throws -> [Row] {
        guard let items = try JSONValue.parse(text, context: "the comparison").arrayValue else {
            throw CLIError.failure("the library's comparison is not a JSON array")
        }
        return try items.map { item in
            guard let module = item["module"]?.stringValue, let interference = item["interference"]?.doubleValue,
                  let cosine = item["cosine"]?.doubleValue, let normA = item["norm_a"]?.doubleValue,
                  let normB = item["norm_b"]?.doubleValue else {
                throw CLIError.failure("the library's comparison has an incomplete row: \(item.serialized())")
            }
            return Row(module: module, interference: interference, cosine: cosine, normA: normA, normB: normB)
        }
    }

    private func table(_ rows: [Row]) -> String {
        let width = max(6, rows.map(\.module.count).max() ?? 0)
        let columns = ["interference", "cosine", "norm A", "norm B"]
        var text = "module".padded(width) + columns.map { "  " + $0.padded(12) }.joined()
        text = text.trimmingTrailingSpaces() + "\n"
        for row in rows {
            let values = [row.interference, row.cosine, row.normA, row.normB]
            text += (row.module.padded(width) + values.map { "  " + String(significant: $0).padded(12) }.joined())
                .trimmingTrailingSpaces() + "\n"
        }
        return text
    }

    private func summary(_ rows: [Row]) -> String {
        let shared = rows.filter { $0.normA > 0 && $0.normB > 0 }
        var text = "layers: \(rows.count) changed, \(shared.count) by both, "
            + "\(rows.filter { $0.normB == 0 }.count) by A only, \(rows.filter { $0.normA == 0 }.count) by B only\n"
        if !shared.isEmpty {
            let mean = shared.reduce(0) { $0 + abs($1.cosine) } / Double(shared.count)
            text += "mean |cosine| over layers both change: \(String(significant: mean))\n"
        }
        if let worst = rows.max(by: { $0.interference < $1.interference }), worst.interference > 0 {
            text += "largest interference: \(worst.module) (\(String(significant: worst.interference)))\n"
        } else {
            text += "no interference: no layer is changed by both\n"
        }
        return text
    }
}
