import CNodus
import NodusCore
import NodusFormats
import NodusModels

/// The LoRA controller of a model handle, or an error for models that take no adapters.
private func controller(_ model: OpaquePointer?, in function: String) throws -> (ModelHandle, LoRAController) {
    let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
    guard let adaptable = handle.model as? any AdaptableModel else {
        throw NodusError.unsupported("\(function): a '\(handle.model.kind.name)' model takes no LoRA adapters")
    }
    return (handle, adaptable.lora)
}

/// `count` adapter names, each checked.
private func names(_ pointer: UnsafePointer<UnsafePointer<CChar>?>?, count: Int, in function: String) throws -> [String] {
    try Argument.strings(pointer, count: count, "names", in: function)
}

/// `nodus_status nodus_model_load_lora(nodus_model *, const char *path, const char *adapter_name)`.
@_cdecl("nodus_model_load_lora")
public func nodusModelLoadLoRA(_ model: OpaquePointer?, _ path: UnsafePointer<CChar>?,
                               _ adapterName: UnsafePointer<CChar>?) -> nodus_status {
    let function = "nodus_model_load_lora"
    return Status.run(function) {
        let (_, lora) = try controller(model, in: function)
        let name = try Argument.string(adapterName, "adapter_name", in: function)
        _ = try Argument.withPath(path, "path", in: function) { try lora.load(path: $0, adapterName: name) }
    }
}

/// `nodus_status nodus_model_set_adapters(nodus_model *, const char *const *names, const float *weights, size_t count)`.
@_cdecl("nodus_model_set_adapters")
public func nodusModelSetAdapters(_ model: OpaquePointer?, _ namesPointer: UnsafePointer<UnsafePointer<CChar>?>?,
                                  _ weights: UnsafePointer<Float>?, _ count: Int) -> nodus_status {
    let function = "nodus_model_set_adapters"
    return Status.run(function) {
        let (_, lora) = try controller(model, in: function)
        let list = try names(namesPointer, count: count, in: function)
        let values = try Argument.floats(weights, count: list.count, fallback: 1, "weights", in: function)
        try lora.setAdapters(list, weights: values)
    }
}

/// `nodus_status nodus_model_fuse_lora(nodus_model *, const char *const *names, size_t count, float lora_scale)`.
@_cdecl("nodus_model_fuse_lora")
public func nodusModelFuseLoRA(_ model: OpaquePointer?, _ namesPointer: UnsafePointer<UnsafePointer<CChar>?>?,
                               _ count: Int, _ loraScale: Float) -> nodus_status {
    let function = "nodus_model_fuse_lora"
    return Status.run(function) {
        let (_, lora) = try controller(model, in: function)
        let list = try names(namesPointer, count: count, in: function)
        let scale = try Argument.finite(loraScale, "lora_scale", in: function)
        try lora.fuse(adapterNames: list.isEmpty ? nil : list, loraScale: scale)
    }
}

/// `nodus_status nodus_model_unfuse_lora(nodus_model *)`.
@_cdecl("nodus_model_unfuse_lora")
public func nodusModelUnfuseLoRA(_ model: OpaquePointer?) -> nodus_status {
    let function = "nodus_model_unfuse_lora"
    return Status.run(function) {
        try controller(model, in: function).1.unfuse()
    }
}

/// `nodus_status nodus_model_enable_lora(nodus_model *, int32_t enabled)`.
@_cdecl("nodus_model_enable_lora")
public func nodusModelEnableLoRA(_ model: OpaquePointer?, _ enabled: Int32) -> nodus_status {
    let function = "nodus_model_enable_lora"
    return Status.run(function) {
        try controller(model, in: function).1.isEnabled = enabled != 0
    }
}

/// `nodus_status nodus_model_delete_adapters(nodus_model *, const char *const *names, size_t count)`.
@_cdecl("nodus_model_delete_adapters")
public func nodusModelDeleteAdapters(_ model: OpaquePointer?, _ namesPointer: UnsafePointer<UnsafePointer<CChar>?>?,
                                     _ count: Int) -> nodus_status {
    let function = "nodus_model_delete_adapters"
    return Status.run(function) {
        let (_, lora) = try controller(model, in: function)
        try lora.delete(try names(namesPointer, count: count, in: function))
    }
}

/// `const char *nodus_model_lora_state_json(nodus_model *)`: owned by the model.
@_cdecl("nodus_model_lora_state_json")
public func nodusModelLoRAStateJSON(_ model: OpaquePointer?) -> UnsafePointer<CChar>? {
    let function = "nodus_model_lora_state_json"
    var result: UnsafePointer<CChar>?
    let status = Status.run(function) {
        let (handle, lora) = try controller(model, in: function)
        guard case .object(var state) = lora.stateJSON else { return }
        var reports: [String: JSONValue] = [:]
        for name in lora.adapterNames { reports[name] = lora.report(for: name)?.json }
        state["reports"] = .object(reports)
        result = handle.keepStateJSON(JSONValue.object(state).serialized())
    }
    return status == 0 ? result : nil
}

/// `const char *nodus_model_lora_compare_json(nodus_model *, const char *a, const char *b)`: owned by the model.
@_cdecl("nodus_model_lora_compare_json")
public func nodusModelLoRACompareJSON(_ model: OpaquePointer?, _ first: UnsafePointer<CChar>?,
                                      _ second: UnsafePointer<CChar>?) -> UnsafePointer<CChar>? {
    let function = "nodus_model_lora_compare_json"
    var result: UnsafePointer<CChar>?
    let status = Status.run(function) {
        let (handle, lora) = try controller(model, in: function)
        let layers = try lora.compare(try Argument.string(first, "a", in: function),
                                      try Argument.string(second, "b", in: function))
        result = handle.keepStateJSON(JSONValue.array(layers.map(\.json)).serialized())
    }
    return status == 0 ? result : nil
}

/// `nodus_status nodus_model_save(nodus_model *, const char *directory)`.
@_cdecl("nodus_model_save")
public func nodusModelSave(_ model: OpaquePointer?, _ directory: UnsafePointer<CChar>?) -> nodus_status {
    let function = "nodus_model_save"
    return Status.run(function) {
        let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        guard let adaptable = handle.model as? any AdaptableModel else {
            throw NodusError.unsupported("\(function): saving a '\(handle.model.kind.name)' model is not supported")
        }
        try Argument.withPath(directory, "directory", in: function, createFolder: true) { try adaptable.save(to: $0) }
    }
}
