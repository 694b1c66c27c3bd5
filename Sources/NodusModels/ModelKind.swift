/// What a loaded model is. Raw values are the C header's `nodus_model_kind` values (append-only).
public enum ModelKind: Int32, CaseIterable, Sendable {
    case dit = 0
    case unet = 1
    case vae = 2
    case clipText = 3
    case onnx = 4
    /// A DiT over 3-D latent patches (MedSyn2).
    case volumeTransformer = 5

    /// The name used by the C ABI and Python (`"dit"`, `"clip_text"`, ...).
    public var name: String {
        switch self {
        case .dit: "dit"
        case .unet: "unet"
        case .vae: "vae"
        case .clipText: "clip_text"
        case .onnx: "onnx"
        case .volumeTransformer: "dit3d"
        }
    }

    public init?(name: String) {
        guard let match = ModelKind.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
}
