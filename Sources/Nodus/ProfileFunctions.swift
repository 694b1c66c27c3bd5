import CNodus
import NodusCore
import NodusModels

/// `nodus_status nodus_model_profile(nodus_model *, const nodus_tensor *inputs, size_t input_count,
/// int32_t rounds, const char **out_json)`: the JSON is owned by the model; `*out_json` is NULL on failure.
@_cdecl("nodus_model_profile")
public func nodusModelProfile(_ model: OpaquePointer?, _ inputs: UnsafePointer<nodus_tensor>?, _ inputCount: Int,
                              _ rounds: Int32, _ outJSON: UnsafeMutablePointer<UnsafePointer<CChar>?>?)
    -> nodus_status {
    let function = "nodus_model_profile"
    outJSON?.pointee = nil
    return Status.run(function) {
        let handle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        let target = try Argument.required(outJSON, "out_json", in: function)
        guard rounds >= 1 else {
            throw NodusError.invalidArgument("\(function): rounds is \(rounds); it must be at least 1")
        }
        let named = try TensorBridge.namedInputs(inputs, count: inputCount, in: function)
        let profile = try handle.model.profile(named, rounds: Int(rounds))
        guard let text = handle.keepStateJSON(profile.json.serialized()) else {
            throw NodusError(.outOfMemory, "\(function): cannot copy the profile")
        }
        target.pointee = text
    }
}
