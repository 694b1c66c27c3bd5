import NodusCore
import NodusFormats
import NodusModels

/// diffusers' pipeline-level LoRA calls: one file for the UNet and the text encoder.
extension StableDiffusionPipeline {
    /// The components LoRA adapters can change, by their folder names.
    public var adaptableModels: [(name: String, model: any AdaptableModel)] {
        [("unet", unet), ("text_encoder", textEncoder)]
    }

    /// diffusers' `pipeline.load_lora_weights`: the file's layers go to the UNet and
    /// the text encoder, each taking those that name its Linears.
    /// - Returns: each loading component's report.
    /// - Throws: `NodusError.invalidArgument` when no layer names a Linear of either; any
    ///   component's error. On failure no component changed.
    public func loadLoRA(path: String, adapterName: String) throws -> [String: LoRAReport] {
        let file = try LoRAFile.load(path: path, access: unet.lora.fileAccess)
        let targets = adaptableModels.filter { $0.model.lora.matchesAny(file) }
        guard !targets.isEmpty else {
            let examples = file.layers.prefix(3).map(\.module).joined(separator: ", ")
            throw NodusError.invalidArgument("LoRA '\(path)' matches no layer of the UNet or the text encoder (its layers: \(examples)\(file.layers.count > 3 ? ", …" : ""))")
        }
        var reports: [String: LoRAReport] = [:]
        do {
            for (name, model) in targets { reports[name] = try model.lora.load(file, adapterName: adapterName) }
        } catch {
            for (name, model) in targets where reports[name] != nil { try? model.lora.delete([adapterName]) }
            throw error
        }
        return reports
    }

    /// diffusers' `pipeline.set_adapters`: each component activates the names it holds.
    /// - Throws: `NodusError.invalidArgument` for a name no component holds; then nothing changed.
    public func setAdapters(_ names: [String], weights: [Float]) throws {
        guard names.count == weights.count else {
            throw NodusError.invalidArgument("\(names.count) adapter names but \(weights.count) weights")
        }
        let held = Set(adaptableModels.flatMap { $0.model.lora.adapterNames })
        if let unknown = names.first(where: { !held.contains($0) }) {
            throw NodusError.invalidArgument("no adapter named '\(unknown)' is loaded (loaded: \(held.sorted().joined(separator: ", ")))")
        }
        for (_, model) in adaptableModels {
            let own = Set(model.lora.adapterNames)
            let pairs = zip(names, weights).filter { own.contains($0.0) }
            try model.lora.setAdapters(pairs.map(\.0), weights: pairs.map(\.1))
        }
    }
}
