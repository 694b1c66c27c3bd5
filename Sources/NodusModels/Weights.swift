import NodusCore
import NodusFormats

/// A model's weights as float32 tensors, each checked against the shape the
/// network reads it with. Float32 weights are views into the mapped file;
/// float16/bfloat16 ones are converted once and kept.
final class Weights {
    let store: WeightStore
    private var loaded: [String: Tensor] = [:]

    init(store: WeightStore) {
        self.store = store
    }

    func contains(_ name: String) -> Bool { store.contains(name) }

    /// The weight `name`, which must have `shape`.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        if let tensor = loaded[name] {
            guard tensor.shape == shape else {
                throw NodusError.shape("weight '\(name)' in '\(store.directory)' has shape \(tensor.shape), expected \(shape)")
            }
            return tensor
        }
        let tensor = try store.float32(name, shape: shape)
        loaded[name] = tensor
        return tensor
    }
}
