import NodusCore
import NodusFormats
import NodusGraph

/// Finds the model Linear each layer of a LoRA file changes.
///
/// Names are matched as diffusers and PEFT do: the module path after the
/// `transformer.` / `unet.` / `base_model.model.` prefix (the file reader
/// strips those) plus `.weight` is the model's weight. kohya's underscored
/// paths (`transformer_blocks_0_attn1_to_q`) are resolved against the model's
/// own module names with dots replaced. A model may also declare aliases, such
/// as original-DiT names (`blocks.0.attn.qkv`). A layer on a fused `qkv`
/// Linear, whose B is [3 * hidden, rank], becomes three paths on the sibling
/// `to_q`, `to_k` and `to_v` sharing A, each with its third of B's rows.
struct LoRAMatcher {
    /// Linear weights LoRA can target: "…to_q.weight" -> [out, in].
    let targets: [String: [Int]]
    /// Other module names files may use -> the model's module name.
    let aliases: [String: String]

    struct Match {
        var paths: [String: [(down: Tensor, up: Tensor, scale: Float)]] = [:]
        var matched: [String] = []
        var unmatched: [String] = []
    }

    func match(_ file: LoRAFile) throws -> Match {
        let underscored = underscoredModules()
        var result = Match()
        for layer in file.layers {
            let module = resolvedModule(layer, format: file.format, underscored: underscored)
            if let weightShape = targets[module + ".weight"] {
                try check(layer, against: weightShape, module: module, file: file)
                result.paths[module + ".weight", default: []].append((layer.down, layer.up, layer.scale))
                result.matched.append(module)
            } else if module.hasSuffix(".qkv"), let split = try splitFusedQKV(layer, module: module, file: file) {
                for (name, up) in split {
                    result.paths[name + ".weight", default: []].append((layer.down, up, layer.scale))
                    result.matched.append(name)
                }
            } else {
                result.unmatched.append(layer.module)
            }
        }
        guard !result.matched.isEmpty else {
            let examples = result.unmatched.prefix(4).joined(separator: ", ")
            throw NodusError.invalidArgument("LoRA '\(file.path)' matches no layer of this model (its layers: \(examples)\(result.unmatched.count > 4 ? ", …" : ""))")
        }
        return result
    }

    /// Whether some layer of `file` names a Linear of the model (whether or not its shapes fit).
    func targetsAny(_ file: LoRAFile) -> Bool {
        let underscored = underscoredModules()
        return file.layers.contains { layer in
            let module = resolvedModule(layer, format: file.format, underscored: underscored)
            return targets[module + ".weight"] != nil
                || (module.hasSuffix(".qkv") && targets[module.dropLast(".qkv".count) + ".to_q.weight"] != nil)
        }
    }

    /// kohya's underscored module names -> the model's (or an alias's) dotted ones.
    private func underscoredModules() -> [String: String] {
        var underscored: [String: String] = [:]
        for module in targets.keys.map(moduleName) + Array(aliases.keys) {
            underscored[String(module.map { $0 == "." ? "_" : $0 })] = module
        }
        return underscored
    }

    /// The model's module name for a layer of the file.
    private func resolvedModule(_ layer: LoRALayer, format: LoRAFormat, underscored: [String: String]) -> String {
        var module = layer.module
        if format == .kohya { module = underscored[module] ?? module }
        return aliases[module] ?? module
    }

    private func moduleName(_ weightName: String) -> String {
        String(weightName.dropLast(".weight".count))
    }

    private func check(_ layer: LoRALayer, against weightShape: [Int], module: String, file: LoRAFile) throws {
        let expectedUp = [weightShape[0], layer.rank], expectedDown = [layer.rank, weightShape[1]]
        guard layer.down.shape == expectedDown, layer.up.shape == expectedUp else {
            throw NodusError.shape("LoRA '\(file.path)' layer '\(layer.module)' does not fit '\(module)' [\(weightShape[0]), \(weightShape[1])]: A is \(layer.down.shape), B is \(layer.up.shape), expected \(expectedDown) and \(expectedUp)")
        }
    }

    /// The three row ranges of a fused qkv B on `<parent>.to_q/to_k/to_v`, or nil
    /// when the parent has no such Linears.
    private func splitFusedQKV(_ layer: LoRALayer, module: String, file: LoRAFile) throws -> [(String, Tensor)]? {
        let parent = String(module.dropLast(".qkv".count))
        let names = ["to_q", "to_k", "to_v"].map { "\(parent).\($0)" }
        let shapes = names.compactMap { targets[$0 + ".weight"] }
        guard shapes.count == 3 else { return nil }
        let rows = shapes[0][0]
        guard shapes.allSatisfy({ $0 == shapes[0] }), layer.up.shape == [3 * rows, layer.rank],
              layer.down.shape == [layer.rank, shapes[0][1]] else {
            throw NodusError.shape("LoRA '\(file.path)' layer '\(layer.module)' does not fit the fused q/k/v of '\(parent)': A is \(layer.down.shape), B is \(layer.up.shape), expected [\(layer.rank), \(shapes[0][1])] and [\(3 * rows), \(layer.rank)]")
        }
        let up = try layer.up.asFloat32()
        let partBytes = rows * layer.rank * 4
        return names.enumerated().map { index, name in
            (name, Tensor(storage: up.storage, byteOffset: up.byteOffset + index * partBytes, shape: [rows, layer.rank],
                          dtype: .float32))
        }
    }
}
