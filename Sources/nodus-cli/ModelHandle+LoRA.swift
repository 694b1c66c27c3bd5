import CNodus
import NodusFormats

/// The LoRA calls of the C ABI on a model handle, each throwing the library's message.
extension ModelHandle {
    /// `nodus_model_load_lora`: loads the LoRA at `path` as adapter `adapterName`.
    func loadLoRA(path: String, adapterName: String) throws {
        try check(nodus_model_load_lora(pointer, path, adapterName), "cannot load the LoRA '\(path)' as '\(adapterName)'")
    }

    /// `nodus_model_set_adapters`: exactly these adapters active, with these weights.
    func setAdapters(_ names: [String], weights: [Float]) throws {
        let pool = CStringPool()
        let pointers = names.map { pool.add($0) }
        try check(nodus_model_set_adapters(pointer, pointers, weights, names.count), "set_adapters")
        withExtendedLifetime(pool) {}
    }

    /// `nodus_model_fuse_lora`: merges the named adapters into copies of the weights.
    func fuseLoRA(_ names: [String], loraScale: Float) throws {
        let pool = CStringPool()
        let pointers = names.map { pool.add($0) }
        try check(nodus_model_fuse_lora(pointer, pointers, names.count, loraScale), "fuse_lora")
        withExtendedLifetime(pool) {}
    }

    /// `nodus_model_save`: the model, fused adapters baked in, as a new diffusers folder.
    func save(to directory: String) throws {
        try check(nodus_model_save(pointer, directory), "cannot save the model to '\(directory)'")
    }

    /// `nodus_model_lora_state_json`, parsed.
    func loraState() throws -> JSONValue {
        try JSONValue.parse(try ownedText(nodus_model_lora_state_json(pointer), "the LoRA state"), context: "the LoRA state")
    }

    /// `nodus_model_lora_compare_json` of adapters `a` and `b`, as the library's text.
    func compareAdapters(_ a: String, _ b: String) throws -> String {
        try ownedText(nodus_model_lora_compare_json(pointer, a, b), "comparing adapters '\(a)' and '\(b)'")
    }

    /// A copy of a string the model owns, or the library's message when it is NULL.
    private func ownedText(_ text: UnsafePointer<CChar>?, _ what: String) throws -> String {
        guard let text else { throw CLIError.failure("\(what): \(String(cString: nodus_last_error()))") }
        return String(cString: text)
    }
}
