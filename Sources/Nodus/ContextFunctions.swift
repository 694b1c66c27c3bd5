import CNodus
import NodusCore
import NodusGraph
import NodusModels

enum ContextParameters {
    static var defaults: nodus_context_params {
        var params = nodus_context_params()
        params.struct_size = UInt32(MemoryLayout<nodus_context_params>.stride)
        return params
    }
}

/// `void nodus_context_params_init(nodus_context_params *)`: threads 0 (every core), no memory budget.
@_cdecl("nodus_context_params_init")
public func nodusContextParamsInit(_ params: UnsafeMutablePointer<nodus_context_params>?) {
    guard let params else { return }
    params.pointee = ContextParameters.defaults
}

/// `nodus_status nodus_context_new(nodus_model *, const nodus_context_params *, nodus_context **)`.
@_cdecl("nodus_context_new")
public func nodusContextNew(_ model: OpaquePointer?, _ params: UnsafePointer<nodus_context_params>?,
                            _ output: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_context_new"
    return Status.run(function) {
        let target = try Argument.required(output, "out_context", in: function)
        target.pointee = nil
        let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        let settings = try params.map {
            try Argument.params($0, defaults: ContextParameters.defaults, initializer: "nodus_context_params_init",
                                in: function)
        } ?? ContextParameters.defaults
        guard let contextual = handle.model as? any ContextualModel else {
            throw NodusError.unsupported("\(function): a '\(handle.model.kind.name)' model has no run contexts")
        }
        guard settings.memory_budget >= 0 else {
            throw NodusError.invalidArgument("\(function): params.memory_budget is \(settings.memory_budget); use a byte count, or 0 for none")
        }
        let budget = try MemoryBudget(bytes: settings.memory_budget == 0 ? nil : Int(settings.memory_budget))
        let context = try contextual.makeContext(RunContext.Settings(threads: Int(settings.threads), memoryBudget: budget))
        target.pointee = ContextHandle(model: contextual, context: context).retainedPointer()
    }
}

/// `void nodus_context_free(nodus_context *)`: NULL is a no-op.
@_cdecl("nodus_context_free")
public func nodusContextFree(_ context: OpaquePointer?) {
    ContextHandle.release(context, in: "nodus_context_free")
}

/// `nodus_status nodus_context_forward_all(nodus_context *, const nodus_tensor *inputs, size_t input_count,
/// nodus_tensor *outputs, size_t output_count)`.
@_cdecl("nodus_context_forward_all")
public func nodusContextForwardAll(_ context: OpaquePointer?, _ inputs: UnsafePointer<nodus_tensor>?, _ inputCount: Int,
                                   _ outputs: UnsafeMutablePointer<nodus_tensor>?, _ outputCount: Int) -> nodus_status {
    let function = "nodus_context_forward_all"
    return Status.run(function) {
        let handle = try Argument.handle(context, ContextHandle.self, "context", in: function)
        try ForwardCall(function: function, signatures: handle.model.outputSignatures, inputs: inputs,
                        inputCount: inputCount, outputs: outputs, outputCount: outputCount)
            .run(shapes: { try handle.model.outputShapes(for: $0, in: handle.context) },
                 forward: { try handle.model.forwardAll($0, in: handle.context) })
    }
}

/// `nodus_status nodus_context_set_adapters(nodus_context *, const char *const *names, const float *weights,
/// size_t count)`.
@_cdecl("nodus_context_set_adapters")
public func nodusContextSetAdapters(_ context: OpaquePointer?, _ namesPointer: UnsafePointer<UnsafePointer<CChar>?>?,
                                    _ weights: UnsafePointer<Float>?, _ count: Int) -> nodus_status {
    let function = "nodus_context_set_adapters"
    return Status.run(function) {
        let handle = try Argument.handle(context, ContextHandle.self, "context", in: function)
        guard let adaptable = handle.model as? any AdaptableModel else {
            throw NodusError.unsupported("\(function): a '\(handle.model.kind.name)' model takes no LoRA adapters")
        }
        let names = try Argument.strings(namesPointer, count: count, "names", in: function)
        let values = try Argument.floats(weights, count: names.count, fallback: 1, "weights", in: function)
        try adaptable.lora.setAdapters(names, weights: values, in: handle.context)
    }
}

/// `int32_t nodus_context_threads(const nodus_context *)`: -1 (and a message) for NULL.
@_cdecl("nodus_context_threads")
public func nodusContextThreads(_ context: OpaquePointer?) -> Int32 {
    guard let handle = ContextHandle.lookup(context, "context", in: "nodus_context_threads") else { return -1 }
    return Int32(handle.context.threads)
}
