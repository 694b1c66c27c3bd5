import CNodus
import NodusCore
import NodusModels

/// Names of model kinds, indexed by `nodus_model_kind`.
enum ModelKindNames {
    // Immutable after initialisation; safe to share between threads.
    nonisolated(unsafe) static let table = StaticCString.table(
        (0..<Int32(ModelKind.allCases.count)).map { ModelKind(rawValue: $0)?.name ?? "unknown" })
}

/// `const char *nodus_model_kind_name(nodus_model_kind)`: "dit", ...; NULL for an unknown value.
@_cdecl("nodus_model_kind_name")
public func nodusModelKindName(_ kind: nodus_model_kind) -> UnsafePointer<CChar>? {
    guard ModelKind(rawValue: kind) != nil else { return nil }
    return StaticCString.lookup(ModelKindNames.table, kind)
}

/// `nodus_status nodus_model_kind_from_name(const char *, nodus_model_kind *)`.
@_cdecl("nodus_model_kind_from_name")
public func nodusModelKindFromName(_ name: UnsafePointer<CChar>?, _ outKind: UnsafeMutablePointer<nodus_model_kind>?)
    -> nodus_status
{
    let function = "nodus_model_kind_from_name"
    return Status.run(function) {
        let text = try Argument.string(name, "name", in: function)
        let target = try Argument.required(outKind, "out_kind", in: function)
        guard let kind = ModelKind(name: text) else {
            let known = ModelKind.allCases.map(\.name).joined(separator: ", ")
            throw NodusError.invalidArgument("\(function): unknown model kind '\(text)' (known: \(known))")
        }
        target.pointee = kind.rawValue
    }
}

/// `void nodus_model_params_init(nodus_model_params *)`: the defaults (all cores, float32).
@_cdecl("nodus_model_params_init")
public func nodusModelParamsInit(_ params: UnsafeMutablePointer<nodus_model_params>?) {
    guard let params else { return }
    params.pointee = ModelParameters.defaults
}

enum ModelParameters {
    static var defaults: nodus_model_params {
        nodus_model_params(struct_size: UInt32(MemoryLayout<nodus_model_params>.stride), threads: 0,
                           dtype: DType.float32.rawValue, read_files: 0)
    }

    /// `ModelOptions` from the caller's params (NULL = defaults), checked.
    static func options(_ pointer: UnsafePointer<nodus_model_params>?, in function: String) throws -> ModelOptions {
        guard let pointer else { return ModelOptions() }
        let params = try Argument.params(pointer, defaults: defaults, initializer: "nodus_model_params_init",
                                         in: function)
        guard params.threads >= 0 else {
            throw NodusError.invalidArgument("\(function): params.threads is \(params.threads); use 0 for all cores")
        }
        guard let dtype = DType(rawValue: params.dtype) else {
            throw NodusError.invalidArgument("\(function): params.dtype \(params.dtype) is not a nodus_dtype")
        }
        guard params.read_files == 0 || params.read_files == 1 else {
            throw NodusError.invalidArgument("\(function): params.read_files is \(params.read_files); use 0 (map) or 1 (read)")
        }
        return ModelOptions(threads: Int(params.threads), dtype: dtype, fileAccess: params.read_files == 1 ? .read : .mapped)
    }
}

/// `nodus_status nodus_model_load(const char *path, const nodus_model_params *, nodus_model **)`.
/// On failure `*out_model` is NULL.
@_cdecl("nodus_model_load")
public func nodusModelLoad(_ path: UnsafePointer<CChar>?, _ params: UnsafePointer<nodus_model_params>?,
                           _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_model_load"
    outModel?.pointee = nil
    return Status.run(function) {
        let target = try Argument.required(outModel, "out_model", in: function)
        let options = try ModelParameters.options(params, in: function)
        let model = try Argument.withPath(path, "path", in: function) { try ModelLoader.load(path: $0, options: options) }
        target.pointee = try ModelHandle(model: model).retainedPointer()
    }
}

/// `void nodus_model_free(nodus_model *)`: NULL is a no-op.
@_cdecl("nodus_model_free")
public func nodusModelFree(_ model: OpaquePointer?) {
    ModelHandle.release(model, in: "nodus_model_free")
}

/// `nodus_model_kind nodus_model_get_kind(const nodus_model *)`: -1 when `model` is NULL.
@_cdecl("nodus_model_get_kind")
public func nodusModelGetKind(_ model: OpaquePointer?) -> nodus_model_kind {
    guard let handle = ModelHandle.lookup(model, "model", in: "nodus_model_get_kind") else { return -1 }
    return handle.model.kind.rawValue
}

/// `const char *nodus_model_config_json(const nodus_model *)`: owned by the model; NULL if `model` is NULL.
@_cdecl("nodus_model_config_json")
public func nodusModelConfigJSON(_ model: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let handle = ModelHandle.lookup(model, "model", in: "nodus_model_config_json") else { return nil }
    return UnsafePointer(handle.configJSON)
}

/// `nodus_status nodus_model_forward(nodus_model *, const nodus_tensor *inputs, size_t count, nodus_tensor *output)`.
@_cdecl("nodus_model_forward")
public func nodusModelForward(_ model: OpaquePointer?, _ inputs: UnsafePointer<nodus_tensor>?, _ inputCount: Int,
                              _ output: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_model_forward"
    return Status.run(function) {
        let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        let target = try Argument.required(output, "output", in: function)
        let named = try TensorBridge.namedInputs(inputs, count: inputCount, in: function)
        let shape = try handle.model.outputShape(for: named)
        let label = "\(function): output"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        let result = try handle.model.forward(named)
        try TensorBridge.write(result, to: target, shape: shape, dtype: .float32, label: label)
    }
}
