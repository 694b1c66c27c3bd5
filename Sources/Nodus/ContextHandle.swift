import NodusModels

/// What a `nodus_context *` points to: a run context of a model, holding the
/// model (and so its weights) while the context lives.
final class ContextHandle: OpaqueHandle {
    static let typeName = "nodus_context"
    let callLock = HandleLock()

    let model: any ContextualModel
    let context: RunContext

    init(model: any ContextualModel, context: RunContext) {
        self.model = model
        self.context = context
    }
}
