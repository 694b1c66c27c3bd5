#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusModels

/// What a `nodus_model *` points to: a loaded model and its config.json as a C
/// string (returned by `nodus_model_config_json`, freed with the handle), plus
/// the last JSON string handed out (LoRA state or comparison, profile).
final class ModelHandle: OpaqueHandle {
    static let typeName = "nodus_model"
    let callLock = HandleLock()

    let model: any DiffusionModel
    let configJSON: UnsafeMutablePointer<CChar>
    /// The model's inputs and outputs with their names as C strings (freed with the handle).
    let inputSignatures: [(name: UnsafeMutablePointer<CChar>, signature: TensorSignature)]
    let outputSignatures: [(name: UnsafeMutablePointer<CChar>, signature: TensorSignature)]
    private var stateJSON: UnsafeMutablePointer<CChar>?

    init(model: any DiffusionModel) throws {
        self.model = model
        guard let text = strdup(model.config.serialized()) else {
            throw NodusError(.outOfMemory, "cannot copy the model's config")
        }
        self.configJSON = text
        func named(_ signatures: [TensorSignature]) throws
            -> [(name: UnsafeMutablePointer<CChar>, signature: TensorSignature)] {
            try signatures.map { signature in
                guard let name = strdup(signature.name) else { throw NodusError(.outOfMemory, "cannot copy a tensor name") }
                return (name, signature)
            }
        }
        inputSignatures = try named(model.inputSignatures)
        outputSignatures = try named(model.outputSignatures)
    }

    deinit {
        free(configJSON)
        free(stateJSON)
        for entry in inputSignatures + outputSignatures { free(entry.name) }
    }

    /// Keeps `text` as the model's current JSON string (freeing the previous one).
    func keepStateJSON(_ text: String) -> UnsafePointer<CChar>? {
        free(stateJSON)
        stateJSON = strdup(text)
        return stateJSON.map { UnsafePointer($0) }
    }
}
